"""What the project-local servers under ``<checkout>/.xbroker/`` share: the checkout they
belong to, free loopback ports, and a lock that serialises their start and stop.

Development only, like the servers themselves (`broker.devnode`, `broker.devdb`).
"""

from __future__ import annotations

from broker.devlocal.checkout import locked, project_root
from broker.devlocal.ports import free_port, port_is_free

__all__ = ["free_port", "locked", "port_is_free", "project_root"]

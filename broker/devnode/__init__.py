"""A project-local RabbitMQ node for development and tests, started without root.

Everything the node owns lives under ``<checkout>/.xbroker/rabbitmq/``: its data (MNESIA
base), logs, pid file, configuration, enabled-plugins file, its TLS folder (``tls/``:
server certificate and the CAs trusted for client certificates, see
`broker.devnode.tls`) and a private ``HOME`` holding the Erlang cookie that
``rabbitmqctl -n NODE`` shares with the node. Its ports (AMQP, AMQP over TLS, Erlang
distribution, Prometheus) are chosen free at first start, bound to 127.0.0.1 only and
remembered in ``node.json``, so the URL stays the same across restarts while they stay
free. Over TLS a client logs in with its certificate (EXTERNAL, the CN is the user) or
with a password. The node name is derived from the checkout path, so two clones on one machine run
two separate nodes.

The node is started through ``/usr/lib/rabbitmq/bin/rabbitmq-server`` directly: Debian's
wrapper in ``/usr/sbin`` switches to the ``rabbitmq`` user when run as root and reads the
system configuration. ``XBROKER_RABBITMQ_BIN`` names another directory holding
``rabbitmq-server`` and ``rabbitmqctl``.

Error tree::

    XBrokerError
    └── DevNodeError                    the local node cannot be had
        ├── RabbitMQNotInstalledError   (also FileNotFoundError) rabbitmq-server is missing
        ├── NodeStartError              (also TimeoutError) the node did not come up in time
        └── RabbitmqctlError            a rabbitmqctl command failed
"""

from __future__ import annotations

from broker.devlocal import project_root
from broker.devnode.ctl import (
    add_user,
    add_vhost,
    delete_vhost,
    node_eval,
    rabbitmqctl,
    set_permissions,
)
from broker.devnode.errors import (
    DevNodeError,
    NodeStartError,
    RabbitmqctlError,
    RabbitMQNotInstalledError,
)
from broker.devnode.layout import NodeInfo, amqp_reachable, amqps_url, nodename_for
from broker.devnode.lifecycle import ensure_node, node_status, stop_node
from broker.devnode.trust import distrust_client_ca, issue_client_certificate, trust_client_ca

__all__ = [
    "DevNodeError",
    "NodeInfo",
    "NodeStartError",
    "RabbitMQNotInstalledError",
    "RabbitmqctlError",
    "add_user",
    "add_vhost",
    "amqp_reachable",
    "amqps_url",
    "delete_vhost",
    "distrust_client_ca",
    "ensure_node",
    "issue_client_certificate",
    "node_eval",
    "node_status",
    "nodename_for",
    "project_root",
    "rabbitmqctl",
    "set_permissions",
    "stop_node",
    "trust_client_ca",
]

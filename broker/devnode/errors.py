"""Errors of the project-local node (the tree is drawn in the package docstring)."""

from __future__ import annotations

from broker.errors import XBrokerError

__all__ = [
    "INSTALL_HINT",
    "DevNodeError",
    "NodeStartError",
    "RabbitMQNotInstalledError",
    "RabbitmqctlError",
]

INSTALL_HINT = (
    "RabbitMQ is not installed: run `make system-deps` as root, or "
    "`sudo apt-get install rabbitmq-server xmlsec1 prometheus`; or start a node with "
    "`docker compose up` (docker-compose.yml) and set XBROKER_AMQP_URL to it."
)


class DevNodeError(XBrokerError):
    """The project-local RabbitMQ node cannot be had."""


class RabbitMQNotInstalledError(DevNodeError, FileNotFoundError):
    """rabbitmq-server is not installed where we look for it."""


class NodeStartError(DevNodeError, TimeoutError):
    """The node died or did not answer before the deadline; the message names its log."""


class RabbitmqctlError(DevNodeError):
    """A rabbitmqctl command exited non-zero; the message carries its output."""

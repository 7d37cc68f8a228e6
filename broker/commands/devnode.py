"""``xbroker node``: the project-local RabbitMQ node (see ``broker.devnode``).

``xbroker node ensure --print-url`` is what the Makefile calls: it prints only the AMQP URL
on stdout, so ``XBROKER_AMQP_URL=$(xbroker node ensure --print-url)`` works; everything
else goes to stderr. When ``XBROKER_AMQP_URL`` already points to a node that answers, that
URL is printed and nothing is started.

``python -m broker.commands.devnode ARGS`` is the same as ``xbroker node ARGS`` without
loading the other commands, so the Makefile can manage the node even while another
command module is broken.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from broker import devnode
from broker.commands._local_server import Actions, LocalServer

__all__ = ["main", "register"]


def _add_ctl(actions: Actions) -> None:
    ctl = actions.add_parser("ctl", help="run rabbitmqctl against the node")
    ctl.add_argument("args", nargs=argparse.REMAINDER, help="rabbitmqctl arguments")
    ctl.set_defaults(func=_ctl)


def _ctl(args: argparse.Namespace) -> int:
    ctl_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    try:
        sys.stdout.write(devnode.rabbitmqctl(*ctl_args))
    except devnode.DevNodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _describe(info: devnode.NodeInfo) -> None:
    print(f"node        {info.nodename} (pid {info.pid})")
    print(f"amqp        {info.amqp_url}")
    if info.tls_port is not None:
        print(f"amqps       {info.tls_url_for_vhost('/')}  (cafile {info.tls_ca_file})")
    print(f"prometheus  http://127.0.0.1:{info.prometheus_port}/metrics")
    if info.management_port:
        print(f"management  http://127.0.0.1:{info.management_port}/  (guest, loopback only)")
    print(f"log         {info.log_file}")
    print("rabbitmqctl xbroker node ctl ARGS...")


_NODE = LocalServer[devnode.NodeInfo](
    command="node",
    module="broker.commands.devnode",
    server="RabbitMQ node",
    url_variable="XBROKER_AMQP_URL",
    url_name="AMQP URL",
    answering="an AMQP server",
    error=devnode.DevNodeError,
    reachable=devnode.amqp_reachable,
    ensure=devnode.ensure_node,
    stop=devnode.stop_node,
    status=devnode.node_status,
    url=lambda info: info.amqp_url,
    ready=lambda info: f"RabbitMQ node {info.nodename} ready (log: {info.log_file})",
    describe=_describe,
    external="RabbitMQ at {url}",
    more=_add_ctl,
)


def register(subparsers: Actions) -> None:
    """Add ``xbroker node {ensure,stop,status,ctl,probe}``."""
    _NODE.register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``node ACTION ...`` on its own: ``python -m broker.commands.devnode ensure``."""
    return _NODE.main(argv)


if __name__ == "__main__":
    sys.exit(main())

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
import json
import os
import sys
from collections.abc import Sequence

from broker import devnode

__all__ = ["main", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``xbroker node {ensure,stop,status,ctl,probe}``."""
    node = subparsers.add_parser("node", help="the project-local RabbitMQ node")
    actions = node.add_subparsers(dest="node_command", required=True, metavar="ACTION")

    ensure = actions.add_parser("ensure", help="reuse the running node or start it")
    ensure.add_argument(
        "--print-url", action="store_true", help="print only the AMQP URL on stdout"
    )
    ensure.set_defaults(func=_ensure)

    stop = actions.add_parser("stop", help="stop the node (its data is kept)")
    stop.set_defaults(func=_stop)

    status = actions.add_parser("status", help="is the node running, and where")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    ctl = actions.add_parser("ctl", help="run rabbitmqctl against the node")
    ctl.add_argument("args", nargs=argparse.REMAINDER, help="rabbitmqctl arguments")
    ctl.set_defaults(func=_ctl)

    probe = actions.add_parser("probe", help="exit 0 if an AMQP server answers at URL")
    probe.add_argument("url", nargs="?", default=None, help="default: $XBROKER_AMQP_URL")
    probe.set_defaults(func=_probe)


def _external_url() -> str | None:
    url = os.environ.get("XBROKER_AMQP_URL")
    return url if url and devnode.amqp_reachable(url) else None


def _ensure(args: argparse.Namespace) -> int:
    external = _external_url()
    if external is not None:
        print("using XBROKER_AMQP_URL; no local node started", file=sys.stderr)
        print(external if args.print_url else f"RabbitMQ at {external}")
        return 0
    if os.environ.get("XBROKER_AMQP_URL"):
        print("XBROKER_AMQP_URL does not answer; using the local node", file=sys.stderr)
    print("ensuring the local RabbitMQ node ...", file=sys.stderr)
    try:
        info = devnode.ensure_node()
    except devnode.DevNodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print_url:
        print(f"RabbitMQ node {info.nodename} ready (log: {info.log_file})", file=sys.stderr)
        print(info.amqp_url)
    else:
        _describe(info)
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = devnode.stop_node()
    print("stopped" if stopped else "not running", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    info = devnode.node_status()
    if args.json:
        print(json.dumps({"running": info is not None, **(info.as_json() if info else {})}))
    elif info is None:
        print("not running")
    else:
        _describe(info)
    return 0 if info is not None else 3


def _ctl(args: argparse.Namespace) -> int:
    ctl_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    try:
        sys.stdout.write(devnode.rabbitmqctl(*ctl_args))
    except devnode.DevNodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _probe(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("XBROKER_AMQP_URL")
    return 0 if url and devnode.amqp_reachable(url) else 1


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``node ACTION ...`` on its own: ``python -m broker.commands.devnode ensure``."""
    parser = argparse.ArgumentParser(prog="python -m broker.commands.devnode")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["node", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

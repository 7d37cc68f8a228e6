"""The commands a project-local server answers to, ``xbroker node`` and ``xbroker db``
alike: ``ensure`` (reuse it or start it), ``stop``, ``status`` and ``probe``.

Nothing here imports more than the standard library: ``python -m broker.commands.devnode``
must run while another command module is broken.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeAlias, TypeVar

__all__ = ["Actions", "LocalServer", "ServerInfo"]


class ServerInfo(Protocol):
    def as_json(self) -> dict[str, object]: ...


InfoT = TypeVar("InfoT", bound=ServerInfo)
# A string: the class is generic only to the type checker, not subscriptable at run time.
Actions: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass(frozen=True)
class LocalServer(Generic[InfoT]):
    """One server's commands, from what tells it apart."""

    command: str  # ``xbroker COMMAND ACTION``
    module: str  # ``python -m MODULE ACTION`` runs it alone
    server: str  # "RabbitMQ node": the help and messages say "the local <server>"
    url_variable: str  # the environment variable naming a server to use instead
    url_name: str  # what ``--print-url`` prints: "URL", "AMQP URL"
    answering: str  # what ``probe`` looks for: "an AMQP server"
    error: type[Exception]  # what ensure and stop raise when the server cannot be had
    reachable: Callable[[str], bool]
    ensure: Callable[[], InfoT]
    stop: Callable[[], bool]
    status: Callable[[], InfoT | None]
    url: Callable[[InfoT], str]
    ready: Callable[[InfoT], str]  # the line on stderr once it answers
    describe: Callable[[InfoT], None]
    external: str = "{url}"  # what ``ensure`` prints of a server named by the variable
    more: Callable[[Actions], None] | None = None  # adds actions of this server's own

    @property
    def noun(self) -> str:
        return self.server.split()[-1]

    def register(self, subparsers: Actions) -> None:
        """Add ``xbroker COMMAND {ensure,stop,status,probe}``, the server's own actions
        before ``probe``."""
        parser = subparsers.add_parser(self.command, help=f"the project-local {self.server}")
        actions = parser.add_subparsers(
            dest=f"{self.command}_command", required=True, metavar="ACTION"
        )
        noun = self.noun

        ensure = actions.add_parser("ensure", help=f"reuse the running {noun} or start it")
        ensure.add_argument(
            "--print-url", action="store_true", help=f"print only the {self.url_name} on stdout"
        )
        ensure.set_defaults(func=self._ensure)

        stop = actions.add_parser("stop", help=f"stop the {noun} (its data is kept)")
        stop.set_defaults(func=self._stop)

        status = actions.add_parser("status", help=f"is the {noun} running, and where")
        status.add_argument("--json", action="store_true", help="machine-readable output")
        status.set_defaults(func=self._status)

        if self.more is not None:
            self.more(actions)

        probe = actions.add_parser("probe", help=f"exit 0 if {self.answering} answers at URL")
        probe.add_argument("url", nargs="?", default=None, help=f"default: ${self.url_variable}")
        probe.set_defaults(func=self._probe)

    def main(self, argv: Sequence[str] | None) -> int:
        """Run ``COMMAND ACTION ...`` on its own, as ``python -m MODULE ACTION ...``."""
        parser = argparse.ArgumentParser(prog=f"python -m {self.module}")
        self.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args([self.command, *(sys.argv[1:] if argv is None else argv)])
        code: int = args.func(args)
        return code

    def _ensure(self, args: argparse.Namespace) -> int:
        url = os.environ.get(self.url_variable)
        if url and self.reachable(url):
            print(f"using {self.url_variable}; no local {self.noun} started", file=sys.stderr)
            print(url if args.print_url else self.external.format(url=url))
            return 0
        if url:
            print(
                f"{self.url_variable} does not answer; using the local {self.noun}",
                file=sys.stderr,
            )
        print(f"ensuring the local {self.server} ...", file=sys.stderr)
        try:
            info = self.ensure()
        except self.error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if args.print_url:
            print(self.ready(info), file=sys.stderr)
            print(self.url(info))
        else:
            self.describe(info)
        return 0

    def _stop(self, args: argparse.Namespace) -> int:
        try:
            stopped = self.stop()
        except self.error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("stopped" if stopped else "not running", file=sys.stderr)
        return 0

    def _status(self, args: argparse.Namespace) -> int:
        info = self.status()
        if args.json:
            print(json.dumps({"running": info is not None, **(info.as_json() if info else {})}))
        elif info is None:
            print("not running")
        else:
            self.describe(info)
        return 0 if info is not None else 3

    def _probe(self, args: argparse.Namespace) -> int:
        url = args.url or os.environ.get(self.url_variable)
        return 0 if url and self.reachable(url) else 1

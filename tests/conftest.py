"""Fixtures shared by the whole suite: a real RabbitMQ for the tests that need one.

``rabbitmq`` (session)
    A `RabbitMQ`: a private virtual host ``xbroker-test-<random>`` made for this test
    session (the node's user may do anything in it), deleted when the session ends.
``amqp_url`` (session)
    The AMQP URL of that vhost; give it to aio-pika.
``rabbitmqctl`` (session)
    ``rabbitmqctl(*args) -> stdout`` against the local node, for tests that manage users
    and permissions. Not available against an external node.
``local_node`` (session)
    The local node's `devnode.NodeInfo`, for tests that restart it, read its ports or
    make vhosts of their own. Not available against an external node.

Where the node comes from:

1. ``XBROKER_AMQP_URL`` names this checkout's local node (``make test`` exports it): use it.
2. ``XBROKER_AMQP_URL`` names another node: the vhost is made through its management HTTP
   API at ``XBROKER_MANAGEMENT_URL`` (``http://user:password@host:15672``); without that
   variable the RabbitMQ tests fail, saying so.
3. Unset (plain ``.venv/bin/pytest``): ``broker.devnode.ensure_node()`` reuses or starts
   the local node.

Every test using these fixtures gets the ``rabbitmq`` marker (``-m 'not rabbitmq'`` runs
the rest). When no RabbitMQ can be had they are skipped with the reason, except in CI
(`tests.tools`): there they fail.

``xmlsec1``, ``promtool``, ``prometheus``, ``asyncapi`` (session)
    The path of that external tool (`tests.tools.TOOLS`); a test using one gets the
    ``tool`` marker. Missing, it is skipped with what to install, except in CI.

``postgres_server``, ``database_url``, ``backend`` (tests/postgres_fixtures.py)
    A real PostgreSQL, and store tests run against both backends; ``postgres`` marker.

In CI a session in which any ``rabbitmq``, ``postgres`` or ``tool`` test was skipped
fails too, so CI can never pass without having exercised RabbitMQ, PostgreSQL and every
tool.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from broker import devnode
from tests import tools

# PostgreSQL, and the fixture that runs the store tests on both backends.
pytest_plugins = ["tests.postgres_fixtures"]

RABBITMQ_FIXTURES = frozenset({"rabbitmq", "amqp_url", "rabbitmqctl", "local_node"})


@dataclass(frozen=True)
class RabbitMQ:
    """The test session's private vhost and how to reach it."""

    vhost: str
    amqp_url: str
    user: str
    node: devnode.NodeInfo | None  # None when the node is external


# The node to test against, taken out of the environment for the whole session: every
# XBROKER_* variable beats a settings file, so a URL left in the environment would send
# the CLI and the worker subprocesses of the tests to the wrong vhost. Tests hand each of
# them its own vhost's URL explicitly.
SESSION_AMQP_URL = os.environ.pop("XBROKER_AMQP_URL", None)


def _unavailable(reason: str) -> NoReturn:
    tools.unavailable("RabbitMQ", reason)


def _local_node(root: Path) -> devnode.NodeInfo | None:
    """This checkout's node, if XBROKER_AMQP_URL is unset or points at it."""
    url = SESSION_AMQP_URL
    if not url:
        try:
            return devnode.ensure_node(root)
        except devnode.DevNodeError as exc:
            _unavailable(str(exc))
    info = devnode.node_status(root)
    parts = urlsplit(url)
    if info and parts.hostname in {"127.0.0.1", "localhost"} and parts.port == info.amqp_port:
        return info
    return None


def _management(method: str, path: str, body: dict[str, str] | None, amqp_url: str) -> None:
    """One call to the management HTTP API of an external node."""
    base = os.environ.get("XBROKER_MANAGEMENT_URL")
    if not base:
        _unavailable(
            "XBROKER_AMQP_URL names an external node; set XBROKER_MANAGEMENT_URL "
            "(http://user:password@host:15672) so the tests can make their own vhost"
        )
    mgmt, amqp = urlsplit(base), urlsplit(amqp_url)
    user, password = mgmt.username or amqp.username, mgmt.password or amqp.password
    netloc = f"{mgmt.hostname}:{mgmt.port}" if mgmt.port else str(mgmt.hostname)
    url = urlunsplit((mgmt.scheme, netloc, mgmt.path.rstrip("/") + path, "", ""))
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None
    )
    request.add_header("content-type", "application/json")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30):
            pass
    except (urllib.error.URLError, OSError) as exc:
        _unavailable(f"management API {method} {url}: {exc}")


@pytest.fixture(scope="session")
def rabbitmq(request: pytest.FixtureRequest) -> Iterator[RabbitMQ]:
    """A private vhost for this session on the local or the external node (see above)."""
    vhost = f"xbroker-test-{secrets.token_hex(4)}"
    node = _local_node(request.config.rootpath)
    if node is not None:
        try:
            devnode.add_vhost(vhost, root=request.config.rootpath)
            devnode.set_permissions(
                vhost, node.user, ".*", ".*", ".*", root=request.config.rootpath
            )
        except devnode.DevNodeError as exc:
            _unavailable(str(exc))
        yield RabbitMQ(vhost, node.url_for_vhost(vhost), node.user, node)
        try:
            devnode.delete_vhost(vhost, root=request.config.rootpath)
        except devnode.DevNodeError as exc:
            warnings.warn(f"test vhost {vhost} not deleted: {exc}", stacklevel=1)
        return
    external = SESSION_AMQP_URL
    assert external is not None
    parts = urlsplit(external)
    user = parts.username or "guest"
    path = f"/api/vhosts/{quote(vhost, safe='')}"
    _management("PUT", path, {}, external)
    _management(
        "PUT",
        f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
        {"configure": ".*", "write": ".*", "read": ".*"},
        external,
    )
    yield RabbitMQ(vhost, urlunsplit(parts._replace(path="/" + quote(vhost, safe=""))), user, None)
    _management("DELETE", path, None, external)


@pytest.fixture(scope="session")
def amqp_url(rabbitmq: RabbitMQ) -> str:
    """The AMQP URL of the session's private vhost."""
    return rabbitmq.amqp_url


@pytest.fixture(scope="session")
def local_node(rabbitmq: RabbitMQ) -> devnode.NodeInfo:
    """The project-local node the session runs on."""
    if rabbitmq.node is None:
        _unavailable(
            "this test needs the project-local node; XBROKER_AMQP_URL names an external one"
        )
    return rabbitmq.node


@pytest.fixture(scope="session")
def rabbitmqctl(local_node: devnode.NodeInfo, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``rabbitmqctl(*args) -> stdout`` against the local node (silent: no table headers)."""
    root = request.config.rootpath

    def run(*args: str) -> str:
        return devnode.rabbitmqctl(*args, root=root)

    return run


def _tool_fixture(tool: tools.Tool) -> Callable[[pytest.FixtureRequest], str]:
    def path(request: pytest.FixtureRequest) -> str:
        return tools.require(tool, request.config.rootpath)

    path.__doc__ = f"The path of {tool.title}; skipped (failed in CI) when it is missing."
    return pytest.fixture(scope="session", name=tool.fixture)(path)


for _tool in tools.TOOLS:
    globals()[f"_{_tool.fixture}_fixture"] = _tool_fixture(_tool)
TOOL_FIXTURES = {tool.fixture: tool for tool in tools.TOOLS}
# A skip of such a test fails a CI session (``postgres``: tests/postgres_fixtures.py).
GUARDED_MARKERS = ("rabbitmq", "postgres", "tool")


class _SkippedInCI:
    """Fails a CI session in which any ``rabbitmq``, ``postgres`` or ``tool`` test was
    skipped."""

    def __init__(self) -> None:
        self.guarded: set[str] = set()
        self.skipped: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.guarded = {
            item.nodeid
            for item in session.items
            if any(item.get_closest_marker(marker) for marker in GUARDED_MARKERS)
        }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        guarded = report.nodeid in self.guarded
        if report.skipped and guarded and not hasattr(report, "wasxfail"):
            self.skipped.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skipped:
            terminalreporter.section(
                "tests needing RabbitMQ, PostgreSQL or a tool skipped in CI", sep="!", red=True
            )
            for nodeid in dict.fromkeys(self.skipped):
                terminalreporter.write_line(f"fails the run: {nodeid}")


def pytest_configure(config: pytest.Config) -> None:
    if tools.in_ci():
        config.pluginmanager.register(_SkippedInCI(), "xbroker-skipped-in-ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if RABBITMQ_FIXTURES & fixtures:
            item.add_marker(pytest.mark.rabbitmq)
        for name in sorted(fixtures & TOOL_FIXTURES.keys()):
            item.add_marker(pytest.mark.tool(TOOL_FIXTURES[name].name))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection or look up a host fails the test loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def module_vhost_url(
    rabbitmq: RabbitMQ, local_node: devnode.NodeInfo, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A vhost of the test module's own (``<session vhost>-<module>``), for tests whose
    counters or queues must see no other module's messages. Needs the local node."""
    root = request.config.rootpath
    vhost = f"{rabbitmq.vhost}-{request.module.__name__.rsplit('.', 1)[-1]}"
    devnode.add_vhost(vhost, root=root)
    devnode.set_permissions(vhost, rabbitmq.user, ".*", ".*", ".*", root=root)
    yield local_node.url_for_vhost(vhost)
    devnode.delete_vhost(vhost, root=root)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

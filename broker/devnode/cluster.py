"""A three-node RabbitMQ cluster on loopback, for the tests that lose a node.

Like the single node (`broker.devnode.lifecycle`), it runs without root from the checkout:
everything lives under ``<checkout>/.xbroker/cluster/``. The nodes share one ``HOME``
(and so one Erlang cookie, which ``rabbitmqctl`` needs too); each has its own name
(``xbroker-<checkout digest>-c<N>@localhost``), AMQP and distribution ports, data and
log folders. They are started fresh and joined with ``stop_app``, ``join_cluster``,
``start_app``, the way measured to work on a single machine, without
plugins, so each boots quickly. Quorum queues declared on the cluster get a member on
every node, so the loss of one node loses no confirmed message.

`Cluster.kill` (kill -9 of a node's VM), `Cluster.start` (of one node again),
`Cluster.ctl` (``stop_app``/``start_app``, alarms) are what the fault tests use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from broker.devlocal import free_port, project_root
from broker.devnode.ctl import run_ctl, start_detached
from broker.devnode.errors import NodeStartError, RabbitmqctlError
from broker.devnode.layout import amqp_reachable
from broker.devnode.remote import erl_eval

__all__ = ["Cluster", "ClusterNode", "start_cluster"]

START_TIMEOUT_SECONDS = 120.0
# A join (stop_app, join_cluster, start_app) took over 90 s while four test suites ran
# on the same 2 cores: the bounds only guard against a hang.
_CTL_TIMEOUT_SECONDS = 300.0
_ONLINE_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class ClusterNode:
    """One node of the cluster: its name, ports and files."""

    index: int
    nodename: str
    amqp_port: int
    dist_port: int
    base: Path
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.base / "node.pid"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    def url(self, vhost: str = "/", user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    def pid(self) -> int | None:
        """The VM's pid if it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # The pid file is the node's own; the shared HOME on the command line tells that
        # the pid still belongs to one of this cluster's VMs and not to a reused number.
        return pid if b"\0-home\0" + str(self.home).encode() + b"\0" in cmdline else None

    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.home),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.base / "plugins-expand"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }


@dataclass(frozen=True)
class Cluster:
    """The nodes of the cluster, in the order they were joined (the first is the seed)."""

    nodes: tuple[ClusterNode, ...]

    def urls(self, vhost: str = "/", *, first: int = 0) -> list[str]:
        """Every node's URL for ``vhost``, starting with node ``first``."""
        order = [*self.nodes[first:], *self.nodes[:first]]
        return [node.url(vhost) for node in order]

    def node(self, nodename: str) -> ClusterNode:
        for node in self.nodes:
            if node.nodename == nodename:
                return node
        raise KeyError(nodename)

    def ctl(self, *args: str, via: ClusterNode | None = None, timeout: float = 180.0) -> str:
        """``rabbitmqctl -n NODE -s ARGS`` against ``via``; without ``via``, against each
        running node in turn until one answers (one may be stopped or lost)."""
        if via is not None:
            return _ctl(via, *args, timeout=timeout)
        failure: RabbitmqctlError | None = None
        for node in self.nodes:
            if node.pid() is None:
                continue
            try:
                return _ctl(node, *args, timeout=timeout)
            except RabbitmqctlError as exc:
                failure = exc
        raise failure or RabbitmqctlError(f"no node of the cluster runs: {args}")

    def eval(self, node: ClusterNode, expression: str, timeout: float = 60.0) -> str:
        """Evaluate an Erlang expression on ``node`` at once (`broker.devnode.remote`)."""
        return erl_eval(node.nodename, node.home, expression, timeout=timeout)

    def stop_app(self, node: ClusterNode) -> None:
        """Stop RabbitMQ on ``node`` but keep its VM (``rabbitmqctl stop_app``)."""
        self.eval(node, "rabbit:stop().", timeout=120)

    def start_app(self, node: ClusterNode) -> None:
        """Start RabbitMQ on ``node`` again (``rabbitmqctl start_app``)."""
        self.eval(node, "rabbit:start().", timeout=180)

    def kill(self, node: ClusterNode) -> None:
        """kill -9 the node's VM, as a crash or a pulled plug would end it."""
        pid = node.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)

    def start(self, node: ClusterNode, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start a node of the cluster again (it rejoins with its own data)."""
        _boot(node)
        _wait_ready(node, timeout)

    def stop(self) -> None:
        """Stop every node (data is kept for the next start, which begins afresh)."""
        for node in self.nodes:
            with contextlib.suppress(RabbitmqctlError):
                if node.pid() is not None:
                    _ctl(node, "stop", str(node.pid_file), timeout=60)
            self.kill(node)


def start_cluster(root: Path | None = None, size: int = 3) -> Cluster:
    """Start a fresh cluster of ``size`` nodes under ``<root>/.xbroker/cluster``.

    A cluster left running by an earlier session is stopped and its data removed first:
    each session begins with empty nodes.
    """
    checkout = (root or project_root()).resolve()
    base = checkout / ".xbroker" / "cluster"
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:10]
    home = base / "home"
    leftover = _read(base)
    if leftover is not None:
        leftover.stop()
    if base.exists():
        shutil.rmtree(base)
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(hashlib.sha256(f"{digest}-cookie".encode()).hexdigest()[:20].upper())
    cookie.chmod(0o400)
    ports: list[int] = []
    while len(ports) < 2 * size:
        port = free_port()
        if port not in ports:
            ports.append(port)
    nodes = tuple(
        ClusterNode(
            index=i + 1,
            nodename=f"xbroker-{digest}-c{i + 1}@localhost",
            amqp_port=ports[2 * i],
            dist_port=ports[2 * i + 1],
            base=base / f"c{i + 1}",
            home=home,
        )
        for i in range(size)
    )
    cluster = Cluster(nodes)
    (base / "cluster.json").write_text(
        json.dumps(
            [
                {"nodename": n.nodename, "amqp_port": n.amqp_port, "dist_port": n.dist_port}
                for n in nodes
            ]
        )
    )
    for node in nodes:
        _write_files(node)
    try:
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(_boot_and_wait, nodes))
        seed = nodes[0]
        for node in nodes[1:]:
            _ctl(node, "stop_app", timeout=_CTL_TIMEOUT_SECONDS)
            _ctl(node, "join_cluster", seed.nodename, timeout=_CTL_TIMEOUT_SECONDS)
            _ctl(node, "start_app", timeout=_CTL_TIMEOUT_SECONDS)
        _ctl(
            seed,
            "await_online_nodes",
            str(size),
            "--timeout",
            str(_ONLINE_TIMEOUT_SECONDS),
            timeout=_ONLINE_TIMEOUT_SECONDS + 30,
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _read(base: Path) -> Cluster | None:
    """The cluster an earlier session started here, if its description is readable."""
    try:
        raw = json.loads((base / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
    home = base / "home"
    return Cluster(
        tuple(
            ClusterNode(
                i + 1, r["nodename"], r["amqp_port"], r["dist_port"], base / f"c{i + 1}", home
            )
            for i, r in enumerate(raw)
        )
    )


def _write_files(node: ClusterNode) -> None:
    for folder in (node.base, node.log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    (node.base / "rabbitmq-env.conf").write_text("# intentionally empty: see broker/devnode/\n")
    (node.base / "enabled_plugins").write_text("[].\n")
    (node.base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
        "log.console = false\n"
        "log.file.level = info\n"
    )


def _boot_and_wait(node: ClusterNode) -> None:
    _boot(node)
    _wait_ready(node, START_TIMEOUT_SECONDS)


def _boot(node: ClusterNode) -> None:
    node.pid_file.unlink(missing_ok=True)
    code = start_detached(node.environment(), node.base, node.log_dir / "start.out")
    if code != 0:
        raise NodeStartError(f"{node.nodename}: rabbitmq-server exited {code}")


def _wait_ready(node: ClusterNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if amqp_reachable(f"amqp://127.0.0.1:{node.amqp_port}/", timeout=1.0):
            left = max(5, int(deadline - time.monotonic()))
            _ctl(node, "await_startup", "--timeout", str(left), timeout=left + 15)
            return
        time.sleep(0.5)
    raise NodeStartError(f"{node.nodename} not ready within {timeout:.0f} s; see {node.log_dir}")


def _ctl(node: ClusterNode, *args: str, timeout: float = 60.0) -> str:
    try:
        return run_ctl(node.nodename, node.environment(), *args, timeout=timeout)
    except RabbitmqctlError as exc:
        raise RabbitmqctlError(f"{node.nodename}: {exc}") from exc

"""A project-local RabbitMQ node for development and tests, started without root.

Everything the node owns lives under ``<checkout>/.xbroker/rabbitmq/``: its data (MNESIA
base), logs, pid file, configuration, enabled-plugins file and a private ``HOME`` holding
the Erlang cookie that ``rabbitmqctl -n NODE`` shares with the node. Its ports (AMQP,
Erlang distribution, Prometheus) are chosen free at first start, bound to 127.0.0.1 only
and remembered in ``node.json``, so the URL stays the same across restarts while they stay
free. The node name is derived from the checkout path, so two clones on one machine run
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

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from broker.errors import XBrokerError

__all__ = [
    "DevNodeError",
    "NodeInfo",
    "NodeStartError",
    "RabbitMQNotInstalledError",
    "RabbitmqctlError",
    "add_user",
    "add_vhost",
    "amqp_reachable",
    "delete_vhost",
    "ensure_node",
    "node_status",
    "nodename_for",
    "project_root",
    "rabbitmqctl",
    "set_permissions",
    "stop_node",
]

DEFAULT_BIN_DIR = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_SECONDS = 90.0
INSTALL_HINT = (
    "RabbitMQ is not installed: run `make system-deps` as root, or "
    "`sudo apt-get install rabbitmq-server xmlsec1 prometheus`; or start a node with "
    "`docker compose up` (docker-compose.yml) and set XBROKER_AMQP_URL to it."
)
# The default user only connects over loopback, which is the only place this node listens.
_USER = "guest"
_PASSWORD = "guest"


class DevNodeError(XBrokerError):
    """The project-local RabbitMQ node cannot be had."""


class RabbitMQNotInstalledError(DevNodeError, FileNotFoundError):
    """rabbitmq-server is not installed where we look for it."""


class NodeStartError(DevNodeError, TimeoutError):
    """The node died or did not answer before the deadline; the message names its log."""


class RabbitmqctlError(DevNodeError):
    """A rabbitmqctl command exited non-zero; the message carries its output."""


@dataclass(frozen=True)
class NodeInfo:
    """Where the local node listens and how to reach it."""

    nodename: str
    amqp_url: str
    amqp_port: int
    dist_port: int
    prometheus_port: int
    home: Path
    base: Path
    log_file: Path
    pid: int
    user: str = _USER
    password: str = _PASSWORD

    def url_for_vhost(self, vhost: str) -> str:
        """The AMQP URL of this node with ``vhost`` (percent-encoded) as its path."""
        return (
            f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"
        )

    def as_json(self) -> dict[str, object]:
        """Plain JSON-ready fields, for ``xbroker node status --json``."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


class _Ports(NamedTuple):
    amqp: int
    dist: int
    prometheus: int


@dataclass(frozen=True)
class _Layout:
    """The files of one checkout's node, derived from the checkout path without I/O."""

    nodename: str
    base: Path
    home: Path
    log_dir: Path
    log_file: Path
    pid_file: Path
    state_file: Path

    @classmethod
    def of(cls, root: Path | None) -> _Layout:
        base = (root or project_root()).resolve() / ".xbroker" / "rabbitmq"
        nodename = nodename_for(root or project_root())
        log_dir = base / "log"
        return cls(
            nodename=nodename,
            base=base,
            home=base / "home",
            log_dir=log_dir,
            log_file=log_dir / f"{nodename}.log",
            pid_file=base / "node.pid",
            state_file=base / "node.json",
        )


def nodename_for(root: Path) -> str:
    """The node name of the checkout at ``root``: two clones never share a node."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return f"xbroker-{digest}@localhost"


def project_root() -> Path:
    """The checkout this package was installed from (editable), else the working directory."""
    candidate = Path(__file__).resolve().parent.parent
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def _bin_dir() -> Path:
    return Path(os.environ.get("XBROKER_RABBITMQ_BIN", DEFAULT_BIN_DIR))


def _executable(name: str) -> Path:
    path = _bin_dir() / name
    if not os.access(path, os.X_OK):
        raise RabbitMQNotInstalledError(f"{path} not found. {INSTALL_HINT}")
    return path


def _environment(layout: _Layout, ports: _Ports) -> dict[str, str]:
    """The node's own environment: nothing from /etc/rabbitmq, everything under base."""
    base = layout.base
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(layout.home),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODENAME": layout.nodename,
        "RABBITMQ_USE_LONGNAME": "false",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(ports.amqp),
        "RABBITMQ_DIST_PORT": str(ports.dist),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(layout.log_dir),
        "RABBITMQ_PID_FILE": str(layout.pid_file),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def _write_files(layout: _Layout, ports: _Ports) -> None:
    for directory in (layout.base, layout.home, layout.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    cookie = layout.home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(20)))
        cookie.chmod(0o400)
    (layout.base / "rabbitmq-env.conf").write_text("# intentionally empty: see broker/devnode.py\n")
    (layout.base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
    (layout.base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{ports.amqp}\n"
        f"prometheus.tcp.ip = 127.0.0.1\n"
        f"prometheus.tcp.port = {ports.prometheus}\n"
        "log.console = false\n"
        "log.file.level = info\n"
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the node does: connections left in TIME_WAIT by the last run must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _choose_ports(layout: _Layout) -> _Ports:
    """The remembered ports if all are still free, else new free ones (remembered)."""
    ports = _read_state(layout)
    if ports and all(_port_is_free(port) for port in ports):
        return ports
    chosen: list[int] = []
    while len(chosen) < len(_Ports._fields):
        if (port := _free_port()) not in chosen:
            chosen.append(port)
    ports = _Ports(*chosen)
    layout.state_file.write_text(
        json.dumps({"nodename": layout.nodename, **_state_keys(ports)}, indent=2)
    )
    return ports


def _state_keys(ports: _Ports | None) -> dict[str, int]:
    """node.json's port entries (``amqp_port``, ...); with None, only the keys matter."""
    values = ports or _Ports(0, 0, 0)
    return {f"{name}_port": value for name, value in values._asdict().items()}


def _read_state(layout: _Layout) -> _Ports | None:
    try:
        raw = json.loads(layout.state_file.read_text())
        return _Ports(*(int(raw[key]) for key in _state_keys(None)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _running_pid(layout: _Layout) -> int | None:
    """The pid in the pid file if that process is alive and is this node's VM."""
    try:
        pid = int(layout.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # The node name is not on the VM's command line; its private HOME is, and is as unique.
    return pid if b"\0-home\0" + str(layout.home).encode() + b"\0" in cmdline else None


def amqp_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether an AMQP 0-9-1 server answers the protocol header at ``url`` (no login)."""
    parts = urlsplit(url)
    secure = parts.scheme == "amqps"
    host = parts.hostname or "localhost"
    port = parts.port or (5671 if secure else 5672)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if secure:  # a TCP accept is as far as we go without the client's TLS settings
                return True
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            # Connection.Start arrives as a method frame (type 1) on channel 0.
            return sock.recv(3) == b"\x01\x00\x00"
    except OSError:
        return False


def _info(layout: _Layout, ports: _Ports, pid: int) -> NodeInfo:
    return NodeInfo(
        nodename=layout.nodename,
        amqp_url=f"amqp://{_USER}:{_PASSWORD}@127.0.0.1:{ports.amqp}/",
        amqp_port=ports.amqp,
        dist_port=ports.dist,
        prometheus_port=ports.prometheus,
        home=layout.home,
        base=layout.base,
        log_file=layout.log_file,
        pid=pid,
    )


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    """Serialise ensure/stop across processes (make, pytest, a second terminal)."""
    layout.base.mkdir(parents=True, exist_ok=True)
    with (layout.base / "node.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_node(root: Path | None = None, *, timeout: float = START_TIMEOUT_SECONDS) -> NodeInfo:
    """Reuse this checkout's node if it answers, else start it and wait until it is ready."""
    layout = _Layout.of(root)
    server = _executable("rabbitmq-server")
    with _locked(layout):
        ports = _read_state(layout)
        pid = _running_pid(layout)
        if ports and pid is not None:
            # Alive: either ready, or still booting (started by a concurrent ensure).
            if amqp_reachable(f"amqp://127.0.0.1:{ports.amqp}/") or _wait_ready(
                layout, ports, timeout
            ):
                return _info(layout, ports, pid)
            raise NodeStartError(
                f"RabbitMQ node {layout.nodename} (pid {pid}) runs but does not answer; "
                f"stop it with `xbroker node stop`; see {layout.log_file}"
            )
        if pid is not None:
            raise NodeStartError(
                f"a node runs with pid {pid} but {layout.state_file} is unreadable; kill it"
            )
        ports = _choose_ports(layout)
        _write_files(layout, ports)
        layout.pid_file.unlink(missing_ok=True)
        with (layout.log_dir / "start.out").open("ab") as out:
            started = subprocess.run(
                [str(server), "-detached"],
                env=_environment(layout, ports),
                cwd=layout.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                check=False,
            )
        if started.returncode != 0:
            raise NodeStartError(f"rabbitmq-server exited {started.returncode}; see {out.name}")
        if not _wait_ready(layout, ports, timeout):
            raise NodeStartError(
                f"RabbitMQ node {layout.nodename} not ready within {timeout:.0f} s; "
                f"see {layout.log_file} and {layout.log_dir / 'start.out'}"
            )
        pid = _running_pid(layout)
        if pid is None:
            raise NodeStartError(f"node answered but its pid file is missing: {layout.pid_file}")
        return _info(layout, ports, pid)


def _wait_ready(layout: _Layout, ports: _Ports, timeout: float) -> bool:
    """Poll the AMQP listener, then let ``await_startup`` confirm the boot finished."""
    deadline = time.monotonic() + timeout
    url = f"amqp://127.0.0.1:{ports.amqp}/"
    pid_seen = False
    while time.monotonic() < deadline:
        if amqp_reachable(url, timeout=1.0):
            remaining = max(5, int(deadline - time.monotonic()))
            _ctl(
                layout, ports, "await_startup", "--timeout", str(remaining), timeout=remaining + 15
            )
            return True
        alive = _running_pid(layout) is not None
        if pid_seen and not alive:
            raise NodeStartError(f"RabbitMQ node {layout.nodename} died; see {layout.log_file}")
        pid_seen = pid_seen or alive
        time.sleep(0.5)
    return False


def _ctl(layout: _Layout, ports: _Ports, *args: str, timeout: float = 60.0) -> str:
    ctl = _executable("rabbitmqctl")
    try:
        done = subprocess.run(
            [str(ctl), "-n", layout.nodename, "-s", *args],
            env=_environment(layout, ports),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RabbitmqctlError(f"rabbitmqctl {' '.join(args)}: no answer in {timeout} s") from exc
    if done.returncode != 0:
        raise RabbitmqctlError(
            f"rabbitmqctl {' '.join(args)} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def rabbitmqctl(*args: str, root: Path | None = None, timeout: float = 60.0) -> str:
    """Run ``rabbitmqctl -n NODE -s ARGS`` against this checkout's node; return its stdout.

    ``-s`` (silent) drops table headers, so list output is one record per line.
    """
    layout = _Layout.of(root)
    ports = _read_state(layout)
    if ports is None:
        raise DevNodeError(f"no local node has been started here ({layout.state_file} missing)")
    return _ctl(layout, ports, *args, timeout=timeout)


def add_vhost(name: str, *, root: Path | None = None) -> None:
    """Create a virtual host on the local node."""
    rabbitmqctl("add_vhost", name, root=root)


def delete_vhost(name: str, *, root: Path | None = None) -> None:
    """Delete a virtual host and everything in it."""
    rabbitmqctl("delete_vhost", name, root=root)


def add_user(
    name: str, password: str, tags: Sequence[str] = (), *, root: Path | None = None
) -> None:
    """Create a user; ``tags`` such as ``administrator`` or ``monitoring``."""
    rabbitmqctl("add_user", name, password, root=root)
    if tags:
        rabbitmqctl("set_user_tags", name, *tags, root=root)


def set_permissions(
    vhost: str, user: str, configure: str, write: str, read: str, *, root: Path | None = None
) -> None:
    """Grant ``user`` the configure/write/read regexes on ``vhost``."""
    rabbitmqctl("set_permissions", "-p", vhost, user, configure, write, read, root=root)


def node_status(root: Path | None = None) -> NodeInfo | None:
    """The local node if its process is alive and AMQP answers, else None. Starts nothing."""
    layout = _Layout.of(root)
    ports = _read_state(layout)
    pid = _running_pid(layout)
    if ports is None or pid is None:
        return None
    if not amqp_reachable(f"amqp://127.0.0.1:{ports.amqp}/"):
        return None
    return _info(layout, ports, pid)


def stop_node(root: Path | None = None, *, timeout: float = 60.0) -> bool:
    """Stop this checkout's node; True if one was running. Data and ports are kept."""
    layout = _Layout.of(root)
    with _locked(layout):
        pid = _running_pid(layout)
        ports = _read_state(layout)
        if pid is None or ports is None:
            return False
        with contextlib.suppress(RabbitmqctlError, RabbitMQNotInstalledError):
            _ctl(layout, ports, "stop", str(layout.pid_file), timeout=timeout)
        _terminate(layout, pid)
        layout.pid_file.unlink(missing_ok=True)
    _stop_idle_epmd()
    return True


def _terminate(layout: _Layout, pid: int) -> None:
    """Make sure the VM is gone even when rabbitmqctl could not reach it."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        if _running_pid(layout) != pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _running_pid(layout) == pid:
            time.sleep(0.2)


def _stop_idle_epmd() -> None:
    """Stop the Erlang port mapper our node started, unless another node still uses it.

    ``epmd -kill`` refuses while any node is registered, so other nodes are never hurt.
    """
    epmd = shutil.which("epmd")
    if epmd is None:
        return
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        names = subprocess.run([epmd, "-names"], capture_output=True, text=True, timeout=5)
        if names.returncode == 0 and "\nname " not in names.stdout:
            subprocess.run([epmd, "-kill"], capture_output=True, timeout=5, check=False)

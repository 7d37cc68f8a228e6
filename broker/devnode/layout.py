"""Where one checkout's node lives: its files, ports, environment and process."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from broker.devlocal import free_port, port_is_free, project_root
from broker.devnode.errors import INSTALL_HINT, RabbitMQNotInstalledError
from broker.devnode.tls import NodeTlsFolder

__all__ = ["NodeInfo", "amqp_reachable", "amqps_url", "nodename_for"]

DEFAULT_BIN_DIR = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_SECONDS = 90.0
# The default user only connects over loopback, which is the only place this node listens.
_USER = "guest"
_PASSWORD = "guest"


@dataclass(frozen=True)
class NodeInfo:
    """Where the local node listens and how to reach it."""

    nodename: str
    amqp_url: str
    amqp_port: int
    dist_port: int
    prometheus_port: int
    tls_port: int | None  # None only while a node started before TLS still runs
    tls_ca_file: Path  # the CA that issued the node's server certificate (a client's cafile)
    home: Path
    base: Path
    log_file: Path
    pid: int
    user: str = _USER
    password: str = _PASSWORD
    # The management HTTP API on loopback (what an operator's management login reads);
    # None while a node started before it had one still runs.
    management_port: int | None = None

    def url_for_vhost(self, vhost: str) -> str:
        """The AMQP URL of this node with ``vhost`` (percent-encoded) as its path."""
        return (
            f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"
        )

    def tls_url_for_vhost(self, vhost: str) -> str:
        """``amqps://127.0.0.1:<tls_port>/<vhost>``, without login or certificate files."""
        if self.tls_port is None:
            raise ValueError(f"node {self.nodename} runs without a TLS listener; restart it")
        return f"amqps://127.0.0.1:{self.tls_port}/{quote(vhost, safe='')}"

    def amqps_url_for_vhost(self, vhost: str, certfile: Path, keyfile: Path) -> str:
        """The TLS URL of ``vhost`` for a client certificate, logging in with EXTERNAL."""
        return amqps_url(
            self.tls_url_for_vhost(vhost),
            cafile=self.tls_ca_file,
            certfile=certfile,
            keyfile=keyfile,
        )

    def as_json(self) -> dict[str, object]:
        """Plain JSON-ready fields, for ``xbroker node status --json``."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def amqps_url(url: str, *, cafile: Path, certfile: Path, keyfile: Path) -> str:
    """``url`` (amqps://host:port/vhost) with the query aiormq reads for EXTERNAL login.

    aiormq builds its context with ``ssl.create_default_context``: the server certificate
    is verified against ``cafile`` and its name checked against the URL's host.
    """
    query = urlencode(
        {
            "auth": "external",
            "cafile": str(cafile),
            "certfile": str(certfile),
            "keyfile": str(keyfile),
        },
        quote_via=quote,
        safe="/",
    )
    return f"{url.split('?', 1)[0]}?{query}"


class _Ports(NamedTuple):
    amqp: int
    dist: int
    prometheus: int
    tls: int  # 0 in a node.json written before the node had a TLS listener
    management: int = 0  # 0 in a node.json written before the management plugin


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
    lock_file: Path
    tls_dir: Path

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
            lock_file=base / "node.lock",
            tls_dir=base / "tls",
        )


def nodename_for(root: Path) -> str:
    """The node name of the checkout at ``root``: two clones never share a node."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return f"xbroker-{digest}@localhost"


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


def _config(layout: _Layout, ports: _Ports) -> dict[str, str]:
    """The configuration files of the node (name → content), derived without I/O.

    EXTERNAL is offered beside the password mechanisms, and a TLS client without a
    certificate is let in (``fail_if_no_peer_cert = false``): password logins keep working
    on both listeners, a certificate is verified when one is presented, and EXTERNAL
    takes its CN as the user name. The Behördenkennung is the CN of our certificates,
    so a user named by its kennung logs in with its certificate (the whole DN, the other
    choice, would tie the user name to the issuer's naming of O and C).
    """
    tls = NodeTlsFolder(layout.tls_dir)
    return {
        "enabled_plugins": (
            "[rabbitmq_prometheus,rabbitmq_auth_mechanism_ssl,rabbitmq_management].\n"
        ),
        "rabbitmq.conf": (
            f"listeners.tcp.default = 127.0.0.1:{ports.amqp}\n"
            f"listeners.ssl.default = 127.0.0.1:{ports.tls}\n"
            f"ssl_options.cacertfile = {tls.bundle}\n"
            f"ssl_options.certfile = {tls.server_cert}\n"
            f"ssl_options.keyfile = {tls.server_key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
            "ssl_options.depth = 2\n"
            "auth_mechanisms.1 = PLAIN\n"
            "auth_mechanisms.2 = AMQPLAIN\n"
            "auth_mechanisms.3 = EXTERNAL\n"
            "ssl_cert_login_from = common_name\n"
            f"prometheus.tcp.ip = 127.0.0.1\n"
            f"prometheus.tcp.port = {ports.prometheus}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {ports.management}\n"
            "log.console = false\n"
            "log.file.level = info\n"
        ),
    }


def _config_is_current(layout: _Layout, ports: _Ports) -> bool:
    """Whether the files the running node was started with are the ones we would write."""
    try:
        return all(
            (layout.base / name).read_text() == text
            for name, text in _config(layout, ports).items()
        )
    except OSError:
        return False


def _write_files(layout: _Layout, ports: _Ports) -> None:
    for directory in (layout.base, layout.home, layout.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    cookie = layout.home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(20)))
        cookie.chmod(0o400)
    (layout.base / "rabbitmq-env.conf").write_text("# intentionally empty: see broker/devnode/\n")
    for name, text in _config(layout, ports).items():
        (layout.base / name).write_text(text)


def _choose_ports(layout: _Layout) -> _Ports:
    """The remembered ports if all are still free, else new free ones (remembered).

    A port node.json does not know yet (written by an older version) is chosen and added.
    """
    remembered = _read_state(layout)
    if remembered and all(port_is_free(port) for port in remembered if port):
        values = list(remembered)
    else:
        values = [0] * len(_Ports._fields)
    for index, port in enumerate(values):
        while not port:
            candidate = free_port()
            port = 0 if candidate in values else candidate
        values[index] = port
    ports = _Ports(*values)
    if ports == remembered:
        return ports
    layout.state_file.write_text(
        json.dumps({"nodename": layout.nodename, **_state_keys(ports)}, indent=2)
    )
    return ports


def _state_keys(ports: _Ports | None) -> dict[str, int]:
    """node.json's port entries (``amqp_port``, ...); with None, only the keys matter."""
    values = ports or _Ports(0, 0, 0, 0, 0)
    return {f"{name}_port": value for name, value in values._asdict().items()}


_ADDED_LATER = frozenset({"tls_port", "management_port"})


def _read_state(layout: _Layout) -> _Ports | None:
    try:
        raw = json.loads(layout.state_file.read_text())
        return _Ports(
            *(
                int(raw.get(key, 0) if key in _ADDED_LATER else raw[key])
                for key in _state_keys(None)
            )
        )
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
        # A node started with an older configuration has no TLS listener until restarted.
        tls_port=ports.tls if ports.tls and _config_is_current(layout, ports) else None,
        tls_ca_file=NodeTlsFolder(layout.tls_dir).ca_cert,
        home=layout.home,
        base=layout.base,
        log_file=layout.log_file,
        pid=pid,
        management_port=(
            ports.management if ports.management and _config_is_current(layout, ports) else None
        ),
    )

"""Start, reuse and stop this checkout's PostgreSQL cluster (see the package docstring)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from broker.devdb.errors import INSTALL_HINT, ClusterStartError, PostgresNotInstalledError
from broker.devlocal import free_port, locked, port_is_free, project_root

__all__ = [
    "ClusterInfo",
    "cluster_status",
    "ensure_cluster",
    "postgres_reachable",
    "postgres_tool",
    "stop_cluster",
]

START_TIMEOUT_SECONDS = 60.0
DEBIAN_BIN_ROOT = Path("/usr/lib/postgresql")
ROLE = "xbroker"
DATABASE = "xbroker"
# Three broker processes with their pools, the tests' own connections and a bench at once.
MAX_CONNECTIONS = 300
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


@dataclass(frozen=True)
class ClusterInfo:
    """Where the local cluster listens and how to log in."""

    url: str  # of the database ``xbroker``
    port: int
    pid: int
    user: str
    password: str
    base: Path
    data_dir: Path
    log_file: Path
    bin_dir: Path

    def url_for(self, database: str) -> str:
        """The URL of another database of this cluster."""
        return (
            f"postgresql://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/"
            f"{quote(database, safe='')}"
        )

    def as_json(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class _ClusterLayout:
    """The files of one checkout's cluster, derived from the checkout path."""

    base: Path
    data: Path
    socket_dir: Path
    log_file: Path
    state_file: Path
    lock_file: Path

    @classmethod
    def of(cls, root: Path | None) -> _ClusterLayout:
        """The layout of the checkout at ``root`` (default: this one)."""
        return cls.at(_reachable_base((root or project_root()).resolve() / ".xbroker" / "postgres"))

    @classmethod
    def at(cls, base: Path) -> _ClusterLayout:
        """The layout of the cluster whose files are in ``base``."""
        return cls(
            base=base,
            data=base / "data",
            socket_dir=base / "run",
            log_file=base / "log" / "postgres.log",
            state_file=base / "cluster.json",
            lock_file=base / "cluster.lock",
        )


def _reachable_base(base: Path) -> Path:
    """``base``, or, when the server's OS user could not enter it, a folder of this
    checkout's own under /var/tmp.

    A root caller runs the server as ``postgres`` (`_owner`), which must enter every
    folder above its data directory; a checkout in a folder closed to other users (a
    home folder of mode 0700, a ``mktemp -d``) is not for it to enter. Opening those
    folders to others would change what is not ours to change, so the cluster moves.
    """
    owner = _owner()
    if owner is None or all(_enterable(folder, owner) for folder in base.parents):
        return base
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:16]
    return Path("/var/tmp") / f"xbroker-postgres-{digest}"


def _enterable(folder: Path, owner: tuple[int, int]) -> bool:
    """Whether the user ``owner`` (uid, gid) may pass through ``folder`` (one that does
    not exist yet will be made by us, open to pass through)."""
    try:
        info = folder.stat()
    except FileNotFoundError:
        return True
    uid, gid = owner
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


@dataclass(frozen=True)
class _State:
    port: int
    password: str
    created: bool  # the database ``xbroker`` exists


def ensure_cluster(
    root: Path | None = None, *, timeout: float = START_TIMEOUT_SECONDS
) -> ClusterInfo:
    """Reuse this checkout's cluster if it answers, else create and start it, and wait."""
    layout = _ClusterLayout.of(root)
    bin_dir = _bin_dir()
    with locked(layout.lock_file):
        state = _read_state(layout)
        pid = _running_pid(layout)
        if state is not None and pid is not None:
            if _wait_reachable(state.port, timeout):
                return _info(layout, state, pid, bin_dir)
            raise ClusterStartError(
                f"PostgreSQL (pid {pid}) runs but does not answer on port {state.port}; "
                f"stop it with `xbroker db stop`; see {layout.log_file}"
            )
        if not (layout.data / "PG_VERSION").is_file():
            state = _init(layout, bin_dir)
        elif state is None:
            raise ClusterStartError(
                f"{layout.data} exists but {layout.state_file} is unreadable: remove "
                f"{layout.base} to start afresh"
            )
        state = _start(layout, state, bin_dir, timeout)
        if not state.created:
            _createdb(state, bin_dir)
            state = _State(state.port, state.password, created=True)
            _write_state(layout, state)
        pid = _running_pid(layout)
        if pid is None:
            raise ClusterStartError(f"PostgreSQL answered but left no pid; see {layout.log_file}")
        return _info(layout, state, pid, bin_dir)


def cluster_status(root: Path | None = None) -> ClusterInfo | None:
    """The local cluster if its server is alive and answers, else None. Starts nothing."""
    layout = _ClusterLayout.of(root)
    state = _read_state(layout)
    pid = _running_pid(layout)
    if state is None or pid is None or not postgres_reachable(f"//127.0.0.1:{state.port}"):
        return None
    with contextlib.suppress(PostgresNotInstalledError):
        return _info(layout, state, pid, _bin_dir())
    return None


def stop_cluster(root: Path | None = None, *, timeout: float = 60.0, crash: bool = False) -> bool:
    """Stop this checkout's cluster (fast shutdown); True if one was running. Data stays.

    ``crash``: an immediate shutdown, as a lost server leaves its clients (and its data,
    which recovers at the next start)."""
    layout = _ClusterLayout.of(root)
    mode = "immediate" if crash else "fast"
    with locked(layout.lock_file):
        if _running_pid(layout) is None:
            return False
        _as_owner(
            [str(postgres_tool("pg_ctl")), "stop", "-D", str(layout.data), "-m", mode, "-w"],
            layout,
            timeout=timeout,
        )
    return True


def remove_cluster(root: Path | None = None) -> Path | None:
    """Stop this checkout's cluster and delete its files, wherever they live (below the
    checkout or under /var/tmp); the folder removed, or None if there was none."""
    layout = _ClusterLayout.of(root)
    if not layout.base.exists():
        return None
    stop_cluster(root)
    shutil.rmtree(layout.base)
    return layout.base


def postgres_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a PostgreSQL server answers at ``url`` (its SSL request; no login)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 5432), timeout=timeout
        ) as sock:
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


# creating and starting


def _init(layout: _ClusterLayout, bin_dir: Path) -> _State:
    """initdb with the role ``xbroker`` and a fresh password; a free port remembered."""
    for folder in (layout.base, layout.data, layout.socket_dir, layout.log_file.parent):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in (layout.data, layout.socket_dir, layout.log_file.parent):
        _give_to_owner(folder)
    layout.data.chmod(0o700)
    password = secrets.token_urlsafe(18)
    pwfile = layout.socket_dir / "initdb.pw"
    pwfile.write_text(password + "\n")
    _give_to_owner(pwfile)
    try:
        _as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(layout.data),
                "-U",
                ROLE,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            layout,
            timeout=120.0,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with (layout.data / "postgresql.conf").open("a") as conf:
        conf.write("\ninclude_if_exists = 'xbroker.conf'  # written by broker.devdb\n")
    state = _State(free_port(), password, created=False)
    _write_state(layout, state)
    return state


def _start(layout: _ClusterLayout, state: _State, bin_dir: Path, timeout: float) -> _State:
    if not port_is_free(state.port):
        state = _State(free_port(), state.password, state.created)
        _write_state(layout, state)
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(state.port),
        "unix_socket_directories": _quoted(layout.socket_dir),
        "max_connections": str(MAX_CONNECTIONS),
        "log_min_duration_statement": "-1",
    }
    conf = layout.data / "xbroker.conf"
    conf.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    _give_to_owner(conf)
    try:
        _as_owner(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(layout.data),
                "-l",
                str(layout.log_file),
                "-w",
                "-t",
                str(int(timeout)),
            ],
            layout,
            timeout=timeout + 15,
        )
    except ClusterStartError as exc:
        raise ClusterStartError(f"{exc}; see {layout.log_file}") from exc
    if not _wait_reachable(state.port, timeout):
        raise ClusterStartError(
            f"PostgreSQL not ready on port {state.port} within {timeout:.0f} s; "
            f"see {layout.log_file}"
        )
    return state


def _createdb(state: _State, bin_dir: Path) -> None:
    env = {**os.environ, "PGPASSWORD": state.password}
    done = subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(state.port), "-U", ROLE, DATABASE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise ClusterStartError(f"createdb {DATABASE}: {done.stderr.strip()}")


def _wait_reachable(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if postgres_reachable(f"//127.0.0.1:{port}", timeout=1.0):
            return True
        time.sleep(0.2)
    return False


# processes, owners and files


def _owner() -> tuple[int, int] | None:
    """(uid, gid) of the ``postgres`` OS user when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresNotInstalledError(
            f"running as root, but there is no `postgres` OS user to run the server as "
            f"(PostgreSQL refuses root). {INSTALL_HINT}"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def _give_to_owner(path: Path) -> None:
    owner = _owner()
    if owner is not None:
        os.chown(path, *owner)


def _as_owner(
    args: Sequence[str],
    layout: _ClusterLayout,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Run a server program as the cluster's owner, from a folder it may enter."""
    owner = _owner()
    try:
        done = subprocess.run(
            list(args),
            cwd=layout.base,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LC_ALL": "C.UTF-8",
                **(env or {}),
            },
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            extra_groups=[] if owner else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterStartError(f"{Path(args[0]).name}: no answer in {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise ClusterStartError(
            f"{Path(args[0]).name} {args[1]} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()}"
        )


def _read_state(layout: _ClusterLayout) -> _State | None:
    try:
        raw = json.loads(layout.state_file.read_text())
        return _State(int(raw["port"]), str(raw["password"]), bool(raw.get("created", False)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(layout: _ClusterLayout, state: _State) -> None:
    layout.state_file.write_text(json.dumps(asdict(state), indent=2))
    layout.state_file.chmod(0o600)


def _running_pid(layout: _ClusterLayout) -> int | None:
    """The postmaster's pid if it is alive and serves this checkout's data directory."""
    try:
        pid = int((layout.data / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(layout.data).encode() in cmdline else None


def _bin_dir() -> Path:
    """``XBROKER_POSTGRES_BIN``, else the newest of Debian's installed servers."""
    chosen = os.environ.get("XBROKER_POSTGRES_BIN")
    if chosen:
        candidates = [Path(chosen)]
    else:
        versions = [p for p in DEBIAN_BIN_ROOT.glob("*/bin") if p.parent.name.isdigit()]
        candidates = sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    where = chosen or f"{DEBIAN_BIN_ROOT}/<version>/bin"
    raise PostgresNotInstalledError(f"no PostgreSQL server in {where}. {INSTALL_HINT}")


def postgres_tool(name: str) -> Path:
    """A program of the PostgreSQL installation the cluster uses (``pg_dump``, ``psql``)."""
    return _bin_dir() / name


def _info(layout: _ClusterLayout, state: _State, pid: int, bin_dir: Path) -> ClusterInfo:
    return ClusterInfo(
        url=(
            f"postgresql://{ROLE}:{quote(state.password, safe='')}@127.0.0.1:{state.port}/"
            f"{DATABASE}"
        ),
        port=state.port,
        pid=pid,
        user=ROLE,
        password=state.password,
        base=layout.base,
        data_dir=layout.data,
        log_file=layout.log_file,
        bin_dir=bin_dir,
    )


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"

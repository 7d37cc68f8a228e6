"""Start, reuse and stop this checkout's node."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from broker.devlocal import locked
from broker.devnode.ctl import _ctl, start_detached
from broker.devnode.errors import NodeStartError, RabbitmqctlError, RabbitMQNotInstalledError
from broker.devnode.layout import (
    START_TIMEOUT_SECONDS,
    NodeInfo,
    _choose_ports,
    _config_is_current,
    _environment,
    _executable,
    _info,
    _Layout,
    _Ports,
    _read_state,
    _running_pid,
    _write_files,
    amqp_reachable,
)
from broker.devnode.tls import NodeTlsFolder

__all__ = ["ensure_node", "node_status", "stop_node"]


def ensure_node(root: Path | None = None, *, timeout: float = START_TIMEOUT_SECONDS) -> NodeInfo:
    """Reuse this checkout's node if it answers, else start it and wait until it is ready.

    A node running with another configuration than this version writes (one started
    before its TLS listener existed) is restarted once, on its remembered ports.
    """
    layout = _Layout.of(root)
    _executable("rabbitmq-server")  # not installed: say so before anything is written
    with locked(layout.lock_file):
        ports = _read_state(layout)
        pid = _running_pid(layout)
        if ports and pid is not None and not (all(ports) and _config_is_current(layout, ports)):
            _stop(layout, ports, pid, timeout=60.0)
            pid = None
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
        NodeTlsFolder(layout.tls_dir).ensure()
        _write_files(layout, ports)
        layout.pid_file.unlink(missing_ok=True)
        out = layout.log_dir / "start.out"
        code = start_detached(_environment(layout, ports), layout.base, out)
        if code != 0:
            raise NodeStartError(f"rabbitmq-server exited {code}; see {out}")
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
    with locked(layout.lock_file):
        pid = _running_pid(layout)
        ports = _read_state(layout)
        if pid is None or ports is None:
            return False
        _stop(layout, ports, pid, timeout=timeout)
    _stop_idle_epmd()
    return True


def _stop(layout: _Layout, ports: _Ports, pid: int, *, timeout: float) -> None:
    with contextlib.suppress(RabbitmqctlError, RabbitMQNotInstalledError):
        _ctl(layout, ports, "stop", str(layout.pid_file), timeout=timeout)
    _terminate(layout, pid)
    layout.pid_file.unlink(missing_ok=True)


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

"""rabbitmqctl against this checkout's node, and the few commands the project needs."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from broker.devnode.errors import DevNodeError, RabbitmqctlError
from broker.devnode.layout import _environment, _executable, _Layout, _Ports, _read_state
from broker.devnode.remote import erl_eval

__all__ = ["add_user", "add_vhost", "delete_vhost", "node_eval", "rabbitmqctl", "set_permissions"]

# rabbitmqctl starts an Erlang VM for each call: on a busy 2-core machine that alone has
# taken over a minute, for a command the node answers at once.
CTL_TIMEOUT_SECONDS = 180.0


def _ctl(layout: _Layout, ports: _Ports, *args: str, timeout: float = CTL_TIMEOUT_SECONDS) -> str:
    return run_ctl(layout.nodename, _environment(layout, ports), *args, timeout=timeout)


def run_ctl(
    nodename: str, environment: Mapping[str, str], *args: str, timeout: float = CTL_TIMEOUT_SECONDS
) -> str:
    """``rabbitmqctl -n NODENAME -s ARGS`` in ``environment`` (its HOME holds the cookie)."""
    ctl = _executable("rabbitmqctl")
    try:
        done = subprocess.run(
            [str(ctl), "-n", nodename, "-s", *args],
            env=dict(environment),
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


def start_detached(environment: Mapping[str, str], base: Path, log: Path) -> int:
    """``rabbitmq-server -detached`` in ``environment``; its exit code (output to ``log``)."""
    with log.open("ab") as out:
        started = subprocess.run(
            [str(_executable("rabbitmq-server")), "-detached"],
            env=dict(environment),
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            check=False,
        )
    return started.returncode


def rabbitmqctl(*args: str, root: Path | None = None, timeout: float = CTL_TIMEOUT_SECONDS) -> str:
    """Run ``rabbitmqctl -n NODE -s ARGS`` against this checkout's node; return its stdout.

    ``-s`` (silent) drops table headers, so list output is one record per line.
    """
    layout = _Layout.of(root)
    ports = _read_state(layout)
    if ports is None:
        raise DevNodeError(f"no local node has been started here ({layout.state_file} missing)")
    return _ctl(layout, ports, *args, timeout=timeout)


def node_eval(expression: str, *, root: Path | None = None, timeout: float = 60.0) -> str:
    """Evaluate an Erlang expression on this checkout's node at once (`erl_eval`)."""
    layout = _Layout.of(root)
    return erl_eval(layout.nodename, layout.home, expression, timeout=timeout)


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

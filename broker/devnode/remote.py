"""Evaluating an Erlang expression on a running node, at once.

``rabbitmqctl`` boots an Erlang VM of its own for every call: a second on an idle machine,
and more than a minute was seen on a loaded one. A fault test that raises an alarm or stops
a node's application needs it to happen when asked, so it talks to the node's VM directly
with ``erl_call`` (part of Erlang's erl_interface, installed with RabbitMQ), which takes
milliseconds. The node's Erlang cookie is read from the same private ``HOME`` that
``rabbitmqctl`` uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from broker.devnode.errors import RabbitmqctlError, RabbitMQNotInstalledError

__all__ = ["erl_eval"]

_ERL_CALL_PLACES = ("/usr/lib/erlang/bin/erl_call",)


def erl_eval(nodename: str, home: Path, expression: str, *, timeout: float = 60.0) -> str:
    """The value of ``expression`` (Erlang, ending in a dot), evaluated on ``nodename``,
    as Erlang prints it."""
    erl_call = shutil.which("erl_call") or next(
        (p for p in _ERL_CALL_PLACES if os.access(p, os.X_OK)), None
    )
    if erl_call is None:
        raise RabbitMQNotInstalledError("erl_call not found (it comes with Erlang's erl_interface)")
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    try:
        done = subprocess.run(
            [erl_call, "-sname", nodename, "-e"],
            input=expression.rstrip() + "\n",  # erl_call reads forms up to ".<newline>"
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RabbitmqctlError(f"{nodename}: no answer to {expression!r} in {timeout} s") from exc
    out = done.stdout.strip()
    if done.returncode != 0 or not (out.startswith("{ok,") and out.endswith("}")):
        raise RabbitmqctlError(f"{nodename}: {expression!r} gave {out or done.stderr.strip()}")
    return out[len("{ok,") : -1].strip()

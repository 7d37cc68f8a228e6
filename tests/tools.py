"""External tools the tests run, and the one rule for when one is missing.

Found, a test runs it. Missing outside CI, the test is skipped, saying what to install.
Missing in CI, the test fails: CI is where the project proves it works, and a tool that
is not there proves nothing. On top of that, `tests/conftest.py` fails a CI session in
which any test that needs RabbitMQ or a tool was skipped at all, for whatever reason.

"In CI" means the ``CI`` environment variable says so (``true``, ``1`` or ``yes``, in any
case); `.ci/run` sets it. `in_ci` is the only place that reads it.

To add a tool, add a `Tool` to `TOOLS`: conftest turns each into a session fixture of
the same name (dashes become underscores) that returns the tool's path, and marks every
test that uses it with ``tool``. A dependency that is more than a program to run (a
server the tests start, as RabbitMQ; xta-tool, installed into a virtualenv of its own by
tests/xta_client.py) calls `unavailable` when it cannot be had, and gets the same rule;
its tests carry ``pytest.mark.tool(name)`` themselves, so that the CI guard counts them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = [
    "ASYNCAPI",
    "CI_VALUES",
    "PROMETHEUS",
    "PROMTOOL",
    "TOOLS",
    "XMLSEC1",
    "Tool",
    "in_ci",
    "missing",
    "require",
    "unavailable",
]

CI_VALUES = frozenset({"true", "1", "yes"})


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run is CI's: ``CI`` is true, 1 or yes (in any case)."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in CI_VALUES


@dataclass(frozen=True)
class Tool:
    """A program the tests run, and how to get it."""

    name: str  # the executable; the fixture's name with dashes as underscores
    title: str  # how messages name it
    install: str  # what to do when it is missing
    local: str | None = None  # a project-local install, relative to the checkout, tried first

    @property
    def fixture(self) -> str:
        return self.name.replace("-", "_")

    def locate(self, root: Path) -> str | None:
        """The tool's path, or None when it is not there."""
        if self.local is not None and _executable(root / self.local):
            return str(root / self.local)
        return shutil.which(self.name)


XMLSEC1 = Tool("xmlsec1", "xmlsec1", "install it with `apt-get install xmlsec1`")
PROMTOOL = Tool("promtool", "promtool", "install it with `apt-get install prometheus`")
PROMETHEUS = Tool("prometheus", "Prometheus", "install it with `apt-get install prometheus`")
ASYNCAPI = Tool(
    "asyncapi",
    "the AsyncAPI CLI",
    "`make test` installs it under .xbroker/node/ (needs npm: `apt-get install npm`)",
    local=".xbroker/node/node_modules/.bin/asyncapi",
)
TOOLS = (XMLSEC1, PROMTOOL, PROMETHEUS, ASYNCAPI)
"""Every tool a test can take as a fixture."""


def unavailable(what: str, reason: str) -> NoReturn:
    """Fail the test in CI, skip it elsewhere: ``what`` cannot be had, and why."""
    if in_ci():
        pytest.fail(f"{what} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no {what}: {reason}")


def missing(tool: Tool, reason: str) -> NoReturn:
    """`unavailable` for a tool, with what to install."""
    unavailable(tool.title, f"{reason}; {tool.install}")


def require(tool: Tool, root: Path) -> str:
    """The tool's path; `missing` when it is not installed."""
    path = tool.locate(root)
    if path is None:
        missing(tool, f"{tool.name} is not installed")
    return path


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)

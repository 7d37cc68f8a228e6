"""Without RabbitMQ, PostgreSQL or a tool, the tests needing it skip locally but fail in CI.

Each case runs a small pytest session of its own with this suite's conftest and tools,
in a scratch checkout where rabbitmq-server and PostgreSQL are "not installed"
(XBROKER_RABBITMQ_BIN and XBROKER_POSTGRES_BIN point nowhere) and no tool is on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NEEDS_RABBITMQ = """
def test_uses_the_broker(amqp_url):
    assert amqp_url
"""

SKIPS_ITSELF = """
import pytest

@pytest.mark.rabbitmq
def test_skipped_on_purpose():
    pytest.skip("not today")
"""

NEEDS_POSTGRES = """
def test_uses_the_database(database_url):
    assert database_url
"""

POSTGRES_TEST_SKIPS_ITSELF = """
import pytest

@pytest.mark.postgres
def test_skipped_although_postgres_may_be_there():
    pytest.skip("not today")
"""

NEEDS_XMLSEC1 = """
def test_runs_xmlsec1(xmlsec1):
    assert xmlsec1
"""

TOOL_TEST_SKIPS_ITSELF = """
import pytest

def test_skipped_although_promtool_is_there(promtool):
    pytest.skip("not today")
"""

PYTEST_INI = """
[pytest]
pythonpath = .
markers =
    rabbitmq: needs a real RabbitMQ node
    postgres: needs a real PostgreSQL server
    tool(name): runs an external tool
"""


def _run_session(
    tmp_path: Path, test_source: str, *, ci: str | None, path: str = ""
) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("conftest.py", "tools.py", "postgres_fixtures.py"):
        shutil.copy(Path(__file__).with_name(name), tests / name)
    (tests / "test_case.py").write_text(test_source)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    unset = {"XBROKER_AMQP_URL", "XBROKER_DATABASE_URL", "CI"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["XBROKER_RABBITMQ_BIN"] = str(tmp_path / "not-installed")
    env["XBROKER_POSTGRES_BIN"] = str(tmp_path / "not-installed")
    env["PATH"] = path
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fake_tool(tmp_path: Path, name: str) -> str:
    """A folder holding an executable ``name``, for PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tool = folder / name
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    return str(folder)


def test_without_rabbitmq_tests_are_skipped_with_the_reason(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_RABBITMQ, ci=None)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "apt-get install rabbitmq-server" in done.stdout


@pytest.mark.parametrize("ci", ["true", "1", "yes", "TRUE", "Yes"])
def test_without_rabbitmq_tests_fail_in_ci(tmp_path: Path, ci: str) -> None:
    done = _run_session(tmp_path, NEEDS_RABBITMQ, ci=ci)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "RabbitMQ is required in CI" in done.stdout


def test_without_postgres_its_tests_are_skipped_saying_what_to_install(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_POSTGRES, ci=None)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "no PostgreSQL: no PostgreSQL server in" in done.stdout
    assert "apt-get install postgresql" in done.stdout


def test_without_postgres_its_tests_fail_in_ci(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_POSTGRES, ci="true")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "PostgreSQL is required in CI: no PostgreSQL server in" in done.stdout


def test_ci_false_is_not_ci(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_RABBITMQ, ci="false")
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout


def test_without_a_tool_its_tests_are_skipped_saying_what_to_install(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_XMLSEC1, ci=None)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "no xmlsec1: xmlsec1 is not installed; install it with" in done.stdout
    assert "apt-get install xmlsec1" in done.stdout


def test_without_a_tool_its_tests_fail_in_ci(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_XMLSEC1, ci="true")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "xmlsec1 is required in CI: xmlsec1 is not installed" in done.stdout


def test_with_the_tool_on_path_its_test_runs(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_XMLSEC1, ci="true", path=_fake_tool(tmp_path, "xmlsec1"))
    assert done.returncode == 0, done.stdout
    assert "1 passed" in done.stdout


# Tests that skip themselves although what they need is there: a rabbitmq-marked one,
# and one taking a tool fixture (the tool on PATH, so only the test's own skip remains).
SKIPPING = [
    pytest.param(SKIPS_ITSELF, None, "test_skipped_on_purpose", id="rabbitmq"),
    pytest.param(
        POSTGRES_TEST_SKIPS_ITSELF,
        None,
        "test_skipped_although_postgres_may_be_there",
        id="postgres",
    ),
    pytest.param(
        TOOL_TEST_SKIPS_ITSELF, "promtool", "test_skipped_although_promtool_is_there", id="tool"
    ),
]


@pytest.mark.parametrize(("source", "tool", "name"), SKIPPING)
def test_a_skipped_guarded_test_fails_the_ci_session(
    tmp_path: Path, source: str, tool: str | None, name: str
) -> None:
    path = _fake_tool(tmp_path, tool) if tool else ""
    done = _run_session(tmp_path, source, ci="true", path=path)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert f"fails the run: tests/test_case.py::{name}" in done.stdout


@pytest.mark.parametrize(("source", "tool", "name"), SKIPPING)
def test_a_skipped_guarded_test_passes_outside_ci(
    tmp_path: Path, source: str, tool: str | None, name: str
) -> None:
    path = _fake_tool(tmp_path, tool) if tool else ""
    done = _run_session(tmp_path, source, ci=None, path=path)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout

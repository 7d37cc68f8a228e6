"""Without RabbitMQ the RabbitMQ tests skip locally but fail under CI=true.

Each case runs a small pytest session of its own with this suite's conftest, in a scratch
checkout where rabbitmq-server is "not installed" (XBROKER_RABBITMQ_BIN points nowhere).
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

PYTEST_INI = """
[pytest]
markers =
    rabbitmq: needs a real RabbitMQ node
"""


def _run_session(tmp_path: Path, test_source: str, *, ci: bool) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), tests / "conftest.py")
    (tests / "test_case.py").write_text(test_source)
    (tmp_path / "pytest.ini").write_text(PYTEST_INI)
    env = {k: v for k, v in os.environ.items() if k not in {"XBROKER_AMQP_URL", "CI"}}
    env["XBROKER_RABBITMQ_BIN"] = str(tmp_path / "not-installed")
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_rabbitmq_tests_are_skipped_with_the_reason(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_RABBITMQ, ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "apt-get install rabbitmq-server" in done.stdout


def test_without_rabbitmq_tests_fail_in_ci(tmp_path: Path) -> None:
    done = _run_session(tmp_path, NEEDS_RABBITMQ, ci=True)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "RabbitMQ is required in CI" in done.stdout


def test_a_skipped_rabbitmq_test_fails_the_ci_session(tmp_path: Path) -> None:
    done = _run_session(tmp_path, SKIPS_ITSELF, ci=True)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout
    assert "fails the run: tests/test_case.py::test_skipped_on_purpose" in done.stdout


def test_a_skipped_rabbitmq_test_passes_outside_ci(tmp_path: Path) -> None:
    done = _run_session(tmp_path, SKIPS_ITSELF, ci=False)
    assert done.returncode == 0, done.stdout

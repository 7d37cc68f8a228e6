"""The rule for external tools (tests/tools.py): found, run; missing, skip, or fail in CI.

Whole sessions with the rule at work are in test_ci_skips.py; these check the helper.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tools

ABSENT = tools.Tool("xbroker-no-such-tool", "the absent tool", "install the absent tool")


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "YES", " true "])
def test_ci_is_true_1_or_yes_in_any_case(value: str) -> None:
    assert tools.in_ci({"CI": value})


@pytest.mark.parametrize("value", ["", "false", "0", "no", "off", "ture"])
def test_anything_else_is_not_ci(value: str) -> None:
    assert not tools.in_ci({"CI": value})


def test_no_ci_variable_is_not_ci() -> None:
    assert not tools.in_ci({})


def test_a_tool_on_path_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = _executable(tmp_path / "bin" / ABSENT.name)
    monkeypatch.setenv("PATH", str(found.parent))

    assert tools.require(ABSENT, tmp_path) == str(found)


def test_a_project_local_install_comes_before_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tools.Tool(ABSENT.name, "a tool", "install it", local=f".local/{ABSENT.name}")
    local = _executable(tmp_path / ".local" / ABSENT.name)
    monkeypatch.setenv("PATH", str(_executable(tmp_path / "bin" / ABSENT.name).parent))

    assert tools.require(tool, tmp_path) == str(local)


def test_a_file_that_is_not_executable_is_not_the_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tools.Tool(ABSENT.name, "a tool", "install it", local=f".local/{ABSENT.name}")
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / ABSENT.name).write_text("not a program")
    monkeypatch.setenv("PATH", "")

    assert tool.locate(tmp_path) is None


def test_a_missing_tool_skips_outside_ci_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="install the absent tool"):
        tools.require(ABSENT, tmp_path)


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_missing_tool_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.fail.Exception, match="the absent tool is required in CI"):
        tools.require(ABSENT, tmp_path)


def test_every_tool_has_a_fixture_name_and_says_how_to_install_it() -> None:
    names = [tool.fixture for tool in tools.TOOLS]

    assert len(set(names)) == len(names)
    assert all(name.isidentifier() for name in names)
    assert all(tool.install for tool in tools.TOOLS)


def test_a_test_using_a_tool_fixture_carries_the_tool_marker(
    request: pytest.FixtureRequest, promtool: str
) -> None:
    marker = request.node.get_closest_marker("tool")
    assert marker is not None and marker.args == ("promtool",)

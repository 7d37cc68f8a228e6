"""The folder tree is the architecture: what may sit directly in ``broker/``."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

from broker import cli

BROKER = Path(__file__).resolve().parent.parent / "broker"

# The entry points and the pure core; every other part lives in a subpackage.
TOP_LEVEL = {"__init__", "app", "cli", "errors", "logs", "pipeline", "settings"}
# Old import paths of the SDKs, kept for one release.
DEPRECATED_ALIASES = {"agency": "broker.sdk.agency", "portal": "broker.sdk.portal"}


def test_only_entry_points_and_the_pipeline_sit_directly_in_broker() -> None:
    modules = {p.stem for p in BROKER.glob("*.py")}
    assert modules - set(DEPRECATED_ALIASES) == TOP_LEVEL


@pytest.mark.parametrize(("alias", "target"), sorted(DEPRECATED_ALIASES.items()))
def test_the_old_sdk_paths_still_import_and_say_where_they_moved(alias: str, target: str) -> None:
    sys.modules.pop(f"broker.{alias}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"broker.{alias}")
    assert any(
        issubclass(w.category, DeprecationWarning) and target in str(w.message) for w in caught
    )
    moved = importlib.import_module(target)
    assert module.__all__ == moved.__all__
    for name in moved.__all__:
        assert getattr(module, name) is getattr(moved, name)


def test_a_command_module_that_does_not_import_fails_the_cli_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = "broker.commands.broken_for_this_test"
    monkeypatch.setattr(cli, "_COMMAND_MODULES", (*cli._COMMAND_MODULES, broken))
    with pytest.raises(ModuleNotFoundError, match="broken_for_this_test"):
        cli.build_parser()

"""docs/architecture.md is the map of the code: everything it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = ("bench", "broker", "monitoring", "routing", "signing", "xta_schemas")

# `broker/worker/ingress.py`, `broker/worker/`, `signing/devpki.py`, `docs/asyncapi.yaml`
_PATH = re.compile(r"`((?:" + "|".join(PACKAGES) + r"|docs|tests)/[\w./-]*)`")
# the module names of a row such as "`broker/worker/` | the broker worker: `service`, ..."
_ROW = re.compile(r"^\| `((?:broker|signing|xta_schemas|routing|monitoring)/[\w/]+/)` \|(.*)$")


def _named_paths() -> set[str]:
    return set(_PATH.findall(DOC.read_text(encoding="utf-8")))


def test_the_map_names_paths() -> None:
    assert len(_named_paths()) > 40


def test_every_path_the_map_names_exists() -> None:
    missing = sorted(p for p in _named_paths() if not (ROOT / p).exists())
    assert missing == []


def test_every_module_a_package_row_lists_exists() -> None:
    missing = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        row = _ROW.match(line)
        if row is None:
            continue
        package = ROOT / row.group(1)
        for name in re.findall(r"`(\w+)/?`", row.group(2)):
            if not ((package / f"{name}.py").is_file() or (package / name).is_dir()):
                missing.append(f"{row.group(1)}{name}")
    assert missing == []


def test_every_subpackage_of_broker_is_on_the_map() -> None:
    named = _named_paths()
    packages = sorted(
        f"broker/{p.name}/" for p in (ROOT / "broker").iterdir() if (p / "__init__.py").is_file()
    )
    assert [p for p in packages if p not in named] == []

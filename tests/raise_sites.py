"""Where the lower packages construct their rejections, read from their source code.

The reasons a package can give are taken from its raise sites, not from a list kept by
hand next to them, so a table of tests that must cover them cannot fall behind.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from broker.errors import DeliveryFailure, Reason

__all__ = [
    "LOWER_PACKAGES",
    "REJECTIONS",
    "Site",
    "reasons_raised",
    "rejection_sites",
    "string_codes",
]

ROOT = Path(__file__).resolve().parents[1]
LOWER_PACKAGES = ("signing", "xta_schemas", "routing", "sealing")

# The rejections of the lower packages and the position of the Reason in their arguments;
# XmlError always carries Reason.MALFORMED_XML and takes only a detail.
REJECTIONS = {
    "SignatureError": 0,
    "MessageError": 0,
    "RouteError": 0,
    "UnsealError": 0,
    "XmlError": None,
    "LimitError": 0,
}


@dataclass(frozen=True)
class Site:
    path: Path
    line: int
    error: str
    reason: ast.expr | None  # the argument where the Reason belongs, as written

    def __str__(self) -> str:
        written = ast.unparse(self.reason) if self.reason is not None else "(none)"
        return f"{self.path}:{self.line}: {self.error}({written}, ...)"

    @property
    def member(self) -> Reason | None:
        """The Reason member the site names, if it names one as ``Reason.NAME``."""
        node = self.reason
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Reason"
            and node.attr in Reason.__members__
        ):
            return Reason[node.attr]
        return None


def _modules(package: str, root: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((root / package).rglob("*.py")):
        yield path.relative_to(root), ast.parse(path.read_text(encoding="utf-8"), str(path))


def _called(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def rejection_sites(package: str, root: Path = ROOT) -> list[Site]:
    """Every construction of a lower package's rejection in ``package`` (under ``root``)."""
    sites = []
    for path, module in _modules(package, root):
        for node in ast.walk(module):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name not in REJECTIONS:
                continue
            position = REJECTIONS[name]
            reason: ast.expr | None = None
            if position is not None:
                keyword = next((k.value for k in node.keywords if k.arg == "reason"), None)
                reason = node.args[position] if len(node.args) > position else keyword
            sites.append(Site(path, node.lineno, name, reason))
    return sites


def reasons_raised(package: str, error: str | None = None) -> frozenset[Reason]:
    """The reasons ``package`` constructs its rejections (of class ``error``) with."""
    found = {
        site.member
        for site in rejection_sites(package)
        if error is None or site.error == error
        if site.member is not None
    }
    if error in (None, "XmlError") and any(
        site.error == "XmlError" for site in rejection_sites(package)
    ):
        found.add(Reason.MALFORMED_XML)
    return frozenset(found)


def string_codes(package: str, root: Path = ROOT) -> list[str]:
    """String literals in ``package`` (under ``root``) spelling a reason or failure code."""
    codes = {member.value for member in Reason} | {member.value for member in DeliveryFailure}
    return [
        f"{path}:{node.lineno}: {node.value!r}"
        for path, module in _modules(package, root)
        for node in ast.walk(module)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in codes
    ]

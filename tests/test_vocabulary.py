"""One word, one thing: one error tree, one enum per vocabulary, one class per name."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from prometheus_client import CollectorRegistry

import routing
import signing
import xta_schemas
from broker.amqp.bundle import BundleError
from broker.app import build_broker, load_parts, open_records
from broker.commands.demo import ensure_dev_pki
from broker.devnode.errors import DevNodeError
from broker.errors import DeliveryFailure, Reason, Rejection, XBrokerError, XtaFault
from broker.receipts.document import Receipt, UnknownReason, build_receipt, read_receipt
from broker.settings import load_settings
from broker.stores.audit.trail import AuditError
from monitoring.labels import ReceiptKind
from tests.world import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
PACKAGES = ("bench", "broker", "monitoring", "routing", "signing", "xta_schemas")


def test_the_errors_module_imports_only_the_standard_library() -> None:
    tree = ast.parse((ROOT / "broker" / "errors.py").read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported


def test_importing_the_errors_module_loads_nothing_else_of_the_project() -> None:
    probe = (
        "import json, sys; before = set(sys.modules); import broker.errors; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(run.stdout)
    project = {name for name in loaded if name.split(".")[0] in PACKAGES}
    assert project == {"broker", "broker.errors"}


@pytest.mark.parametrize(
    "root", [signing.SigningError, xta_schemas.StandardsError, routing.RoutingError]
)
def test_every_package_root_is_an_xbroker_error(root: type[Exception]) -> None:
    assert issubclass(root, XBrokerError)


@pytest.mark.parametrize("root", [AuditError, DevNodeError, BundleError])
def test_the_broker_s_own_package_errors_are_xbroker_errors(root: type[Exception]) -> None:
    assert issubclass(root, XBrokerError)


@pytest.mark.parametrize(
    ("error", "package_root"),
    [
        (signing.XmlError, signing.SigningError),
        (signing.SignatureError, signing.SigningError),
        (xta_schemas.MessageError, xta_schemas.StandardsError),
        (routing.RouteError, routing.RoutingError),
    ],
)
def test_each_message_error_is_a_rejection_under_its_package_root(
    error: type[Exception], package_root: type[Exception]
) -> None:
    assert issubclass(error, Rejection)
    assert issubclass(error, package_root)


def test_malformed_xml_is_also_a_value_error() -> None:
    error = signing.XmlError("unclosed tag")
    assert isinstance(error, ValueError)
    assert (error.reason, error.detail) == (Reason.MALFORMED_XML, "unclosed tag")


def test_a_rejection_refuses_a_code_typed_as_a_string() -> None:
    with pytest.raises(TypeError, match="Reason member"):
        signing.SignatureError("digest-mismatch", "typed by hand")  # type: ignore[arg-type]


def test_an_xta_fault_refuses_a_fault_typed_as_a_string() -> None:
    with pytest.raises(TypeError, match="Fault member"):
        XtaFault("PermissionDeniedException", "typed by hand")  # type: ignore[arg-type]


def test_a_rejection_says_its_code_first() -> None:
    error = routing.RouteError(Reason.NO_ROUTE, "nobody receives it")
    assert str(error) == "no-route: nobody receives it"


def test_delivery_failures_are_no_rejection_reasons() -> None:
    assert {m.value for m in Reason}.isdisjoint(m.value for m in DeliveryFailure)


@pytest.mark.parametrize("reason", [Reason.NO_ROUTE, DeliveryFailure.EXPIRED])
def test_a_receipt_reads_its_reason_back_as_the_member_it_was_built_with(
    reason: Reason | DeliveryFailure,
) -> None:
    kind = ReceiptKind.REJECTED if isinstance(reason, Reason) else ReceiptKind.FAILED
    built = Receipt(kind, UUID, "xbr:broker", datetime.now(UTC), reason=reason, detail="why")

    assert read_receipt(build_receipt(built)).reason is reason


def _with_code(code: str) -> etree._Element:
    root = build_receipt(
        Receipt(ReceiptKind.REJECTED, UUID, "xbr:broker", datetime.now(UTC), reason=Reason.NO_ROUTE)
    )
    grund = root.find("{urn:xbroker:quittung:1}grund")
    assert grund is not None
    grund.set("code", code)
    return root


def test_a_receipt_reads_a_reason_code_of_a_later_version_as_that_code() -> None:
    reason = read_receipt(_with_code("reason-of-a-later-version")).reason

    assert isinstance(reason, UnknownReason)
    assert not isinstance(reason, Reason | DeliveryFailure)
    assert reason == reason.value == str(reason) == "reason-of-a-later-version"
    assert json.dumps({"reason": reason}) == '{"reason": "reason-of-a-later-version"}'


def test_an_unknown_reason_code_is_built_back_as_it_came() -> None:
    receipt = read_receipt(_with_code("reason-of-a-later-version"))

    grund = build_receipt(receipt).find("{urn:xbroker:quittung:1}grund")

    assert grund is not None and grund.get("code") == "reason-of-a-later-version"


def test_a_receipt_whose_reason_has_no_code_is_no_receipt() -> None:
    with pytest.raises(ValueError, match="no code"):
        read_receipt(_with_code(""))


def test_the_broker_starts_every_rejection_counter_at_zero(tmp_path: Path) -> None:
    settings = load_settings(
        EXAMPLES / "xbroker.toml", state_dir=tmp_path, amqp_url="amqp://unused/"
    )
    ensure_dev_pki(settings)
    registry = CollectorRegistry()
    records = open_records(settings)
    try:
        build_broker(load_parts(settings), registry, records=records)
        counted = {
            reason: registry.get_sample_value(
                "xbroker_messages_rejected_total", {"reason": reason.value}
            )
            for reason in Reason
        }
    finally:
        asyncio.run(records.close())
    assert counted == dict.fromkeys(Reason, 0.0)


def _top_level_classes() -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    where[node.name].append(str(path.relative_to(ROOT)))
    return where


def test_no_two_classes_of_the_project_share_a_name() -> None:
    shared = {name: paths for name, paths in _top_level_classes().items() if len(paths) > 1}
    assert shared == {}


def test_the_class_scan_sees_the_whole_project() -> None:
    classes = _top_level_classes()
    assert {"Pipeline", "Verifier", "Catalog", "Directory", "Metrics", "BenchWorld"} <= set(classes)

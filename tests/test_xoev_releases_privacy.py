"""A value of a real message that a validator quotes from elsewhere in the document
(an IDREF whose ID is missing) is in no receipt, log line, metric or stored file.

XWasser 1.0.0 refers to its addresses by xs:IDREF. A real instance gets a marker as
the ID it refers to and a second fault, so that lxml calls it invalid and the detailed
report, which checks IDREFs too, is written; it travels the whole way on the real node.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from prometheus_client import generate_latest

from broker.errors import Reason
from broker.logs import configure_logging
from monitoring.labels import ReceiptKind
from signing import parse_untrusted
from tests.releases_support import release_world, releases_root, serve_release
from tests.test_xoev_releases_delivery import XWASSER_DIRECTORY, XWASSER_SIGNER

MARKER = f"Privatmarke{secrets.token_hex(8)}"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log line of the test, as the broker writes them (JSON) at DEBUG."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def _with_marker_in_an_idref(instance: Path) -> bytes:
    root = parse_untrusted(instance.read_bytes())
    ns = {"xwas": "https://gitlab.opencode.de/akdb/xoev/xwasser/-/raw/main/V1_0_0"}
    idref = root.find(".//xwas:anschriftID", ns)
    storey = root.find(".//xwas:stockwerkProbennahmestelle", ns)
    assert idref is not None and storey is not None
    idref.text = MARKER
    storey.text = "erdgeschoss"  # an xs:integer: the fault lxml sees too
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


async def test_an_idref_value_is_in_no_receipt_log_metric_or_store(
    amqp_url: str, tmp_path: Path, logs: io.StringIO
) -> None:
    releases = releases_root()
    folder = serve_release(
        tmp_path, "xwasser-1.0.0", releases / "xwasser-1.0.0", ("V1_0_0", "external")
    )
    body = _with_marker_in_an_idref(
        releases / "xwasser-1.0.0" / "instances" / "quality_report_maximal.xml"
    )
    state_dir = tmp_path / "state"
    async with release_world(amqp_url, state_dir, XWASSER_DIRECTORY, folder, test=True) as world:
        standard, _ = world.parts.catalog.identify(parse_untrusted(body))
        author = standard.header(parse_untrusted(body), signer=XWASSER_SIGNER).author.kennung
        portal = await world.portal(author)
        state = await portal.wait_final(await portal.submit(body), timeout=60)
        metrics = generate_latest(world.registry)

    [receipt] = state.receipts
    assert (receipt.kind, receipt.reason) == (ReceiptKind.REJECTED, Reason.SCHEMA_INVALID)
    # The detailed report reached the IDREF, and said so without its value.
    assert "IDREF '[value]' not found in XML document" in [i.reason for i in receipt.issues]
    assert MARKER not in repr(receipt)
    written = logs.getvalue()
    assert state.uuid in written, "the capture saw the broker's events"
    assert MARKER not in written, [line for line in written.splitlines() if MARKER in line]
    assert MARKER.encode() not in metrics
    pki = world.settings.pki
    stored = [p for p in state_dir.rglob("*") if p.is_file() and pki not in p.parents]
    assert any(p.name == "audit.jsonl" for p in stored)
    for path in stored:
        assert MARKER.encode() not in path.read_bytes(), path

"""How the CLI (``make run``'s window, ``xbroker publish``) describes a receipt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.commands._receipts import describe_receipt
from broker.receipts.document import Receipt
from monitoring.labels import ReceiptKind
from routing import Directory

UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
BROKER = "xbr:broker"


def _delivered(issuer: str, agency: str) -> Receipt:
    return Receipt(
        ReceiptKind.DELIVERED,
        UUID,
        issuer,
        datetime.now(UTC),
        author="osi:hh-portal",
        recipients=(agency,),
    )


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    path = tmp_path / "directory.toml"
    path.write_text(
        '[[agency]]\nkennung = "psw:02000000"\nname = "Meldebehörde Hamburg"\n'
        'accepts = ["meldung.anmeldung.0200"]\n\n'
        '[[agency]]\nkennung = "bau:02000000"\nname = "Bauprüfabteilung Hamburg-Altona"\n'
        'accepts = ["bau.antrag.0200"]\nendpoint = { kind = "xta" }\n',
        encoding="utf-8",
    )
    return Directory.load(path)


def test_a_delivered_receipt_signed_by_the_agency_names_the_agency(directory: Directory) -> None:
    line = describe_receipt(_delivered("psw:02000000", "psw:02000000"), directory)

    assert line.endswith("received and confirmed by psw:02000000 (Meldebehörde Hamburg)")


def test_a_delivered_receipt_the_broker_signed_for_an_agency_names_the_agency(
    directory: Directory,
) -> None:
    # A webhook's 2xx or an XTA close: the broker signs on the agency's behalf.
    line = describe_receipt(_delivered(BROKER, "bau:02000000"), directory)

    assert "confirmed by bau:02000000 (Bauprüfabteilung Hamburg-Altona)" in line
    assert line.endswith(f"signed by {BROKER}")

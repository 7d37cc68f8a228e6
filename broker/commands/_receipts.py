"""How the CLI prints receipts."""

from __future__ import annotations

from datetime import datetime

from broker.receipts.document import Receipt
from monitoring.labels import ReceiptKind
from routing import Directory

__all__ = ["describe_receipt"]

_WIDTH = len("duplicate")


def describe_receipt(receipt: Receipt, directory: Directory | None = None, label: str = "") -> str:
    def name(kennung: str) -> str:
        agency = directory.get(kennung) if directory else None
        return f"{kennung} ({agency.name})" if agency else kennung

    stamp = datetime.now().strftime("%H:%M:%S")
    head = f"[{stamp}] {label or receipt.nachrichten_uuid}  {receipt.kind.value:<{_WIDTH}}"
    if receipt.kind is ReceiptKind.ACCEPTED:
        return f"{head}  {receipt.nachrichtentyp} → " + ", ".join(
            name(r) for r in receipt.recipients
        )
    if receipt.kind is ReceiptKind.DELIVERED:
        # The agency confirmed; for a webhook's 2xx or an XTA close the broker signs the
        # receipt on its behalf, and the agency is the receipt's recipient.
        agency = receipt.recipients[0] if receipt.recipients else receipt.issuer
        signer = "" if agency == receipt.issuer else f", signed by {receipt.issuer}"
        return f"{head}  received and confirmed by {name(agency)}{signer}"
    if receipt.kind is ReceiptKind.DUPLICATE:
        return f"{head}  already handled (first sha256 {str(receipt.first_digest)[:16]}…)"
    if not receipt.issues:
        return f"{head}  {receipt.reason}: {receipt.detail}"
    # The detail repeats the first issue; the report lists them all, one a line.
    summary = str(receipt.detail).split(": ", 1)[0]
    lines = [f"{head}  {receipt.reason}: {summary}"]
    lines += [f"{'':>22}{issue}" for issue in receipt.issues]
    return "\n".join(lines)

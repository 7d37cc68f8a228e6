"""Receipts: signed XML statements about one message (the entries of its Laufzettel).

The broker issues ``accepted``, ``rejected``, ``duplicate`` and ``failed`` receipts; an
agency issues ``delivered`` receipts, which the broker verifies and forwards unchanged.
A receipt carries metadata and the SHA-256 of the bytes received, never the payload.
Its kind is a `monitoring.labels.ReceiptKind`; the reason of a ``rejected`` receipt is a
`broker.errors.Reason`, that of a ``failed`` one a `broker.errors.DeliveryFailure`. A
reader takes a reason code it does not know, one a later version of the broker added, as
an `UnknownReason`: the receipt still says what became of the message.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from lxml import etree

from broker.errors import DeliveryFailure, Reason
from monitoring.labels import ReceiptKind
from xta_schemas import ValidationIssue
from xta_schemas.catalog import BUNDLED_DIR

__all__ = [
    "NS",
    "RECEIPT_XSD",
    "Receipt",
    "UnknownReason",
    "build_receipt",
    "read_receipt",
    "receipt_schema",
    "receipt_schema_errors",
]

NS = "urn:xbroker:quittung:1"
RECEIPT_XSD = BUNDLED_DIR / "quittung-1.0" / "quittung.xsd"
_Q = f"{{{NS}}}"


class UnknownReason(str):
    """A reason code this reader does not know (a later version's), kept as it came.

    It prints, compares and serialises as its code, and is no member of `Reason` or
    `DeliveryFailure`, so code that acts on a known reason leaves it alone.
    """

    __slots__ = ()

    @property
    def value(self) -> str:
        """The code, as a member's ``value`` is."""
        return str(self)

    def __repr__(self) -> str:
        return f"UnknownReason({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class Receipt:
    kind: ReceiptKind
    nachrichten_uuid: str
    issuer: str
    issued: datetime
    digest: str | None = None
    nachrichtentyp: str | None = None
    standard: str | None = None
    author: str | None = None
    recipients: tuple[str, ...] = ()
    reason: Reason | DeliveryFailure | UnknownReason | None = None
    detail: str | None = None
    issues: tuple[ValidationIssue, ...] = ()
    first_digest: str | None = None  # duplicate, id-reused: the digest of the first message
    # Set when the broker assigned the identity (IdentitySource: "transport", "digest").
    identity_assigned: str | None = None
    # What the broker assumed in reading the header (a time zone, the signer as author).
    notes: tuple[str, ...] = ()
    receipt_uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))


def build_receipt(receipt: Receipt) -> etree._Element:
    """The unsigned receipt document."""
    root = etree.Element(f"{_Q}quittung", nsmap={"q": NS})
    root.set("art", receipt.kind.value)
    _text(root, "quittungUUID", receipt.receipt_uuid)
    identity = _text(root, "nachrichtenUUID", receipt.nachrichten_uuid)
    if identity is not None and receipt.identity_assigned is not None:
        identity.set("vergeben", receipt.identity_assigned)
    _text(root, "nachrichtentyp", receipt.nachrichtentyp)
    _text(root, "standard", receipt.standard)
    _text(root, "autor", receipt.author)
    for recipient in receipt.recipients:
        _text(root, "empfaenger", recipient)
    if receipt.reason is not None:
        grund = _text(root, "grund", receipt.detail or "")
        assert grund is not None
        grund.set("code", receipt.reason.value)
    if receipt.issues:
        report = etree.SubElement(root, f"{_Q}pruefbericht")
        for issue in receipt.issues:
            error = etree.SubElement(report, f"{_Q}fehler")
            if issue.line is not None:
                error.set("zeile", str(issue.line))
            error.set("pfad", issue.path)
            error.text = issue.reason
    for note in receipt.notes:
        _text(root, "hinweis", note)
    _text(root, "sha256", receipt.digest)
    _text(root, "ersteSha256", receipt.first_digest)
    _text(root, "zeitpunkt", receipt.issued.astimezone(UTC).isoformat())
    _text(root, "aussteller", receipt.issuer)
    return root


def read_receipt(root: etree._Element) -> Receipt:
    """Read a (verified) receipt document back. Raises ValueError if it is not one."""
    if root.tag != f"{_Q}quittung":
        raise ValueError(f"not a receipt: root element {root.tag}")
    issues = tuple(
        ValidationIssue(
            line=_int_or_none(e.get("zeile")),
            path=e.get("pfad", ""),
            reason=e.text or "",
        )
        for e in root.iterfind(f"{_Q}pruefbericht/{_Q}fehler")
    )
    grund = root.find(f"{_Q}grund")
    identity = root.find(f"{_Q}nachrichtenUUID")
    return Receipt(
        kind=ReceiptKind(root.get("art", "")),
        nachrichten_uuid=_required(root, "nachrichtenUUID"),
        issuer=_required(root, "aussteller"),
        issued=datetime.fromisoformat(_required(root, "zeitpunkt")),
        digest=root.findtext(f"{_Q}sha256"),
        nachrichtentyp=root.findtext(f"{_Q}nachrichtentyp"),
        standard=root.findtext(f"{_Q}standard"),
        author=root.findtext(f"{_Q}autor"),
        recipients=tuple(e.text or "" for e in root.iterfind(f"{_Q}empfaenger")),
        reason=_reason(grund.get("code", "")) if grund is not None else None,
        detail=grund.text if grund is not None else None,
        issues=issues,
        first_digest=root.findtext(f"{_Q}ersteSha256"),
        identity_assigned=identity.get("vergeben") if identity is not None else None,
        notes=tuple(e.text or "" for e in root.iterfind(f"{_Q}hinweis")),
        receipt_uuid=_required(root, "quittungUUID"),
    )


def receipt_schema() -> etree.XMLSchema:
    """The receipt schema, compiled (offline: it imports nothing). Compile once, keep it."""
    return etree.XMLSchema(etree.parse(str(RECEIPT_XSD)))


def receipt_schema_errors(schema: etree.XMLSchema, root: etree._Element) -> tuple[str, ...]:
    """Why ``root`` (signed or not) is not a valid receipt; empty when it is."""
    if schema.validate(root):
        return ()
    errors = cast(etree._ListErrorLog, schema.error_log)  # the stubs miss its iteration
    return tuple(f"line {e.line}: {e.message}" for e in errors)


def _reason(code: str) -> Reason | DeliveryFailure | UnknownReason:
    if not code:
        raise ValueError("receipt whose grund has no code")
    for vocabulary in (Reason, DeliveryFailure):
        try:
            return vocabulary(code)
        except ValueError:
            continue
    return UnknownReason(code)


def _text(parent: etree._Element, name: str, value: str | None) -> etree._Element | None:
    if value is None:
        return None
    child = etree.SubElement(parent, f"{_Q}{name}")
    child.text = value
    return child


def _required(root: etree._Element, name: str) -> str:
    value = root.findtext(f"{_Q}{name}")
    if not value:
        raise ValueError(f"receipt without {name}")
    return value


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None

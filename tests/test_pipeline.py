"""The pipeline as a pure function: a valid message, and one change per row of reasons.

Every row starts from a valid submission of the example world, an xmeld 1.1 Anmeldung
from the Hamburg portal: the one addressed to the Meldebehörde Hamburg, or (for routing
by region) the one without a reader that the Meldebehörde Norderstedt receives; rows
about parties named in free text start from a court's Klage of the release-shaped
fixture ``xgericht 1.0``, whose manifest here names a free-text party element. A row
changes one thing (the bytes, the content before signing, who signs, or when it is
decided) and names the one `Reason` the pipeline must answer with; every reason the
pipeline can give has at least one row. No RabbitMQ: the pipeline is handed bytes and a
time and returns a decision.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from broker.app import load_parts
from broker.commands.demo import ensure_dev_pki
from broker.errors import Reason
from broker.pipeline import Accepted, Pipeline, Rejected
from broker.settings import load_settings
from signing import ParserLimits, Signer, parse_untrusted
from signing.devpki import create_ca, issue, revoke
from signing.keyfiles import party_paths
from tests.attacks import generators as g
from tests.raise_sites import LOWER_PACKAGES, reasons_raised, rejection_sites, string_codes
from tests.standards_support import edit
from tests.world import EXAMPLES, SUBMISSIONS
from xta_schemas import Catalog

DS = "{http://www.w3.org/2000/09/xmldsig#}"
COURTS = Path(__file__).parent / "fixtures" / "standards" / "shapes" / "xgericht-1.0"
COURT = "{urn:xbroker-test:xgericht}"
XMELD_1_1 = b"http://www.xbroker.example/xmeld/1.1"
PORTAL = "osi:hh-portal"
MELDEBEHOERDE = "psw:02000000"
GEWERBEAMT = "gew:02000000"

# Reasons the pipeline never gives: where they are decided, and why there; every other
# member is a row of the table.
NOT_PIPELINE_OUTCOMES = {
    Reason.ID_REUSED: (
        Path("broker/worker/ingress.py"),
        "whether an identity was used before, for other bytes, is known only to the dedup "
        "store, which the worker claims after the pipeline accepted the message; the "
        "pipeline sees one message and holds no state",
    ),
    Reason.SEAL_KEY_UNKNOWN: (
        Path("sealing/jwe.py"),
        "a submission sealed for the broker is opened by the worker before the pipeline "
        "sees it (broker.worker.ingress, broker.worker.sealer); tests/test_sealed_ingress.py",
    ),
    Reason.SEAL_INVALID: (
        Path("sealing/jwe.py"),
        "opened before the pipeline, as seal-key-unknown",
    ),
}


@dataclass(frozen=True)
class Kit:
    """The valid message, unsigned, and the parties and time a row may change."""

    message: bytes  # addressed to the Meldebehörde Hamburg (a named reader)
    regional: bytes  # without a reader: the agency responsible for the new dwelling
    court: bytes  # an xgericht 1.0 Klage of court G2001 to court G2002, by their codes
    portal: Signer  # the author, registered for it: signs the valid message
    meldebehoerde: Signer  # trusted and registered, but for another Behördenkennung
    stranger: Signer  # the portal's Behördenkennung, issued by a CA nobody trusts
    revoked: Signer  # the portal's Behördenkennung, from the trusted CA, revoked
    now: datetime

    def signed(self, signer: Signer | None = None) -> bytes:
        return (signer or self.portal).sign(self.message)

    def edited(
        self, change: Callable[[etree._Element], None], message: bytes | None = None
    ) -> bytes:
        """The message with ``change`` made to its content, signed by the portal."""
        root = parse_untrusted(message or self.message)
        change(root)
        return self.portal.sign(root)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Kit, Pipeline]:
    state = tmp_path_factory.mktemp("pipeline")
    settings = load_settings(EXAMPLES / "xbroker.toml", state_dir=state, amqp_url="amqp://unused/")
    ensure_dev_pki(settings)
    pki = settings.pki

    revoked_cert, revoked_key = issue(
        pki / "ca", PORTAL, "Hamburg Service-Portal", state / "revoked", key_type="ec"
    )
    revoke(pki / "ca", pki / "crl", revoked_cert)
    create_ca(state / "foreign", "xbroker development CA")  # the same name, another key
    foreign_cert, foreign_key = issue(
        state / "foreign", PORTAL, "Hamburg Service-Portal", state / "forged", key_type="ec"
    )

    parts = load_parts(settings)  # reads the CRL snapshot with the revocation in it
    parts.catalog.get("xmeld/1.1").prepare_report()  # built at start, as `xbroker run` does
    courts = state / "xgericht-1.0"
    shutil.copytree(COURTS, courts)
    # A party without a court code is named by its designation, in free text.
    edit(
        courts / "manifest.toml",
        "[header.party]\n",
        '[header.party]\nfree_text = "g:bezeichnung"\n',
    )
    catalog = Catalog.load([*settings.standard_dirs, courts])

    def party(kennung: str) -> Signer:
        cert, key = party_paths(pki, kennung)
        return Signer.from_files(key, cert)

    built = Kit(
        message=(SUBMISSIONS / "anmeldung-hamburg.xml").read_bytes(),
        regional=(SUBMISSIONS / "anmeldung-norderstedt.xml").read_bytes(),
        court=next((courts / "samples").glob("*.xml")).read_bytes(),
        portal=party(PORTAL),
        meldebehoerde=party(MELDEBEHOERDE),
        stranger=Signer.from_files(foreign_key, foreign_cert),
        revoked=Signer.from_files(revoked_key, revoked_cert),
        now=datetime.now(UTC),
    )
    return built, Pipeline(catalog, parts.verifier(), parts.directory)


# --- the one changes ---------------------------------------------------------------------


def _header(root: etree._Element, path: str) -> etree._Element:
    found = root.find(f"nachrichtenkopf.g2g/{path}")
    assert found is not None, path
    return found


def _set_text(path: str, text: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        _header(root, path).text = text

    return change


def _rename_root(root: etree._Element) -> None:
    root.tag = f"{{{etree.QName(root).namespace}}}meldung.abmeldung.0300"


def _retired_namespace(kit: Kit) -> bytes:
    return kit.portal.sign(kit.message.replace(XMELD_1_1, b"http://www.xbroker.example/xmeld/0.9"))


def _without_birth_date(root: etree._Element) -> None:
    person = root.find("anmeldung/person")
    assert person is not None
    birth = person.find("geburtsdatum")
    assert birth is not None
    person.remove(birth)


def _upper_case_uuid(root: etree._Element) -> None:
    uuid = _header(root, "identifikation.nachricht/nachrichtenUUID")
    uuid.text = (uuid.text or "").upper()


def _created_without_zone(root: etree._Element) -> None:
    created = _header(root, "identifikation.nachricht/erstellungszeitpunkt")
    created.text = (created.text or "")[: len("2026-11-28T10:15:00")]


def _named_in_free_text(*party: str) -> Callable[[etree._Element], None]:
    """The court's party (at ``party`` under the nachrichtenkopf) named by a designation
    alone, which no agency of the directory has as its name or alias."""

    def change(root: etree._Element) -> None:
        element = root.find("/".join(f"{COURT}{step}" for step in ("nachrichtenkopf", *party)))
        assert element is not None, party
        for child in list(element):
            element.remove(child)
        etree.SubElement(element, f"{COURT}bezeichnung").text = "Kanzlei Unbekannt"

    return change


def _moved_to_munich(root: etree._Element) -> None:
    region = root.find("anmeldung/neueWohnung/anschrift/gemeindeschluessel")
    assert region is not None
    region.text = "09162000"  # no agency of the directory is responsible for it


def _authored_by_the_meldebehoerde(kit: Kit) -> bytes:
    # The author changes, and with it the signature: the Meldebehörde submits the
    # portal's Anmeldung in its own name, a type it may receive but not send.
    root = parse_untrusted(kit.message)
    _header(root, "autor/kennung").text = MELDEBEHOERDE
    return kit.meldebehoerde.sign(root)


def _replace(signed: bytes, old: bytes, new: bytes) -> bytes:
    assert old in signed, old
    return signed.replace(old, new, 1)


def _signature_value_altered(kit: Kit) -> bytes:
    root = parse_untrusted(kit.signed())
    value = root.find(f"{DS}Signature/{DS}SignatureValue")
    assert value is not None and value.text
    text = value.text.strip()
    value.text = ("B" if text[0] == "A" else "A") + text[1:]
    return etree.tostring(root)


def _sha1_digest(kit: Kit) -> bytes:
    root = parse_untrusted(kit.signed())
    method = root.find(f"{DS}Signature/{DS}SignedInfo/{DS}Reference/{DS}DigestMethod")
    assert method is not None
    method.set("Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1")
    return etree.tostring(root)


def _second_signature(kit: Kit) -> bytes:
    root = parse_untrusted(kit.signed())
    root.append(parse_untrusted(etree.tostring(root[-1])))
    return etree.tostring(root)


def _signature_in_content(kit: Kit) -> bytes:
    root = parse_untrusted(kit.signed())
    root[0].append(root[-1])
    return etree.tostring(root)


@dataclass(frozen=True)
class Row:
    reason: Reason
    change: str
    make: Callable[[Kit], bytes]
    at: Callable[[Kit], datetime] = lambda kit: kit.now
    budget: float | None = None  # the pipeline's CPU seconds per message
    limits: ParserLimits = field(default_factory=ParserLimits)  # the pipeline's parser limits


ROWS = (
    Row(Reason.MALFORMED_XML, "its end cut off", lambda k: k.signed()[:-40]),
    Row(Reason.SIGNATURE_MISSING, "sent unsigned", lambda k: k.message),
    Row(Reason.SIGNATURE_INVALID, "its signature value altered", _signature_value_altered),
    Row(
        Reason.DIGEST_MISMATCH,
        "a first name altered after signing",
        lambda k: _replace(k.signed(), b"<vorname>Lena<", b"<vorname>Lina<"),
    ),
    Row(Reason.ALGORITHM_NOT_ALLOWED, "its digest method SHA-1", _sha1_digest),
    Row(
        Reason.CERTIFICATE_UNTRUSTED,
        "signed with a certificate of a CA nobody trusts",
        lambda k: k.signed(k.stranger),
    ),
    Row(
        Reason.CERTIFICATE_EXPIRED,
        "decided a day after the certificate expired",
        lambda k: k.signed(),
        at=lambda k: k.portal.certificate.not_valid_after_utc + timedelta(days=1),
    ),
    Row(
        Reason.CERTIFICATE_REVOKED,
        "signed with a revoked certificate",
        lambda k: k.signed(k.revoked),
    ),
    Row(
        Reason.SIGNER_NOT_AUTHOR,
        "signed by a trusted agency while the header names the portal",
        lambda k: k.signed(k.meldebehoerde),
    ),
    # The copy is the signature verified (the last at the root); its digest covers the first.
    Row(Reason.DIGEST_MISMATCH, "a second signature appended", _second_signature),
    Row(Reason.SIGNATURE_WRAPPING, "the signature moved into content", _signature_in_content),
    Row(
        Reason.UNKNOWN_MESSAGE_TYPE,
        "a root element its standard does not know",
        lambda k: k.edited(_rename_root),
    ),
    Row(Reason.UNSUPPORTED_VERSION, "the namespace of a retired version", _retired_namespace),
    Row(Reason.SCHEMA_INVALID, "without a birth date", lambda k: k.edited(_without_birth_date)),
    Row(
        Reason.HEADER_INVALID,
        "its nachrichtenUUID in upper case",
        lambda k: k.edited(_upper_case_uuid),
    ),
    Row(
        Reason.HEADER_INVALID,
        "its creation time without the time zone its manifest requires",
        lambda k: k.edited(_created_without_zone),
    ),
    Row(
        Reason.AUTHOR_UNKNOWN,
        "its author named in free text the directory does not know",
        lambda k: k.edited(_named_in_free_text("absender", "stelle"), k.court),
    ),
    Row(
        Reason.AUTHOR_NOT_AUTHORIZED,
        "authored by an agency that may not send it",
        _authored_by_the_meldebehoerde,
    ),
    Row(
        Reason.READER_DOES_NOT_ACCEPT,
        "addressed to the Gewerbeamt",
        lambda k: k.edited(_set_text("leser/kennung", GEWERBEAMT)),
    ),
    Row(
        Reason.NO_ROUTE,
        "without a reader, for a region no agency is responsible for",
        lambda k: k.edited(_moved_to_munich, k.regional),
    ),
    Row(
        Reason.NO_ROUTE,
        "its reader named in free text the directory does not know",
        lambda k: k.edited(_named_in_free_text("empfaenger"), k.court),
    ),
    # The limits on the work one message may cause (docs/security.md).
    Row(
        Reason.TOO_MANY_ELEMENTS,
        "200,000 empty elements added",
        lambda k: g.element_flood(k.signed(), 200_000),
    ),
    Row(
        Reason.TOO_MANY_ATTRIBUTES,
        "an element with 65 attributes added",
        lambda k: g.attribute_flood(k.signed(), 65),
    ),
    Row(
        Reason.TOO_MANY_NAMESPACES,
        "1,025 namespace declarations added",
        lambda k: g.namespace_spread(k.signed(), 1_025),
    ),
    Row(
        Reason.TEXT_TOO_LONG,
        "a first name of 2,001 characters, past a lower text limit",
        lambda k: _replace(k.signed(), b"<vorname>Lena<", b"<vorname>" + b"L" * 2_001 + b"<"),
        limits=ParserLimits(max_text_length=2_000),
    ),
    Row(
        Reason.TOO_MANY_CERTIFICATES,
        "8 certificates added to KeyInfo",
        lambda k: g.certificate_flood(k.signed(), 8),
    ),
    Row(
        Reason.SIGNED_INFO_TOO_LARGE,
        "SignedInfo grown by 16 KiB",
        lambda k: g.signed_info_flood(k.signed(), 16 * 1024),
    ),
    Row(
        Reason.PROCESSING_LIMIT,
        "decided with a CPU budget it cannot keep",
        lambda k: k.signed(),
        budget=1e-9,
    ),
)


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.reason.value}: {r.change}" for r in ROWS])
def test_one_change_to_a_valid_message_yields_its_reason(
    kit: tuple[Kit, Pipeline], row: Row
) -> None:
    made, pipeline = kit
    limited = replace(pipeline, budget=row.budget, limits=row.limits)

    decision = limited.process(row.make(made), at=row.at(made))

    assert isinstance(decision, Rejected), decision
    assert decision.reason is row.reason, decision.detail


def test_the_valid_message_is_accepted_for_its_reader(kit: tuple[Kit, Pipeline]) -> None:
    made, pipeline = kit

    decision = pipeline.process(made.signed(), at=made.now)

    assert isinstance(decision, Accepted), decision
    assert decision.header.author.kennung == PORTAL
    assert [r.kennung for r in decision.recipients] == [MELDEBEHOERDE]


def test_a_message_without_uncovered_nodes_is_delivered_as_received(
    kit: tuple[Kit, Pipeline],
) -> None:
    made, pipeline = kit

    decision = pipeline.process(made.signed(), at=made.now)

    assert isinstance(decision, Accepted), decision
    assert decision.covered is None
    assert decision.uncovered.notes() == ()


def test_comments_and_outer_instructions_are_left_out_of_what_is_delivered(
    kit: tuple[Kit, Pipeline],
) -> None:
    made, pipeline = kit
    signed = made.signed()
    body = signed.replace(b"?>", b"?><?app x?><!-- secret-a -->", 1).replace(
        b"<ds:Signature", b"<!-- secret-b --><ds:Signature", 1
    )
    assert body.count(b"secret-") == 2

    decision = pipeline.process(body, at=made.now)

    assert isinstance(decision, Accepted), decision
    assert decision.covered is not None and b"secret" not in decision.covered
    assert b"<?app" not in decision.covered
    assert decision.uncovered.notes() == (
        "delivered without 2 XML comments and 1 processing instruction outside the root "
        "element: the signature does not cover them; what was signed is delivered, and "
        "its signature stays valid",
    )
    again = pipeline.process(decision.covered, at=made.now)
    assert isinstance(again, Accepted) and again.covered is None
    assert again.header == decision.header


def test_the_valid_message_without_a_reader_is_accepted_for_its_region(
    kit: tuple[Kit, Pipeline],
) -> None:
    made, pipeline = kit

    decision = pipeline.process(made.portal.sign(made.regional), at=made.now)

    assert isinstance(decision, Accepted), decision
    assert [r.kennung for r in decision.recipients] == ["psw:01060063"]


def test_a_rejection_after_the_signature_names_the_signed_header(
    kit: tuple[Kit, Pipeline],
) -> None:
    made, pipeline = kit

    decision = pipeline.process(made.edited(_without_birth_date), at=made.now)

    assert isinstance(decision, Rejected)
    assert decision.header is not None and decision.header.author.kennung == PORTAL
    assert decision.standard == "xmeld/1.1"
    assert decision.issues, "a schema rejection carries its report"


# --- the table and the vocabulary --------------------------------------------------------


def test_the_table_has_a_row_for_every_reason_the_pipeline_can_give() -> None:
    changes = [(row.reason, row.change) for row in ROWS]
    assert len(changes) == len(set(changes))
    assert {row.reason for row in ROWS} == set(Reason) - set(NOT_PIPELINE_OUTCOMES)


def test_every_reason_is_given_by_a_lower_package_the_pipeline_or_the_worker() -> None:
    raised = set().union(*(reasons_raised(package) for package in LOWER_PACKAGES))
    assert raised | {Reason.SIGNER_NOT_AUTHOR, Reason.PROCESSING_LIMIT} | set(
        NOT_PIPELINE_OUTCOMES
    ) == set(Reason)


@pytest.mark.parametrize("reason", NOT_PIPELINE_OUTCOMES, ids=lambda reason: reason.value)
def test_a_reason_outside_the_pipeline_is_given_where_the_table_says(reason: Reason) -> None:
    where, _ = NOT_PIPELINE_OUTCOMES[reason]
    root = Path(__file__).resolve().parents[1]
    assert f"Reason.{reason.name}" in (root / where).read_text(encoding="utf-8")
    assert f"Reason.{reason.name}" not in (root / "broker/pipeline.py").read_text("utf-8")


@pytest.mark.parametrize("package", LOWER_PACKAGES)
def test_a_lower_package_constructs_its_rejections_with_a_reason_member(package: str) -> None:
    sites = rejection_sites(package)
    assert sites, f"no rejection is constructed in {package}: the scan looks in the wrong place"
    by_string = [str(s) for s in sites if s.reason is not None and s.member is None]
    assert by_string == []


@pytest.mark.parametrize("package", LOWER_PACKAGES)
def test_a_lower_package_spells_no_code_as_a_string(package: str) -> None:
    assert string_codes(package) == []


def test_the_scans_notice_a_code_written_as_a_string(tmp_path: Path) -> None:
    package = tmp_path / "typed_by_hand"
    package.mkdir()
    (package / "rules.py").write_text(
        "def route():\n"
        '    raise RouteError("no-route", "nobody")\n'
        "def check():\n"
        '    raise SignatureError(reason=Reason.DIGEST_MISMATCH, detail="altered")\n',
        encoding="utf-8",
    )

    sites = rejection_sites("typed_by_hand", tmp_path)

    assert [site.member for site in sites] == [None, Reason.DIGEST_MISMATCH]
    assert string_codes("typed_by_hand", tmp_path) == ["typed_by_hand/rules.py:2: 'no-route'"]

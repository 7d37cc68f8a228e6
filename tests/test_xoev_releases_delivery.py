"""Real messages of published releases, unmodified, end to end on the real RabbitMQ node.

Every instance that lxml calls valid is signed as its author (a message naming no author
is signed by a participant, who becomes its author), published with the portal SDK and
delivered to its reader, with accepted and delivered receipts, byte for byte as
published; every invalid one is rejected with a report naming line and path. An XWasser
instance carries a ds:Signature of its own, which is content like any other element. An
xdomea instance carries XML comments, which no signature covers: it is delivered
without them, and the accepted receipt counts them. XWasser's instances are test
fixtures that reuse identities across files, so each round serves a broker that has seen
none of the identities in it: the count is per instance, as a new broker would receive
it. The xdomea process test runs 0501, 0503 and 0505 of one process through one broker.
XBau 2.6 is published without instances, so it has no test here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from lxml import etree

from broker.errors import Reason
from monitoring.labels import ReceiptKind
from signing import SigningError, parse_untrusted
from tests.polling import eventually
from tests.releases_support import (
    ReleaseWorld,
    lxml_verdict,
    release_world,
    releases_root,
    serve_release,
)
from xta_schemas import Catalog, MessageError

# A message that names no author is signed by this participant, which becomes its author.
XWASSER_SIGNER = "wus:1"
_T = "vorgang.transportieren.2010"
_Q = "administration.quittung.0020"


def _agency(kennung: str, *, accepts: str = "", regions: str = "", may_send: str = "") -> str:
    cert = kennung.replace(":", "_")
    return (
        f'[[agency]]\nkennung = "{kennung}"\nname = "{kennung}"\n'
        f'certificates = ["{cert}.crt"]\naccepts = [{accepts}]\nregions = [{regions}]\n'
        f"may_send = [{may_send}]\n\n"
    )


XWASSER_DIRECTORY = "".join(
    [
        _agency("psw:11113110", accepts=f'"{_T}"', may_send=f'"{_Q}"'),
        _agency("psw:01003110", accepts=f'"{_Q}"', may_send=f'"{_T}"'),
        # Responsible everywhere: receives what names no reader.
        _agency("gha:090", accepts=f'"{_T}"', regions='"*"', may_send=f'"{_T}"'),
        _agency("mp:09000000", accepts=f'"{_T}"'),
        _agency("olb:09000000", accepts=f'"{_T}"'),
        _agency("bwv:1", accepts=f'"{_T}"'),
        _agency("wus:1", may_send=f'"{_T}"'),
    ]
)

XDOMEA_DIRECTORY = (
    '[[agency]]\nkennung = "xdo:abgebend"\nname = "Abgebende Stelle"\n'
    'aliases = ["AbsXdomeaInstitutionName", "[Abgebende Stelle]"]\n'
    'certificates = ["xdo_abgebend.crt"]\nmay_send = ["Aussonderung.*"]\n\n'
    '[[agency]]\nkennung = "xdo:LATh"\nname = "Landesarchiv Thüringen"\n'
    'certificates = ["xdo_LATh.crt"]\naccepts = ["Aussonderung.*"]\n\n'
    '[[agency]]\nkennung = "xdo:lavnrw"\nname = "Landesarchiv NRW"\n'
    'certificates = ["xdo_lavnrw.crt"]\naccepts = ["Aussonderung.*"]\n'
)


@pytest.fixture(scope="module")
def releases() -> Path:
    return releases_root()


def _rounds(catalog: Catalog, files: list[Path], signer: str) -> list[list[Path]]:
    """Instances in rounds in which no (author, identity) occurs twice."""
    rounds: list[list[Path]] = []
    used: list[set[tuple[str, str]]] = []
    for path in files:
        root = parse_untrusted(path.read_bytes())
        standard, _ = catalog.identify(root)
        header = standard.header(root, signer=signer, aliases=lambda text: text)
        key = (header.author.kennung, header.uuid)
        for index, keys in enumerate(used):
            if key not in keys:
                keys.add(key)
                rounds[index].append(path)
                break
        else:
            used.append({key})
            rounds.append([path])
    return rounds


async def _deliver_all(world: ReleaseWorld, files: list[Path], signer: str) -> dict[str, list[str]]:
    """Publish each file signed as its author; per file, the kinds of receipt it got
    and who received it."""
    outcome: dict[str, list[str]] = {}
    pending = []
    for path in files:
        root = parse_untrusted(path.read_bytes())
        standard, _ = world.parts.catalog.identify(root)
        try:
            author = standard.header(root, signer=signer).author.kennung
        except MessageError:
            author = signer  # the broker rejects it; its receipt goes to the signer
        portal = await world.portal(author)
        try:
            uuid = await portal.submit(path.read_bytes())
        except SigningError as exc:
            outcome[path.name] = [f"unsigned: {exc}"]
            continue
        pending.append((path, portal, uuid))
    for path, portal, uuid in pending:
        state = await portal.wait_final(uuid, timeout=60)
        kinds = sorted({r.kind.value for r in state.receipts})
        for receipt in state.receipts:
            if receipt.kind is ReceiptKind.REJECTED:
                assert receipt.issues, f"{path.name}: rejected without a report"
                assert all(i.line and i.path.startswith("/") for i in receipt.issues)
            if receipt.kind is ReceiptKind.ACCEPTED:
                # What was published (its SHA-256 in the receipt) is what each reader got.
                bodies = world.bodies_of(uuid, portal.kennung)
                assert bodies, path.name
                assert {_sha256(b) for b in bodies} == {receipt.digest}, path.name
        outcome[path.name] = kinds + [f"to:{k}" for k in world.receivers_of(uuid)]
    return outcome


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_every_valid_xwasser_instance_is_delivered_unmodified(
    amqp_url: str, tmp_path: Path, releases: Path
) -> None:
    folder = serve_release(
        tmp_path, "xwasser-1.0.0", releases / "xwasser-1.0.0", ("V1_0_0", "external")
    )
    files = sorted((releases / "xwasser-1.0.0" / "instances").glob("*.xml"))
    valid = {path.name for path in files if lxml_verdict(folder, path)}
    catalog = Catalog.load([folder], bundled=False)
    outcome: dict[str, list[str]] = {}
    for number, group in enumerate(_rounds(catalog, files, XWASSER_SIGNER)):
        async with release_world(
            amqp_url, tmp_path / f"round-{number}", XWASSER_DIRECTORY, folder, test=True
        ) as world:
            outcome.update(await _deliver_all(world, group, XWASSER_SIGNER))

    delivered = {name for name, kinds in outcome.items() if {"accepted", "delivered"} <= set(kinds)}
    rejected = {name for name, kinds in outcome.items() if "rejected" in kinds}
    assert delivered == valid
    assert rejected == {path.name for path in files} - valid
    assert len(delivered) == 13 and len(rejected) == 2
    # XWasser's own document signature (a ds:Signature over the vorgang, at the root
    # before the broker's) travels as content.
    assert outcome["olb_report_signature_builder_test_result.xml"] == [
        "accepted",
        "delivered",
        "to:gha:090",
    ]
    assert outcome["quality_report_minimal.xml"][-1] == "to:psw:11113110"
    assert outcome["monitoring_plan_builder_test_result.xml"][-1] == "to:gha:090"


async def test_an_xdomea_process_is_delivered_and_a_reused_identity_refused(
    amqp_url: str, tmp_path: Path, releases: Path
) -> None:
    folder = serve_release(tmp_path, "xdomea-3.0.0", releases / "xdomea-3.0.0", ("3.0.0", "xoev"))
    instances = releases / "xdomea-3.0.0" / "instances"
    process = sorted(instances.glob("9a75050f-*.xml"))
    assert [p.name.rsplit(".", 2)[-2] for p in process] == ["0501", "0503", "0505"]
    async with release_world(
        amqp_url, tmp_path / "state", XDOMEA_DIRECTORY, folder, test=False
    ) as world:
        portal = await world.portal("xdo:abgebend")
        uuids = [await portal.submit(p.read_bytes()) for p in process]
        states = [await portal.wait_final(u, timeout=60) for u in uuids]
        # Before the reused identity below adds its rejection to the 0503's receipts.
        kinds = [{r.kind for r in state.receipts} for state in states]
        nrw = instances / "9fde4e7a-b41b-11ec-9225-005056871b7c_Aussonderung.Aussonderung.0503.xml"
        nrw_state = await portal.wait_final(await portal.submit(nrw.read_bytes()), timeout=60)

        # The 0503 again under the identity it was delivered with, but changed.
        changed = etree.fromstring(process[1].read_bytes())
        kopf = changed.find("{urn:xoev-de:xdomea:schema:3.0.0}Kopf")
        assert kopf is not None
        erstellt = kopf.find("{urn:xoev-de:xdomea:schema:3.0.0}Erstellungszeitpunkt")
        assert erstellt is not None
        erstellt.text = "2018-07-24T17:25:40"
        reused = await portal.submit(changed, message_id=uuids[1])
        await eventually(
            lambda: any(r.kind is ReceiptKind.REJECTED for r in portal.state(reused).receipts),
            what="the changed 0503 rejected",
            timeout=60,
        )
        reused_state = portal.state(reused)

    # Every instance lxml calls valid (all four; the release has no invalid one) delivered.
    valid = {p.name for p in instances.glob("*.xml") if lxml_verdict(folder, p)}
    assert valid == {p.name for p in [*process, nrw]}
    assert kinds == [{ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED}] * 3
    for state in states:
        accepted = next(r for r in state.receipts if r.kind is ReceiptKind.ACCEPTED)
        assert accepted.identity_assigned == "transport"
        assert any("read in Europe/Berlin" in note for note in accepted.notes)
    assert len(set(uuids)) == 3
    assert [world.receivers_of(u) for u in uuids] == [["xdo:LATh"]] * 3
    # lavnrw's 0503 carries six XML comments, which no signature covers: delivered
    # without them, as the accepted receipt says (a count, never their text).
    assert {r.kind for r in nrw_state.receipts} == {ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED}
    nrw_accepted = next(r for r in nrw_state.receipts if r.kind is ReceiptKind.ACCEPTED)
    assert any(note.startswith("delivered without 6 XML comments") for note in nrw_accepted.notes)
    assert not any("<!--" in note or "-->" in note for note in nrw_accepted.notes)
    [nrw_copy] = world.bodies_of(nrw_state.uuid, "xdo:abgebend")
    assert b"<!--" in nrw.read_bytes() and b"<!--" not in nrw_copy
    assert _sha256(nrw_copy) != nrw_accepted.digest
    assert world.receivers_of(nrw_state.uuid) == ["xdo:lavnrw"]
    for uuid, state in zip(uuids, states, strict=True):
        accepted = next(r for r in state.receipts if r.kind is ReceiptKind.ACCEPTED)
        assert [_sha256(b) for b in world.bodies_of(uuid, "xdo:abgebend")] == [accepted.digest]
    assert reused == uuids[1]
    [rejection] = [r for r in reused_state.receipts if r.kind is ReceiptKind.REJECTED]
    assert rejection.reason is Reason.ID_REUSED
    assert rejection.first_digest is not None
    assert world.receivers_of(uuids[1]) == ["xdo:LATh"]  # delivered once, not twice

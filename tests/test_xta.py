"""The XTA 2 endpoint, driven by the independent client xta-tool (the ``xta`` command).

One endpoint for the module, on loopback with TLS client certificates of the
development PKI, in front of the example world (broker worker, portal, agencies) on a
vhost of the module's own. The portal sends over XTA; the Bauprüfabteilung
(``bau:02000000``), whose inbox is an XTA message box, lists, fetches and closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from lxml import etree

from broker.amqp import topology
from broker.app import party_signer
from broker.cli import main as cli
from broker.stores.journal import EventKind
from broker.stores.xta import BoxEntry
from broker.xta import MANAGEMENT_PATH, SEND_PATH, xta_message_id
from monitoring.labels import ReceiptKind
from routing import Directory
from signing import load_certificate, subject_kennung
from signing.devpki import create_ca, issue
from signing.keyfiles import party_paths
from tests.polling import eventually
from tests.world import EXAMPLES
from tests.xta_support import (
    AGENCY,
    PART_LIMIT,
    PORTAL,
    TIMEOUT,
    XtaWorld,
    fault_of,
    fetch,
    folder,
    https,
    listed,
    listed_all,
    rejected_in_report,
    running_xta_world,
    send,
    signed_antrag,
    soap_fault,
    until_listed,
    write_message,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.tool("xta-tool")]


@pytest.fixture(scope="module")
async def xta(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[XtaWorld]:
    async with running_xta_world(module_vhost_url, tmp_path_factory.mktemp("xta")) as world:
        yield world


async def test_send_list_get_close_inspect(xta: XtaWorld, tmp_path: Path) -> None:
    portal, agency = xta.client(PORTAL), xta.client(AGENCY)
    message, uuid = signed_antrag(xta)

    message_id = await send(xta, tmp_path, message)
    await until_listed(agency, message_id)
    await fetch(agency, message_id, tmp_path / "in")
    (await agency.run("close", message_id)).check()
    state = await xta.world.portal.wait_final(uuid, TIMEOUT)
    report = yaml.safe_load((await portal.run("inspect", message_id)).check().stdout)

    assert (tmp_path / "in" / "antrag.xml").read_bytes() == message
    assert message_id not in await listed(agency)
    assert {r.kind for r in state.receipts} == {ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED}
    assert report["status"] == "1"
    assert report["metadata"]["message_id"] == message_id


async def test_a_message_sent_over_xta_is_received_once(xta: XtaWorld, tmp_path: Path) -> None:
    message, uuid = signed_antrag(xta)

    message_id = await send(xta, tmp_path, message)
    await xta.world.settled(uuid)
    await until_listed(xta.client(AGENCY), message_id)
    await xta.xta.boxes.close(AGENCY, message_id)  # leave the box as it was

    events = (await xta.records.status.timeline(uuid)).events
    received = [e for e in events if e.kind is EventKind.RECEIVED]
    assert [e.author for e in received] == [PORTAL]
    assert events[0] is received[0]


async def test_a_5_mb_attachment_arrives_byte_identical(xta: XtaWorld, tmp_path: Path) -> None:
    agency = xta.client(AGENCY)
    message, _uuid = signed_antrag(xta)
    pdf = b"%PDF-1.7\n" + os.urandom(5 * 1024 * 1024) + b"\n%%EOF\n"

    message_id = await send(xta, tmp_path, message, attachments={"bauplan.pdf": pdf})
    await until_listed(agency, message_id)
    await fetch(agency, message_id, tmp_path / "in")
    (await agency.run("close", message_id)).check()

    received = (tmp_path / "in" / "bauplan.pdf").read_bytes()
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(pdf).hexdigest()
    assert (tmp_path / "in" / "antrag.xml").read_bytes() == message


async def test_150_waiting_with_max_list_items_100_are_all_reachable(
    xta: XtaWorld, tmp_path: Path
) -> None:
    agency = xta.client(AGENCY, max_list_items=100)
    portal = xta.world.portal
    sent = [xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200") for _ in range(150)]
    uuids = [await portal.submit(root) for root in sent]
    expected = {xta_message_id(uuid) for uuid in uuids}
    await eventually(
        lambda: listed_all(xta),
        until=lambda listed: expected <= set(listed),
        what="all 150 messages listed",
        timeout=TIMEOUT * 2,
        interval=0.2,
    )

    rounds = []
    while page := await listed(agency):
        rounds.append(page)
        commands = [["get", m, str(folder(tmp_path / str(n)))] for n, m in enumerate(page)]
        commands += [["close", m] for m in page]
        for result in await agency.run_many(commands):
            result.check()
        assert len(rounds) <= 3, "listing does not get through the box"
    await asyncio.gather(*(portal.wait_final(uuid, TIMEOUT) for uuid in uuids))

    ours = [[m for m in page if m in expected] for page in rounds]
    assert [len(page) for page in rounds[:2]] == [100, 50]
    assert sum(len(page) for page in ours) == 150
    assert set().union(*ours) == expected
    assert not set(await listed(agency))


async def test_a_fetched_message_is_listed_again_after_a_restart_until_closed(
    xta: XtaWorld, tmp_path: Path
) -> None:
    agency = xta.client(AGENCY)
    message, _uuid = signed_antrag(xta)
    message_id = await send(xta, tmp_path, message)
    await until_listed(agency, message_id)
    await fetch(agency, message_id, tmp_path / "first")

    await xta.restart()
    listed_after_restart = message_id in await listed(agency)
    again = await fetch(agency, message_id, tmp_path / "again")
    (await agency.run("close", message_id)).check()
    await xta.restart()

    assert listed_after_restart
    assert (again / "antrag.xml").read_bytes() == message
    assert message_id not in await listed(agency)
    assert fault_of(await agency.run("get", message_id, str(folder(tmp_path / "late"))))[
        "tag"
    ].endswith("InvalidMessageIDException")


async def test_two_endpoints_serve_one_box(xta: XtaWorld, tmp_path: Path) -> None:
    message, uuid = signed_antrag(xta)
    message_id = await send(xta, tmp_path, message)
    async with xta.second_endpoint() as second:
        here, there = xta.client(AGENCY), second.client(AGENCY)
        await until_listed(there, message_id)
        fetched = await fetch(there, message_id, tmp_path / "there")
        (await here.run("close", message_id)).check()
        listed_there = await listed(there)
        closed_again = await there.run("close", message_id)
    state = await xta.world.portal.wait_final(uuid, TIMEOUT)

    assert (fetched / "antrag.xml").read_bytes() == message
    assert [r.kind for r in state.receipts].count(ReceiptKind.DELIVERED) == 1
    assert message_id not in listed_there
    assert closed_again.returncode == 0  # closing twice changes nothing


async def test_a_certificate_not_registered_for_the_party_is_refused(
    xta: XtaWorld, tmp_path: Path
) -> None:
    pki = xta.world.settings.pki
    cert, key = issue(pki / "ca", AGENCY, "Second key", tmp_path)
    stranger = xta.client_with(AGENCY, cert, key, name="unregistered")

    fault = fault_of(await stranger.run("ls"))

    assert fault["tag"].endswith("PermissionDeniedException")
    assert "registered" in fault["reason"]


async def test_a_certificate_of_a_foreign_ca_fails_the_handshake(
    xta: XtaWorld, tmp_path: Path
) -> None:
    create_ca(tmp_path / "ca", "Somebody Else's CA")
    cert, key = issue(tmp_path / "ca", AGENCY, "Forged", tmp_path / "out")
    forged = xta.client_with(AGENCY, cert, key, name="forged")

    result = await forged.run("ls")

    assert result.returncode != 0
    assert "[Soap Fault]" not in result.stderr
    # TLS 1.3: the server checks the client certificate after the client's side of the
    # handshake is done, so the client sees the connection closed, not an alert.
    assert "disconnected" in result.stderr or "SSL" in result.stderr


async def test_another_partys_box_is_refused(xta: XtaWorld, tmp_path: Path) -> None:
    cert, key = party_paths(xta.world.settings.pki, AGENCY)
    pretender = xta.client_with("psw:02000000", cert, key, name="pretender")

    fault = fault_of(await pretender.run("ls"))

    assert fault["tag"].endswith("PermissionDeniedException")
    assert fault["reason"] == (
        "the request names psw:02000000, but your certificate is bau:02000000's"
    )


async def test_another_partys_message_is_unknown_in_your_box(xta: XtaWorld, tmp_path: Path) -> None:
    message, _uuid = signed_antrag(xta)
    message_id = await send(xta, tmp_path, message)
    await until_listed(xta.client(AGENCY), message_id)
    other = xta.client("psw:02000000")

    fetched = fault_of(await other.run("get", message_id, str(folder(tmp_path / "x"))))
    closed = fault_of(await other.run("close", message_id))
    inspected = fault_of(await other.run("inspect", message_id))

    for fault in (fetched, closed, inspected):
        assert fault["tag"].endswith("InvalidMessageIDException")
        assert AGENCY not in fault["reason"] and PORTAL not in fault["reason"]
    assert message_id in await listed(xta.client(AGENCY))
    (await xta.client(AGENCY).run("close", message_id)).check()


async def test_an_unknown_message_id_is_a_fault(xta: XtaWorld, tmp_path: Path) -> None:
    agency = xta.client(AGENCY)
    unknown = xta_message_id("00000000-0000-4000-8000-000000000000")

    for result in (
        await agency.run("get", unknown, str(folder(tmp_path / "x"))),
        await agency.run("close", unknown),
        await agency.run("inspect", unknown),
    ):
        assert fault_of(result)["tag"].endswith("InvalidMessageIDException")


async def test_a_tampered_message_is_rejected_and_shown_in_the_report(
    xta: XtaWorld, tmp_path: Path
) -> None:
    message, uuid = signed_antrag(xta)
    tampered = message.replace(b"<familienname>", b"<familienname>X", 1)
    assert tampered != message

    message_id = await send(xta, tmp_path, tampered)
    report = await rejected_in_report(xta, message_id)

    assert report["status"] == "3"
    assert [e["code"]["code"] for e in report["errors"]] == ["digest-mismatch"]  # type: ignore[attr-defined]
    assert message_id not in await listed(xta.client(AGENCY))
    assert xta.xta.store.entry_of(AGENCY, uuid) is None


async def test_an_xta_author_reads_its_rejection_in_the_report_and_has_no_receipt_queue(
    xta: XtaWorld, tmp_path: Path
) -> None:
    # The agency confirms receipt of a Bauantrag to the portal, which accepts no such type.
    root = xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.eingangsbestaetigung.0201")
    message, uuid = party_signer(xta.world.settings, AGENCY).sign(root), xta.world.uuid_of(root)
    bau = xta.client(AGENCY)
    message_id = (await bau.run("new")).check().stdout.strip()
    out = write_message(tmp_path / "out", message, author=AGENCY, reader=PORTAL)

    (await bau.run("send", message_id, str(out))).check()
    await xta.world.settled(uuid)
    report = yaml.safe_load((await bau.run("inspect", message_id)).check().stdout)

    assert report["status"] == "3"
    assert [e["code"]["code"] for e in report["errors"]] == ["reader-does-not-accept"]
    connection = await aio_pika.connect(xta.world.settings.amqp_url)
    try:
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await (await connection.channel()).declare_queue(
                topology.receipt_queue(AGENCY), passive=True
            )
    finally:
        await connection.close()


async def test_a_schema_invalid_message_is_rejected_and_shown_in_the_report(
    xta: XtaWorld, tmp_path: Path
) -> None:
    root = xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200")
    bauherr = root.find(".//bauherr")
    assert bauherr is not None
    bauherr.getparent().remove(bauherr)
    message = xta.world.portal_signer.sign(root)

    message_id = await send(xta, tmp_path, message)
    report = await rejected_in_report(xta, message_id)

    assert report["status"] == "3"
    assert [e["code"]["code"] for e in report["errors"]] == ["schema-invalid"]  # type: ignore[attr-defined]
    assert xta.xta.store.entry_of(AGENCY, xta.world.uuid_of(root)) is None


async def test_metadata_that_disagrees_with_the_signed_header_is_refused(
    xta: XtaWorld, tmp_path: Path
) -> None:
    message, uuid = signed_antrag(xta)
    portal = xta.client(PORTAL)
    message_id = (await portal.run("new")).check().stdout.strip()
    wrong_reader = write_message(tmp_path / "reader", message, reader="psw:02000000")
    wrong_author = write_message(tmp_path / "author", message, author="psw:02000000")

    reader_fault = fault_of(await portal.run("send", message_id, str(wrong_reader)))
    author_fault = fault_of(await portal.run("send", message_id, str(wrong_author)))

    assert reader_fault["tag"].endswith("ParameterIsNotValidException")
    assert reader_fault["reason"].startswith("MessageMetaData/Destinations/Reader/Identifier")
    assert author_fault["reason"].startswith("MessageMetaData/Originators/Author/Identifier")
    assert not xta.world.portal.state(uuid).receipts


async def test_a_message_id_of_the_reserved_prefix_is_refused(
    xta: XtaWorld, tmp_path: Path
) -> None:
    message, uuid = signed_antrag(xta)
    out = write_message(tmp_path / "out", message)

    fault = fault_of(await xta.client(PORTAL).run("send", xta_message_id(uuid), str(out)))

    assert fault["tag"].endswith("ParameterIsNotValidException")
    assert not xta.world.portal.state(uuid).receipts


async def test_a_message_signed_by_another_author_than_the_caller_is_refused(
    xta: XtaWorld, tmp_path: Path
) -> None:
    message, _uuid = signed_antrag(xta)
    agency_as_sender = xta.client(AGENCY)
    message_id = (await agency_as_sender.run("new")).check().stdout.strip()
    out = write_message(tmp_path / "out", message)

    fault = fault_of(await agency_as_sender.run("send", message_id, str(out)))

    assert fault["tag"].endswith("PermissionDeniedException")
    assert "your certificate is bau:02000000's" in fault["reason"]


async def test_requests_are_counted_by_operation_and_outcome(xta: XtaWorld) -> None:
    agency = xta.client(AGENCY)
    registry = xta.registry
    before = (
        registry.get_sample_value(
            "xbroker_xta_requests_total", {"operation": "status_list", "outcome": "ok"}
        )
        or 0.0
    )

    (await agency.run("ls")).check()

    after = registry.get_sample_value(
        "xbroker_xta_requests_total", {"operation": "status_list", "outcome": "ok"}
    )
    assert after == before + 1
    assert (
        registry.get_sample_value("xbroker_xta_box_waiting_messages", {"agency": AGENCY})
        is not None
    )


async def test_a_malformed_multipart_is_refused_with_a_fault(xta: XtaWorld) -> None:
    async with https(xta, PORTAL) as client:
        response = await client.post(
            SEND_PATH,
            content=b"--b\r\nContent-ID: <root>\r\n\r\n<Envelope/>",  # never ends
            headers={"content-type": 'multipart/related; boundary="b"; start="<root>"'},
        )

    assert response.status_code == 400
    assert soap_fault(response) == (
        "SyntaxErrorException",
        "the multipart body ends before its last boundary",
    )


async def test_a_part_over_the_limit_is_refused_with_a_413_fault(xta: XtaWorld) -> None:
    body = (
        b"--b\r\nContent-ID: <root>\r\n\r\n<Envelope/>\r\n"
        b"--b\r\nContent-ID: <big>\r\n\r\n" + b"x" * (PART_LIMIT + 1) + b"\r\n--b--\r\n"
    )
    async with https(xta, PORTAL) as client:
        response = await client.post(
            SEND_PATH,
            content=body,
            headers={"content-type": 'multipart/related; boundary="b"; start="<root>"'},
        )

    assert response.status_code == 413
    assert soap_fault(response) == (
        "MessageTooLargeException",
        f"an MTOM part is larger than {PART_LIMIT} bytes",
    )


async def test_a_document_type_declaration_in_the_envelope_is_refused(xta: XtaWorld) -> None:
    envelope = (
        b'<!DOCTYPE e [<!ENTITY x "y">]>'
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"/>'
    )
    async with https(xta, PORTAL) as client:
        response = await client.post(
            SEND_PATH, content=envelope, headers={"content-type": "application/soap+xml"}
        )

    name, reason = soap_fault(response)
    assert (response.status_code, name) == (400, "SyntaxErrorException")
    assert "Traceback" not in response.text and "lxml" not in reason


async def test_an_attachment_reaches_an_amqp_agency_through_its_sdk(
    xta: XtaWorld, tmp_path: Path
) -> None:
    root = xta.world.fresh("anmeldung-hamburg.xml")
    uuid = xta.world.uuid_of(root)
    message = xta.world.portal_signer.sign(root)
    folder_ = write_message(
        tmp_path / "out", message, reader="psw:02000000", attachments={"ausweis.pdf": b"%PDF-x"}
    )
    portal = xta.client(PORTAL)
    message_id = (await portal.run("new")).check().stdout.strip()

    (await portal.run("send", message_id, str(folder_))).check()
    await xta.world.portal.wait_final(uuid, TIMEOUT)

    (delivery,) = [d for d in xta.world.received["psw:02000000"] if d.uuid == uuid]
    assert delivery.body == message
    assert [(a.filename, a.content) for a in delivery.attachments] == [("ausweis.pdf", b"%PDF-x")]


async def test_pki_issue_makes_the_tls_client_certificate_a_fachverfahren_needs(
    xta: XtaWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = xta.world
    pki = world.settings.pki
    assert (
        cli(
            [
                "pki",
                "issue",
                AGENCY,
                "Fachverfahren Bau",
                "--tls-client",
                "--pki-dir",
                str(pki),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    cert_path, key_path = tmp_path / "bau_02000000.crt", tmp_path / "bau_02000000.key"
    certificate = load_certificate(cert_path)
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    registration = capsys.readouterr().out.split('"sha256:', 1)[1].split('"', 1)[0]
    directory = tmp_path / "directory.toml"
    directory.write_text(
        world.settings.directory.read_text().replace(
            '"bau_02000000.crt"', f'"bau_02000000.crt", "sha256:{registration}"'
        )
    )
    original = world.broker.directory
    await world.broker.reload_directory(
        Directory.load(directory, world.settings.party_certificate_dir)
    )
    try:
        result = await xta.client_with(AGENCY, cert_path, key_path, name="tls-client").run("ls")
    finally:
        await world.broker.reload_directory(original)

    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert subject_kennung(certificate) == AGENCY
    assert result.returncode == 0, result.stderr


def management_request(action: str, caller: str, body: str = "") -> bytes:
    return (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
        ' xmlns:a="http://www.w3.org/2005/08/addressing"'
        ' xmlns:t="http://www.osci.eu/ws/2014/10/transport"'
        ' xmlns:x="http://xoev.de/transport/xta/211">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>urn:uuid:1</a:MessageID>"
        f'<t:Author><t:Identifier type="xoev">{caller}</t:Identifier></t:Author></s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


async def test_account_and_service_look_ups_answer_from_the_directory(xta: XtaWorld) -> None:
    lookup = (
        "<x:LookupServiceRequest><x:LookupServiceRequestList>"
        + "".join(
            f"<x:LookupService><x:ServiceType>{service}</x:ServiceType><x:Reader>"
            f'<t:Identifier type="xoev">{AGENCY}</t:Identifier></x:Reader></x:LookupService>'
            for service in ("bau.antrag.0200", "meldung.anmeldung.0200")
        )
        + "</x:LookupServiceRequestList></x:LookupServiceRequest>"
    )
    headers = {"content-type": "application/soap+xml"}
    async with https(xta, PORTAL) as client:
        account = await client.post(
            MANAGEMENT_PATH,
            content=management_request("http://www.xta.de/XTA/CheckAccountActive", PORTAL),
            headers=headers,
        )
        services = await client.post(
            MANAGEMENT_PATH,
            content=management_request("http://www.xta.de/XTA/LookupService", PORTAL, lookup),
            headers=headers,
        )

    available = etree.fromstring(services.content).findall(".//{*}IsServiceAvailable")
    assert etree.fromstring(account.content).findtext(".//{*}AccountActive") == "true"
    assert [a.text for a in available] == ["true", "false"]


async def test_a_copy_whose_indexing_failed_is_indexed_again_not_skipped(
    xta: XtaWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal = xta.world.portal
    roots = [xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200") for _ in range(3)]
    unlucky = xta.world.uuid_of(roots[1])
    store = xta.xta.store
    index = store.index
    failures: list[str] = []

    def index_failing_once(entry: BoxEntry) -> bool:
        if entry.uuid == unlucky and not failures:
            failures.append(entry.uuid)
            raise sqlite3.OperationalError("disk I/O error")
        return index(entry)

    monkeypatch.setattr(store, "index", index_failing_once)
    uuids = [await portal.submit(root) for root in roots]
    await eventually(
        lambda: all(store.entry_of(AGENCY, uuid) is not None for uuid in uuids),
        what="every message indexed",
        interval=0.1,
    )
    entries = [store.entry_of(AGENCY, uuid) for uuid in uuids]
    for entry in entries:
        assert entry is not None
        await xta.xta.boxes.close(AGENCY, entry.message_id)

    assert failures == [unlucky]
    assert xta.registry.get_sample_value(
        "xbroker_xta_index_failures_total", {"agency": AGENCY}
    ) == pytest.approx(1)
    offsets = [entry.offset for entry in entries if entry is not None]
    assert offsets == sorted(offsets)  # indexed in stream order, the retried one included


async def test_a_box_added_by_a_directory_reload_is_served_without_a_restart(
    xta: XtaWorld, tmp_path: Path
) -> None:
    settings = xta.world.settings
    newcomer = "bau:01060063"
    cert, key = issue(settings.pki / "ca", newcomer, "Bauaufsicht Norderstedt", tmp_path)
    path = tmp_path / "directory.toml"
    path.write_text(
        (EXAMPLES / "directory.toml").read_text(encoding="utf-8")
        + f'\n[[agency]]\nkennung = "{newcomer}"\nname = "Bauaufsicht Norderstedt"\n'
        f'certificates = ["{cert}"]\naccepts = ["bau.antrag.0200"]\n'
        'endpoint = { kind = "xta" }\n',
        encoding="utf-8",
    )
    original = xta.world.broker.directory
    root = xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200")
    reader = root.find("nachrichtenkopf.g2g/leser/kennung")
    assert reader is not None
    reader.text = newcomer
    message = xta.world.portal_signer.sign(root)
    await xta.world.broker.reload_directory(Directory.load(path, settings.party_certificate_dir))
    try:
        uuid = await xta.world.portal.submit(message, sign=False)
        client = xta.client_with(newcomer, cert, key)
        await until_listed(client, xta_message_id(uuid))
        fetched = await fetch(client, xta_message_id(uuid), tmp_path / "in")
        (await client.run("close", xta_message_id(uuid))).check()
        state = await xta.world.portal.wait_final(uuid, TIMEOUT)
    finally:
        await xta.world.broker.reload_directory(original)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert state.receipts[1].recipients == (newcomer,)
    assert (fetched / "bau.antrag.0200.xml").read_bytes() == message


async def test_no_content_sent_over_xta_reaches_the_state_folder(
    xta: XtaWorld, tmp_path: Path
) -> None:
    marker = f"Marker{secrets.token_hex(8)}"
    root = xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200")
    name = root.find(".//familienname")
    assert name is not None
    name.text = marker
    message, uuid = xta.world.portal_signer.sign(root), xta.world.uuid_of(root)
    attachment = f"%PDF-1.7 {marker}".encode()

    message_id = await send(xta, tmp_path, message, attachments={"plan.pdf": attachment})
    agency = xta.client(AGENCY)
    await until_listed(agency, message_id)
    fetched = await fetch(agency, message_id, tmp_path / "in")
    (await agency.run("close", message_id)).check()
    await xta.world.portal.wait_final(uuid, TIMEOUT)

    assert (fetched / "plan.pdf").read_bytes() == attachment
    state = xta.world.settings.state_dir
    files = [p for p in state.rglob("*") if p.is_file() and "pki" not in p.parts]
    assert any(p.name == "xta.sqlite3" for p in files)
    assert [p for p in files if marker.encode() in p.read_bytes()] == []

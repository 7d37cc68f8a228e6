"""Client certificates of the development PKI, over a real TLS connection to the HTTP API."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broker.app import Parts, open_records
from broker.http_api import (
    ApiServer,
    ApiTlsFiles,
    Authenticator,
    TokenTable,
    good_standing,
    serve_api,
    start_api,
)
from signing import TrustStore
from signing.crl import CrlFolder
from signing.devpki import create_ca, issue, revoke
from signing.keyfiles import party_paths
from tests.http_api_support import api_app
from tests.polling import eventually
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0


@dataclass
class TlsApi:
    world: World
    server: ApiServer


@pytest.fixture(scope="module")
async def tls_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsApi]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("tls")) as world:
        pki = world.settings.pki
        cert, key = party_paths(pki, world.settings.broker_kennung)
        by_certificate = Authenticator(TokenTable({}), world.parts.directory.certificate_registered)
        async with api_app(world, amqp_url, by_certificate) as app:
            server = await serve_api(app, tls=ApiTlsFiles(cert, key, pki / "ca" / "ca.crt"))
            yield TlsApi(world, server)
            await server.stop()


def _client(server: ApiServer, identity: tuple[Path, Path] | None) -> httpx.AsyncClient:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the dev party certificate names no host
    if identity is not None:
        context.load_cert_chain(*identity)
    return httpx.AsyncClient(base_url=server.url, verify=context, timeout=10)


def _identity(world: World, kennung: str) -> tuple[Path, Path]:
    return party_paths(world.settings.pki, kennung)


async def test_a_client_certificate_identifies_the_author(tls_api: TlsApi) -> None:
    world = tls_api.world
    signed = world.portal_signer.sign(world.fresh("anmeldung-hamburg.xml"))

    async with _client(tls_api.server, _identity(world, "osi:hh-portal")) as client:
        submitted = await client.post(
            "/v1/messages", content=signed, headers={"content-type": "application/xml"}
        )
        uuid = submitted.json()["uuid"]
        await world.portal.wait_final(uuid, TIMEOUT)
        # The broker forwards the delivered receipt before it journals the delivery, so
        # the Laufzettel may say so a moment after the portal knows.
        await eventually(
            lambda: _state(client, uuid),
            until=lambda state: state == "delivered",
            what=f"{uuid} delivered in the Laufzettel",
        )

    assert submitted.status_code == 202


async def _state(client: httpx.AsyncClient, uuid: str) -> str:
    response = await client.get(f"/v1/messages/{uuid}")
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


async def test_a_recipients_certificate_reads_the_laufzettel(tls_api: TlsApi) -> None:
    world = tls_api.world
    uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
    await world.portal.wait_final(uuid, TIMEOUT)

    async with _client(tls_api.server, _identity(world, "psw:02000000")) as client:
        response = await client.get(f"/v1/messages/{uuid}")

    assert response.status_code == 200


async def test_tls_without_a_certificate_or_token_is_refused(tls_api: TlsApi) -> None:
    async with _client(tls_api.server, None) as client:
        response = await client.get("/v1/messages/anything")

    assert response.status_code == 401


async def test_a_certificate_not_registered_in_the_directory_is_refused(
    tls_api: TlsApi, tmp_path: Path
) -> None:
    pki = tls_api.world.settings.pki
    issue(pki / "ca", "osi:hh-portal", "Second portal key", tmp_path)

    identity = (tmp_path / "osi_hh-portal.crt", tmp_path / "osi_hh-portal.key")
    async with _client(tls_api.server, identity) as client:
        response = await client.get("/v1/messages/anything")

    assert response.status_code == 401


async def test_a_certificate_from_a_foreign_ca_fails_the_handshake(
    tls_api: TlsApi, tmp_path: Path
) -> None:
    create_ca(tmp_path / "ca", "Somebody Else's CA")
    issue(tmp_path / "ca", "osi:hh-portal", "Forged portal", tmp_path / "out")

    identity = (tmp_path / "out" / "osi_hh-portal.crt", tmp_path / "out" / "osi_hh-portal.key")
    async with _client(tls_api.server, identity) as client:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            await client.get("/v1/messages/anything")


async def test_a_revoked_client_certificate_is_refused_from_its_next_request(
    tls_api: TlsApi, amqp_url: str, tmp_path: Path
) -> None:
    world = tls_api.world
    pki = world.settings.pki
    cert, key = party_paths(pki, world.settings.broker_kennung)
    # Registration is not what is tested here: every subject counts as registered.
    authenticate = Authenticator(
        TokenTable({}),
        lambda kennung, fingerprint: True,
        # The broker re-reads the CRL folder at most once a second; here at every request.
        good_standing(TrustStore(world.parts.trust.anchors, CrlFolder(pki / "crl", 0.0))),
    )
    issued, issued_key = issue(pki / "ca", "osi:soon-revoked", "Portal, soon revoked", tmp_path)
    async with api_app(world, amqp_url, authenticate) as app:
        server = await serve_api(app, tls=ApiTlsFiles(cert, key, pki / "ca" / "ca.crt"))
        try:
            async with _client(server, (issued, issued_key)) as client:
                before = await client.get("/v1/messages/unknown")
                revoke(pki / "ca", pki / "crl", issued)
                after = await client.get("/v1/messages/unknown")  # same TLS connection
        finally:
            await server.stop()

    assert before.status_code == 404  # authenticated: the message is just not there
    assert after.status_code == 401


async def test_the_api_as_xbroker_run_serves_it_checks_client_certificates(
    tls_api: TlsApi, tmp_path: Path
) -> None:
    world = tls_api.world
    pki = world.settings.pki
    cert, key = party_paths(pki, world.settings.broker_kennung)
    settings = world.settings.model_copy(
        update={
            "api_port": 0,
            "api_tls_cert": cert,
            "api_tls_key": key,
            "api_tls_client_ca": pki / "ca" / "ca.crt",
        }
    )
    parts = Parts(settings, world.parts.catalog, world.parts.directory, world.parts.trust)
    records = open_records(settings)
    running = await start_api(parts, records)
    unregistered = issue(pki / "ca", "osi:hh-portal", "Unregistered portal key", tmp_path)
    try:
        async with _client(running.server, _identity(world, "osi:hh-portal")) as client:
            registered = await client.get("/v1/messages/unknown")
        async with _client(running.server, unregistered) as client:
            refused = await client.get("/v1/messages/unknown")
    finally:
        await running.stop()
        await records.close()

    assert registered.status_code == 404  # in good standing and registered: let in
    assert refused.status_code == 401

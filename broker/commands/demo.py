"""``xbroker demo``: the example world, live (what ``make run`` starts).

Creates the development PKI if absent, starts the broker, one agency consumer per
example agency, and the portal; sends the example submissions (with fresh UUIDs), plus
one signed submission tampered with after signing; prints each receipt as it arrives;
serves metrics; runs until Ctrl-C or SIGTERM, then stops in order.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from lxml import etree
from prometheus_client import CollectorRegistry

from broker import devnode
from broker.app import (
    Parts,
    Records,
    build_broker,
    load_parts,
    open_records,
    party_keys,
    party_signer,
)
from broker.commands._common import run_async, settings_from, wait_for_signal
from broker.commands._receipts import describe_receipt
from broker.commands.subscribe import write_to_folder
from broker.logs import configure_logging
from broker.receipts.document import Receipt
from broker.sdk.agency import AgencyClient, default_seen_path
from broker.sdk.portal import Portal
from broker.settings import Settings
from broker.worker.service import BrokerService
from broker.xta import RunningXta, start_xta, xta_agencies
from broker.xta.running import dev_tls_paths
from monitoring.http import ServerHandle, build_app, serve
from routing import AmqpEndpoint, read_parties
from signing import parse_untrusted
from signing.devpki import init_dev_pki, issue_tls_certificate
from xta_schemas.samples import with_fresh_header

__all__ = ["ensure_dev_pki", "register"]

_DS = "{http://www.w3.org/2000/09/xmldsig#}"
SUBMISSIONS = Path(__file__).resolve().parents[2] / "examples" / "submissions"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("demo", help="run the example world: broker, agencies, portal")
    parser.add_argument("--submissions", type=Path, default=SUBMISSIONS)
    parser.add_argument("--once", action="store_true", help="exit when every submission is final")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.set_defaults(func=_demo)


def ensure_dev_pki(settings: Settings) -> None:
    """The development PKI for the broker and every party of the directory, and the
    XTA endpoint's TLS server certificate (for localhost)."""
    parties = [(settings.broker_kennung, settings.broker_name), *read_parties(settings.directory)]
    init_dev_pki(settings.pki, parties)
    cert, key = dev_tls_paths(settings)
    if not cert.is_file() or not key.is_file():
        issue_tls_certificate(
            settings.pki / "ca",
            "localhost",
            cert,
            key,
            purpose="server",
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1", "::1"],
        )


def _with_local_node_metrics(settings: Settings) -> Settings:
    """Read queue gauges from the project-local node's Prometheus plugin, if that is the
    node in use and no other source is configured."""
    if settings.rabbitmq_metrics_url is not None:
        return settings
    node = devnode.node_status()
    if node is None or urlsplit(settings.amqp_url).port != node.amqp_port:
        return settings
    url = f"http://127.0.0.1:{node.prometheus_port}"
    return settings.model_copy(update={"rabbitmq_metrics_url": url})


def _say(text: str) -> None:
    print(text, flush=True)


def _demo(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    settings = settings_from(args)

    async def main() -> int:
        nonlocal settings
        settings = _with_local_node_metrics(settings)
        ensure_dev_pki(settings)
        parts = load_parts(settings)
        registry = CollectorRegistry()
        records = open_records(settings)
        broker = build_broker(parts, registry, records=records)
        http = await _serve_metrics(registry, broker.readiness, settings)
        await broker.start()
        agencies = []
        for agency in parts.directory:
            if isinstance(agency.endpoint, AmqpEndpoint) and agency.accepts:
                folder = settings.inbox / agency.kennung.replace(":", "_")
                client = AgencyClient(
                    settings.rabbitmq_urls,
                    agency.kennung,
                    party_signer(settings, agency.kennung),
                    parts.verifier(),
                    write_to_folder(folder),
                    confirm_timeout=settings.confirm_timeout_seconds,
                    seen_path=default_seen_path(agency.kennung, settings.state_dir),
                    keys=party_keys(settings, agency.kennung),
                )
                await client.start()
                agencies.append(client)
        _say(f"broker running; {len(agencies)} agencies receiving into {settings.inbox}/")
        xta = await _serve_xta(parts, records, registry, broker)
        boxes = ", ".join(xta_agencies(parts.directory)) or "none"
        _say(f"xta       {xta.url}/services/XTAService/  (message boxes: {boxes}; docs/xta.md)")

        labels: dict[str, str] = {}

        def show(receipt: Receipt) -> None:
            label = labels.get(receipt.nachrichten_uuid, receipt.nachrichten_uuid)
            _say(describe_receipt(receipt, parts.directory, label))

        portal_signer = party_signer(settings, settings.portal_kennung)
        portal = Portal(
            settings.rabbitmq_urls,
            settings.portal_kennung,
            portal_signer,
            parts.verifier(),
            confirm_timeout=settings.confirm_timeout_seconds,
            on_receipt=show,
            catalog=parts.catalog,
        )
        await portal.start()
        uuids: list[str] = []
        try:
            for file in sorted(args.submissions.glob("*.xml")):
                root = parse_untrusted(file.read_bytes())
                standard, _ = parts.catalog.identify(root)
                fresh = with_fresh_header(root, standard)
                uuid = standard.header(fresh).uuid
                labels[uuid] = f"{file.stem:<40}"
                uuids.append(await portal.submit(fresh))
                _say(f"sent      {file.name} ({uuid})")
            tampered, uuid = _tampered(args.submissions, parts, portal_signer.sign)
            if tampered is not None:
                labels[uuid] = f"{'tampered-after-signing':<40}"
                uuids.append(await portal.submit(tampered, sign=False))
                _say(f"sent      a copy of a valid submission altered after signing ({uuid})")
            _say(f"metrics   {http.url}/metrics   health {http.url}/readyz")
            if args.once:
                await asyncio.wait_for(
                    asyncio.gather(*(portal.wait_final(u, args.timeout) for u in uuids)),
                    args.timeout,
                )
                _say("every submission has its final receipt")
            else:
                _say("serving; press Ctrl-C to stop")
                await wait_for_signal()
                _say("stopping")
        finally:
            await portal.close()
            for client in agencies:
                await client.close()
            await xta.stop()
            await broker.stop()
            await http.stop()
            await records.close()
        _say(f"stopped cleanly; Laufzettel: xbroker status <uuid>, audit: {settings.audit_path}")
        return 0

    return run_async(main)


def _tampered(
    folder: Path, parts: Parts, sign: Callable[[etree._Element], bytes]
) -> tuple[bytes | None, str]:
    """A valid submission, signed, then one content value changed: the broker must
    refuse it. Returns the bytes and the submission's UUID."""
    valid = [f for f in sorted(folder.glob("*.xml")) if not f.name.startswith("invalid")]
    if not valid:
        return None, ""
    root = parse_untrusted(valid[0].read_bytes())
    standard, _ = parts.catalog.identify(root)
    fresh = with_fresh_header(root, standard)
    uuid = standard.header(fresh).uuid
    signed = parse_untrusted(sign(fresh))
    texts = [
        e
        for e in signed.iter()
        if isinstance(e.tag, str) and not e.tag.startswith(_DS) and len(e) == 0 and e.text
    ]
    texts[-1].text = f"{texts[-1].text}0"
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8"), uuid


async def _serve_xta(
    parts: Parts, records: Records, registry: CollectorRegistry, broker: BrokerService
) -> RunningXta:
    try:
        return await start_xta(parts, records, registry, broker.metrics, lambda: broker.directory)
    except OSError:
        port = parts.settings.xta_port
        print(f"port {port} is taken; serving XTA on a free port", file=sys.stderr)
        settings = parts.settings.model_copy(update={"xta_port": 0})
        return await start_xta(
            replace(parts, settings=settings),
            records,
            registry,
            broker.metrics,
            lambda: broker.directory,
        )


async def _serve_metrics(
    registry: CollectorRegistry, readiness: Callable[[], Mapping[str, bool]], settings: Settings
) -> ServerHandle:
    app = build_app(registry, readiness)
    try:
        return await serve(app, settings.metrics_host, settings.metrics_port)
    except OSError:
        print(
            f"port {settings.metrics_port} is taken; serving metrics on a free port",
            file=sys.stderr,
        )
        return await serve(app, settings.metrics_host, 0)

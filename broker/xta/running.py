"""The XTA endpoint as the broker runs it: built from the settings, served, stopped.

It runs in the broker's process (`xbroker run` with ``xta_enabled``), beside the HTTP
API: it shares the loop, the directory as reloaded, the status store and the audit
trail, and needs no other process. Its state is in RabbitMQ and the XTA store, so any
number of broker processes can serve XTA for the same agencies (docs/xta.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from broker.amqp import topology
from broker.app import Parts, Records, party_signer
from broker.errors import ConfigurationError
from broker.http_api import ApiServer, ApiTlsFiles, Authenticator, IngressPublisher, TokenTable
from broker.http_api.running import client_standing, connection_limits
from broker.http_api.server import serve_api
from broker.receipts.outbox import ReceiptOutbox
from broker.settings import Settings
from broker.stores.xta import XtaStore
from broker.xta.app import build_xta_app
from broker.xta.box import BoxTiming, MessageBoxes
from broker.xta.index import xta_agencies
from broker.xta.management import ManagementPort
from broker.xta.metrics import XtaMetrics
from broker.xta.msgbox import MsgBoxPort
from broker.xta.mtom import Limits
from broker.xta.send import SendLimits, SendPort
from broker.xta.upkeep import UpkeepPolicy
from monitoring.metrics import Metrics
from routing import Directory
from signing import ParserLimits

__all__ = ["RunningXta", "dev_tls_paths", "start_xta"]


@dataclass(slots=True)
class RunningXta:
    server: ApiServer
    ingress: IngressPublisher
    boxes: MessageBoxes
    store: XtaStore

    @property
    def url(self) -> str:
        return self.server.url

    async def stop(self) -> None:
        await self.server.stop()
        await self.boxes.stop()
        await self.ingress.close()
        self.store.close()


def dev_tls_paths(settings: Settings) -> tuple[Path, Path]:
    """The development PKI's server certificate and key for the endpoint."""
    folder = settings.pki / "tls"
    return folder / "xta-server.crt", folder / "xta-server.key"


def _tls(settings: Settings) -> ApiTlsFiles:
    cert, key = settings.xta_tls_cert, settings.xta_tls_key
    if (cert is None) != (key is None):
        raise ConfigurationError("xta_tls_cert and xta_tls_key go together")
    if cert is None or key is None:
        cert, key = dev_tls_paths(settings)
        if not cert.is_file():
            raise ConfigurationError(
                "the XTA endpoint needs xta_tls_cert and xta_tls_key "
                "(`xbroker pki init` makes development ones)"
            )
    return ApiTlsFiles(cert, key, settings.xta_tls_client_ca or settings.pki / "ca" / "ca.crt")


async def start_xta(
    parts: Parts,
    records: Records,
    registry: CollectorRegistry,
    broker_metrics: Metrics,
    directory: Callable[[], Directory] | None = None,
) -> RunningXta:
    """Serve XTA on ``xta_host:xta_port``; ``directory``: the current directory (default:
    the one loaded at start). The broker's topology must be declared (the worker does)."""
    settings = parts.settings
    current = directory or (lambda: parts.directory)
    tls = _tls(settings)
    assert tls.client_ca is not None
    store = XtaStore(settings.state_dir / "xta.sqlite3")
    metrics = XtaMetrics(registry, xta_agencies(current()))
    outbox = ReceiptOutbox(
        settings.broker_kennung,
        party_signer(settings, settings.broker_kennung),
        broker_metrics,
        settings.confirm_timeout_seconds,
        lambda author: topology.reads_receipts(current(), author),
    )
    journal = records.recorder()
    boxes = MessageBoxes(
        settings.rabbitmq_urls,
        store,
        current,
        parts.verifier(),
        outbox,
        journal,
        metrics,
        broker_metrics,
        UpkeepPolicy(
            expire_after=timedelta(days=settings.expire_after_days),
            max_age=timedelta(seconds=settings.box_max_age_seconds),
            roll_every=timedelta(seconds=settings.xta_box_roll_seconds),
            segment_bytes=settings.xta_box_segment_bytes,
            confirm_timeout=settings.confirm_timeout_seconds,
        ),
        BoxTiming(check_seconds=settings.xta_box_check_seconds),
    )
    ingress = IngressPublisher(
        settings.rabbitmq_urls,
        confirm_timeout=settings.confirm_timeout_seconds,
        name="xbroker-xta",
    )
    try:
        await boxes.start()
        await ingress.start()
        app = build_xta_app(
            send_port=SendPort(
                catalog=parts.catalog,
                status=records.status,
                journal=journal,
                store=store,
                ingress=ingress,
                limits=SendLimits(
                    xml=settings.parser_limits(), queue_limit=settings.ingress_queue_limit
                ),
            ),
            msgbox_port=MsgBoxPort(boxes, settings.xta_max_list_items),
            management_port=ManagementPort(store, records.status, current, settings.broker_kennung),
            authenticate=Authenticator(
                TokenTable({}),
                lambda kennung, fingerprint: current().certificate_registered(kennung, fingerprint),
                client_standing(tls.client_ca, parts),
            ),
            limits=Limits(
                max_envelope=settings.xta_max_envelope_bytes,
                max_part=settings.xta_max_part_bytes,
                max_total=settings.xta_max_request_bytes,
            ),
            envelope_limits=ParserLimits(
                max_bytes=settings.xta_max_envelope_bytes, max_depth=settings.max_xml_depth
            ),
            metrics=metrics,
        )
        server = await serve_api(
            app, settings.xta_host, settings.xta_port, tls, connection_limits(settings)
        )
    except BaseException:
        metrics.unregister()
        await boxes.stop()
        await ingress.close()
        store.close()
        raise
    return RunningXta(server, ingress, boxes, store)

"""``xbroker run``: the broker worker, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import gc
import logging
import time
from datetime import timedelta

from prometheus_client import CollectorRegistry

from broker.app import build_broker, load_parts, open_records
from broker.commands._common import run_async, settings_from, wait_for_signal
from broker.http_api import start_api
from broker.logs import configure_logging, event
from broker.worker.reload import DirectoryWatcher
from broker.worker.retention import Retention
from broker.worker.waiting import WaitingWatch
from broker.xta import start_xta
from monitoring.http import build_app, serve
from xta_schemas import Catalog

__all__ = ["freeze_startup_heap", "prepare_reports", "register"]

log = logging.getLogger("xbroker")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("run", help="run the broker worker until SIGTERM or Ctrl-C")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=_run)


def prepare_reports(catalog: Catalog) -> None:
    """Build every standard's detailed-report schema before the first message.

    xmlschema builds it on first use otherwise, and for a release of XJustiz's size that
    takes seconds in which the worker handles nothing. A standard whose report schema
    cannot be built still validates; its rejections then carry lxml's messages.
    """
    for standard in catalog.standards:
        started = time.perf_counter()
        problem = standard.prepare_report()
        if problem is not None:
            event(
                log,
                "standard.report_fallback",
                logging.WARNING,
                standard=standard.key,
                reason=problem,
            )
        elif (seconds := time.perf_counter() - started) > 1.0:
            event(log, "standard.report_prepared", standard=standard.key, seconds=seconds)


def freeze_startup_heap() -> None:
    """Put what was loaded at start out of the cyclic collector's reach.

    A full collection walks every tracked object, and after start that is about 90,000
    (compiled schemas, trust store, directory, imported modules): 25 ms on an idle core,
    over 150 ms on a busy one, and every message in flight waits for it
    (docs/performance.md, P9). Those objects live as long as the process, so
    ``gc.freeze`` moves them to the permanent generation: collections then walk only what
    messages create. Reference counting still frees frozen objects; only a cycle among
    them would stay (a directory reload leaves its predecessor to reference counting).
    """
    gc.collect()
    gc.freeze()


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    settings = settings_from(args)

    async def main() -> int:
        parts = load_parts(settings)
        prepare_reports(parts.catalog)
        registry = CollectorRegistry()
        records = open_records(settings)
        service = build_broker(parts, registry, records=records)
        freeze_startup_heap()
        http = await serve(
            build_app(registry, service.readiness), settings.metrics_host, settings.metrics_port
        )
        await service.start()
        watcher = DirectoryWatcher(
            settings.directory, settings.party_certificate_dir, service.reload_directory
        )
        watcher.start()
        waiting = WaitingWatch(
            records.status,
            service.metrics,
            warn_after=timedelta(days=settings.warn_after_days),
            interval=settings.waiting_check_seconds,
        )
        waiting.start()
        retention = Retention(
            service.dedup,
            records.status,
            keep_events=timedelta(days=settings.status_retention_days),
            interval=settings.retention_check_seconds,
        )
        retention.start()
        api = await start_api(parts, records) if settings.api_enabled else None
        xta = (
            await start_xta(parts, records, registry, service.metrics, lambda: service.directory)
            if settings.xta_enabled
            else None
        )
        event(
            log,
            "broker.serving",
            metrics=f"{http.url}/metrics",
            api=api.url if api is not None else None,
            xta=xta.url if xta is not None else None,
        )
        try:
            signal_received = await wait_for_signal()
            event(log, "broker.signal", signal=signal_received.name)
        finally:
            if api is not None:  # stop taking submissions before the worker stops
                await api.stop()
            if xta is not None:
                await xta.stop()
            await watcher.stop()
            await waiting.stop()
            await retention.stop()
            await service.stop()
            await http.stop()
            await records.close()
        return 0

    return run_async(main)

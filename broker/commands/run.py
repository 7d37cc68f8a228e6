"""``xbroker run``: the broker worker, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta

from prometheus_client import CollectorRegistry

from broker.app import build_broker, load_parts, open_records
from broker.commands._common import run_async, settings_from, wait_for_signal
from broker.http_api import start_api
from broker.logs import configure_logging, event
from broker.reload import DirectoryWatcher
from broker.waiting import WaitingWatch
from monitoring.http import build_app, serve

__all__ = ["register"]

log = logging.getLogger("xbroker")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("run", help="run the broker worker until SIGTERM or Ctrl-C")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    settings = settings_from(args)

    async def main() -> int:
        parts = load_parts(settings)
        registry = CollectorRegistry()
        records = open_records(settings)
        service = build_broker(parts, registry, records=records)
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
        api = await start_api(parts, records) if settings.api_enabled else None
        event(
            log,
            "broker.serving",
            metrics=f"{http.url}/metrics",
            api=api.url if api is not None else None,
        )
        try:
            signal_received = await wait_for_signal()
            event(log, "broker.signal", signal=signal_received.name)
        finally:
            if api is not None:  # stop taking submissions before the worker stops
                await api.stop()
            await watcher.stop()
            await waiting.stop()
            await service.stop()
            await http.stop()
            records.close()
        return 0

    return run_async(main)

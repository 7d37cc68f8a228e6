"""``xbroker run``: the broker worker, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import gc
import logging
import os
import signal
import time
from datetime import timedelta

from prometheus_client import CollectorRegistry

from broker.app import Parts, Records, build_broker, load_parts, open_records
from broker.commands._common import run_async, settings_from
from broker.commands.signals import SIGNALS, StopSignal
from broker.http_api import start_api
from broker.logs import configure_logging, event
from broker.settings import Settings
from broker.stores.sqlite.guard import left_open
from broker.worker.reload import DirectoryWatcher
from broker.worker.retention import Retention
from broker.worker.service import BrokerService
from broker.worker.waiting import WaitingWatch
from broker.xta import start_xta
from monitoring.http import build_app, serve
from xta_schemas import Catalog

__all__ = ["freeze_startup_heap", "prepare_reports", "register", "return_large_allocations"]

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


def return_large_allocations(threshold: int) -> bool:
    """Have glibc map every allocation of ``threshold`` bytes or more on its own, and
    trim the heap's free top beyond it, so that the memory of a large message goes back
    to the system once the message is done.

    glibc's default threshold starts at 128 KB but rises to the size of the largest
    mapped block freed (up to 32 MB): after the first multi-megabyte message, the buffers
    of the next ones come from the heap, and a heap keeps what it once held. Fixed at
    ``threshold`` it stays there; each large buffer then costs fresh pages, which is
    what the throughput pays (docs/performance.md, P18). 0, or a C library other than
    glibc, leaves the allocator as it is. Whether it was set.
    """
    if threshold <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, threshold)) and bool(mallopt(m_trim_threshold, threshold))


def _run(args: argparse.Namespace) -> int:
    # Signals first: a SIGTERM at any later moment of the start asks for a clean stop.
    stop = StopSignal.install()
    configure_logging(args.log_level)
    # A crash that Python cannot catch (SIGSEGV, SIGBUS, SIGABRT) still leaves a trace.
    faulthandler.enable()
    event(log, "broker.starting", pid=os.getpid())
    settings = settings_from(args)
    if return_large_allocations(settings.malloc_mmap_threshold_bytes):
        event(log, "malloc.threshold_set", bytes=settings.malloc_mmap_threshold_bytes)
    code = run_async(lambda: _serve(settings, stop))
    # Stopped: what is left is the interpreter's teardown, which puts the default
    # handlers back; a late SIGTERM must not turn a clean stop into exit -15.
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if left_open():
        # A store whose files turned unwritable could not be closed; closing it at the
        # interpreter's teardown would checkpoint through a dead mapping (SIGBUS).
        logging.shutdown()
        os._exit(code)
    return code


async def _serve(settings: Settings, stop: StopSignal) -> int:
    # Until the first await, the loop does not run: a signal is seen by the plain
    # handler at once, and the steps below check for it between them.
    parts = load_parts(settings)
    if not stop.requested:
        prepare_reports(parts.catalog)
    if stop.requested:
        _log_signal(stop)
        return 0
    registry = CollectorRegistry()
    records = open_records(settings)
    try:
        service = build_broker(parts, registry, records=records)
    except BaseException:
        await records.close()
        raise
    freeze_startup_heap()
    stop.attach()
    try:
        await _run_service(settings, parts, records, service, registry, stop)
    finally:
        stop.detach()
        await records.close()
    return 0


async def _run_service(
    settings: Settings,
    parts: Parts,
    records: Records,
    service: BrokerService,
    registry: CollectorRegistry,
    stop: StopSignal,
) -> None:
    served, http = await stop.until(
        serve(
            build_app(registry, service.readiness, service.not_ready_because),
            settings.metrics_host,
            settings.metrics_port,
        )
    )
    if not served or http is None:
        _log_signal(stop)
        return
    watcher = DirectoryWatcher(
        settings.directory,
        settings.party_certificate_dir,
        service.reload_directory,
        certificates=parts.certificates,
    )
    waiting = WaitingWatch(
        records.status,
        service.metrics,
        warn_after=timedelta(days=settings.warn_after_days),
        interval=settings.waiting_check_seconds,
    )
    retention = Retention(
        service.dedup,
        records.status,
        keep_events=timedelta(days=settings.status_retention_days),
        interval=settings.retention_check_seconds,
    )
    api = None
    xta = None
    try:
        started, _ = await stop.until(service.start())
        if not started:
            return
        watcher.start()
        waiting.start()
        retention.start()
        if settings.api_enabled:
            _, api = await stop.until(start_api(parts, records))
        if settings.xta_enabled and not stop.requested:
            _, xta = await stop.until(
                start_xta(parts, records, registry, service.metrics, lambda: service.directory)
            )
        if not stop.requested:
            event(
                log,
                "broker.serving",
                metrics=f"{http.url}/metrics",
                api=api.url if api is not None else None,
                xta=xta.url if xta is not None else None,
            )
            await stop.wait()
    finally:
        _log_signal(stop)
        if api is not None:  # stop taking submissions before the worker stops
            await api.stop()
        if xta is not None:
            await xta.stop()
        await watcher.stop()
        await waiting.stop()
        await retention.stop()
        await service.stop()
        await http.stop()


def _log_signal(stop: StopSignal) -> None:
    if stop.received is not None:
        event(log, "broker.signal", signal=stop.received.name)

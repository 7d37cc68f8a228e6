"""Reload the directory and the CRLs when their files change, without a restart.

The pipeline reads neither: it decides with the directory and the CRL snapshot it is
handed. These watchers do the reading, as tasks of the worker's loop off the path of
messages, and hand over what they read whole, so a message is decided under one version.

The directory is read in a thread (a country's directory takes seconds of CPU), with the
certificate files of earlier reads kept, so only changed files are read again. A
directory file that does not load is reported and ignored: the broker keeps routing
with the directory it has, so a typo never takes the service down. It is also read again
on SIGHUP. The CRL folder is looked at every second and read again when its listing
changes; an unreadable CRL file counts as absent (`signing.crl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from broker.errors import ConfigurationError
from broker.logs import event
from broker.worker.periodic import Periodic
from routing import CertificateFiles, Directory, DirectoryError
from signing import TrustStore

__all__ = ["CrlWatcher", "DirectoryWatcher"]

log = logging.getLogger("xbroker.directory")
crl_log = logging.getLogger("xbroker.crl")


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """No cyclic garbage collection while a large structure is built.

    Reading a country's directory makes a few hundred thousand objects (the TOML, the
    models, the indexes); each full collection on the way walks all of them again, which
    was a third of a 20,000-agency reload's CPU (docs/performance.md, P15). Reference
    counting still frees what the load drops; cycles wait for the collection after it.
    The collector is process-wide: if it was already off, it stays off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class DirectoryWatcher:
    """Polls the directory file's modification time and listens for SIGHUP."""

    def __init__(
        self,
        path: Path,
        certificate_dir: Path,
        apply: Callable[[Directory], Awaitable[None]],
        *,
        interval: float = 2.0,
        certificates: CertificateFiles | None = None,
    ) -> None:
        self._path = path
        self._certificate_dir = certificate_dir
        self._apply = apply
        self._interval = interval
        self._stamp = self._current_stamp()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # A reload reads only the certificate files changed since the last load (the
        # start's, when whoever loaded it hands over its files).
        self._certificates = certificates if certificates is not None else CertificateFiles()
        self.failures = 0

    def start(self, *, sighup: bool = True) -> None:
        if sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._wake.set)
        self._task = asyncio.create_task(self._run(), name="directory-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    async def reload(self) -> bool:
        """Load the file now and apply it; False (and the old directory kept) if invalid,
        or if applying refuses it (a sealed agency without a valid encryption key)."""
        self._stamp = self._current_stamp()
        try:
            # Seconds of CPU for a country's directory: in a thread, so that the loop
            # carrying every message in flight does not stop for it.
            directory = await asyncio.to_thread(self._load)
            await self._apply(directory)
        except (DirectoryError, ConfigurationError) as exc:
            self.failures += 1
            event(log, "directory.invalid", logging.ERROR, error=str(exc))
            return False
        return True

    def _load(self) -> Directory:
        with collections_paused():
            return Directory.load(
                self._path, self._certificate_dir, certificates=self._certificates
            )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            forced = self._wake.is_set()
            self._wake.clear()
            if forced or self._current_stamp() != self._stamp:
                await self.reload()

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)


class CrlWatcher:
    """Hands the trust store a new CRL snapshot when its folder changed."""

    def __init__(self, trust: TrustStore, *, interval: float = 1.0) -> None:
        if trust.crl_folder is None:
            raise ValueError("the trust store has no CRL folder to watch")
        self._trust = trust
        self._folder = trust.crl_folder
        # A task that died of a failed look would leave the broker on old CRLs for good.
        self._periodic = Periodic("crl.refresh", self.refresh, interval, crl_log)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def refresh(self) -> bool:
        """Look at the folder now; True if a new snapshot is in use."""
        # Reading and parsing CRLs is file I/O and CPU: a thread keeps the loop free
        # for messages. The swap itself happens here, on the loop, between two messages.
        fresh = await asyncio.to_thread(self._folder.poll)
        if fresh is None:
            return False
        self._trust.use_crls(fresh)
        event(crl_log, "crl.reloaded", folder=str(self._folder.path))
        return True

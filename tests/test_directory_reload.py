"""The directory is reloaded without a restart; a broken file never replaces a good one."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.errors import Reason
from broker.worker.reload import DirectoryWatcher, collections_paused
from monitoring.labels import ReceiptKind
from routing import CertificateFiles, Directory
from signing.devpki import issue, setup_ca
from tests.polling import eventually
from tests.world import EXAMPLES, World, running_world

TIMEOUT = 30.0


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


async def test_watcher_applies_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    _write(path, '[[agency]]\nkennung = "psw:1"\nname = "A"\n')
    applied: list[Directory] = []

    async def apply(directory: Directory) -> None:
        applied.append(directory)

    watcher = DirectoryWatcher(path, tmp_path, apply, interval=0.05)
    watcher.start(sighup=False)
    try:
        _write(
            path,
            '[[agency]]\nkennung = "psw:1"\nname = "A"\n\n'
            '[[agency]]\nkennung = "psw:2"\nname = "B"\n',
        )
        await eventually(lambda: applied, what="the changed directory applied")
    finally:
        await watcher.stop()

    assert sorted(a.kennung for a in applied[-1]) == ["psw:1", "psw:2"]


async def test_watcher_keeps_the_old_directory_when_the_new_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    _write(path, '[[agency]]\nkennung = "psw:1"\nname = "A"\n')
    applied: list[Directory] = []

    async def apply(directory: Directory) -> None:
        applied.append(directory)

    watcher = DirectoryWatcher(path, tmp_path, apply)
    _write(path, '[[agency]]\nkennung = "not a kennung"\nname = "A"\n')

    assert await watcher.reload() is False
    assert applied == []
    assert watcher.failures == 1


async def test_the_first_reload_reads_no_certificate_file_the_start_read(tmp_path: Path) -> None:
    setup_ca(tmp_path / "pki")
    crt, _ = issue(tmp_path / "pki" / "ca", "psw:1", "A", tmp_path, "ec")
    path = tmp_path / "directory.toml"
    _write(path, f'[[agency]]\nkennung = "psw:1"\nname = "A"\ncertificates = ["{crt.name}"]\n')
    started = CertificateFiles()
    at_start = Directory.load(path, tmp_path, certificates=started)
    applied: list[Directory] = []

    async def apply(directory: Directory) -> None:
        applied.append(directory)

    watcher = DirectoryWatcher(path, tmp_path, apply, certificates=started)
    assert await watcher.reload() is True

    # The same parsed certificate: taken from the start's files, not read again.
    assert applied[0].get("psw:1").certificates[0] is at_start.get("psw:1").certificates[0]


def test_collections_paused_restores_the_collector_as_it_found_it() -> None:
    assert gc.isenabled()
    with collections_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collections_paused():
            pass
        assert not gc.isenabled()  # it was off: left off
    finally:
        gc.enable()


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("state")) as running:
        yield running


@pytest.mark.rabbitmq
async def test_messages_after_a_reload_are_routed_by_the_new_directory(
    world: World, tmp_path: Path
) -> None:
    before = await world.portal.submit(world.fresh("anmeldung-norderstedt.xml"))
    await world.portal.wait_final(before, TIMEOUT)
    reduced = tmp_path / "directory.toml"
    text = (EXAMPLES / "directory.toml").read_text(encoding="utf-8")
    _write(reduced, text.replace('regions = ["01060063"]', "regions = []"))

    await world.broker.reload_directory(
        Directory.load(reduced, world.settings.party_certificate_dir)
    )
    after = await world.portal.submit(world.fresh("anmeldung-norderstedt.xml"))
    state = await world.portal.wait_final(after, TIMEOUT)

    assert world.receivers_of(before) == ["psw:01060063"]
    assert [r.kind for r in state.receipts] == [ReceiptKind.REJECTED]
    assert state.receipts[0].reason is Reason.NO_ROUTE

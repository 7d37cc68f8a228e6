"""The worker's CRL watcher: a changed CRL folder reaches the trust store off the hot path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from broker.errors import Reason
from broker.worker.reload import CrlWatcher
from signing import RevocationStatus, SignatureError, TrustStore, load_certificate
from signing.devpki import init_dev_pki, revoke
from signing.keyfiles import party_paths
from tests.polling import eventually

PORTAL = "osi:hh-portal"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    init_dev_pki(tmp_path, [(PORTAL, "Portal")])
    return tmp_path


def _leaf(pki: Path) -> x509.Certificate:
    return load_certificate(party_paths(pki, PORTAL)[0])


def _verdict(store: TrustStore, leaf: x509.Certificate) -> RevocationStatus | Reason:
    try:
        return store.validate(leaf, at=datetime.now(UTC)).revocation
    except SignatureError as exc:
        return exc.reason


async def test_a_refresh_hands_the_trust_store_the_changed_folder(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    watcher = CrlWatcher(store)
    assert not await watcher.refresh()
    revoke(pki / "ca", pki / "crl", _leaf(pki))

    assert await watcher.refresh()

    assert _verdict(store, _leaf(pki)) is Reason.CERTIFICATE_REVOKED


async def test_the_running_watcher_picks_up_a_revocation(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    leaf = _leaf(pki)
    assert _verdict(store, leaf) is RevocationStatus.GOOD
    watcher = CrlWatcher(store, interval=0.05)
    watcher.start()
    try:
        revoke(pki / "ca", pki / "crl", leaf)
        await eventually(
            lambda: _verdict(store, leaf) is not RevocationStatus.GOOD,
            what="the revocation seen by the trust store",
        )
    finally:
        await watcher.stop()

    assert _verdict(store, leaf) is Reason.CERTIFICATE_REVOKED


def test_a_trust_store_without_a_crl_folder_has_nothing_to_watch(pki: Path) -> None:
    with pytest.raises(ValueError, match="no CRL folder"):
        CrlWatcher(TrustStore.from_dirs(pki / "trust"))

"""Specification of CertificateCache: KeyInfo certificates are read once per sender."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import Reason
from signing import SignatureError, fingerprint, load_certificate
from signing.certcache import CertificateCache
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> str:
    pki: Path = tmp_path_factory.mktemp("pki")
    init_dev_pki(pki, [("psw:02000000", "Portal")])
    cert = load_certificate(party_paths(pki, "psw:02000000")[0])
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


def test_the_same_text_is_parsed_once(text: str) -> None:
    cache = CertificateCache()
    assert cache.get((text,)) is cache.get((text,))


def test_an_entry_names_the_leaf_its_fingerprint_and_kennung(text: str) -> None:
    found = CertificateCache().get((text,))
    assert found.fingerprint == fingerprint(found.leaf)
    assert found.subject_kennung == "psw:02000000"
    assert found.public_key == found.leaf.public_key()


def test_the_least_recently_used_entry_leaves_a_full_cache(text: str) -> None:
    cache = CertificateCache(size=1)
    first = cache.get((text,))
    cache.get((text + "\n",))  # the same certificate, another text: another entry
    assert len(cache) == 1
    assert cache.get((text,)) is not first


def test_an_oversized_text_is_parsed_but_not_kept(text: str) -> None:
    cache = CertificateCache()
    padded = text + " " * 100_000
    assert cache.get((padded,)).subject_kennung == "psw:02000000"
    assert len(cache) == 0


def test_an_unreadable_certificate_is_signature_invalid_and_not_kept() -> None:
    cache = CertificateCache()
    with pytest.raises(SignatureError) as caught:
        cache.get(("bm90IGEgY2VydGlmaWNhdGU=",))
    assert caught.value.reason is Reason.SIGNATURE_INVALID
    assert len(cache) == 0


def test_every_damaged_byte_of_a_certificate_is_read_or_signature_invalid(text: str) -> None:
    # cryptography parses some fields only when read; none may fail later, elsewhere.
    der = base64.b64decode(text)
    refused = 0
    for position in range(len(der)):
        damaged = der[:position] + bytes([der[position] ^ 0x20]) + der[position + 1 :]
        try:
            CertificateCache().get((base64.b64encode(damaged).decode(),))
        except SignatureError as exc:
            assert exc.reason is Reason.SIGNATURE_INVALID
            refused += 1
    assert refused > 0

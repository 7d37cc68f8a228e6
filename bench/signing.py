"""Micro benchmark of signature verification against the floor measured in the same run.

The floor is the work no verifier can avoid: exclusive c14n of the document, SHA-256 of
it, and one public-key verification, done directly with lxml and cryptography. The
distance between floor and ``Verifier`` is what parsing, shape checks, trust lookups and
the copy of the tree cost. ``signxml`` is the same verification done by signxml, the
reference implementation (shape, trust, then ``signing.reference``): what ``Verifier``
cost before it verified on the parsed tree.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from signing import Signer, TrustStore, Verifier, parse_untrusted
from signing.devpki import KeyType, issue, setup_ca
from signing.reference import verify_with_signxml
from signing.structure import inspect_signature

__all__ = ["run", "verify_public_key"]

_ITEMS = "".join(
    f"<x:position nr='{i}'><x:bezeichnung>Posten {i}</x:bezeichnung>"
    f"<x:betrag waehrung='EUR'>{i * 17 % 1000}.00</x:betrag></x:position>"
    for i in range(20)
)
MESSAGE = (
    '<x:nachricht xmlns:x="urn:xoev-de:bench:1.0">'
    "<x:nachrichtenkopf><x:identifikation>5e0f6a3e-2f44-4c1b-9d7e-0b9a6c1c1f00"
    "</x:identifikation><x:autor>psw:02000000</x:autor><x:leser>dst:09162000</x:leser>"
    "</x:nachrichtenkopf><x:inhalt>" + _ITEMS + "</x:inhalt></x:nachricht>"
).encode()


def verify_public_key(key: object, raw: bytes, signed_info: bytes) -> None:
    """The one public-key check of the floor: RSA PKCS#1 v1.5 or ECDSA (raw r || s), SHA-256."""
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(raw, signed_info, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePublicKey):
        half = len(raw) // 2
        der = encode_dss_signature(int.from_bytes(raw[:half]), int.from_bytes(raw[half:]))
        key.verify(der, signed_info, ec.ECDSA(hashes.SHA256()))


def _rate(action: Callable[[], object], n: int) -> float:
    action()  # warm caches (trust store, lxml) before timing
    started = time.perf_counter()
    for _ in range(n):
        action()
    return n / (time.perf_counter() - started)


def _floor(signed: bytes, signer: Signer) -> Callable[[], object]:
    root = parse_untrusted(signed)
    signature = root[-1]
    signed_info = etree.tostring(signature[0], method="c14n", exclusive=True)
    value = signature.findtext("{http://www.w3.org/2000/09/xmldsig#}SignatureValue") or ""
    raw = base64.b64decode(value)
    key = signer.certificate.public_key()
    unsigned = parse_untrusted(MESSAGE)

    def once() -> object:
        document = etree.fromstring(signed)
        hashlib.sha256(etree.tostring(unsigned, method="c14n", exclusive=True)).digest()
        verify_public_key(key, raw, signed_info)
        return document

    return once


def run(quick: bool) -> dict[str, float]:
    """Measure verifications/s for RSA-3072 and ECDSA P-256, each next to its floor."""
    n = 100 if quick else 1000
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="xbroker-bench-") as tmp:
        pki = Path(tmp)
        setup_ca(pki)
        verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))
        at = datetime.now(UTC)
        key_types: tuple[tuple[str, KeyType], ...] = (("rsa3072", "rsa"), ("ecdsa_p256", "ec"))
        for label, key_type in key_types:
            cert, key = issue(pki / "ca", "psw:02000000", "Bench", pki / label, key_type=key_type)
            signer = Signer.from_files(key, cert)
            signed = signer.sign(MESSAGE)

            def sign(signer: Signer = signer) -> object:
                return signer.sign(MESSAGE)

            def verify(signed: bytes = signed) -> object:
                return verifier.verify(parse_untrusted(signed), at=at)

            def reference(signed: bytes = signed) -> object:
                root = parse_untrusted(signed)
                shape = inspect_signature(root, verifier.policy)
                verifier.trust.validate(shape.leaf, shape.intermediates, at=at)
                return verify_with_signxml(root, shape.leaf, verifier.policy, at)

            results[f"{label}_sign_per_s"] = _rate(sign, n // 2)
            results[f"{label}_verify_per_s"] = _rate(verify, n)
            results[f"{label}_signxml_per_s"] = _rate(reference, n)
            results[f"{label}_floor_per_s"] = _rate(_floor(signed, signer), n)
    print(f"signing benchmark ({len(MESSAGE)} byte message, {n} verifications each)")
    for label in ("rsa3072", "ecdsa_p256"):
        rate, floor = results[f"{label}_verify_per_s"], results[f"{label}_floor_per_s"]
        print(
            f"  {label:<11} verify {rate:8.0f}/s ({1e6 / rate:5.0f} us)   "
            f"floor {floor:8.0f}/s ({1e6 / floor:5.0f} us, verify at {rate / floor:5.1%})   "
            f"signxml {results[f'{label}_signxml_per_s']:7.0f}/s   "
            f"sign {results[f'{label}_sign_per_s']:7.0f}/s "
            f"({1e6 / results[f'{label}_sign_per_s']:4.0f} us)"
        )
    return results


if __name__ == "__main__":
    run(quick=True)

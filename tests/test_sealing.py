"""Sealing (JWE) as a specification: the profile, what opens, what does not, and why.

No RabbitMQ: the seal and its failures as pure functions, and the keys' certificates
against a trust store made for the test.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import jwcrypto.jwe
import jwcrypto.jwk
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import DeliveryFailure, Reason
from sealing import (
    SEALED_CONTENT_TYPE,
    KeyAlgorithm,
    KeyRing,
    RecipientKey,
    SealLimits,
    UnsealError,
    kid_of,
    seal,
    unseal,
)
from signing import KeyPurpose, SignatureError, TrustStore, load_certificate
from signing.devpki import issue, issue_encryption, revoke, setup_ca
from signing.keyfiles import encryption_paths

AGENCY = "psw:02000000"
XML = b"<?xml version='1.0'?><nachricht>Inhalt</nachricht>"
LIMITS = SealLimits(1024 * 1024)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    setup_ca(root)
    issue_encryption(root / "ca", AGENCY, "Meldebehörde", root)  # RSA
    issue_encryption(root / "ca", AGENCY, "Meldebehörde", root, key_type="ec")
    issue(root / "ca", AGENCY, "Meldebehörde", root / "parties", key_type="ec")
    return root


@pytest.fixture(scope="module")
def rsa_pair(pki: Path) -> tuple[RecipientKey, KeyRing]:
    cert, key = encryption_paths(pki, AGENCY)[0]
    return RecipientKey.from_file(cert), KeyRing.from_files([key])


@pytest.fixture(scope="module")
def ec_pair(pki: Path) -> tuple[RecipientKey, KeyRing]:
    cert, key = encryption_paths(pki, AGENCY)[1]
    return RecipientKey.from_file(cert), KeyRing.from_files([key])


def _header(token: bytes) -> dict[str, object]:
    segment = token.split(b".")[0]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    )
    return decoded


def test_an_rsa_key_gets_fit_connect_s_profile(rsa_pair: tuple[RecipientKey, KeyRing]) -> None:
    recipient, ring = rsa_pair

    token = seal(XML, recipient)

    assert _header(token) == {
        "alg": "RSA-OAEP-256",
        "enc": "A256GCM",
        "kid": recipient.kid,
        "cty": "application/xml",
    }
    assert token.count(b".") == 4  # compact serialisation
    assert unseal(token, ring, LIMITS).plaintext == XML


def test_an_ec_key_is_sealed_for_with_ecdh_es_a256kw(ec_pair: tuple[RecipientKey, KeyRing]) -> None:
    recipient, ring = ec_pair

    token = seal(XML, recipient, content_type="application/vnd.xbroker.bundle")
    opened = unseal(token, ring, LIMITS)

    assert recipient.algorithm is KeyAlgorithm.ECDH_ES_A256KW
    assert _header(token)["alg"] == "ECDH-ES+A256KW"
    assert (opened.plaintext, opened.content_type, opened.kid) == (
        XML,
        "application/vnd.xbroker.bundle",
        recipient.kid,
    )


def test_two_seals_of_the_same_content_differ(rsa_pair: tuple[RecipientKey, KeyRing]) -> None:
    recipient, _ = rsa_pair

    assert seal(XML, recipient) != seal(XML, recipient)


def test_the_kid_is_the_jwk_thumbprint_of_the_public_key(
    rsa_pair: tuple[RecipientKey, KeyRing],
) -> None:
    recipient, ring = rsa_pair
    public = jwcrypto.jwk.JWK.from_pyca(recipient.certificate.public_key())

    assert recipient.kid == public.thumbprint() == kid_of(seal(XML, recipient))
    assert list(ring) == [recipient.kid]


def test_a_key_ring_without_the_key_refuses_with_seal_key_unknown(
    rsa_pair: tuple[RecipientKey, KeyRing], ec_pair: tuple[RecipientKey, KeyRing]
) -> None:
    recipient, _ = rsa_pair
    _, other_ring = ec_pair

    with pytest.raises(UnsealError) as caught:
        unseal(seal(XML, recipient), other_ring, LIMITS)

    assert caught.value.reason is Reason.SEAL_KEY_UNKNOWN
    assert recipient.kid in caught.value.detail


def test_a_key_ring_of_two_opens_what_was_sealed_for_either(
    rsa_pair: tuple[RecipientKey, KeyRing], ec_pair: tuple[RecipientKey, KeyRing], pki: Path
) -> None:
    ring = KeyRing.from_files(key for _, key in encryption_paths(pki, AGENCY))

    for recipient in (rsa_pair[0], ec_pair[0]):
        assert unseal(seal(XML, recipient), ring, LIMITS).kid == recipient.kid


@pytest.mark.parametrize("part", [1, 2, 3, 4], ids=["wrapped-key", "iv", "ciphertext", "tag"])
def test_a_corrupted_part_refuses_with_seal_invalid(
    rsa_pair: tuple[RecipientKey, KeyRing], part: int
) -> None:
    recipient, ring = rsa_pair
    parts = seal(XML, recipient).split(b".")
    flipped = bytearray(base64.urlsafe_b64decode(parts[part] + b"=" * (-len(parts[part]) % 4)))
    flipped[len(flipped) // 2] ^= 0x01
    parts[part] = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=")

    with pytest.raises(UnsealError) as caught:
        unseal(b".".join(parts), ring, LIMITS)

    assert caught.value.reason is Reason.SEAL_INVALID


@pytest.mark.parametrize(
    "token",
    [b"", b"not a jwe", b"a.b.c", b"!!!!.b.c.d.e", base64.urlsafe_b64encode(b"[1]") + b".b.c.d.e"],
)
def test_what_is_no_compact_jwe_refuses_with_seal_invalid(
    rsa_pair: tuple[RecipientKey, KeyRing], token: bytes
) -> None:
    with pytest.raises(UnsealError) as caught:
        unseal(token, rsa_pair[1], LIMITS)

    assert caught.value.reason is Reason.SEAL_INVALID


def _jwcrypto_seal(recipient: RecipientKey, header: dict[str, str], plaintext: bytes) -> bytes:
    made = jwcrypto.jwe.JWE(plaintext, protected=json.dumps({**header, "kid": recipient.kid}))
    made.add_recipient(jwcrypto.jwk.JWK.from_pyca(recipient.certificate.public_key()))
    return str(made.serialize(compact=True)).encode()


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "zip": "DEF"},
        {"alg": "RSA-OAEP-256", "enc": "A128CBC-HS256"},
        {"alg": "RSA-OAEP", "enc": "A256GCM"},
    ],
    ids=["compressed", "other-content-encryption", "other-key-wrapping"],
)
def test_a_jwe_outside_the_profile_refuses_with_seal_invalid(
    rsa_pair: tuple[RecipientKey, KeyRing], header: dict[str, str]
) -> None:
    recipient, ring = rsa_pair
    token = _jwcrypto_seal(recipient, header, XML)

    with pytest.raises(UnsealError) as caught:
        unseal(token, ring, LIMITS)

    assert caught.value.reason is Reason.SEAL_INVALID


def test_a_sealed_message_over_the_limit_is_refused_before_it_is_opened(
    rsa_pair: tuple[RecipientKey, KeyRing],
) -> None:
    recipient, ring = rsa_pair
    small = SealLimits(1024)
    token = seal(b"x" * 8192, recipient)

    with pytest.raises(UnsealError, match="larger than") as caught:
        unseal(token, ring, small)

    assert len(token) > small.max_sealed_bytes
    assert caught.value.reason is Reason.SEAL_INVALID


def test_a_plaintext_one_byte_over_the_limit_is_refused_before_it_is_decrypted(
    rsa_pair: tuple[RecipientKey, KeyRing],
) -> None:
    recipient, ring = rsa_pair
    limits = SealLimits(3000)
    token = seal(b"x" * 3001, recipient)

    with pytest.raises(UnsealError, match="larger than the limit of 3000 bytes"):
        unseal(token, ring, limits)
    assert len(token) <= limits.max_sealed_bytes  # the ciphertext's own bound caught it
    assert unseal(seal(b"x" * 3000, recipient), ring, limits).plaintext == b"x" * 3000


def test_a_small_rsa_key_is_no_encryption_key() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)

    with pytest.raises(Exception, match="2048 bits"):
        KeyRing.from_pem([_pem(small)])


def test_a_seal_failure_becomes_the_copy_s_delivery_failure() -> None:
    assert DeliveryFailure.of_seal(Reason.SEAL_KEY_UNKNOWN) is DeliveryFailure.COPY_SEAL_KEY_UNKNOWN
    assert DeliveryFailure.of_seal(Reason.SEAL_INVALID) is DeliveryFailure.COPY_SEAL_INVALID
    with pytest.raises(ValueError):
        DeliveryFailure.of_seal(Reason.NO_ROUTE)


def test_the_sealed_media_type_is_jose() -> None:
    assert SEALED_CONTENT_TYPE == "application/jose"


# the keys' certificates


def test_an_encryption_certificate_is_valid_for_encryption_only(pki: Path) -> None:
    trust = TrustStore.from_dirs(pki / "trust", pki / "crl")
    encryption = load_certificate(encryption_paths(pki, AGENCY)[0][0])
    signing = load_certificate(pki / "parties" / "psw_02000000.crt")
    now = datetime.now(UTC)

    trust.validate(encryption, at=now, purpose=KeyPurpose.ENCRYPTION)
    trust.validate(signing, at=now, purpose=KeyPurpose.SIGNATURE)
    with pytest.raises(SignatureError, match="no trusted chain"):
        trust.validate(encryption, at=now, purpose=KeyPurpose.SIGNATURE)
    with pytest.raises(SignatureError, match="no trusted chain"):
        trust.validate(signing, at=now, purpose=KeyPurpose.ENCRYPTION)


def test_a_revoked_encryption_certificate_is_refused(tmp_path: Path) -> None:
    setup_ca(tmp_path)
    cert, _ = issue_encryption(tmp_path / "ca", AGENCY, "Meldebehörde", tmp_path)
    revoke(tmp_path / "ca", tmp_path / "crl", cert)
    trust = TrustStore.from_dirs(tmp_path / "trust", tmp_path / "crl")

    with pytest.raises(SignatureError, match="revoked"):
        trust.validate(load_certificate(cert), at=datetime.now(UTC), purpose=KeyPurpose.ENCRYPTION)


def test_a_second_encryption_key_is_kept_beside_the_first(tmp_path: Path) -> None:
    setup_ca(tmp_path)
    first = issue_encryption(tmp_path / "ca", AGENCY, "Meldebehörde", tmp_path)
    second = issue_encryption(tmp_path / "ca", AGENCY, "Meldebehörde", tmp_path)

    assert [p.name for p in first + second] == [
        "psw_02000000.enc.crt",
        "psw_02000000.enc.key",
        "psw_02000000.enc.2.crt",
        "psw_02000000.enc.2.key",
    ]
    assert encryption_paths(tmp_path, AGENCY) == [first, second]

"""Verification through an intermediate CA carried in the signature's KeyInfo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from broker.errors import Reason
from signing import SignatureError, Signer, TrustStore, Verifier, parse_untrusted

DS = "{http://www.w3.org/2000/09/xmldsig#}"
DOC = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'


@dataclass(frozen=True)
class Chain:
    trust_dir: Path
    signer: Signer


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    now = datetime.now(UTC)
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("Root"))
        .issuer_name(_name("Root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    intermediate = _cert("Intermediate", inter_key, "Root", root_key, ca=True)
    leaf = _cert("psw:02000000", leaf_key, "Intermediate", inter_key, ca=False)
    trust_dir = tmp_path_factory.mktemp("trust")
    (trust_dir / "root.crt").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return Chain(trust_dir, Signer(leaf_key, leaf, [intermediate]))


def test_signer_puts_leaf_and_intermediate_into_key_info(chain: Chain) -> None:
    root = parse_untrusted(chain.signer.sign(DOC))
    assert len(root.findall(f".//{DS}X509Certificate")) == 2


def test_leaf_under_an_intermediate_verifies(chain: Chain) -> None:
    verifier = Verifier(TrustStore.from_dirs(chain.trust_dir))
    result = verifier.verify(parse_untrusted(chain.signer.sign(DOC)), at=datetime.now(UTC))
    assert result.certificate == chain.signer.certificate
    assert result.subject_kennung == "psw:02000000"


def test_certificate_order_in_key_info_does_not_matter(chain: Chain) -> None:
    root = parse_untrusted(chain.signer.sign(DOC))
    x509_data = root.find(f".//{DS}X509Data")
    assert x509_data is not None
    x509_data.append(x509_data[0])  # leaf moves behind the intermediate
    # KeyInfo is outside SignedInfo, so reordering it leaves the signature intact.
    verifier = Verifier(TrustStore.from_dirs(chain.trust_dir))
    assert verifier.verify(
        parse_untrusted(etree.tostring(root)), at=datetime.now(UTC)
    ).certificate == (chain.signer.certificate)


def test_without_the_intermediate_the_leaf_is_untrusted(chain: Chain) -> None:
    root = parse_untrusted(chain.signer.sign(DOC))
    x509_data = root.find(f".//{DS}X509Data")
    assert x509_data is not None
    x509_data.remove(x509_data[1])
    with pytest.raises(SignatureError) as caught:
        Verifier(TrustStore.from_dirs(chain.trust_dir)).verify(root, at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED

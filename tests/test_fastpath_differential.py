"""The direct verifier decides exactly as signxml, the reference implementation, does.

For a corpus of valid documents (RSA, RSA-PSS and ECDSA; exclusive and inclusive c14n;
namespaces, prefixes, whitespace, CDATA, escapes, non-ASCII text; the bundled sample
messages; documents signed by xmlsec1) and for mutations of them (every byte flipped,
elements moved), ``Verifier.verify`` and signxml accept and reject the same inputs, with
the same reason, and where they accept, the signed bytes are the same and the returned
tree says what they say.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureMethod
from signxml.signer import XMLSigner

import xta_schemas
from signing import (
    SignatureError,
    Signer,
    TrustStore,
    VerificationPolicy,
    Verifier,
    XmlError,
    parse_untrusted,
)
from signing.devpki import init_dev_pki, issue
from signing.keyfiles import party_paths
from signing.reference import needs_reference, verify_with_signxml
from signing.signer import PrivateKey
from signing.structure import inspect_signature

DS = "{http://www.w3.org/2000/09/xmldsig#}"
EXC = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0
INCL = CanonicalizationMethod.CANONICAL_XML_1_0
INCL11 = CanonicalizationMethod.CANONICAL_XML_1_1

DOCUMENTS: dict[str, bytes] = {
    "plain": b"<msg><a>1</a></msg>",
    "prefixed": b'<m:msg xmlns:m="urn:test"><m:a m:x="1">1</m:a><b/></m:msg>',
    "default namespace": b'<msg xmlns="urn:d"><a>1</a><b xmlns="">2</b></msg>',
    "pretty printed": b'<m:msg xmlns:m="urn:test">\n  <a>1</a>\n  <b>zwei</b>\n</m:msg>\n',
    "cdata and escapes": (
        b'<msg><a t="x &amp; &lt;y&gt; &quot;z&quot; &#9;&#10;">a &lt; b &amp;&amp; c'
        b"<![CDATA[<not markup> & ]]></a><b>&#13;\r\n</b></msg>"
    ),
    "non-ascii": "<msg><name>Große Bergstraße, Ærø, 東京</name></msg>".encode(),
    "attribute order": b'<msg z="1" a="2" xmlns:p="urn:p" p:b="3" xmlns:q="urn:q" q:a="4"/>',
    "namespace used in content only": (
        b'<m:msg xmlns:m="urn:test" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        b' xmlns:t="urn:types"><m:a xsi:type="t:Code">1</m:a></m:msg>'
    ),
    "namespace declared below its first use": (
        b'<m:msg xmlns:m="urn:test"><x xmlns:u="urn:u"><u:y/><z/></x><u:w xmlns:u="urn:u"/></m:msg>'
    ),
    "processing instruction inside": b"<msg><?app keep?><a>1</a></msg>",
    "tail text around the signature": b"<msg>text<a>1</a>after</msg>",
    "xml:lang and xml:space": b'<msg xml:lang="de"><a xml:space="preserve"> 1 </a></msg>',
}


@dataclass(frozen=True)
class World:
    pki: Path
    verifier: Verifier
    signers: dict[str, Signer]
    keys: dict[str, tuple[Path, Path]]  # name -> (certificate, key)
    loaded: dict[str, PrivateKey]  # loading an RSA key is slow: once per module


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    pki = tmp_path_factory.mktemp("pki")
    init_dev_pki(pki, [("psw:02000000", "Portal")])
    keys = {
        "ec": party_paths(pki, "psw:02000000"),
        "rsa": issue(pki / "ca", "psw:02000000", "Portal", pki / "rsa", key_type="rsa"),
    }
    signers = {name: Signer.from_files(key, cert) for name, (cert, key) in keys.items()}
    loaded = {}
    for name, (_, key) in keys.items():
        private = load_pem_private_key(key.read_bytes(), None)
        assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        loaded[name] = private
    # Inclusive c14n is refused by default (docs/security.md); both implementations must
    # still agree on it where a policy allows it.
    policy = VerificationPolicy(c14n_methods=frozenset({EXC, INCL, INCL11}))
    verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"), policy)
    return World(pki, verifier, signers, keys, loaded)


Outcome = tuple[str, bytes]  # ("accepted", signed bytes) or (reject code, b"")


def _reference(verifier: Verifier, data: bytes) -> Outcome:
    try:
        root = parse_untrusted(data)
        shape = inspect_signature(root, verifier.policy)
        at = datetime.now(UTC)
        verifier.trust.validate(shape.leaf, shape.intermediates, at=at)
        content = verify_with_signxml(root, shape.leaf, verifier.policy, at)
    except (SignatureError, XmlError) as exc:
        return exc.reason.value, b""
    return "accepted", content.canonical


def _fast(verifier: Verifier, data: bytes) -> Outcome:
    try:
        root = parse_untrusted(data)
        verified = verifier.verify(root, at=datetime.now(UTC))
    except (SignatureError, XmlError) as exc:
        return exc.reason.value, b""
    # The tree handed downstream must say exactly what the signed bytes say.
    assert etree.tostring(verified.signed, method="c14n") == etree.tostring(
        parse_untrusted(verified.signed_data), method="c14n"
    )
    return "accepted", verified.signed_data


def _signxml_sign(world: World, key: str, doc: bytes, c14n: CanonicalizationMethod) -> bytes:
    method = {
        "ec": SignatureMethod.ECDSA_SHA256,
        "rsa": SignatureMethod.RSA_SHA256,
        "pss": SignatureMethod.SHA256_RSA_MGF1,
    }
    signer = XMLSigner(signature_algorithm=method[key], c14n_algorithm=c14n)
    name = "rsa" if key == "pss" else key
    cert = world.keys[name][0].read_text()
    signed = signer.sign(parse_untrusted(doc), key=world.loaded[name], cert=cert)
    return etree.tostring(signed)


def _valid_corpus(world: World) -> Iterator[tuple[str, bytes]]:
    for name, doc in DOCUMENTS.items():
        for key, signer in world.signers.items():
            yield f"{name} / Signer {key}", signer.sign(doc)
        for key in ("ec", "rsa", "pss"):
            for c14n in (EXC, INCL, INCL11):
                yield f"{name} / signxml {key} {c14n.name}", _signxml_sign(world, key, doc, c14n)


def test_every_valid_document_is_accepted_by_both_with_the_same_signed_bytes(
    world: World,
) -> None:
    for label, signed in _valid_corpus(world):
        root = parse_untrusted(signed)
        assert not needs_reference(root, root[-1]), label
        fast, reference = _fast(world.verifier, signed), _reference(world.verifier, signed)
        assert fast == reference, label
        assert fast[0] == "accepted", label


def test_bundled_sample_messages_signed_by_signer_verify_alike(world: World) -> None:
    samples = sorted((Path(xta_schemas.__file__).parent / "bundled").glob("*/samples/*.xml"))
    assert samples
    for path in samples:
        for key, signer in world.signers.items():
            signed = signer.sign(path.read_bytes())
            fast = _fast(world.verifier, signed)
            assert fast == _reference(world.verifier, signed), f"{path.name} {key}"
            assert fast[0] == "accepted"


def _flip_each_byte(signed: bytes) -> Iterator[bytes]:
    for position in range(len(signed)):
        yield signed[:position] + bytes([signed[position] ^ 0x01]) + signed[position + 1 :]


@pytest.mark.parametrize(
    ("document", "key", "c14n"),
    [("prefixed", "ec", EXC), ("pretty printed", "rsa", INCL), ("default namespace", "ec", INCL)],
)
def test_every_flipped_byte_gets_the_same_decision(
    world: World, document: str, key: str, c14n: CanonicalizationMethod
) -> None:
    signed = _signxml_sign(world, key, DOCUMENTS[document], c14n)
    outcomes: set[str] = set()
    for mutated in _flip_each_byte(signed):
        fast = _fast(world.verifier, mutated)
        assert fast == _reference(world.verifier, mutated), mutated
        outcomes.add(fast[0])
    # The corpus must reach the cryptography, not only the parser.
    assert {"digest-mismatch", "signature-invalid", "malformed-xml"} <= outcomes


def _moved(signed: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = parse_untrusted(signed)
    change(root)
    return etree.tostring(root)


MOVES: dict[str, Callable[[etree._Element], None]] = {
    "signature moved first": lambda r: r.insert(0, r[-1]),
    "first element moved last": lambda r: r.insert(len(r) - 1, r[0]),
    "signature into a child": lambda r: r[0].append(r[-1]),
    "content element duplicated": lambda r: r.insert(0, etree.fromstring(etree.tostring(r[0]))),
    "signature value element moved into SignedInfo": lambda r: r[-1][0].append(r[-1][1]),
    "key info removed": lambda r: r[-1].remove(r[-1][-1]),
    "unused namespace declared on the root": lambda r: r.set("{urn:evil}x", "1"),
}


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("c14n", [EXC, INCL])
def test_moved_elements_get_the_same_decision(
    world: World, move: str, c14n: CanonicalizationMethod
) -> None:
    signed = _signxml_sign(world, "ec", DOCUMENTS["prefixed"], c14n)
    mutated = _moved(signed, MOVES[move])
    assert _fast(world.verifier, mutated) == _reference(world.verifier, mutated)


def test_text_after_the_signature_is_a_digest_mismatch_where_signxml_says_invalid(
    world: World,
) -> None:
    # signxml re-parses the Signature together with the text after it and fails there;
    # the text is unsigned content of the document, which the digest reports. Both reject.
    signed = _signxml_sign(world, "ec", DOCUMENTS["prefixed"], EXC)
    mutated = _moved(signed, lambda r: setattr(r[-1], "tail", "unsigned"))
    assert _fast(world.verifier, mutated)[0] == "digest-mismatch"
    assert _reference(world.verifier, mutated)[0] == "signature-invalid"


def test_unsigned_namespace_declaration_does_not_reach_the_signed_tree(world: World) -> None:
    signed = world.signers["ec"].sign(DOCUMENTS["namespace used in content only"])
    forged = signed.replace(b'xmlns:t="urn:types"', b'xmlns:t="urn:evil"', 1)
    verified = world.verifier.verify(parse_untrusted(forged), at=datetime.now(UTC))
    a = verified.signed.find("{urn:test}a")
    assert a is not None
    assert "t" not in a.nsmap


TEMPLATE = """<m:msg xmlns:m="urn:test"><m:a>1</m:a>
<{p}Signature xmlns{colon}{pfx}="http://www.w3.org/2000/09/xmldsig#">
<{p}SignedInfo>
<{p}CanonicalizationMethod Algorithm="{c14n}"/>
<{p}SignatureMethod Algorithm="{method}"/>
<{p}Reference URI="">
<{p}Transforms>
<{p}Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<{p}Transform Algorithm="{c14n}"/>
</{p}Transforms>
<{p}DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<{p}DigestValue/>
</{p}Reference>
</{p}SignedInfo>
<{p}SignatureValue/>
<{p}KeyInfo><{p}X509Data><{p}X509Certificate/></{p}X509Data></{p}KeyInfo>
</{p}Signature>
</m:msg>
"""


def _xmlsec1_sign(xmlsec1: str, world: World, key: str, template_text: str, work: Path) -> bytes:
    template = work / "template.xml"
    template.write_text(template_text)
    cert, private = world.keys[key]
    out = work / "signed.xml"
    result = subprocess.run(
        [xmlsec1, "--sign", "--privkey-pem", f"{private},{cert}", "--output", str(out), template],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def _template(key: str, c14n: CanonicalizationMethod, prefix: str) -> str:
    method = {"ec": SignatureMethod.ECDSA_SHA256, "rsa": SignatureMethod.RSA_SHA256}[key]
    return TEMPLATE.format(
        p=f"{prefix}:" if prefix else "",
        colon=":" if prefix else "",
        pfx=prefix,
        c14n=c14n.value,
        method=method.value,
    )


@pytest.mark.parametrize("key", ["ec", "rsa"])
@pytest.mark.parametrize(("c14n", "prefix"), [(EXC, ""), (EXC, "ds"), (INCL, "ds")])
def test_xmlsec1_signed_documents_verify_alike(
    xmlsec1: str,
    world: World,
    key: str,
    c14n: CanonicalizationMethod,
    prefix: str,
    tmp_path: Path,
) -> None:
    signed = _xmlsec1_sign(xmlsec1, world, key, _template(key, c14n, prefix), tmp_path)
    fast = _fast(world.verifier, signed)
    assert fast == _reference(world.verifier, signed)
    assert fast[0] == "accepted"
    tampered = signed.replace(b"<m:a>1</m:a>", b"<m:a>2</m:a>")
    assert _fast(world.verifier, tampered) == _reference(world.verifier, tampered)


def test_inclusive_c14n_under_an_inherited_default_namespace_fails_alike(
    xmlsec1: str, world: World, tmp_path: Path
) -> None:
    # libxml2's c14n of a subtree (lxml's, which signxml uses too) writes xmlns="" on
    # the grandchildren of a default-namespaced ds:Signature, so SignedInfo's canonical
    # form differs from xmlsec1's. A known limit shared with signxml; exclusive c14n
    # (what every signer we know of uses) is not affected.
    signed = _xmlsec1_sign(xmlsec1, world, "ec", _template("ec", INCL, ""), tmp_path)
    assert _fast(world.verifier, signed) == _reference(world.verifier, signed)
    assert _fast(world.verifier, signed)[0] == "signature-invalid"

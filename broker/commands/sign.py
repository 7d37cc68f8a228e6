"""``xbroker sign`` and ``xbroker verify``: sign a file, check a signed file.

``verify`` answers as the broker would about the signature: exit 0 valid, 1 invalid
(the reject code is printed), 2 when the trust store itself cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from signing import (
    Signer,
    SigningError,
    TrustStore,
    Verified,
    Verifier,
    XmlError,
    parse_untrusted,
)
from signing.errors import RevocationUnknown, SignatureError

__all__ = ["register"]

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_ERROR = 2


def _sign(args: argparse.Namespace) -> int:
    try:
        signer = Signer.from_files(args.key, args.cert, args.chain)
        signed = signer.sign(args.file.read_bytes())
    except (SigningError, OSError) as exc:
        print(f"xbroker sign: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.output is None:
        sys.stdout.buffer.write(signed)
    else:
        args.output.write_bytes(signed)
    return EXIT_VALID


def _describe(result: Verified, name: str) -> dict[str, Any]:
    return {
        "file": name,
        "valid": True,
        "subject_kennung": result.subject_kennung,
        "subject": result.certificate.subject.rfc4514_string(),
        "fingerprint": result.fingerprint,
        "not_after": result.certificate.not_valid_after_utc.isoformat(),
    }


def _verify(args: argparse.Namespace) -> int:
    # Both default to the PKI of the settings --config names.
    from broker.commands._common import settings_from
    from broker.errors import ConfigurationError

    try:
        settings = settings_from(args)
    except ConfigurationError as exc:
        print(f"xbroker verify: {exc}", file=sys.stderr)
        return EXIT_ERROR
    trust_dir = args.trust or settings.trust_dir
    crl_dir = args.crl or settings.crl_dir
    try:
        trust = TrustStore.from_dirs(trust_dir, None if args.no_crl else crl_dir)
        data = args.file.read_bytes()
    except (SigningError, OSError) as exc:
        print(f"xbroker verify: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        at = args.at or datetime.now(UTC)
        result = Verifier(trust).verify(parse_untrusted(data), at=at)
    except (XmlError, SignatureError) as exc:
        detail = exc.detail
        crl_unknown = isinstance(exc, RevocationUnknown)
        if args.trust is not None and args.crl is None and not args.no_crl and crl_unknown:
            detail += (
                "; give the issuer's CRL folder with --crl DIR, or --no-crl to skip revocation"
            )
        outcome = {
            "file": str(args.file),
            "valid": False,
            "code": exc.reason.value,
            "detail": detail,
        }
        if args.json:
            print(json.dumps(outcome, indent=2))
        else:
            print(f"invalid: {exc.reason.value}: {detail}")
        return EXIT_INVALID
    described = _describe(result, str(args.file))
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        print(
            f"valid: signed by {result.subject_kennung or described['subject']} "
            f"(sha256 {result.fingerprint})"
        )
    return EXIT_VALID


def register(subparsers: Any) -> None:
    """Add ``xbroker sign`` and ``xbroker verify``."""
    sign = subparsers.add_parser("sign", help="sign an XML file (enveloped XML-DSig)")
    sign.add_argument("file", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="PEM private key")
    sign.add_argument("--cert", type=Path, required=True, help="PEM certificate of the key")
    sign.add_argument(
        "--chain", type=Path, action="append", default=[], help="intermediate certificate (repeat)"
    )
    sign.add_argument("-o", "--output", type=Path, default=None, help="default: stdout")
    sign.set_defaults(func=_sign)

    verify = subparsers.add_parser("verify", help="verify a signed XML file")
    verify.add_argument("file", type=Path)
    verify.add_argument(
        "--trust", type=Path, default=None, help="CA folder (default: the settings' trust store)"
    )
    verify.add_argument(
        "--crl",
        type=Path,
        default=None,
        help="CRL folder (default: the settings' CRL folder)",
    )
    verify.add_argument("--no-crl", action="store_true", help="do not check revocation")
    verify.add_argument(
        "--at",
        type=datetime.fromisoformat,
        default=None,
        help="verification time, ISO 8601 with offset (default: now)",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=_verify)

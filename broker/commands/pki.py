"""``xbroker pki``: the development PKI (CA, party certificates, revocation, listing).

Everything lives under ``--pki-dir`` (default: the settings' ``pki_dir``, so ``--config``
counts for every subcommand) in the layout described in ``signing.devpki``.
Exit codes: 0 done, 2 the PKI could not be read or changed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from signing import SigningError, fingerprint, load_certificate
from signing.devpki import (
    DEV_CA_NAME,
    issue,
    issue_encryption,
    list_certificates,
    revoke,
    setup_ca,
)
from signing.keyfiles import party_paths

__all__ = ["register"]
EXIT_OK = 0
EXIT_ERROR = 2


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--pki-dir",
        type=Path,
        default=None,
        help="development PKI folder (default: the settings' pki_dir)",
    )
    return parent


def _pki_dir(args: argparse.Namespace) -> Path:
    """``--pki-dir``, else the PKI of the settings ``--config`` names."""
    if args.pki_dir is not None:
        return Path(args.pki_dir)
    from broker.commands._common import settings_from

    pki: Path = settings_from(args).pki
    return pki


def _init(args: argparse.Namespace) -> int:
    # Imported here: the other pki commands work without settings or a directory.
    from broker.commands._common import settings_from
    from broker.commands.demo import ensure_dev_pki

    settings = settings_from(args)
    if args.pki_dir is not None:
        settings = settings.model_copy(update={"pki_dir": args.pki_dir})
    ensure_dev_pki(settings)
    for info in list_certificates(settings.pki):
        print(f"{info.kennung or info.subject:<24} {info.path}")
    print(f"development PKI ready in {settings.pki}; trust store {settings.trust_dir}")
    return 0


def _ca(args: argparse.Namespace) -> int:
    args.pki_dir = _pki_dir(args)
    setup_ca(args.pki_dir, args.name, key_type=args.key_type, days=args.days)
    print(f"CA ready in {args.pki_dir / 'ca'}; trust store {args.pki_dir / 'trust'}")
    return EXIT_OK


def _issue(args: argparse.Namespace) -> int:
    args.pki_dir = _pki_dir(args)
    if args.encryption:
        return _issue_encryption(args)
    default_dir = (
        args.pki_dir / "tls"
        if args.tls_client
        else party_paths(args.pki_dir, args.kennung)[0].parent
    )
    out_dir = args.out or default_dir
    cert, key = issue(
        args.pki_dir / "ca",
        args.kennung,
        args.name,
        out_dir,
        key_type=args.key_type,
        days=args.days,
        tls_client=args.tls_client,
    )
    print(f"issued {cert} (key {key})")
    if args.tls_client:
        print(
            f"register it for {args.kennung} in the directory: certificates = "
            f'[..., "sha256:{fingerprint(load_certificate(cert))}"]; the CA for the '
            f"client's trust: {args.pki_dir / 'ca' / 'ca.crt'}"
        )
    return EXIT_OK


def _issue_encryption(args: argparse.Namespace) -> int:
    if args.tls_client or args.out is not None:
        print("xbroker pki: --encryption goes with neither --tls-client nor --out", file=sys.stderr)
        return EXIT_ERROR
    cert, key = issue_encryption(
        args.pki_dir / "ca",
        args.kennung,
        args.name,
        args.pki_dir,
        key_type=args.key_type,
        days=args.days,
    )
    print(f"issued encryption certificate {cert} (key {key})")
    print(
        f'register it for {args.kennung} in the directory: encryption = [..., "{cert.name}"]; '
        "copies are sealed for the newest valid one, and every key the agency holds opens "
        "what was sealed for it"
    )
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    args.pki_dir = _pki_dir(args)
    target = Path(args.certificate)
    if not target.exists() and ":" in args.certificate:
        target = party_paths(args.pki_dir, args.certificate)[0]
    crl = revoke(args.pki_dir / "ca", args.pki_dir / "crl", target)
    print(f"revoked {target}; CRL {crl}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    args.pki_dir = _pki_dir(args)
    infos = list_certificates(args.pki_dir)
    if args.json:
        rows: list[dict[str, Any]] = [
            {
                "path": str(i.path),
                "subject": i.subject,
                "kennung": i.kennung,
                "serial": i.serial,
                "not_after": i.not_after.isoformat(),
                "fingerprint": i.fingerprint,
                "ca": i.is_ca,
                "revoked": i.revoked,
                "purpose": i.purpose.value,
            }
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for i in infos:
        state = "CA" if i.is_ca else ("revoked" if i.revoked else "valid")
        purpose = "" if i.is_ca else i.purpose.value
        print(
            f"{i.kennung or '-':<20} {state:<8} {purpose:<10} until {i.not_after:%Y-%m-%d}  "
            f"{i.path}"
        )
    return EXIT_OK


def _guarded(action: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = action(args)
        except SigningError as exc:
            print(f"xbroker pki: {exc}", file=sys.stderr)
            return EXIT_ERROR
        return code

    return run


def register(subparsers: Any) -> None:
    """Add ``xbroker pki`` and its subcommands."""
    common = _common()
    parser = subparsers.add_parser("pki", help="development PKI: CA, certificates, CRL")
    commands = parser.add_subparsers(dest="pki_command", required=True, metavar="SUBCOMMAND")

    ca = commands.add_parser("ca", parents=[common], help="create the CA (if absent) and its CRL")
    ca.add_argument("--name", default=DEV_CA_NAME, help="CA common name")
    ca.add_argument("--key-type", choices=["ec", "rsa"], default="ec")
    ca.add_argument("--days", type=int, default=3650)
    ca.set_defaults(func=_guarded(_ca))

    iss = commands.add_parser("issue", parents=[common], help="issue a party certificate")
    iss.add_argument("kennung", help="Behördenkennung, e.g. psw:02000000")
    iss.add_argument("name", help="agency name for the certificate subject")
    iss.add_argument("--key-type", choices=["rsa", "ec"], default="rsa")
    iss.add_argument("--days", type=int, default=730)
    iss.add_argument(
        "--out", type=Path, default=None, help="folder (default: PKI parties/, or tls/)"
    )
    iss.add_argument(
        "--tls-client",
        action="store_true",
        help="a TLS client certificate (clientAuth) for the XTA endpoint or the HTTP API",
    )
    iss.add_argument(
        "--encryption",
        action="store_true",
        help="an encryption certificate (keyEncipherment or keyAgreement) that copies for "
        "the party are sealed for; a second one is a key rotation: both stay valid",
    )
    iss.set_defaults(func=_guarded(_issue))

    rev = commands.add_parser("revoke", parents=[common], help="revoke and rewrite the CRL")
    rev.add_argument("certificate", help="certificate file, or the kennung of a party")
    rev.set_defaults(func=_guarded(_revoke))

    lst = commands.add_parser("list", parents=[common], help="certificates and their expiry")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=_guarded(_list))

    init = commands.add_parser(
        "init",
        help="create the development PKI for the broker and every party of the directory",
    )
    init.add_argument("--pki-dir", type=Path, default=None, help="default: the settings' pki_dir")
    init.set_defaults(func=_guarded(_init))

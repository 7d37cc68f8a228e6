"""``xbroker doctor``'s sealing check: every sealed agency has a key its copies can be
sealed for, and the broker has one portals can seal for.

A sealed agency without a valid encryption key (none registered, not trusted, expired
or revoked) fails: the broker refuses such a directory at start and at reload, so this
is where an operator learns it before then. The broker's own encryption key is needed
only by portals that seal their submissions; without one, this warns.
"""

from __future__ import annotations

from datetime import datetime

from broker.ops.doctor.findings import Finding, Status, skipped
from broker.settings import Settings
from broker.worker.sealer import Sealer
from routing import Directory
from sealing import KeyRing, RecipientKey, SealingKeyError, SealLimits
from signing import KeyPurpose, SignatureError, TrustStore, load_certificate
from signing.keyfiles import encryption_paths

__all__ = ["check_sealing"]


def check_sealing(settings: Settings, directory: Directory | None, at: datetime) -> list[Finding]:
    if directory is None:
        return [skipped("sealing", "the directory did not load")]
    trust = TrustStore.from_dirs(settings.trust_dir, settings.crl_dir)
    sealer = Sealer(trust, KeyRing(), SealLimits())
    findings: list[Finding] = []
    clear = []
    for agency in directory:
        if not agency.sealed:
            if agency.accepts or agency.notify:
                clear.append(agency.kennung)
            continue
        try:
            key = sealer.recipient_key(agency, at)
        except SealingKeyError as exc:
            findings.append(
                Finding(
                    "sealing",
                    Status.FAIL,
                    str(exc),
                    f"issue an encryption certificate (`xbroker pki issue {agency.kennung} "
                    f"NAME --encryption`, or the agency's own CA) and list it in its "
                    f"encryption = [...] in {settings.directory}",
                )
            )
            continue
        findings.append(
            Finding(
                "sealing",
                Status.OK,
                f"{agency.kennung}: copies sealed for key {key.kid} ({key.algorithm.value})",
            )
        )
    if clear:
        findings.append(
            Finding("sealing", Status.OK, f"copies in clear for: {', '.join(sorted(clear))}")
        )
    findings.append(_broker_key(settings, trust, at))
    return findings


def _broker_key(settings: Settings, trust: TrustStore, at: datetime) -> Finding:
    fix = (
        f"`xbroker pki issue {settings.broker_kennung} NAME --encryption` (or your CA), "
        f"as {settings.pki / 'parties'}/<kennung>.enc.crt|.key, and give portals the certificate"
    )
    valid = []
    for cert_path, _ in encryption_paths(settings.pki, settings.broker_kennung):
        try:
            cert = load_certificate(cert_path)
            trust.validate(cert, at=at, purpose=KeyPurpose.ENCRYPTION)
        except SignatureError as exc:
            return Finding("sealing", Status.FAIL, f"broker key {cert_path.name}: {exc}", fix)
        valid.append(RecipientKey.from_certificate(cert).kid)
    if not valid:
        return Finding(
            "sealing",
            Status.WARN,
            f"the broker {settings.broker_kennung} has no encryption key: submissions sealed "
            "for it are rejected (seal-key-unknown)",
            fix,
        )
    return Finding("sealing", Status.OK, f"broker opens submissions sealed for {', '.join(valid)}")

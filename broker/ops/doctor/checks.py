"""``xbroker doctor``: what is wrong with this installation, and how to fix it.

An operator runs it before starting the broker and whenever an alert leaves them
wondering where to look. Each check yields `Finding` s: a status, what was seen, and for
anything not ``ok`` the command or setting that fixes it. Checks never raise for what
they find; an unexpected error in a check is itself a finding, so one broken part never
hides the state of the others.

Checks, in order (the later ones need what the earlier ones loaded)::

    standards      the catalog loads (bundled + standard_dirs)
    directory      the agency directory loads, with its registered certificates
    trust          the trust store folder holds CA certificates; each CA's expiry
    certificates   the broker's own certificate, then every registered one: expiry
    sealing        every sealed agency has a valid encryption key; the broker's own
    rabbitmq       the node answers; product and version from the connection
    topology       exchanges and queues exist (passive declares, throwaway channels)
    permissions    agency users and their permissions, where agencies have users

"warn" never fails the run: a certificate within `EXPIRY_WARNING` of its notAfter warns
(the same 21 days as the CertificateExpiringSoon alert); an expired one fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509

from broker.ops.doctor.findings import Finding, Report, Status, skipped
from broker.ops.doctor.rabbitmq import MINIMUM_RABBITMQ, check_rabbitmq, check_topology
from broker.ops.doctor.sealing import check_sealing
from broker.settings import Settings
from routing import Directory, DirectoryError
from signing import SigningError
from signing.certs import load_certificate, load_certificates
from signing.keyfiles import party_paths
from xta_schemas import Catalog, StandardsError

__all__ = [
    "EXPIRY_WARNING",
    "MINIMUM_RABBITMQ",
    "Finding",
    "PermissionCheck",
    "Report",
    "Status",
    "diagnose",
]

EXPIRY_WARNING = timedelta(days=21)

_FIX_PKI = "run `xbroker pki init` for a development PKI, or set pki_dir to your PKI"


PermissionCheck = Callable[[Settings, Directory], Awaitable[Sequence[Finding]]]
"""Checks the RabbitMQ users of agencies, where the installation provisions them."""


async def diagnose(
    settings: Settings,
    *,
    now: datetime | None = None,
    expiry_warning: timedelta = EXPIRY_WARNING,
    timeout: float = 5.0,
    permissions: PermissionCheck | None = None,
) -> Report:
    """Run every check against ``settings``; never raises for what it finds."""
    at = now or datetime.now(UTC)
    findings: list[Finding] = []
    findings.extend(_guarded("standards", lambda: _standards(settings)))
    directory_findings, directory = _directory(settings)
    findings.extend(directory_findings)
    findings.extend(_guarded("trust", lambda: _trust(settings, at, expiry_warning)))
    findings.extend(
        _guarded("certificates", lambda: _certificates(settings, directory, at, expiry_warning))
    )
    findings.extend(_guarded("sealing", lambda: check_sealing(settings, directory, at)))
    connection, rabbit = await check_rabbitmq(settings.rabbitmq_urls[0], timeout)
    findings.extend(rabbit)
    try:
        if connection is None:
            findings.append(skipped("topology", "RabbitMQ cannot be reached"))
            findings.append(skipped("permissions", "RabbitMQ cannot be reached"))
        else:
            findings.extend(await check_topology(connection, directory, timeout))
            if permissions is None or directory is None:
                findings.append(
                    skipped(
                        "permissions",
                        "agencies have no RabbitMQ users of their own in this installation",
                    )
                )
            else:
                findings.extend(await permissions(settings, directory))
    finally:
        if connection is not None:
            await connection.close()
    return Report(tuple(findings))


def _guarded(check: str, run: Callable[[], list[Finding]]) -> list[Finding]:
    try:
        return run()
    except Exception as exc:  # a check that breaks must not hide the others
        return [
            Finding(
                check,
                Status.FAIL,
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "report this with the output of `xbroker doctor --json`",
            )
        ]


# offline checks


def _standards(settings: Settings) -> list[Finding]:
    try:
        catalog = Catalog.load(settings.standard_dirs)
    except StandardsError as exc:
        return [
            Finding(
                "standards",
                Status.FAIL,
                str(exc),
                "fix or remove the folder in standard_dirs; `xbroker schemas check DIR` "
                "says what is wrong with one standard",
            )
        ]
    names = ", ".join(sorted(f"{s.name} {s.version}" for s in catalog.standards))
    return [Finding("standards", Status.OK, f"{len(catalog.standards)} standards: {names}")]


def _directory(settings: Settings) -> tuple[list[Finding], Directory | None]:
    try:
        directory = Directory.load(settings.directory, settings.party_certificate_dir)
    except DirectoryError as exc:
        return [
            Finding(
                "directory",
                Status.FAIL,
                str(exc),
                f"correct {settings.directory} (setting `directory`); the broker keeps "
                "running on the last good file but will not start with this one",
            )
        ], None
    detail = f"{len(directory)} agencies in {settings.directory}"
    return [Finding("directory", Status.OK, detail)], directory


def _trust(settings: Settings, at: datetime, warning: timedelta) -> list[Finding]:
    folder = settings.trust_dir
    if not folder.is_dir():
        return [Finding("trust", Status.FAIL, f"no trust store at {folder}", _FIX_PKI)]
    anchors = [
        (path.name, cert)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in {".pem", ".crt", ".cer"}
        for cert in load_certificates(path)
    ]
    if not anchors:
        return [
            Finding(
                "trust",
                Status.FAIL,
                f"the trust store {folder} holds no CA certificate (.pem, .crt, .cer)",
                _FIX_PKI,
            )
        ]
    findings = [Finding("trust", Status.OK, f"{len(anchors)} CA certificates in {folder}")]
    for name, cert in anchors:
        findings.extend(
            _expiry(
                "trust",
                f"CA {cert.subject.rfc4514_string()} ({name})",
                cert,
                at,
                warning,
                "issue a new CA certificate, add it to the trust store beside the old one, "
                "and re-issue the parties' certificates under it",
            )
        )
    return findings


def _certificates(
    settings: Settings, directory: Directory | None, at: datetime, warning: timedelta
) -> list[Finding]:
    findings: list[Finding] = []
    cert_path, key_path = party_paths(settings.pki, settings.broker_kennung)
    if not cert_path.is_file() or not key_path.is_file():
        findings.append(
            Finding(
                "certificates",
                Status.FAIL,
                f"no key and certificate for the broker {settings.broker_kennung} "
                f"under {settings.pki / 'parties'}",
                _FIX_PKI,
            )
        )
    else:
        try:
            own = load_certificate(cert_path)
        except SigningError as exc:
            findings.append(Finding("certificates", Status.FAIL, str(exc), _FIX_PKI))
        else:
            findings.extend(
                _expiry(
                    "certificates",
                    f"broker {settings.broker_kennung}",
                    own,
                    at,
                    warning,
                    f"issue a new certificate: `xbroker pki issue {settings.broker_kennung} NAME`",
                )
            )
    if directory is None:
        findings.append(skipped("certificates", "the directory did not load"))
        return findings
    for agency in directory:
        for registered in agency.certificates:
            if registered.certificate is None:
                continue  # registered by fingerprint only: no notAfter to read
            findings.extend(
                _expiry(
                    "certificates",
                    f"{agency.kennung} serial {registered.certificate.serial_number}",
                    registered.certificate,
                    at,
                    warning,
                    f"ask {agency.kennung} for its new certificate and register it in "
                    f"{settings.directory} beside the old one",
                )
            )
    return findings


def _expiry(
    check: str, subject: str, cert: x509.Certificate, at: datetime, warning: timedelta, fix: str
) -> list[Finding]:
    left = cert.not_valid_after_utc - at
    if left <= timedelta(0):
        return [Finding(check, Status.FAIL, f"{subject} expired {-left.days} days ago", fix)]
    if cert.not_valid_before_utc > at:
        return [
            Finding(
                check,
                Status.FAIL,
                f"{subject} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                fix,
            )
        ]
    if left < warning:
        return [Finding(check, Status.WARN, f"{subject} expires in {left.days} days", fix)]
    return [Finding(check, Status.OK, f"{subject} valid for {left.days} more days")]

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
    rabbitmq       the node answers; product and version from the connection
    topology       exchanges and queues exist (passive declares, throwaway channels)
    permissions    agency users and their permissions, where agencies have users

"warn" never fails the run: a certificate within `EXPIRY_WARNING` of its notAfter warns
(the same 21 days as the CertificateExpiringSoon alert); an expired one fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from cryptography import x509

from broker import topology
from broker.settings import Settings
from routing import AmqpEndpoint, Directory, DirectoryError
from signing import SigningError
from signing.certs import load_certificate, load_certificates
from signing.pki import party_paths
from xta_schemas import Catalog, StandardError

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
# Quorum queues with at-least-once dead lettering and x-delivery-limit, as topology.py
# declares them, need 3.10.
MINIMUM_RABBITMQ = (3, 10)

_FIX_PKI = "run `xbroker pki init` for a development PKI, or set pki_dir to your PKI"


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check saw. ``fix`` says what to do; empty when nothing is to do."""

    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True unless a check failed; warnings alone keep a setup usable."""
        return all(f.status is not Status.FAIL for f in self.findings)

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}


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
    connection, rabbit = await _rabbitmq(settings.amqp_url, timeout)
    findings.extend(rabbit)
    try:
        if connection is None:
            findings.append(_skipped("topology", "RabbitMQ cannot be reached"))
            findings.append(_skipped("permissions", "RabbitMQ cannot be reached"))
        else:
            findings.extend(await _topology(connection, directory, timeout))
            if permissions is None or directory is None:
                findings.append(
                    _skipped(
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


def _skipped(check: str, why: str) -> Finding:
    return Finding(check, Status.SKIP, f"not checked: {why}")


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
    except StandardError as exc:
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
        findings.append(_skipped("certificates", "the directory did not load"))
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


# checks against RabbitMQ


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def _rabbitmq(url: str, timeout: float) -> tuple[AbstractConnection | None, list[Finding]]:
    where = _redacted(url)
    try:
        connection = await asyncio.wait_for(
            aio_pika.connect(
                url, client_properties={"connection_name": "xbroker-doctor"}, timeout=timeout
            ),
            timeout,
        )
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        return None, [
            Finding(
                "rabbitmq",
                Status.FAIL,
                f"{where}: login refused ({exc})",
                "check user and password in amqp_url (or XBROKER_AMQP_URL); "
                "`rabbitmqctl authenticate_user USER PASSWORD` on the node tells",
            )
        ]
    except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
        return None, [
            Finding(
                "rabbitmq",
                Status.FAIL,
                f"{where} cannot be reached: {type(exc).__name__}: {exc}",
                "start RabbitMQ (`xbroker node ensure` for the local development node, "
                "`systemctl start rabbitmq-server`, or `docker compose up rabbitmq`), "
                "and check host, port and vhost in amqp_url (or XBROKER_AMQP_URL)",
            )
        ]
    properties = connection.transport.connection.server_properties if connection.transport else {}
    product = str(properties.get("product", "unknown"))
    version = str(properties.get("version", "unknown"))
    detail = f"{where}: {product} {version}"
    if _version_tuple(version) < MINIMUM_RABBITMQ:
        minimum = ".".join(map(str, MINIMUM_RABBITMQ))
        return connection, [
            Finding(
                "rabbitmq",
                Status.FAIL,
                f"{detail}; xbroker needs {minimum} or newer (quorum queues with "
                "at-least-once dead lettering)",
                f"upgrade RabbitMQ to {minimum} or newer",
            )
        ]
    return connection, [Finding("rabbitmq", Status.OK, detail)]


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers: list[int] = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or (0,)


def _expected(directory: Directory | None) -> tuple[list[str], list[str]]:
    exchanges = [
        topology.INGRESS_EXCHANGE,
        topology.DELIVER_EXCHANGE,
        topology.RECEIPT_EXCHANGE,
        topology.DELIVERY_RECEIPT_EXCHANGE,
        topology.DEAD_EXCHANGE,
    ]
    queues = [topology.INGRESS_QUEUE, topology.DELIVERY_RECEIPT_QUEUE]
    for agency in directory or ():
        if topology.has_inbox(agency) and isinstance(agency.endpoint, AmqpEndpoint):
            queues.append(topology.agency_queue(agency.kennung))
            if agency.endpoint.test:
                queues.append(topology.agency_queue(agency.kennung, test=True))
        if agency.may_send:
            queues.append(topology.receipt_queue(agency.kennung))
    return exchanges, queues + [f"{q}.dead" for q in queues]


async def _topology(
    connection: AbstractConnection, directory: Directory | None, timeout: float
) -> list[Finding]:
    exchanges, queues = _expected(directory)
    missing: list[str] = []
    refused: list[str] = []
    channel = await connection.channel(publisher_confirms=False)
    for kind, name in [("exchange", e) for e in exchanges] + [("queue", q) for q in queues]:
        try:
            if kind == "exchange":
                await asyncio.wait_for(channel.get_exchange(name, ensure=True), timeout)
            else:
                await asyncio.wait_for(channel.declare_queue(name, passive=True), timeout)
        except aiormq.exceptions.ChannelNotFoundEntity:
            missing.append(f"{kind} {name}")
        except aiormq.exceptions.ChannelAccessRefused:
            refused.append(f"{kind} {name}")
        if channel.is_closed:  # a failed passive declare closes the channel
            channel = await connection.channel(publisher_confirms=False)
    await channel.close()
    findings: list[Finding] = []
    if refused:
        findings.append(
            Finding(
                "topology",
                Status.FAIL,
                f"access refused to {', '.join(refused)}",
                "grant the broker's user configure, write and read permissions on its vhost: "
                "`rabbitmqctl set_permissions -p VHOST USER '.*' '.*' '.*'`",
            )
        )
    if missing:
        findings.append(
            Finding(
                "topology",
                Status.FAIL,
                f"missing {', '.join(missing)}",
                "start the broker once (`xbroker run`): it declares every exchange and queue "
                "of the directory at start, and again when the directory changes",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "topology",
                Status.OK,
                f"{len(exchanges)} exchanges and {len(queues)} queues present",
            )
        )
    return findings

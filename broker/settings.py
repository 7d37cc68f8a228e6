"""One typed settings object, built at start and passed down.

Sources, strongest first: ``XBROKER_*`` environment variables, then the TOML settings
file (``--config``, ``$XBROKER_CONFIG``, or ``examples/xbroker.toml`` when present).
Relative paths in the file resolve against the file's folder, so a checkout can be run
from anywhere.
"""

from __future__ import annotations

import json
import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from broker.errors import ConfigurationError
from signing import ParserLimits

__all__ = ["Settings", "load_settings"]

DEFAULT_CONFIG = Path("examples/xbroker.toml")
_PATH_FIELDS = (
    "state_dir",
    "directory",
    "pki_dir",
    "inbox_dir",
    "status_db",
    "audit_file",
    "api_tokens_file",
    "api_tls_cert",
    "api_tls_key",
    "api_tls_client_ca",
    "webhook_ca_file",
    "xta_tls_cert",
    "xta_tls_key",
    "xta_tls_client_ca",
)


class Settlement(StrEnum):
    """How a worker settles an ingress message with the copies it publishes for it."""

    CONFIRM = "confirm"  # each copy confirmed, then the ack
    TRANSACTION = "transaction"  # the copies and the ack in one AMQP transaction


class Settings(BaseSettings):
    """Everything the service needs to run."""

    model_config = SettingsConfigDict(env_prefix="XBROKER_", extra="forbid", frozen=True)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    amqp_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="every node of a RabbitMQ cluster, tried in order and again after "
        "every lost connection (XBROKER_AMQP_URLS: comma-separated); empty: amqp_url",
    )
    broker_kennung: str = "xbr:broker"
    broker_name: str = "xbroker"
    portal_kennung: str = Field(
        default="osi:hh-portal", description="the author `xbroker publish` signs as"
    )
    state_dir: Path = Path(".xbroker")
    directory: Path = Path("examples/directory.toml")
    pki_dir: Path | None = Field(default=None, description="default: <state_dir>/pki")
    inbox_dir: Path | None = Field(default=None, description="CLI agencies write here")
    standard_dirs: tuple[Path, ...] = ()

    prefetch: int = Field(default=32, ge=1, le=10_000)
    confirm_timeout_seconds: float = Field(default=5.0, gt=0)
    settlement: Settlement = Field(
        default=Settlement.CONFIRM,
        description="transaction: an ingress message's copies and its ack are committed "
        "together, so a worker killed mid-message publishes nothing twice "
        "(docs/scaling.md); confirm: each copy confirmed before the ack",
    )
    delivery_limit: int = Field(default=5, ge=1)
    malloc_mmap_threshold_bytes: int = Field(
        default=0,
        ge=0,
        description="allocations from this size on are mapped on their own and returned "
        "to the system when freed (glibc's mallopt): a third less peak memory per large "
        "message, at up to 40 % of its throughput (docs/performance.md, P18); 0 keeps "
        "glibc's own threshold, which grows with the largest allocation freed",
    )
    retry_delay_seconds: float = Field(
        default=1.0,
        gt=0,
        description="a message that fails by itself waits this long before its 2nd "
        "attempt, twice as long before each further one (up to retry_delay_max_seconds)",
    )
    retry_delay_max_seconds: float = Field(default=30.0, gt=0)
    disk_reserve_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=0,
        description="below this much free space for its state the worker stops taking "
        "messages until space returns",
    )
    disk_reserve_inodes: int = Field(default=1000, ge=0)
    disk_check_seconds: float = Field(default=5.0, gt=0)
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_xml_depth: int = Field(default=256, ge=8, le=256)  # libxml2's own bound
    # The parser's limits on a message's shape (signing.shape, docs/security.md).
    max_xml_elements: int = Field(default=200_000, ge=1)
    max_xml_attributes: int = Field(default=200_000, ge=1)
    max_xml_attributes_per_element: int = Field(default=64, ge=1)
    max_xml_namespaces: int = Field(default=1024, ge=1)
    max_xml_namespaces_in_scope: int = Field(default=64, ge=1)
    max_xml_text_length: int = Field(default=10_000_000, ge=1, le=10_000_000)
    processing_cpu_seconds: float = Field(
        default=10.0, gt=0, description="CPU time one message may use to be decided"
    )
    processing_wall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="wall time after which a message is given up on (docs/security.md)",
    )
    dedup_window_days: float = Field(default=7.0, gt=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    queue_sample_seconds: float = Field(default=10.0, gt=0)
    rabbitmq_metrics_url: str | None = Field(
        default=None,
        description="RabbitMQ's rabbitmq_prometheus endpoint (http://host:15692), "
        "source of the agency queue gauges",
    )
    warn_after_days: float = Field(default=3.0, gt=0, description="a copy waits unfetched")
    waiting_check_seconds: float = Field(default=300.0, gt=0)
    expire_after_days: float = Field(
        default=14.0, gt=0, description="an unfetched copy fails; the author is told"
    )

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)

    database_url: str | None = Field(
        default=None,
        description="postgresql://... : the dedup claims and the Laufzettel in that database, "
        "shared by every host (docs/scaling.md); unset: SQLite files under state_dir",
    )
    database_pool_size: int = Field(default=4, ge=1, le=100, description="connections per process")
    database_statement_timeout_seconds: float = Field(default=5.0, gt=0)
    database_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    database_synchronous_commit: bool = Field(
        default=False,
        description="wait for the server's WAL flush at each commit (off: survives a broker "
        "crash, as the SQLite stores do; on: also the database server's)",
    )
    status_retention_days: float = Field(
        default=365.0, gt=0, description="the Laufzettel keeps events this long"
    )
    retention_check_seconds: float = Field(
        default=3600.0, gt=0, description="how often old claims and events are pruned"
    )

    status_db: Path | None = Field(default=None, description="default: <state_dir>/status.sqlite3")
    audit_file: Path | None = Field(default=None, description="default: <state_dir>/audit.jsonl")
    audit_seal_every: int = Field(default=100, ge=1, description="entries between two seals")
    audit_seal_seconds: float = Field(default=60.0, gt=0, description="at most between seals")
    audit_retention_days: float = Field(default=365.0, gt=0)

    api_enabled: bool = False
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8443, ge=0, le=65535)
    api_tokens_file: Path | None = Field(
        default=None, description='TOML: [tokens] "<sha256 of token>" = "<Behördenkennung>"'
    )
    api_tls_cert: Path | None = None
    api_tls_key: Path | None = None
    api_tls_client_ca: Path | None = Field(
        default=None, description="CA certificates for client certificates (enables mTLS)"
    )
    ingress_queue_limit: int = Field(default=10_000, ge=0, description="HTTP answers 503 above")
    api_retry_after_seconds: int = Field(default=5, ge=1)
    api_header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request's headers must arrive within this"
    )
    api_body_timeout_seconds: float = Field(
        default=60.0, gt=0, description="and its body within this of its headers"
    )
    api_max_connections: int = Field(default=1024, ge=1, description="open at once, in all")
    api_max_connections_per_client: int = Field(
        default=64, ge=1, description="open at once from one address"
    )

    # Webhook delivery (docs/webhooks.md). The default schedule spans about three days.
    webhook_retry_seconds: tuple[float, ...] = Field(
        default=(30, 120, 600, 3600, 21600, 43200, 43200, 43200, 43200, 43200),
        description="wait after the 1st, 2nd, ... failed push; then the copy is failed",
    )
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_read_timeout_seconds: float = Field(default=30.0, gt=0)
    webhook_prefetch: int = Field(default=8, ge=1, le=1000, description="pushes in flight")
    webhook_ca_file: Path | None = Field(
        default=None, description="CA certificates for webhook endpoints (default: system)"
    )
    webhook_proxy: str | None = Field(default=None, description="HTTP(S) proxy for pushes")

    # The XTA 2 endpoint (docs/xta.md). Without its own TLS files, the development PKI's
    # (made by `xbroker pki init`) are used: <pki>/tls/xta-server.crt|.key and the CA.
    xta_enabled: bool = False
    xta_host: str = "127.0.0.1"
    xta_port: int = Field(default=8444, ge=0, le=65535)
    xta_tls_cert: Path | None = None
    xta_tls_key: Path | None = None
    xta_tls_client_ca: Path | None = Field(
        default=None, description="CA certificates of the agencies' TLS client certificates"
    )
    xta_max_part_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="one MTOM part (message or attachment)"
    )
    xta_max_request_bytes: int = Field(
        default=60 * 1024 * 1024, ge=1024, description="a whole SendMessage request"
    )
    xta_max_envelope_bytes: int = Field(default=1024 * 1024, ge=1024)
    xta_max_list_items: int = Field(
        default=1000, ge=1, description="a status list's length, whatever the caller asks"
    )
    xta_box_max_age_days: float = Field(
        default=15.0,
        gt=0,
        description="a message box keeps what it holds this long; longer than "
        "expire_after_days (checked at start)",
    )
    xta_box_check_seconds: float = Field(
        default=60.0, gt=0, le=900, description="how often unclosed copies are expired"
    )
    xta_box_roll_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="a box's stream starts a new segment at least this often (padding), "
        "so retention can drop closed copies",
    )
    xta_box_segment_bytes: int = Field(
        default=1024 * 1024, ge=4096, description="segment size of a box's stream"
    )

    @property
    def box_max_age_seconds(self) -> float:
        """How long a message box's stream keeps a copy (its ``x-max-age``).

        A copy must outlast its expiry, or it could leave its box before its author is
        told; the expiry runs every ``xta_box_check_seconds``, so retention must exceed
        ``expire_after_days`` by two of those at least. Checked at start. It is a setting
        of its own rather than derived from the expiry because a stream's arguments
        cannot change in place: a changed expiry must not need the boxes declared anew.
        """
        expiry = self.expire_after_days * 86400
        chosen = self.xta_box_max_age_days * 86400
        if chosen < expiry + 2 * self.xta_box_check_seconds:
            raise ConfigurationError(
                f"xta_box_max_age_days ({self.xta_box_max_age_days:g}) must be longer than "
                f"expire_after_days ({self.expire_after_days:g}) by two expiry rounds "
                f"({2 * self.xta_box_check_seconds:g} s, xta_box_check_seconds): a message "
                "box must keep a copy until its author has been told that it expired"
            )
        return chosen

    @field_validator("amqp_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        """``a,b,c`` (or a JSON list) from the environment; a list from the file."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @property
    def rabbitmq_urls(self) -> tuple[str, ...]:
        """The URLs to connect to, in order: ``amqp_urls``, or ``amqp_url`` alone."""
        return self.amqp_urls or (self.amqp_url,)

    def parser_limits(self) -> ParserLimits:
        """The limits every message is parsed with."""
        return ParserLimits(
            max_bytes=self.max_message_bytes,
            max_depth=self.max_xml_depth,
            max_elements=self.max_xml_elements,
            max_attributes=self.max_xml_attributes,
            max_attributes_per_element=self.max_xml_attributes_per_element,
            max_namespaces=self.max_xml_namespaces,
            max_namespaces_in_scope=self.max_xml_namespaces_in_scope,
            max_text_length=self.max_xml_text_length,
        )

    @property
    def pki(self) -> Path:
        return self.pki_dir or self.state_dir / "pki"

    @property
    def trust_dir(self) -> Path:
        return self.pki / "trust"

    @property
    def crl_dir(self) -> Path:
        return self.pki / "crl"

    @property
    def party_certificate_dir(self) -> Path:
        return self.pki / "parties"

    @property
    def inbox(self) -> Path:
        return self.inbox_dir or self.state_dir / "inbox"

    @property
    def status_path(self) -> Path:
        return self.status_db or self.state_dir / "status.sqlite3"

    @property
    def audit_path(self) -> Path:
        return self.audit_file or self.state_dir / "audit.jsonl"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init arguments).
        return (env_settings, init_settings)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the file (if any) and the environment, then apply
    ``overrides`` (already typed values, strongest of all)."""
    path = _config_path(config)
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"{path}: cannot read settings: {exc}") from exc
        base = path.parent
        for name in _PATH_FIELDS:
            if isinstance(values.get(name), str):
                values[name] = _resolve(base, values[name])
        if isinstance(values.get("standard_dirs"), list):
            values["standard_dirs"] = [_resolve(base, p) for p in values["standard_dirs"]]
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        raise ConfigurationError(f"{where}invalid settings:\n{exc}") from exc
    # Programmatic overrides (tests, benchmarks) win over the environment too.
    if overrides:
        settings = settings.model_copy(update=overrides)
    settings.box_max_age_seconds  # noqa: B018 (checks the message boxes' retention)
    return settings


def _config_path(config: str | Path | None) -> Path | None:
    if config is not None:
        return Path(config)
    env = os.environ.get("XBROKER_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()

"""The world of one benchmark run: its PKI, directory, settings file and RabbitMQ vhost.

Everything lives in a temporary folder made for the run, so a run never touches the
checkout's own development PKI or state. The parties are those of ``bench.parties``; the
agencies and the broker also get an RSA encryption key, and a second settings file
(``sealed_settings_file``) runs the same world with every copy sealed (``bench.sealing``).

RabbitMQ: on the checkout's local node (``broker.devnode``) every run gets a private
vhost, deleted at the end. Against an external node (``XBROKER_AMQP_URL`` naming another
host, or a URL passed in) the URL's vhost is used as given and the run deletes the
queues and exchanges it declared.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika

from bench import floor, relay
from bench.launch import EventLoop
from bench.parties import AGENCY_BAU, AGENCY_MELD, AUTHORS, BROKER, KeyKind
from broker import devnode
from broker.amqp import topology
from broker.app import Parts, load_parts
from broker.settings import Settings, Settlement, load_settings
from signing import Signer
from signing.devpki import issue, issue_encryption, setup_ca
from signing.keyfiles import party_paths

__all__ = [
    "SEALED_SETTINGS",
    "BenchWorld",
    "bench_world",
    "offline_parts",
    "resolve_amqp",
    "write_world",
]

SEALED_SETTINGS = "xbroker-sealed.toml"

_DIRECTORY = f"""\
[[agency]]
kennung = "{AUTHORS["ec"]}"
name = "Benchmark portal (ECDSA P-256)"
certificates = ["{AUTHORS["ec"].replace(":", "_")}.crt"]
may_send = ["meldung.anmeldung.0200", "bau.antrag.0200"]

[[agency]]
kennung = "{AUTHORS["rsa"]}"
name = "Benchmark portal (RSA-3072)"
certificates = ["{AUTHORS["rsa"].replace(":", "_")}.crt"]
may_send = ["meldung.anmeldung.0200", "bau.antrag.0200"]

[[agency]]
kennung = "{AGENCY_MELD}"
name = "Benchmark Meldebehörde"
certificates = ["{AGENCY_MELD.replace(":", "_")}.crt"]
encryption = ["{AGENCY_MELD.replace(":", "_")}.enc.crt"]
accepts = ["meldung.anmeldung.0200"]
endpoint = {{ kind = "amqp", test = false }}

[[agency]]
kennung = "{AGENCY_BAU}"
name = "Benchmark Bauprüfabteilung"
certificates = ["{AGENCY_BAU.replace(":", "_")}.crt"]
encryption = ["{AGENCY_BAU.replace(":", "_")}.enc.crt"]
accepts = ["bau.antrag.0200"]
endpoint = {{ kind = "amqp", test = false }}
"""


@dataclass(frozen=True)
class BenchWorld:
    """The files of one run and the URL of its vhost."""

    root: Path
    amqp_url: str
    settings_file: Path
    settings: Settings
    parts: Parts
    loop: EventLoop = "asyncio"  # the event loop the worker processes run on
    sealed_settings_file: Path | None = None  # the same world, every copy sealed
    settlement: Settlement = Settlement.CONFIRM  # how its workers settle ingress messages

    def signer(self, kennung: str) -> Signer:
        cert, key = party_paths(self.settings.pki, kennung)
        return Signer.from_files(key, cert)

    def author_signer(self, key: KeyKind) -> Signer:
        return self.signer(AUTHORS[key])

    def worker_env(self, state_dir: Path) -> dict[str, str]:
        """Environment for an ``xbroker run`` of this world with its own state folder.

        ``XBROKER_*`` variables beat the settings file, so one inherited from the shell
        (``make test`` exports ``XBROKER_AMQP_URL``) must not point a worker elsewhere.
        """
        return {
            "XBROKER_AMQP_URL": self.amqp_url,
            "XBROKER_STATE_DIR": str(state_dir),
            "XBROKER_DATABASE_URL": "",  # SQLite files under state_dir, unless a drain says
            "XBROKER_SETTLEMENT": self.settlement.value,
        }


def _write_pki(pki: Path) -> None:
    """The CA, then one certificate per party; the authors get the key type they test."""
    setup_ca(pki)
    parties = pki / "parties"
    issue(pki / "ca", BROKER, "Benchmark broker", parties, key_type="ec")
    issue(pki / "ca", AUTHORS["ec"], "Benchmark portal", parties, key_type="ec")
    issue(pki / "ca", AUTHORS["rsa"], "Benchmark portal", parties, key_type="rsa")
    issue(pki / "ca", AGENCY_MELD, "Benchmark Meldebehörde", parties, key_type="ec")
    issue(pki / "ca", AGENCY_BAU, "Benchmark Bauprüfabteilung", parties, key_type="ec")
    for kennung in (BROKER, AGENCY_MELD, AGENCY_BAU):
        issue_encryption(pki / "ca", kennung, "Benchmark", pki)  # RSA-OAEP-256


def _write_settings(
    root: Path, amqp_url: str, prefetch: int, name: str = "xbroker.toml", sealed: bool = False
) -> Path:
    path = root / name
    path.write_text(
        "# Written by the benchmark for one run.\n"
        f'amqp_url = "{amqp_url}"\n'
        f'broker_kennung = "{BROKER}"\n'
        'broker_name = "xbroker benchmark"\n'
        'state_dir = "state"\n'
        f'directory = "{"directory-sealed.toml" if sealed else "directory.toml"}"\n'
        'pki_dir = "pki"\n'
        f"prefetch = {prefetch}\n"
        'metrics_host = "127.0.0.1"\n'
        "metrics_port = 0\n",
        encoding="utf-8",
    )
    return path


def write_world(root: Path, amqp_url: str, prefetch: int = 64) -> Path:
    """The run's PKI, directory and settings under ``root``; returns the settings file.
    Beside them, the same world with every copy sealed (``SEALED_SETTINGS``)."""
    _write_pki(root / "pki")
    (root / "directory.toml").write_text(_DIRECTORY, encoding="utf-8")
    (root / "directory-sealed.toml").write_text("sealed = true\n\n" + _DIRECTORY, encoding="utf-8")
    _write_settings(root, amqp_url, prefetch, SEALED_SETTINGS, sealed=True)
    return _write_settings(root, amqp_url, prefetch)


def offline_parts(root: Path) -> Parts:
    """The parts of a world under ``root`` for measurements that need no RabbitMQ."""
    return load_parts(load_settings(write_world(root, "amqp://unused.invalid/")))


def resolve_amqp(explicit: str | None) -> tuple[str, devnode.NodeInfo | None]:
    """The URL to run against, and the local node if the run may make its own vhost there.

    An explicit URL is used as given. Otherwise ``XBROKER_AMQP_URL`` if set (its node is
    the local one when host and port match), else the local node, started if need be.
    """
    if explicit is not None:
        return explicit, None
    url = os.environ.get("XBROKER_AMQP_URL")
    if not url:
        started = devnode.ensure_node()
        return started.amqp_url, started
    running = devnode.node_status()
    parts = urlsplit(url)
    local = parts.hostname in {"127.0.0.1", "localhost"}
    if running is not None and local and parts.port == running.amqp_port:
        return url, running
    return url, None


@asynccontextmanager
async def bench_world(
    amqp_url: str | None = None,
    *,
    prefetch: int = 64,
    loop: EventLoop = "asyncio",
    settlement: Settlement = Settlement.CONFIRM,
) -> AsyncIterator[BenchWorld]:
    """Make the run's folder, PKI, directory, settings and vhost; remove them afterwards."""
    url, node = resolve_amqp(amqp_url)
    vhost: str | None = None
    if node is not None:
        vhost = f"xbroker-bench-{secrets.token_hex(4)}"
        devnode.add_vhost(vhost)
        devnode.set_permissions(vhost, node.user, ".*", ".*", ".*")
        url = node.url_for_vhost(vhost)
    root = Path(tempfile.mkdtemp(prefix="xbroker-bench-"))
    try:
        settings_file = write_world(root, url, prefetch)
        sealed_file = root / SEALED_SETTINGS
        settings = load_settings(settings_file, amqp_url=url)
        world = BenchWorld(
            root, url, settings_file, settings, load_parts(settings), loop, sealed_file, settlement
        )
        yield world
    finally:
        if vhost is not None:
            try:
                devnode.delete_vhost(vhost)
            except devnode.DevNodeError as exc:
                print(f"[bench] vhost {vhost} not deleted: {exc}", file=sys.stderr)
        else:
            await _delete_declared(url)
        shutil.rmtree(root, ignore_errors=True)


async def _delete_declared(url: str) -> None:
    """On a shared vhost: delete the queues and exchanges the run's topology declared."""
    queues = [topology.INGRESS_QUEUE, topology.DELIVERY_RECEIPT_QUEUE]
    # Queues the service declares beside the core ones (named in topology, if present).
    queues += [
        getattr(topology, name)
        for name in ("FAILURE_QUEUE", "REFUSAL_QUEUE")
        if hasattr(topology, name)
    ]
    queues += [topology.agency_queue(k) for k in (AGENCY_MELD, AGENCY_BAU)]
    queues += [topology.receipt_queue(k) for k in AUTHORS.values()]
    queues += [relay.RELAY_IN, relay.RELAY_OUT, relay.RELAY_SIDE, *floor.QUEUES]
    exchanges = [
        relay.RELAY_EXCHANGE,
        floor.EXCHANGE,
        topology.INGRESS_EXCHANGE,
        topology.DELIVER_EXCHANGE,
        topology.RECEIPT_EXCHANGE,
        topology.DELIVERY_RECEIPT_EXCHANGE,
        topology.DEAD_EXCHANGE,
    ]
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for name in queues + [f"{q}.dead" for q in queues]:
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
            for name in exchanges:
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(name)

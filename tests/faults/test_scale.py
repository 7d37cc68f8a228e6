"""Three broker hosts on one PostgreSQL and a 3-node cluster; one host is SIGKILLed mid-run.

A host is an ``xbroker run`` process with a state dir of its own (the PKI is shared: the
broker's key and the trust store), serving the HTTP API on a port of its own; every host
is given all three node URLs, each list starting with another node, and the same
database (a schema of the test's own), and settles in AMQP transactions (each message's
copies and its ack committed together). 5,000 trade registrations are fanned out to
three agencies. Once a third of them is accepted one host is frozen (SIGSTOP), the
claims it holds are read from the database, and it is killed (SIGKILL); the other two
finish. No agency reads meanwhile, so the copies are counted in RabbitMQ, by message id,
before any agency could absorb a repeat:

- every message is in every agency's queue once (0 lost, 0 published twice): a host
  that dies before a commit has published none of that message's copies, and the host
  that takes the message over (its claim's holder is gone: RETRY) publishes them; one
  that dies after it has acked the message with them (docs/scaling.md, "Duplicates when
  a host dies");
- the killed host, started again, takes part (it forwards delivery receipts);
- once the agencies have read, each handler was given each message once (the SDK's
  seen store absorbs the repeats), every queue is empty, and every message's Laufzettel
  is complete (accepted; for each agency as many ``delivered`` events as copies it got,
  none missing; nothing failed) read through the surviving hosts' HTTP API (all 5,000;
  500 from the restarted one) and through every host's ``xbroker status --from FILE``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from broker import cli
from broker.amqp import topology
from broker.devnode.cluster import Cluster
from broker.http_api import hash_token
from tests.conftest import free_port
from tests.faults.harness import RECIPIENTS, STALL, FaultRun, Vhost, fault_run
from tests.faults.processes import Worker
from tests.faults.scenario import declare_topology
from tests.polling import eventually

# The waits move as long as the run does (`STALL`); on a machine shared with other suites
# the run takes many minutes, and this bound only guards against a hang.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(2400)]

MESSAGES = 5000
HOSTS = 3
KILLED = 0
READERS = 8
"""HTTP requests in flight per host while the Laufzettel are read."""
SAMPLE = 500
"""Laufzettel read over HTTP from the restarted host (the survivors answer for all)."""

TOKEN = secrets.token_urlsafe(16)

HELD_BY = """
SELECT c.uuid FROM dedup_claims c
JOIN pg_stat_activity a ON a.pid = c.holder_pid AND a.backend_start = c.holder_start
WHERE NOT c.completed AND a.application_name = $1
"""


@dataclass
class Host:
    name: str
    env: dict[str, str]
    api_port: int
    worker: Worker

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def start_host(run: FaultRun, index: int, urls: list[str], tokens: Path) -> Host:
    """Host ``index``: its own state dir, API port, and name (which names its database
    sessions, so that its claims can be told from the others')."""
    name = f"host-{index}"
    api_port = free_port()
    env = {
        "XBROKER_BROKER_NAME": name,
        "XBROKER_STATE_DIR": str(run.logs.parent / name),
        "XBROKER_PKI_DIR": str(run.settings.pki),
        "XBROKER_API_ENABLED": "true",
        "XBROKER_API_PORT": str(api_port),
        "XBROKER_API_TOKENS_FILE": str(tokens),
        "XBROKER_SETTLEMENT": "transaction",
    }
    return Host(name, env, api_port, run.start_worker(urls, **env))


async def restart(run: FaultRun, host: Host) -> None:
    host.worker = run.start_worker(host.worker.urls, **host.env)
    await eventually(host.worker.ready, what=f"{host.name} ready again", timeout=120, interval=0.2)


async def kill_holding(host: Host, database_url: str) -> set[str]:
    """SIGKILL the host's worker; the messages whose claims it held then, read from the
    database while it was frozen (so that it could neither claim nor complete more)."""
    host.worker.process.send_signal(signal.SIGSTOP)
    try:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            rows = await conn.fetch(HELD_BY, f"xbroker {host.name} presence")
        finally:
            await conn.close()
    finally:
        host.worker.process.send_signal(signal.SIGKILL)
    assert host.worker.process.wait(30) == -signal.SIGKILL
    return {row["uuid"] for row in rows}


async def until_all_completed(database_url: str, vhost: Vhost, held: set[str]) -> None:
    """Until every message's claim is completed or was held by the killed host (which
    may have committed a message and died before completing its claim), and the ingress
    queue holds nothing, delivered or not."""

    async def completed() -> int:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM dedup_claims WHERE completed OR uuid = ANY($1)",
                    list(held),
                )
            )
        finally:
            await conn.close()

    await eventually(
        completed,
        until=lambda n: n == MESSAGES,
        what=f"{MESSAGES} claims completed or held by the killed host",
        timeout=STALL,
        interval=0.5,
        progressing=True,
    )
    await eventually(
        vhost.queues,
        until=lambda q: q.get(topology.INGRESS_QUEUE) == 0,
        what="the ingress queue empty",
        timeout=60,
        interval=0.5,
    )


async def copies_in(url: str, kennung: str) -> Counter[str]:
    """How often each message id is in the agency's queue: every message taken without
    an ack, counted, and given back by closing the channel (the agency reads it later)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.agency_queue(kennung), passive=True)
        depth = int(queue.declaration_result.message_count or 0)
        # A quorum queue gives an unlimited (0) prefetch 2,000 messages at most.
        await channel.set_qos(prefetch_count=depth + 1)
        seen: Counter[str] = Counter()

        async def count(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen[message.message_id or "none"] += 1

        await queue.consume(count)
        await eventually(
            lambda: sum(seen.values()),
            until=lambda n: n >= depth,
            what=f"{depth} copies read from {kennung}'s queue",
            timeout=STALL,
            interval=0.2,
            progressing=True,
        )
        await channel.close()  # every copy back to the queue, unacked
    assert sum(seen.values()) == depth
    return seen


def incomplete(
    document: dict[str, Any], copies: dict[str, Counter[str]], held: set[str]
) -> str | None:
    """What is missing from a Laufzettel, or None if it is complete: accepted (more than
    once only for a message taken over from the killed host), for every agency as many
    delivered events as copies it got, nothing failed or rejected."""
    uuid = document["uuid"]
    kinds = Counter(e["kind"] for e in document["events"])
    delivered = Counter(e["agency"] for e in document["events"] if e["kind"] == "delivered")
    wanted = Counter({k: copies[k][uuid] for k in RECIPIENTS})
    if set(document["recipients"]) != set(RECIPIENTS):
        return f"recipients {document['recipients']}"
    if not 1 <= kinds["accepted"] <= (2 if uuid in held else 1):
        return f"accepted {kinds['accepted']} times"
    if kinds["failed"] or kinds["rejected"] or document["state"] != "delivered":
        return f"state {document['state']}, {dict(kinds)}"
    if delivered != wanted:
        return f"delivered {dict(delivered)}, copies {dict(wanted)}"
    return None


async def laufzettel_over_http(host: Host, uuids: Iterable[str]) -> list[dict[str, Any]]:
    """Every message's Laufzettel from the host's HTTP API, `READERS` requests at a time."""
    limits = httpx.Limits(max_connections=READERS)
    headers = {"authorization": f"Bearer {TOKEN}"}
    gate = asyncio.Semaphore(READERS)
    async with httpx.AsyncClient(
        base_url=host.api, headers=headers, limits=limits, timeout=60.0, trust_env=False
    ) as client:

        async def get(uuid: str) -> httpx.Response:
            # A kept-alive connection the server closed as it was reused fails the
            # request without an answer: a client asks again, and so does this one.
            for _ in range(4):
                try:
                    return await client.get(f"/v1/messages/{uuid}")
                except httpx.TransportError:
                    await asyncio.sleep(1.0)
            return await client.get(f"/v1/messages/{uuid}")

        async def one(uuid: str) -> dict[str, Any]:
            async with gate:
                response = await get(uuid)
            assert response.status_code == 200, (host.name, uuid, response.status_code)
            document: dict[str, Any] = response.json()
            return document

        return list(await asyncio.gather(*(one(u) for u in uuids)))


def laufzettel_by_cli(run: FaultRun, host: Host, listed: Path) -> list[dict[str, Any]]:
    """``xbroker status --from FILE --json`` on the host: one process for every message."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "broker.cli", "--config", str(run.config)),
            *("status", "--from", str(listed), "--json"),
        ],
        env=dict(os.environ, **host.env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (host.name, done.returncode, done.stderr[-2000:])
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_complete(
    where: str,
    documents: list[dict[str, Any]],
    uuids: list[str],
    copies: dict[str, Counter[str]],
    held: set[str],
) -> None:
    assert [d["uuid"] for d in documents] == uuids, where
    problems = {d["uuid"]: p for d in documents if (p := incomplete(d, copies, held))}
    first = next((d for d in documents if d["uuid"] in problems), None)
    some = dict(list(problems.items())[:5])
    assert not problems, f"{where}: {len(problems)} incomplete, e.g. {some}; first {first}"


async def test_three_hosts_one_killed_lose_nothing_and_publish_nothing_twice(
    cluster: Cluster, cluster_vhost: Vhost, database_url: str, tmp_path: Path
) -> None:
    urls = cluster.urls(cluster_vhost.name)
    async with fault_run(urls, tmp_path, database_url=database_url) as run:
        try:
            tokens = tmp_path / "tokens.toml"
            tokens.write_text(
                f'[tokens]\n"{hash_token(TOKEN)}" = "{run.settings.portal_kennung}"\n'
            )
            await declare_topology(run.urls, run.settings)
            hosts = [
                start_host(run, i, cluster.urls(cluster_vhost.name, first=i), tokens)
                for i in range(HOSTS)
            ]
            await run.sign(MESSAGES)  # while the hosts start
            await run.portal.start()
            await run.publish_all()
            for host in hosts:
                await eventually(host.worker.ready, what=f"{host.name} ready", timeout=120)
            run.mark("prepared")

            await run.until_share_accepted(1 / 3)
            killed = hosts[KILLED]
            held = await kill_holding(killed, database_url)
            run.mark("killed")
            await until_all_completed(database_url, cluster_vhost, held)
            run.mark("all handled")
            handled_at = run.phases["all handled"] - run.phases["prepared"]

            copies = {k: await copies_in(urls[1], k) for k in RECIPIENTS}
            run.mark("copies counted")
            twice = {k: {u for u, n in c.items() if n > 1} for k, c in copies.items()}
            for kennung, counted in copies.items():
                assert set(counted) == set(run.uuids), f"{kennung}: lost or foreign copies"
            duplicates = sum(len(t) for t in twice.values())
            assert not duplicates, f"copies published twice: {twice}"

            await restart(run, killed)
            for agency in run.agencies:
                agency.start()
            await run.until_all_final()
            run.mark("all final")
            run.assert_exactly_once()
            await run.assert_queues_empty(cluster_vhost.queues)
            assert await killed.worker.metric("xbroker_receipts_total") > 0, "restarted idle"

            listed = tmp_path / "uuids.txt"
            listed.write_text("".join(f"{u}\n" for u in run.uuids))
            for host in hosts:
                uuids = run.uuids[:SAMPLE] if host is killed else run.uuids
                documents = await laufzettel_over_http(host, uuids)
                assert_complete(f"{host.name} HTTP", documents, uuids, copies, held)
            run.mark("read over HTTP")
            for host in hosts:
                documents = await asyncio.to_thread(laufzettel_by_cli, run, host, listed)
                assert_complete(f"{host.name} status", documents, run.uuids, copies, held)
            run.mark("read by status")

            codes = await asyncio.to_thread(lambda: [h.worker.stop() for h in hosts])
            assert codes == [0] * HOSTS, f"exit codes {codes}; logs in {run.logs}"
            for agency in run.agencies:
                await asyncio.to_thread(agency.stop)
            trails = [str(tmp_path / h.name / "audit.jsonl") for h in hosts]
            verified = await asyncio.to_thread(
                cli.main, ["--config", str(run.config), "audit", "verify", *trails]
            )
            assert verified == 0
            print(
                f"{MESSAGES} messages, {HOSTS} hosts: handled in {handled_at:.1f} s "
                f"({MESSAGES / handled_at:.0f} msg/s, a host killed midway); "
                f"claims held at the kill {len(held)}, copies published twice {duplicates} "
                f"({ {k: len(t) for k, t in twice.items()} })"
            )
        finally:
            print("phases (s):", ", ".join(f"{k} {v:.1f}" for k, v in run.phases.items()))

"""HTTP ingress: ``POST /v1/messages`` against publishing to the ingress over AMQP.

The API runs as ``bench.http_server`` (the API of ``xbroker run`` without the worker),
once with one process and once with one per core, each on a port of its own (clients
spread over them); the clients run in a process of their own (``bench.http_client``).
No worker consumes the ingress during these figures, so they are the ingress alone:

* ``http_max_1`` / ``http_max_N``: submissions answered 202 per second by 1 and N API
  processes, 32 keep-alive connections posting as fast as they are answered;
* ``amqp_max``: the same kind of messages published to the ingress exchange with
  confirms, 32 unconfirmed at a time, as the portal SDK does; ``http_ratio`` =
  ``http_max_N`` / ``amqp_max``;
* ``many_clients``: 10,000 keep-alive connections opened to the N processes, then 50 %
  of ``http_max_N`` offered on a fixed schedule for a few seconds: latency p50/p99/p99.9
  from the scheduled moment to the answer (target p99 < 100 ms), answers by status, and
  how many connections the server had closed as idle and were opened again.

Bounded and loopback only: every client stops after its bodies or its seconds, and the
servers listen on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from aio_pika.abc import AbstractChannel

from bench.http_client import write_bodies
from bench.latency import Percentiles
from bench.messages import MessageClass, sign_many
from bench.throughput import purge
from bench.world import BenchWorld
from broker.amqp import topology
from broker.http_api.auth import hash_token

__all__ = ["MANY_CLIENTS", "measure_http"]

MANY_CLIENTS = 10_000
_CONNECTIONS = 32
_START_SECONDS = 60.0


@asynccontextmanager
async def _servers(
    world: BenchWorld, count: int, token: str, clients: int
) -> AsyncIterator[list[str]]:
    """``count`` API processes sharing one state folder, as on one host; their URLs."""
    tokens = world.root / "api-tokens.toml"
    author = MessageClass("2kb", "ec").author
    tokens.write_text(f'[tokens]\n"{hash_token(token)}" = "{author}"\n', encoding="utf-8")
    env = {
        **os.environ,
        **world.worker_env(world.root / "state" / f"http-{secrets.token_hex(3)}"),
        "XBROKER_API_ENABLED": "true",
        "XBROKER_API_PORT": "0",
        "XBROKER_API_TOKENS_FILE": str(tokens),
        "XBROKER_INGRESS_QUEUE_LIMIT": str(10**9),  # no worker drains it here
        "XBROKER_API_MAX_CONNECTIONS": str(clients + 100),
        "XBROKER_API_MAX_CONNECTIONS_PER_CLIENT": str(clients + 100),
    }
    processes, urls = [], []
    (world.root / "logs").mkdir(parents=True, exist_ok=True)
    log = (world.root / "logs" / "http-server.log").open("ab")
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.launch", world.loop, "bench.http_server"),
                str(world.settings_file),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
            )
            processes.append(process)
            assert process.stdout is not None
            async with asyncio.timeout(_START_SECONDS):
                line = (await process.stdout.readline()).decode().split()
            if len(line) != 2 or line[0] != "ready":
                raise RuntimeError(f"bench.http_server did not start; see {log.name}")
            urls.append(line[1])
        yield urls
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            try:
                async with asyncio.timeout(15.0):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _client(world: BenchWorld, spec: dict[str, Any], bodies: Sequence[bytes]) -> Any:
    """Run ``bench.http_client`` with ``spec`` and ``bodies``; its result."""
    name = f"http-{spec['mode']}-{secrets.token_hex(3)}"
    spec_file, result_file, bodies_file = (
        world.root / f"{name}.{suffix}" for suffix in ("spec.json", "result.json", "bodies")
    )
    write_bodies(bodies_file, bodies)
    spec_file.write_text(json.dumps({**spec, "bodies": str(bodies_file)}), encoding="utf-8")
    (world.root / "logs").mkdir(parents=True, exist_ok=True)
    log = (world.root / "logs" / f"{name}.log").open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.launch", world.loop, "bench.http_client"),
            *(str(spec_file), str(result_file)),
            stderr=log,
        )
        if await process.wait() != 0:
            raise RuntimeError(f"bench.http_client {spec['mode']} failed; see {log.name}")
    finally:
        log.close()
        bodies_file.unlink(missing_ok=True)
    return json.loads(result_file.read_text())


async def measure_http(
    world: BenchWorld,
    channel: AbstractChannel,
    quick: bool,
    processes: int,
    *,
    clients: int = MANY_CLIENTS,
    count: int | None = None,
) -> dict[str, Any]:
    """Every figure of the module (see there); ``count`` messages per maximum."""
    cls = MessageClass("2kb", "ec")
    count = count or (1_000 if quick else 4_000)
    seconds = 4.0 if quick else 15.0
    token = secrets.token_urlsafe(24)
    out: dict[str, Any] = {"processes": processes, "clients": clients}
    ingress = [topology.INGRESS_QUEUE]

    bodies = sign_many(world.settings.pki, cls, count)
    amqp = await _client(
        world,
        {
            "mode": "amqp",
            "amqp_url": world.amqp_url,
            "connections": _CONNECTIONS,
            "author": cls.author,
        },
        bodies,
    )
    out["amqp_max"] = amqp["per_s"]
    await purge(channel, ingress)
    for n in sorted({1, processes}):
        bodies = sign_many(world.settings.pki, cls, count)
        async with _servers(world, n, token, clients) as urls:
            result = await _client(
                world,
                {"mode": "http-max", "urls": urls, "token": token, "connections": _CONNECTIONS},
                bodies,
            )
        out[f"http_max_{n}"] = result["per_s"]
        out[f"http_statuses_{n}"] = result["statuses"]
        await purge(channel, ingress)
    out["http_ratio"] = out[f"http_max_{processes}"] / out["amqp_max"]
    rate = out[f"http_max_{processes}"] / 2
    bodies = sign_many(world.settings.pki, cls, max(50, int(rate * seconds)))
    async with _servers(world, processes, token, clients) as urls:
        paced = await _client(
            world,
            {
                "mode": "http-paced",
                "urls": urls,
                "token": token,
                "connections": clients,
                "rate": rate,
                "seconds": seconds,
            },
            bodies,
        )
    await purge(channel, ingress)
    latencies = [ms / 1000 for ms in paced.pop("latencies_ms")]
    paced |= {"answered": len(latencies)} | asdict(Percentiles.of(latencies))
    out["many_clients"] = paced
    return out

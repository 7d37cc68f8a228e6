"""While a worker decides the worst hostile inputs, its event loop stays responsive.

Every class of ``tests/attacks/generators.py`` at the size its attack was first measured
at, the largest inputs the limits let through, and a signed 9.5 MB message that is
invalid at its end are published (by a process of their own) to a running broker.
Meanwhile:

* the loop's stalls are measured inside it, less the time the process waited for a CPU
  (``bench.stalls.LoopStalls``): what remains is the broker's own doing. It must stay
  under 200 ms: decided on the loop, the 9.5 MB message alone holds it for more than
  300 ms of CPU and the floods for seconds, while a loop that only hands work on
  measures 15-45 ms on an idle machine and up to about 125 ms under a load of 16 on two
  cores;
* a process of its own asks ``/readyz`` every 20 ms, as an operator's probe would; on a
  busy machine its answers also wait for CPUs, so the median must stay under 100 ms and
  no answer may take the seconds a decision on the loop used to hold it up;
* the broker's AMQP connection, with a heartbeat of 5 s (the shortest RabbitMQ
  advises), must not be lost: RabbitMQ closes a connection silent for two heartbeats,
  as one message decided on the loop once kept it for 21.9 s.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from copy import deepcopy
from pathlib import Path

import pytest

from bench.messages import grow_to
from bench.stalls import LoopStalls
from broker.commands.run import freeze_startup_heap, prepare_reports
from monitoring.http import build_app, serve
from monitoring.labels import ReceiptKind
from tests.attacks import generators as g
from tests.world import World, running_world
from xta_schemas.samples import sample_root, with_fresh_header

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 120.0
# Published from a process of its own: framing 90 MB is the publisher's work, not the
# broker's, and must not count against the broker's loop.
PUBLISH = """
import asyncio, pathlib, sys
import aio_pika
from broker.amqp import publishing, topology

async def main(url, folder, reply_to):
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    ingress = await channel.get_exchange(topology.INGRESS_EXCHANGE, ensure=False)
    for path in sorted(pathlib.Path(folder).iterdir()):
        message = publishing.message(path.read_bytes(), message_id=path.stem, reply_to=reply_to)
        await publishing.publish_confirmed(ingress, message, topology.INGRESS_ROUTING_KEY, 30.0)
    await connection.close()

asyncio.run(main(*sys.argv[1:]))
"""
PROBE = """
import http.client, json, pathlib, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
answers = []
while not stop.exists():
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", "/readyz")
    connection.getresponse().read()
    connection.close()
    answers.append((time.perf_counter() - started) * 1000)
    time.sleep(0.02)
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    separator = "&" if "?" in amqp_url else "?"
    async with running_world(
        f"{amqp_url}{separator}heartbeat=5", tmp_path_factory.mktemp("stall")
    ) as running:
        # As `xbroker run` starts: reports prepared, the start-up heap out of the cyclic
        # collector's reach (a full collection of this process's heap on a busy machine
        # takes 100-230 ms, which every thread waits for).
        prepare_reports(running.parts.catalog)
        freeze_startup_heap()
        try:
            yield running
        finally:
            gc.unfreeze()


def _hostile(world: World) -> dict[str, bytes]:
    signed = world.portal_signer.sign(world.fresh("anmeldung-hamburg.xml"))
    made: dict[str, Callable[[bytes], bytes]] = {
        "namespace flood": lambda s: g.namespace_flood(s, 20_000),
        "namespace flood, inclusive c14n": lambda s: g.inclusive_c14n(g.namespace_flood(s, 20_000)),
        "certificate flood": lambda s: g.certificate_flood(s, 4_000),
        "element flood": lambda s: g.element_flood(s, 2_000_000),
        "processing instructions": lambda s: g.pi_flood(s, 1_000_000),
        "attributes on one element": lambda s: g.attribute_flood(s, 100_000),
        "attributes": lambda s: g.attribute_spread(s, 1_000_000),
        "text": lambda s: g.text_flood(s, 9_000_000),
        "references": lambda s: g.reference_flood(s, 50_000),
        "elements within the limit": lambda s: g.element_flood(s, 199_900),
        "namespaces within the limit": lambda s: g.namespace_flood(g.element_flood(s, 199_900), 60),
    }
    return {name: make(signed) for name, make in made.items()}


def _invalid_at_its_end(world: World) -> tuple[str, bytes]:
    standard = world.parts.catalog.get("xbau/1.0")
    root = deepcopy(sample_root(standard, "bau.antrag.0200"))
    grow_to(root, 9_500_000)
    sha = root.findall("antrag/anlage")[-1].find("sha256")
    assert sha is not None
    sha.text = "not a sha-256"
    fresh = with_fresh_header(root, standard)
    return world.uuid_of(fresh), world.portal_signer.sign(fresh)


async def _run(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", *args, stdout=asyncio.subprocess.PIPE
    )


async def test_readyz_answers_and_the_connection_holds_while_hostile_input_is_decided(
    world: World, amqp_url: str, tmp_path: Path
) -> None:
    connection = world.broker._connection  # the broker's own, watched for a reconnect
    assert connection is not None
    closed: list[object] = []
    connection.close_callbacks.add(lambda *args: closed.append(args))
    inputs = {str(uuidlib.uuid4()): body for body in _hostile(world).values()}
    invalid_uuid, invalid = _invalid_at_its_end(world)
    inputs[invalid_uuid] = invalid
    folder = tmp_path / "inputs"
    folder.mkdir()
    for message_id, body in inputs.items():
        (folder / f"{message_id}.xml").write_bytes(body)
    endpoint = await serve(build_app(world.registry, world.broker.readiness))
    stop = tmp_path / "stop"
    probe = await _run(PROBE, endpoint.host, str(endpoint.port), str(stop))
    try:
        async with LoopStalls() as stalls:
            publisher = await _run(PUBLISH, amqp_url, str(folder), world.portal.kennung)
            assert await asyncio.wait_for(publisher.wait(), TIMEOUT) == 0
            finals = [await world.portal.wait_final(uuid, TIMEOUT) for uuid in inputs]
    finally:
        stop.touch()
        out, _ = await asyncio.wait_for(probe.communicate(), TIMEOUT)
        await endpoint.stop()

    answers = json.loads(out)
    assert all([r.kind for r in final.receipts] == [ReceiptKind.REJECTED] for final in finals), [
        (f.uuid, [(r.kind, r.reason) for r in f.receipts]) for f in finals
    ]
    assert len(answers) > 20, "the probe must have asked throughout"
    p95 = statistics.quantiles(answers, n=20)[-1]
    print(f"loop: worst stall of its own {stalls.worst * 1000:.1f} ms")
    print(
        f"/readyz: {len(answers)} answers, median {statistics.median(answers):.1f} ms, "
        f"p95 {p95:.1f} ms, max {max(answers):.1f} ms"
    )
    # The loop held up by the broker's own work: the property the design must keep.
    assert stalls.worst < 0.2
    # /readyz as a prober sees it, which a busy machine delays too (each process waits
    # its turn for a CPU): answered throughout, never held for the seconds a decision
    # on the loop took (21.9 s for one message before).
    assert statistics.median(answers) < 100.0
    assert max(answers) < 2000.0
    assert closed == []
    assert world.broker.readiness()["rabbitmq"]

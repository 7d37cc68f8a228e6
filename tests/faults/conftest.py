"""Fixtures of the fault suite: a vhost per scenario, a small file system, a cluster.

``node_vhost``
    A vhost of the scenario's own on the session's node, so that "every queue empty"
    looks at this scenario's queues alone.
``small_disk``
    A 64 MB tmpfs (a loop-mounted ext4 file where tmpfs cannot be mounted) for a state
    dir that can be filled. Mounting needs root: without it the scenario is skipped,
    and under ``CI=true`` it fails instead.
``cluster`` (session) and ``cluster_vhost``
    Three RabbitMQ nodes on loopback (`broker.devnode.cluster`), started once for the
    session's cluster scenarios and stopped at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker import devnode
from broker.devnode.cluster import Cluster, start_cluster
from tests.conftest import RabbitMQ
from tests.faults.harness import Vhost
from tests.tools import unavailable

SMALL_DISK = "64m"


def _parse_queues(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        name, _, messages = line.rpartition("\t")
        if name and messages.strip().isdigit():
            counts[name] = int(messages)
    return counts


@pytest.fixture
def node_vhost(rabbitmq: RabbitMQ, request: pytest.FixtureRequest) -> Iterator[Vhost]:
    if rabbitmq.node is None:
        unavailable("the project-local node", "the fault suite makes its own vhosts on it")
    root = request.config.rootpath
    name = f"{rabbitmq.vhost}-{request.node.name[:40]}-{secrets.token_hex(2)}"
    devnode.add_vhost(name, root=root)
    devnode.set_permissions(name, rabbitmq.user, ".*", ".*", ".*", root=root)

    # The node's Prometheus plugin answers at once; rabbitmqctl starts a VM per call.
    metrics = f"http://127.0.0.1:{rabbitmq.node.prometheus_port}/metrics/detailed"

    async def queues() -> dict[str, int]:
        params = {"vhost": name, "family": "queue_coarse_metrics"}
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            text = (await client.get(metrics, params=params)).text
        return {
            sample.labels["queue"]: int(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "rabbitmq_detailed_queue_messages"
        }

    yield Vhost(rabbitmq.node.url_for_vhost(name), name, queues)
    devnode.delete_vhost(name, root=root)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 64 MB file system mounted at ``tmp_path/state``."""
    if os.geteuid() != 0:
        unavailable("a small file system", "mounting one needs root")
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        image = tmp_path / "state.img"
        with image.open("wb") as f:
            f.truncate(64 * 1024 * 1024)
        for command in (
            ["mkfs.ext4", "-q", "-F", str(image)],
            ["mount", "-o", "loop", str(image), str(mount)],
        ):
            if shutil.which(command[0]) is None:
                unavailable(
                    "a small file system", f"neither tmpfs ({done.stderr.strip()}) nor {command[0]}"
                )
            step = subprocess.run(command, capture_output=True, text=True, check=False)
            if step.returncode != 0:
                unavailable("a small file system", step.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    try:
        started = start_cluster(request.config.rootpath)
    except devnode.DevNodeError as exc:
        unavailable("a 3-node RabbitMQ cluster", str(exc))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster_vhost(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Vhost]:
    name = f"xbroker-faults-{request.node.name[:40]}-{secrets.token_hex(2)}"
    cluster.ctl("add_vhost", name)
    cluster.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    async def queues() -> dict[str, int]:
        listed = await asyncio.to_thread(cluster.ctl, "list_queues", "-p", name, "name", "messages")
        return _parse_queues(listed)

    yield Vhost(cluster.nodes[0].url(name), name, queues)
    with contextlib.suppress(devnode.DevNodeError):
        cluster.ctl("delete_vhost", name)

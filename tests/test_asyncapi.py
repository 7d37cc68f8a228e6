"""docs/asyncapi.yaml, the AMQP interface for clients in any language: valid and complete.

Valid: the official AsyncAPI CLI (``asyncapi validate``) accepts it, and rejects it once
broken. Complete: the topology is declared on a vhost of this module's own for a
directory with every kind of party (an author, AMQP agencies with and without a test
inbox, a webhook agency with its retry delay queues, an XTA agency with its message
box), and every exchange, queue, queue argument and binding RabbitMQ then lists is in
the document, and nothing the document names is missing from RabbitMQ.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest
import yaml

from broker.amqp import publishing, refusal, topology
from broker.errors import DeliveryFailure, Reason
from broker.receipts.document import RECEIPT_XSD
from broker.webhook.queues import declare_delay_queues
from routing import Directory, WebhookEndpoint

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
DELIVERY_LIMIT = 5  # the settings' default, which the document shows
WEBHOOK_DELAYS = (0.5, 30.0)
# How a parameter's value looks in a name. A Behördenkennung may hold dots, which would
# make receipts.<kennung>.dead ambiguous; the kennungen of DIRECTORY hold none.
VALUES = {"kennung": r"[a-z]{2,10}:[A-Za-z0-9_\-]+", "seconds": r"[0-9.]+", "queue": r".+"}

DIRECTORY = """
[[agency]]
kennung = "osi:portal"
name = "Portal"
may_send = ["*"]

[[agency]]
kennung = "psw:01"
name = "Agency with a test inbox that also sends"
accepts = ["t.a"]
may_send = ["t.*"]

[[agency]]
kennung = "psw:02"
name = "Agency without a test inbox"
accepts = ["t.a"]
endpoint = { kind = "amqp", test = false }

[[agency]]
kennung = "gew:01"
name = "Webhook agency"
accepts = ["t.a"]
endpoint = { kind = "webhook", url = "https://gew.example/x", secret_env = "X", \
    test_url = "https://gew.example/t" }

[[agency]]
kennung = "bau:01"
name = "XTA agency"
accepts = ["t.a"]
endpoint = { kind = "xta" }
"""


def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return document


# validity


def _validate(asyncapi: str, path: Path, work: Path) -> subprocess.CompletedProcess[str]:
    # The CLI sends usage analytics unless its config file says no; it gets one of its
    # own, and a HOME of its own, so it neither phones home nor writes to the user's.
    config = work / "asyncapi-analytics.json"
    config.write_text('{"analyticsEnabled": "false", "infoMessageShown": "true"}')
    env = {
        **os.environ,
        "HOME": str(work),
        "ASYNCAPI_METRICS_CONFIG_PATH": str(config),
        "SUPPRESS_NO_CONFIG_WARNING": "1",
    }
    return subprocess.run(
        [asyncapi, "validate", str(path), "--fail-severity", "warn"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_the_official_asyncapi_cli_validates_the_document(asyncapi: str, tmp_path: Path) -> None:
    done = _validate(asyncapi, DOCUMENT, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout


def test_the_cli_refuses_the_document_with_an_unknown_amqp_binding(
    asyncapi: str, tmp_path: Path
) -> None:
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(DOCUMENT.read_text(encoding="utf-8").replace("is: queue", "is: queues", 1))

    done = _validate(asyncapi, broken, tmp_path)

    assert done.returncode != 0, done.stdout
    assert "error" in done.stdout


def test_the_document_is_asyncapi_3() -> None:
    assert _document()["asyncapi"].startswith("3.")


# completeness against what RabbitMQ holds


@dataclass(frozen=True)
class Topology:
    exchanges: dict[str, str]  # name → type
    queues: dict[str, dict[str, object]]  # name → arguments
    bindings: set[tuple[str, str, str]]  # (exchange, queue, routing key)


@pytest.fixture(scope="module")
async def declared(
    module_vhost_url: str, rabbitmqctl: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Topology]:
    """What RabbitMQ lists after the broker declared its topology for ``DIRECTORY``."""
    path = tmp_path_factory.mktemp("asyncapi") / "directory.toml"
    path.write_text(DIRECTORY, encoding="utf-8")
    directory = Directory.load(path)
    connection = await aio_pika.connect(module_vhost_url)
    async with connection:
        channel = await connection.channel()
        exchanges = await topology.declare_core(channel, DELIVERY_LIMIT)
        await topology.declare_for_directory(channel, exchanges, directory, DELIVERY_LIMIT)
        for agency in directory:
            if isinstance(agency.endpoint, WebhookEndpoint):
                await declare_delay_queues(
                    channel, agency.kennung, test=agency.endpoint.test, delays=WEBHOOK_DELAYS
                )
    vhost = unquote(urlsplit(module_vhost_url).path[1:])

    def listed(*args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(rabbitmqctl(*args, "--formatter", "json"))
        return rows

    yield Topology(
        exchanges={
            row["name"]: row["type"]
            for row in listed("list_exchanges", "-p", vhost, "name", "type")
            if row["name"] and not row["name"].startswith("amq.")
        },
        queues={
            row["name"]: {key: value for key, _, value in row["arguments"]}
            for row in listed("list_queues", "-p", vhost, "name", "arguments")
        },
        bindings={
            (row["source_name"], row["destination_name"], row["routing_key"])
            for row in listed(
                "list_bindings", "-p", vhost, "source_name", "destination_name", "routing_key"
            )
            if row["source_name"]  # every queue's binding to the default exchange
        },
    )


@dataclass(frozen=True)
class Channel:
    key: str
    spec: dict[str, Any]
    parameters: dict[str, Any]  # the channel's, and the shared ones its bindings name

    @property
    def amqp(self) -> dict[str, Any]:
        binding: dict[str, Any] = self.spec["bindings"]["amqp"]
        return binding

    def pattern(self, template: str) -> re.Pattern[str]:
        """``template`` (a name with ``{parameters}``) as a regular expression."""
        parts = re.split(r"\{(\w+)\}", template)
        regex = ""
        for index, part in enumerate(parts):
            if index % 2 == 0:
                regex += re.escape(part)
            else:
                enum = self.parameters[part].get("enum")
                choice = "|".join(map(re.escape, enum)) if enum else VALUES[part]
                regex += f"(?P<{part}>{choice})"
        return re.compile(regex)


def _channels() -> list[Channel]:
    document = _document()
    shared = document["components"]["parameters"]
    out = []
    for key, spec in document["channels"].items():
        parameters = {
            **shared,
            **{
                name: shared[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
                for name, p in spec.get("parameters", {}).items()
            },
        }
        out.append(Channel(key, spec, parameters))
    return out


def _queue_channel(name: str, arguments: dict[str, object]) -> tuple[Channel, dict[str, str]]:
    """The one queue channel that documents ``name`` with exactly these ``arguments``
    (an inbox is a quorum queue or, for an XTA agency, a stream), and the parameters'
    values."""
    named = [
        (channel, match.groupdict())
        for channel in _channels()
        if channel.amqp["is"] == "queue"
        and (match := channel.pattern(channel.amqp["queue"]["name"]).fullmatch(name))
    ]
    found = [
        (channel, values)
        for channel, values in named
        if {k: _fill(v, values) for k, v in channel.spec["x-queue-arguments"].items()} == arguments
    ]
    assert len(found) == 1, (name, arguments, [c.spec["x-queue-arguments"] for c, _ in named])
    return found[0]


def _fill(template: object, values: dict[str, str]) -> object:
    """A documented value with the parameters' values put in; ``a × b`` multiplied."""
    if not isinstance(template, str):
        return template
    text = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
    if "×" in text:
        left, right = text.split("×")
        return round(float(left) * float(right))
    return text


def test_every_exchange_declared_is_in_the_document_with_its_type(declared: Topology) -> None:
    documented = {
        c.amqp["exchange"]["name"]: c.amqp["exchange"]["type"]
        for c in _channels()
        if c.amqp["is"] == "routingKey"
    }

    assert documented == declared.exchanges


def test_every_queue_declared_is_in_the_document_with_its_arguments(declared: Topology) -> None:
    for name, arguments in declared.queues.items():
        _queue_channel(name, arguments)


def test_every_queue_channel_of_the_document_exists(declared: Topology) -> None:
    matched = {_queue_channel(name, args)[0].key for name, args in declared.queues.items()}
    documented = {c.key for c in _channels() if c.amqp["is"] == "queue"}

    assert documented == matched


def _binds(
    channel: Channel, values: dict[str, str], bound: dict[str, str], exchange: str, key: str
) -> bool:
    """Whether the documented binding ``bound`` of the queue is ``exchange`` with ``key``."""
    match = channel.pattern(bound["routingKey"]).fullmatch(key)
    if bound["exchange"] != exchange or match is None:
        return False
    # A parameter of both the queue's name and the key has one value: inbox.{kennung}
    # binds agency.{kennung}.inbox, not another agency's inbox.
    return all(values.get(name, value) == value for name, value in match.groupdict().items())


def test_every_binding_declared_is_in_the_document_and_each_documented_one_exists(
    declared: Topology,
) -> None:
    used: set[tuple[str, int]] = set()
    for exchange, queue, key in declared.bindings:
        channel, values = _queue_channel(queue, declared.queues[queue])
        documented = {
            (channel.key, index)
            for index, bound in enumerate(channel.spec["x-bound-to"])
            if _binds(channel, values, bound, exchange, key)
        }
        assert documented, (exchange, queue, key)
        used |= documented
    every = {
        (c.key, index)
        for c in _channels()
        if c.amqp["is"] == "queue"
        for index in range(len(c.spec["x-bound-to"]))
    }
    assert every == used


def test_the_routing_keys_clients_publish_with_are_the_documented_ones() -> None:
    addresses = {c.key: c.spec["address"] for c in _channels()}

    assert addresses["submit"] == topology.INGRESS_ROUTING_KEY
    assert addresses["delivered"] == topology.DELIVERY_RECEIPT_ROUTING_KEY
    assert addresses["refused"] == topology.REFUSAL_ROUTING_KEY


def test_the_copy_headers_are_the_ones_the_broker_sets() -> None:
    schemas = _document()["components"]["schemas"]

    assert set(schemas["CopyHeaders"]["properties"]) == {
        publishing.HEADER_PUBLISHED,
        publishing.HEADER_TYPE,
        publishing.HEADER_AUTHOR,
    }
    assert set(schemas["DeliveredReceiptHeaders"]["properties"]) == {publishing.HEADER_PUBLISHED}
    assert set(schemas["RefusalHeaders"]["properties"]) == set(
        schemas["CopyHeaders"]["properties"]
    ) | {refusal.HEADER_REFUSED_FROM}


def test_every_code_a_receipt_can_carry_is_documented() -> None:
    codes = set(_document()["components"]["schemas"]["Code"]["enum"])

    assert {reason.value for reason in [*Reason, *DeliveryFailure]} == codes


def test_the_embedded_receipt_schema_is_the_one_the_broker_validates_with() -> None:
    embedded = _document()["components"]["schemas"]["Quittung"]["x-xsd"]

    assert embedded.strip() == RECEIPT_XSD.read_text(encoding="utf-8").strip()

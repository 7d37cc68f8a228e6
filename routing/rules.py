"""Routing rules as pure functions: header facts + directory -> recipients.

The rules, in order:
1. the author must be in the directory and allowed to send the message type
   (``author-unknown``, ``author-not-authorized``);
2. named readers receive the message if each accepts the type and version
   (else ``reader-does-not-accept``);
3. without a reader, the agencies that accept the type and are responsible for the
   region read from the content receive it (an agency with region "*" is responsible
   everywhere, and for messages whose content names no region);
4. agencies subscribed to notifications of the type receive copies (fan-out);
5. a message with the test flag goes only to test endpoints;
6. nobody left → ``no-route``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from broker.errors import Reason
from routing.directory import Directory
from routing.errors import RouteError

__all__ = ["Recipient", "Role", "RoutingInput", "route"]


class Role(StrEnum):
    READER = "reader"  # named in the header
    RESPONSIBLE = "responsible"  # found by region
    NOTIFIED = "notified"  # receives a copy


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """What routing may know of a message: only signed, validated facts."""

    author: str
    nachrichtentyp: str
    version: str
    readers: tuple[str, ...] = ()
    facts: Mapping[str, str] | None = None
    test: bool = False


@dataclass(frozen=True, slots=True)
class Recipient:
    kennung: str
    role: Role
    test: bool = False


def route(message: RoutingInput, directory: Directory) -> tuple[Recipient, ...]:
    """Recipients of a message, in a stable order; raises RouteError."""
    author = directory.get(message.author)
    if author is None:
        raise RouteError(Reason.AUTHOR_UNKNOWN, f"author {message.author} is not in the directory")
    if not author.may_author(message.nachrichtentyp):
        raise RouteError(
            Reason.AUTHOR_NOT_AUTHORIZED,
            f"{message.author} may not send {message.nachrichtentyp}",
        )
    primary = _readers(message, directory) if message.readers else _responsible(message, directory)
    chosen = {r.kennung for r in primary}
    copies = tuple(
        Recipient(agency.kennung, Role.NOTIFIED)
        for agency in directory.notified(message.nachrichtentyp, message.version)
        if agency.kennung not in chosen and agency.kennung != message.author
    )
    recipients = primary + copies
    if message.test:
        recipients = tuple(
            Recipient(r.kennung, r.role, test=True)
            for r in recipients
            if _has_test_endpoint(directory, r.kennung)
        )
    if not recipients:
        raise RouteError(Reason.NO_ROUTE, _no_route_detail(message))
    return recipients


def _readers(message: RoutingInput, directory: Directory) -> tuple[Recipient, ...]:
    out: list[Recipient] = []
    for kennung in dict.fromkeys(message.readers):
        agency = directory.get(kennung)
        if agency is None or not agency.accepts_type(message.nachrichtentyp, message.version):
            raise RouteError(
                Reason.READER_DOES_NOT_ACCEPT,
                f"reader {kennung} does not accept {message.nachrichtentyp} "
                f"version {message.version}",
            )
        out.append(Recipient(kennung, Role.READER))
    return tuple(out)


def _responsible(message: RoutingInput, directory: Directory) -> tuple[Recipient, ...]:
    region = (message.facts or {}).get("ags") or None
    return tuple(
        Recipient(agency.kennung, Role.RESPONSIBLE)
        for agency in directory.responsible(region, message.nachrichtentyp, message.version)
    )


def _has_test_endpoint(directory: Directory, kennung: str) -> bool:
    agency = directory.get(kennung)
    return agency is not None and agency.endpoint.test


def _no_route_detail(message: RoutingInput) -> str:
    region = (message.facts or {}).get("ags")
    where = f" for region {region}" if region else " (no region in the content)"
    test = " with a test endpoint" if message.test else ""
    return f"no agency{test} receives {message.nachrichtentyp}{where}"

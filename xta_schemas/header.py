"""Reading a message's header by its manifest: XPaths, and the rules the standard sets.

Every check here is a rule of the manifest's ``[header]`` (docs/standards.md): the form of
the identity, the time zone of the creation time, how the nachrichtentyp relates to the
root, how parties are named. Errors name the manifest's field (``[header] created``) and
where in the message it is (line and element path, one prefix per namespace), so a
sender reads them in the words of its own standard.
"""

from __future__ import annotations

import hashlib
import re
import uuid as uuidlib
from collections.abc import Mapping
from datetime import datetime
from typing import NoReturn
from zoneinfo import ZoneInfo

from lxml import etree

from broker.errors import Reason

from .errors import MessageError, ValidationIssue
from .manifest import HeaderPaths, Manifest
from .model import AliasLookup, Header, IdentitySource, MessageType, NamedBy, Party

__all__ = ["HeaderReader", "HeaderXPaths", "assigned_identity", "element_path", "texts"]

_RFC4122 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
# Identities the broker assigns are name-based UUIDs in a namespace of its own, so the
# same transport id or digest always gives the same identity.
_ASSIGNED = uuidlib.UUID("6f1c1f0e-3d55-4e0b-9a57-8e7f3b6a2c41")


def texts(xpath: etree.XPath, node: etree._Element) -> list[tuple[str, object]]:
    """Stripped, non-empty texts of what an XPath selects, each with what held it."""
    result = xpath(node)
    items = result if isinstance(result, list) else [result]
    found: list[tuple[str, object]] = []
    for item in items:
        if isinstance(item, etree._Element):
            text = "".join(str(part) for part in item.itertext())
        elif isinstance(item, str):
            text = item
        else:
            continue
        text = text.strip()
        if text:
            found.append((text, item))
    return found


def element_path(node: object, prefixes: Mapping[str, str]) -> str:
    """``/p:root/child/@attr``: ``prefixes`` maps namespace -> prefix (one per namespace)."""
    attribute = None
    if isinstance(node, str) and getattr(node, "is_attribute", False):
        attribute = str(getattr(node, "attrname", ""))
        node = node.getparent()  # type: ignore[attr-defined]
    if isinstance(node, str):
        node = node.getparent()  # type: ignore[attr-defined]
    steps: list[str] = []
    current = node if isinstance(node, etree._Element) else None
    while current is not None:
        qname = etree.QName(current)
        prefix = prefixes.get(qname.namespace or "", current.prefix) if qname.namespace else None
        steps.append(f"{prefix}:{qname.localname}" if prefix else qname.localname)
        current = current.getparent()
    path = "/" + "/".join(reversed(steps))
    return f"{path}/@{etree.QName(attribute).localname}" if attribute else path


def _line(node: object) -> int | None:
    if isinstance(node, str):
        node = node.getparent()  # type: ignore[attr-defined]
    line = node.sourceline if isinstance(node, etree._Element) else None
    return line if isinstance(line, int) else None


class HeaderXPaths:
    """The manifest's header XPaths, compiled once."""

    def __init__(self, manifest: Manifest) -> None:
        paths = manifest.header
        ns = manifest.namespaces

        def xp(expression: str) -> etree.XPath:
            return etree.XPath(expression, namespaces=ns)

        self.uuid = xp(paths.uuid)
        self.identity = (
            tuple(xp(part) for part in paths.identity) if isinstance(paths.identity, tuple) else ()
        )
        self.nachrichtentyp = xp(paths.nachrichtentyp)
        self.list_uri = xp(paths.list_uri)
        self.list_version = xp(paths.list_version)
        self.created = xp(paths.created)
        self.author = xp(paths.author)
        self.readers = xp(paths.readers)
        self.test = xp(paths.test) if paths.test else None
        self.kennung = xp(paths.party.kennung)
        self.kennung_pattern = re.compile(paths.party.kennung_pattern)
        self.kennung_prefix = paths.party.kennung_prefix
        self.party_name = xp(paths.party.name)
        self.free_text = xp(paths.party.free_text) if paths.party.free_text else None
        self.verzeichnisdienst = xp(paths.party.verzeichnisdienst)
        self.uuid_pattern = re.compile(paths.uuid_pattern)


class HeaderReader:
    """Reads and checks the header of one standard's messages."""

    def __init__(self, manifest: Manifest, key: str) -> None:
        self._rules: HeaderPaths = manifest.header
        self._key = key
        self.xpaths = HeaderXPaths(manifest)
        # One prefix per namespace in every path a report shows: the manifest's.
        self._prefixes = {namespace: prefix for prefix, namespace in manifest.namespaces.items()}
        self._zone = ZoneInfo(self._rules.default_zone)

    def read(
        self,
        root: etree._Element,
        expected: MessageType | None,
        *,
        transport_id: str | None = None,
        signer: str | None = None,
        aliases: AliasLookup | None = None,
    ) -> Header:
        """The header of ``root``; MessageError when a rule of the manifest refuses it."""
        xp, rules = self.xpaths, self._rules
        identity, source = self._identity(root, transport_id)
        nachrichtentyp = self._nachrichtentyp(root, expected)
        created_text, created_node = self._required(xp.created, root, "created")
        try:
            created = datetime.fromisoformat(created_text)
        except ValueError:
            self._invalid(created_node, "created", f"{created_text!r} is not an xs:dateTime")
        assumed_zone = None
        if created.tzinfo is None:
            if rules.time_zone == "required":
                self._invalid(
                    created_node,
                    "created",
                    f"{created_text!r} has no time zone, and the manifest's "
                    '[header] time_zone = "required"',
                )
            created, assumed_zone = created.replace(tzinfo=self._zone), rules.default_zone
        authors = xp.author(root)
        if not isinstance(authors, list) or not authors:
            self._missing(root, "author", rules.author)
        author = self._party(authors[0], "author", aliases)
        if author is None:
            if rules.missing_author == "refuse" or signer is None:
                self._invalid(authors[0], "author", "names no author (no kennung, no free text)")
            author = Party(
                kennung=signer, name=None, verzeichnisdienst=None, named_by=NamedBy.SIGNER
            )
        found = xp.readers(root)
        readers = tuple(
            party
            for node in (found if isinstance(found, list) else [])
            if (party := self._party(node, "readers", aliases)) is not None
        )
        return Header(
            uuid=identity,
            nachrichtentyp=nachrichtentyp,
            list_uri=self._optional(xp.list_uri, root),
            list_version=self._optional(xp.list_version, root),
            created=created,
            author=author,
            readers=readers,
            test=self._test_flag(root),
            identity=source,
            assumed_zone=assumed_zone,
        )

    def identity_of(self, root: etree._Element) -> str | None:
        """The message's own identity, or None where the manifest says it has none."""
        if self._rules.identity == "transport":
            return None
        return self._identity(root, None)[0]

    def _identity(
        self, root: etree._Element, transport_id: str | None
    ) -> tuple[str, IdentitySource]:
        rules = self._rules
        if rules.identity == "transport":
            if transport_id:
                return assigned_identity(transport_id), IdentitySource.TRANSPORT
            signed = etree.tostring(root, method="c14n")
            digest = hashlib.sha256(signed).hexdigest()
            return str(uuidlib.uuid5(_ASSIGNED, digest)), IdentitySource.DIGEST
        if isinstance(rules.identity, tuple):
            parts = [self._required(xpath, root, "identity")[0] for xpath in self.xpaths.identity]
            return "/".join(parts), IdentitySource.MESSAGE
        value, node = self._required(self.xpaths.uuid, root, "uuid")
        if rules.uuid_form == "rfc4122":
            if not _RFC4122.match(value):
                self._invalid(node, "uuid", f"{value!r} is not an RFC 4122 UUID{_why(value)}")
        elif not self.xpaths.uuid_pattern.match(value):
            pattern = self.xpaths.uuid_pattern.pattern
            self._invalid(
                node, "uuid", f"{value!r} does not match [header] uuid_pattern {pattern!r}"
            )
        return value, IdentitySource.MESSAGE

    def _nachrichtentyp(self, root: etree._Element, expected: MessageType | None) -> str:
        rules = self._rules
        if expected is None:
            self._invalid(
                root,
                "nachrichtentyp",
                f"root element {etree.QName(root).localname!r} is no message type",
            )
        if not rules.nachrichtentyp_in_header or rules.nachrichtentyp_rule == "skip":
            return expected.code
        stated, node = self._required(self.xpaths.nachrichtentyp, root, "nachrichtentyp")
        if rules.nachrichtentyp_rule == "check":
            wanted, rule = expected.root, "the root element's name"
        else:
            wanted, rule = expected.code, "the code [message_types] gives the root element"
        if stated != wanted:
            self._invalid(
                node,
                "nachrichtentyp",
                f"{stated!r} is not {wanted!r}, {rule} {expected.root} "
                f'([header] nachrichtentyp_rule = "{rules.nachrichtentyp_rule}")',
            )
        return expected.code

    def _party(self, node: object, field: str, aliases: AliasLookup | None) -> Party | None:
        """The party ``node`` names, or None when it names none (empty kennung, no text)."""
        if not isinstance(node, etree._Element):
            self._invalid(None, field, "the XPath selects no element")
        xp = self.xpaths
        stated = texts(xp.kennung, node)
        name = self._optional(xp.party_name, node)
        verzeichnisdienst = self._optional(xp.verzeichnisdienst, node)
        if len(stated) > 1:
            self._invalid(stated[1][1], field, f"names {len(stated)} kennungen")
        if stated:
            kennung, held_by = stated[0]
            if not xp.kennung_pattern.match(kennung):
                self._invalid(
                    held_by if _line(held_by) is not None else node,
                    field,
                    f"kennung {kennung!r} does not match [header.party] kennung_pattern "
                    f"{xp.kennung_pattern.pattern!r}",
                )
            if xp.kennung_prefix is not None:
                kennung = f"{xp.kennung_prefix}:{kennung}"
            return Party(kennung, name, verzeichnisdienst)
        free = texts(xp.free_text, node) if xp.free_text is not None else []
        if not free:
            return None
        text, held_by = free[0]
        mapped = aliases(text) if aliases is not None else None
        if mapped is None:
            detail = (
                f"{self._key}: [header] {field}: {text!r} is free text that names no "
                "participant: the directory has it as no agency's name or alias"
            )
            issues = (self._issue(held_by, field, f"free text {text!r} names no participant"),)
            if field == "author":
                raise MessageError(Reason.AUTHOR_UNKNOWN, detail, issues)
            raise MessageError(Reason.NO_ROUTE, detail, issues)
        return Party(mapped, text, verzeichnisdienst, named_by=NamedBy.FREE_TEXT)

    def _test_flag(self, root: etree._Element) -> bool:
        xpath = self.xpaths.test
        if xpath is None:
            return False
        if self._rules.test_means == "present":
            found = xpath(root)
            return bool(found) if isinstance(found, list) else found is not None
        stated = texts(xpath, root)
        if not stated or stated[0][0] in _FALSE:
            return False
        if stated[0][0] in _TRUE:
            return True
        self._invalid(stated[0][1], "test", f"{stated[0][0]!r} is not a boolean")

    def _required(self, xpath: etree.XPath, node: etree._Element, field: str) -> tuple[str, object]:
        found = texts(xpath, node)
        if not found:
            self._missing(node, field, xpath.path)
        if len(found) > 1:
            self._invalid(found[1][1], field, f"occurs {len(found)} times")
        return found[0]

    @staticmethod
    def _optional(xpath: etree.XPath, node: etree._Element) -> str | None:
        found = texts(xpath, node)
        return found[0][0] if found else None

    def _issue(self, node: object, field: str, reason: str) -> ValidationIssue:
        path = element_path(node, self._prefixes) if node is not None else ""
        return ValidationIssue(line=_line(node), path=path, reason=f"[header] {field}: {reason}")

    def _invalid(self, node: object, field: str, reason: str) -> NoReturn:
        issue = self._issue(node, field, reason)
        where = f" (line {issue.line} {issue.path})" if issue.line is not None else ""
        raise MessageError(
            Reason.HEADER_INVALID, f"{self._key}: [header] {field}{where}: {reason}", (issue,)
        )

    def _missing(self, context: etree._Element, field: str, expression: str) -> NoReturn:
        where = element_path(context, self._prefixes)
        issue = ValidationIssue(
            line=_line(context),
            path=f"{where}/{expression}",
            reason=f"[header] {field}: missing or empty",
        )
        raise MessageError(
            Reason.HEADER_INVALID,
            f"{self._key}: [header] {field}: {where}/{expression} is missing or empty",
            (issue,),
        )


def assigned_identity(transport_id: str) -> str:
    """The identity the broker gives a message that travelled under ``transport_id``: a
    UUID stays as the sender chose it (lower case), any other id becomes one."""
    if _is_uuid(transport_id):
        return transport_id.lower()
    return str(uuidlib.uuid5(_ASSIGNED, transport_id))


def _is_uuid(value: str) -> bool:
    return re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value) is not None


def _why(value: str) -> str:
    """What of RFC 4122's canonical form a UUID-like value misses."""
    if not _is_uuid(value):
        return ": not 8-4-4-4-12 hex digits"
    if value != value.lower():
        return ": not lower case"
    if value[14] not in "12345678":
        return f": version digit {value[14]!r} is not 1 to 8"
    return f": variant digit {value[19]!r} is not 8, 9, a or b"

"""One standard at one version: its compiled schema, header reader and routing facts.

A Standard is built by ``xta_schemas.loader`` and then only read; the compiled lxml
schema is shared by every message of that standard. Validation uses the schema's error
log, so one Standard must not validate from two threads at once (the broker runs one
pipeline per process).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn

from lxml import etree

from broker.errors import Reason

from .errors import MessageError
from .manifest import Manifest
from .model import Header, MessageType, Party
from .report import DetailedReporter

__all__ = ["HeaderXPaths", "Standard"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def _texts(xpath: etree.XPath, node: etree._Element) -> list[str]:
    """Stripped, non-empty texts of what an XPath selects (elements, attributes, strings)."""
    result = xpath(node)
    items = result if isinstance(result, list) else [result]
    texts = []
    for item in items:
        if isinstance(item, etree._Element):
            text = "".join(str(part) for part in item.itertext())
        elif isinstance(item, str):
            text = item
        else:
            continue
        text = text.strip()
        if text:
            texts.append(text)
    return texts


class HeaderXPaths:
    """The manifest's header XPaths, compiled once."""

    def __init__(self, manifest: Manifest) -> None:
        paths = manifest.header
        ns = manifest.namespaces

        def xp(expression: str) -> etree.XPath:
            return etree.XPath(expression, namespaces=ns)

        self.uuid = xp(paths.uuid)
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
        self.verzeichnisdienst = xp(paths.party.verzeichnisdienst)


class Standard:
    """One XÖV standard at one version, ready to read headers and validate messages."""

    def __init__(
        self,
        manifest: Manifest,
        schema: etree.XMLSchema,
        reporter: DetailedReporter,
        samples: tuple[Path, ...],
        schema_files: tuple[Path, ...] = (),
        load_seconds: float = 0.0,
    ) -> None:
        info = manifest.standard
        self.manifest = manifest
        self.name: str = info.name
        self.version: str = info.version
        self.namespace: str = info.namespace
        self.title: str = info.title
        self.key: str = f"{info.name}/{info.version}"
        self.folder: Path = manifest.folder
        self.samples: tuple[Path, ...] = samples
        # Every local schema file the standard compiled from, for diagnostics.
        self.schema_files: tuple[Path, ...] = schema_files
        # How long resolving and compiling the schemas took, for operators.
        self.load_seconds: float = load_seconds
        self.message_types: Mapping[str, MessageType] = MappingProxyType(
            {
                code: MessageType(code=code, root=root)
                for root, code in manifest.message_types.items()
            }
        )
        self._by_root = {mt.root: mt for mt in self.message_types.values()}
        # The version a message of this standard states, where the namespace does not say.
        self.message_version: str = info.message_version or info.version
        self._version_in_message = (
            etree.XPath(info.version_in_message, namespaces=manifest.namespaces)
            if info.version_in_message
            else None
        )
        self._schema = schema
        self._reporter = reporter
        self.header_xpaths = HeaderXPaths(manifest)
        self._routing = {
            fact: tuple(etree.XPath(p, namespaces=manifest.namespaces) for p in paths)
            for fact, paths in manifest.routing_paths().items()
        }

    def __repr__(self) -> str:
        return f"<Standard {self.key} {self.namespace}>"

    def message_type_of(self, root: etree._Element) -> MessageType | None:
        """The message type whose root element ``root`` is, if it is one of ours."""
        qname = etree.QName(root)
        if qname.namespace != self.namespace:
            return None
        return self._by_root.get(qname.localname)

    @property
    def states_version(self) -> bool:
        """Whether messages state their version in content rather than by namespace."""
        return self._version_in_message is not None

    def version_of(self, root: etree._Element) -> str | None:
        """The version ``root`` states (``version_in_message``), or None if it states none."""
        if self._version_in_message is None:
            return None
        return self._optional(self._version_in_message, root)

    # -- header ---------------------------------------------------------------------------

    def header(self, root: etree._Element) -> Header:
        """Read the g2g header. Raises MessageError(header-invalid) if it is unusable."""
        xp = self.header_xpaths
        uuid = self._required(xp.uuid, root, "nachrichtenUUID")
        if not _UUID.match(uuid):
            self._invalid(f"nachrichtenUUID {uuid!r} is not a canonical lower-case UUID")
        expected = self.message_type_of(root)
        if not self.manifest.header.nachrichtentyp_in_header:
            if expected is None:
                self._invalid(f"root element {etree.QName(root).localname!r} is no message type")
            nachrichtentyp = expected.code
        else:
            nachrichtentyp = self._required(xp.nachrichtentyp, root, "nachrichtentyp")
        if expected is not None and nachrichtentyp != expected.code:
            self._invalid(
                f"nachrichtentyp {nachrichtentyp!r} does not match root element "
                f"{expected.root!r}, which is {expected.code!r}"
            )
        created_text = self._required(xp.created, root, "erstellungszeitpunkt")
        try:
            created = datetime.fromisoformat(created_text)
        except ValueError:
            self._invalid(f"erstellungszeitpunkt {created_text!r} is not an xs:dateTime")
        if created.tzinfo is None:
            self._invalid(f"erstellungszeitpunkt {created_text!r} has no time zone")
        authors = xp.author(root)
        if not isinstance(authors, list) or not authors:
            self._invalid("autor is missing")
        author = self._party(authors[0], "autor")
        readers_found = xp.readers(root)
        readers = tuple(
            self._party(node, "leser")
            for node in (readers_found if isinstance(readers_found, list) else [])
        )
        return Header(
            uuid=uuid,
            nachrichtentyp=nachrichtentyp,
            list_uri=self._optional(xp.list_uri, root),
            list_version=self._optional(xp.list_version, root),
            created=created,
            author=author,
            readers=readers,
            test=self._test_flag(root),
        )

    def _party(self, node: object, role: str) -> Party:
        if not isinstance(node, etree._Element):
            self._invalid(f"{role} does not select an element")
        xp = self.header_xpaths
        kennung = self._required(xp.kennung, node, f"{role}/kennung")
        if not xp.kennung_pattern.match(kennung):
            self._invalid(
                f"{role}/kennung {kennung!r} is not a Behördenkennung: it does not match "
                f"{xp.kennung_pattern.pattern!r}"
            )
        if xp.kennung_prefix is not None:
            kennung = f"{xp.kennung_prefix}:{kennung}"
        return Party(
            kennung=kennung,
            name=self._optional(xp.party_name, node),
            verzeichnisdienst=self._optional(xp.verzeichnisdienst, node),
        )

    def _test_flag(self, root: etree._Element) -> bool:
        if self.header_xpaths.test is None:
            return False
        if self.manifest.header.test_means == "present":
            found = self.header_xpaths.test(root)
            return bool(found) if isinstance(found, list) else found is not None
        value = self._optional(self.header_xpaths.test, root)
        if value is None or value in _FALSE:
            return False
        if value in _TRUE:
            return True
        self._invalid(f"test flag {value!r} is not a boolean")

    def _required(self, xpath: etree.XPath, node: etree._Element, what: str) -> str:
        texts = _texts(xpath, node)
        if not texts:
            self._invalid(f"{what} is missing or empty")
        if len(texts) > 1:
            self._invalid(f"{what} occurs {len(texts)} times")
        return texts[0]

    @staticmethod
    def _optional(xpath: etree.XPath, node: etree._Element) -> str | None:
        texts = _texts(xpath, node)
        return texts[0] if texts else None

    def _invalid(self, detail: str) -> NoReturn:
        raise MessageError(Reason.HEADER_INVALID, f"{self.key}: {detail}")

    # -- validation and routing -----------------------------------------------------------

    @property
    def report_ready(self) -> bool:
        """Whether a rejection's report is produced without first building a schema."""
        return self._reporter.ready

    def prepare_report(self) -> str | None:
        """Build the detailed report's schema ahead of the first invalid message.

        Returns None when it is ready, else why reports will be lxml's terse messages.
        """
        return self._reporter.prepare()

    def validate(self, root: etree._Element) -> None:
        """Validate against the compiled schema. Raises MessageError(schema-invalid)."""
        if self._schema.validate(root):
            return
        issues = self._reporter.issues(root, self._schema.error_log)
        first = str(issues[0]) if issues else "the schema rejects it"
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise MessageError(
            Reason.SCHEMA_INVALID, f"not valid against {self.key}: {first}{more}", issues
        )

    def routing_facts(self, root: etree._Element) -> dict[str, str]:
        """Facts the content carries for routing, e.g. ``{"ags": "02000000"}``.

        A fact is absent when none of its XPaths selects a non-empty value.
        """
        facts: dict[str, str] = {}
        for fact, xpaths in self._routing.items():
            for xpath in xpaths:
                texts = _texts(xpath, root)
                if texts:
                    facts[fact] = texts[0]
                    break
        return facts

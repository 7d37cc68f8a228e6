"""One standard at one version: its compiled schema, header reader and routing facts.

A Standard is built by ``xta_schemas.loader`` and then only read; the compiled lxml
schema is shared by every message of that standard. Validation uses the schema's error
log, so one Standard must not validate from two threads at once (the broker runs one
pipeline per process).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from lxml import etree

from broker.errors import Reason

from .errors import MessageError
from .header import HeaderReader, HeaderXPaths, texts
from .manifest import Manifest
from .model import AliasLookup, Header, MessageType
from .report import DetailedReporter

__all__ = ["HeaderXPaths", "Standard"]


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
        self._header = HeaderReader(manifest, self.key)
        self.header_xpaths: HeaderXPaths = self._header.xpaths
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

    def header(
        self,
        root: etree._Element,
        *,
        transport_id: str | None = None,
        signer: str | None = None,
        aliases: AliasLookup | None = None,
    ) -> Header:
        """Read the header by the manifest's rules. Raises MessageError (header-invalid,
        or author-unknown / no-route for a free-text party the directory does not know).

        ``transport_id`` is the id the message travelled under, from which the broker
        assigns an identity where the standard has none; ``signer`` is the author of a
        message that names none; ``aliases`` maps free-text party names to kennungen.
        """
        return self._header.read(
            root,
            self.message_type_of(root),
            transport_id=transport_id,
            signer=signer,
            aliases=aliases,
        )

    def identity_of(self, root: etree._Element) -> str | None:
        """The message's own identity (its nachrichtenUUID, say), or None where the
        standard has none and the broker assigns one. Raises MessageError."""
        return self._header.identity_of(root)

    def _optional(self, xpath: etree.XPath, node: etree._Element) -> str | None:
        found = texts(xpath, node)
        return found[0][0] if found else None

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
                found = texts(xpath, root)
                if found:
                    facts[fact] = found[0][0]
                    break
        return facts

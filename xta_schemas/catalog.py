"""The catalog of standards in service, and how a message finds its standard.

A message is identified by the namespace and local name of its root element. The answer
is one of three:

* a standard in service declares that root element: the standard and message type;
* the namespace is not in service, but a manifest declares it as a retired version of
  its standard (``[standard] retired``) or it starts with the ``namespace_family`` of a
  standard in service: ``unsupported-version`` (the sender speaks a version we do not);
* otherwise ``unknown-message-type``, also for an unknown root in a known namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from lxml import etree

from broker.errors import Reason

from .errors import MessageError, StandardLoadError
from .loader import load_standard
from .manifest import MANIFEST_NAME
from .model import MessageType
from .standard import Standard

__all__ = ["BUNDLED_DIR", "Catalog", "any_nachrichten_uuid", "standard_folders"]

BUNDLED_DIR = Path(__file__).parent / "bundled"


def any_nachrichten_uuid(root: etree._Element) -> str | None:
    """An XÖV nachrichtenUUID wherever it sits: how a message no standard in service reads
    is still found again (its rejection receipt names it)."""
    found = root.xpath("string(//*[local-name()='nachrichtenUUID'][1])")
    return found.strip() if isinstance(found, str) and found.strip() else None


def standard_folders(directory: Path) -> tuple[Path, ...]:
    """The standard folders in ``directory``: itself if it holds a manifest, else its children."""
    if (directory / MANIFEST_NAME).is_file():
        return (directory,)
    if not directory.is_dir():
        raise StandardLoadError(f"{directory}: not a directory")
    folders = tuple(
        sorted(child for child in directory.iterdir() if (child / MANIFEST_NAME).is_file())
    )
    if not folders:
        raise StandardLoadError(
            f"{directory}: holds no {MANIFEST_NAME}, neither itself nor in a subfolder"
        )
    return folders


class Catalog:
    """The standards in service. Built once at start; the caller keeps it."""

    def __init__(self, standards: Iterable[Standard]) -> None:
        self.standards: tuple[Standard, ...] = tuple(standards)
        self._by_key: dict[str, Standard] = {}
        # Usually one standard per namespace; several where messages state their version.
        self._by_namespace: dict[str, list[Standard]] = {}
        self._retired: dict[str, tuple[str, str]] = {}
        self._families: list[tuple[str, str]] = []
        for standard in self.standards:
            if standard.key in self._by_key:
                raise StandardLoadError(
                    f"{standard.folder}: {standard.key} is already served by "
                    f"{self._by_key[standard.key].folder}"
                )
            self._by_key[standard.key] = standard
            sharing = self._by_namespace.setdefault(standard.namespace, [])
            for other in sharing:
                _check_can_share(standard, other)
            sharing.append(standard)
            info = standard.manifest.standard
            for version, namespace in info.retired.items():
                self._retired[namespace] = (standard.name, version)
            if info.namespace_family:
                self._families.append((info.namespace_family, standard.name))
        self._families.sort(key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def load(cls, extra_dirs: Sequence[Path] = (), *, bundled: bool = True) -> Catalog:
        """Load the bundled standards and those in ``extra_dirs``, offline.

        Each entry of ``extra_dirs`` is a standard folder (holding a manifest) or a folder
        of such folders. Raises StandardLoadError naming the file at fault.
        """
        directories = ([BUNDLED_DIR] if bundled else []) + [Path(d) for d in extra_dirs]
        standards = [
            load_standard(folder, boundary=folder.resolve().parent)
            for directory in directories
            for folder in standard_folders(directory)
        ]
        return cls(standards)

    def get(self, key: str) -> Standard:
        """The standard with ``key`` (``name/version``). Raises KeyError."""
        return self._by_key[key]

    def versions(self, name: str) -> tuple[str, ...]:
        """Versions of standard ``name`` in service."""
        return tuple(sorted(s.version for s in self.standards if s.name == name))

    def identify(self, root: etree._Element) -> tuple[Standard, MessageType]:
        """Find the standard and message type of a message by its root element."""
        qname = etree.QName(root)
        namespace = qname.namespace or ""
        sharing = self._by_namespace.get(namespace)
        if sharing:
            standard = self._by_version(sharing, root)
            message_type = standard.message_type_of(root)
            if message_type is not None:
                return standard, message_type
            raise MessageError(
                Reason.UNKNOWN_MESSAGE_TYPE,
                f"{standard.key} has no message type with root element {qname.localname!r}",
            )
        if namespace in self._retired:
            name, version = self._retired[namespace]
            raise MessageError(
                Reason.UNSUPPORTED_VERSION,
                f"{name} {version} is no longer in service; in service: "
                f"{', '.join(self.versions(name)) or 'none'}",
            )
        for prefix, name in self._families:
            if namespace.startswith(prefix):
                raise MessageError(
                    Reason.UNSUPPORTED_VERSION,
                    f"namespace {namespace} belongs to {name}, in service only in version(s) "
                    f"{', '.join(self.versions(name)) or 'none'}",
                )
        raise MessageError(
            Reason.UNKNOWN_MESSAGE_TYPE,
            f"no standard in service has root element {qname.localname!r} "
            f"in namespace {namespace or '(none)'}",
        )

    def stated_identity(self, root: etree._Element) -> str | None:
        """The identity ``root`` states (its nachrichtenUUID, say) as its standard places
        it; None where the standard has none, so that the broker assigns one from the
        transport's id, or where the message cannot be read (the broker rejects it)."""
        try:
            standard, _ = self.identify(root)
            return standard.identity_of(root)
        except MessageError:
            return any_nachrichten_uuid(root)

    def _by_version(self, sharing: Sequence[Standard], root: etree._Element) -> Standard:
        """Of the standards of one namespace, the one whose version the message states."""
        first = sharing[0]
        if not first.states_version:
            return first
        stated = first.version_of(root)
        for standard in sharing:
            if standard.message_version == stated:
                return standard
        in_service = ", ".join(
            sorted(
                s.version
                if s.message_version == s.version
                else f"{s.version} (states {s.message_version})"
                for s in sharing
            )
        )
        raise MessageError(
            Reason.UNSUPPORTED_VERSION,
            f"{first.name} {stated or '(no version stated)'} is not in service; "
            f"in service: {in_service}",
        )


def _check_can_share(standard: Standard, other: Standard) -> None:
    """Two standards may share a namespace only if messages say which one they speak."""
    if not (standard.states_version and other.states_version):
        raise StandardLoadError(
            f"{standard.folder}: {standard.namespace} is already served by {other.folder}; "
            "versions that share a namespace need [standard] version_in_message"
        )
    if standard.message_version == other.message_version:
        raise StandardLoadError(
            f"{standard.folder}: messages stating version {standard.message_version!r} "
            f"in {standard.namespace} are already served by {other.folder}"
        )

"""Sample messages: read the shipped ones and make fresh copies with a new identity.

Every message needs its own nachrichtenUUID (the broker deduplicates by it), so tests
and the demo derive many distinct messages from one sample with ``with_fresh_header``.
"""

from __future__ import annotations

import uuid
from copy import deepcopy
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from .errors import StandardsError
from .standard import Standard

__all__ = ["read_sample", "sample_root", "with_fresh_header"]


def read_sample(path: Path) -> etree._Element:
    """Parse a sample file we ship or wrote ourselves (not untrusted input)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.parse(str(path), parser).getroot()


def sample_root(standard: Standard, code: str | None = None) -> etree._Element:
    """The root of the first sample of ``standard`` (of message type ``code`` if given)."""
    for path in standard.samples:
        root = read_sample(path)
        message_type = standard.message_type_of(root)
        if code is None or (message_type is not None and message_type.code == code):
            return root
    wanted = f" of message type {code}" if code else ""
    raise StandardsError(f"{standard.key} ships no sample{wanted}")


def _set(selected: object, value: str, what: str, standard: Standard) -> None:
    items = selected if isinstance(selected, list) else [selected]
    if len(items) != 1:
        raise StandardsError(f"{standard.key}: {what} selects {len(items)} nodes, not one")
    item = items[0]
    if isinstance(item, etree._Element):
        item.text = value
    elif isinstance(item, str) and getattr(item, "is_attribute", False):
        parent = item.getparent()  # type: ignore[attr-defined]
        parent.set(item.attrname, value)  # type: ignore[attr-defined]
    else:
        raise StandardsError(f"{standard.key}: {what} selects neither an element nor attribute")


def with_fresh_header(
    root: etree._Element, standard: Standard, *, now: datetime | None = None
) -> etree._Element:
    """A copy of ``root`` with a new random nachrichtenUUID and erstellungszeitpunkt ``now``.

    ``now`` defaults to the current time in UTC. The original is left unchanged.
    """
    copy = deepcopy(root)
    created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    xpaths = standard.header_xpaths
    _set(xpaths.uuid(copy), str(uuid.uuid4()), "nachrichtenUUID", standard)
    _set(xpaths.created(copy), created, "erstellungszeitpunkt", standard)
    return copy

"""What an enveloped signature over the whole document does not cover, and its removal.

A reference with ``URI=""`` selects the document's nodes without its comments (XML-DSig
4.4.3.3: "every non-comment node"), and the verifier canonicalizes the root element, so
two kinds of node are outside what any signature we accept vouches for: comments,
wherever they stand, and processing instructions before or after the root element. A
processing instruction inside the root is canonicalized with its neighbours and so is
signed like them.

Nothing unsigned is delivered, so a message that carries such nodes is delivered
without them (``covered_only``): what remains is exactly what the signature covers, the
signature stays valid, and the reader can verify it end to end. The accepted receipt
counts what was removed (``Uncovered.notes``), never quoting it. A message without them
is delivered as received, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lxml import etree

__all__ = ["NOTHING_UNCOVERED", "Uncovered", "covered_only", "uncovered"]


@dataclass(frozen=True, slots=True)
class Uncovered:
    """How many nodes of a document its signature does not cover."""

    comments: int = 0
    instructions: int = 0  # processing instructions outside the root element

    def __bool__(self) -> bool:
        return bool(self.comments or self.instructions)

    def notes(self) -> tuple[str, ...]:
        """What the accepted receipt says about the removal."""
        removed = [
            f"{count} {what}{'' if count == 1 else 's'}"
            for count, what in (
                (self.comments, "XML comment"),
                (self.instructions, "processing instruction outside the root element"),
            )
            if count
        ]
        if not removed:
            return ()
        return (
            f"delivered without {' and '.join(removed)}: the signature does not cover "
            "them; what was signed is delivered, and its signature stays valid",
        )


NOTHING_UNCOVERED: Final = Uncovered()


def _outside(root: etree._Element) -> list[etree._Element]:
    return [*root.itersiblings(preceding=True), *root.itersiblings()]


def uncovered(root: etree._Element) -> Uncovered:
    """Count the nodes of ``root``'s document that a signature over it does not cover."""
    outside = _outside(root)
    # count() runs inside libxml2: a walk in Python would cost as much as the parse.
    counted = root.xpath("count(.//comment())")
    inside = int(counted) if isinstance(counted, float) else 0
    return Uncovered(
        comments=inside + sum(isinstance(n, etree._Comment) for n in outside),
        instructions=sum(isinstance(n, etree._ProcessingInstruction) for n in outside),
    )


def covered_only(root: etree._Element) -> bytes:
    """``root``'s document without what its signature does not cover, in its encoding.

    Takes the comments out of ``root`` (it is changed); the nodes around the root element
    are left out by serializing the root element alone. A comment's tail is text of its
    parent and is signed, so it is handed to the node before the comment.
    """
    for comment in list(root.iter(etree.Comment)):
        parent = comment.getparent()
        assert parent is not None  # inside the root, so it has a parent
        tail = comment.tail or ""
        previous = comment.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + tail
        else:
            previous.tail = (previous.tail or "") + tail
        parent.remove(comment)
    docinfo = root.getroottree().docinfo
    encoding = docinfo.encoding or "UTF-8"
    if docinfo.standalone is None:
        written = etree.tostring(root, xml_declaration=True, encoding=encoding)
    else:
        written = etree.tostring(root, encoding=encoding, standalone=docinfo.standalone)
    assert isinstance(written, bytes)  # an encoding was named
    return written

"""XÖV-style standards: the bundled XSDs, manifests, the offline catalog and validation.

Typical use, once at start and then per message::

    catalog = Catalog.load(extra_dirs)
    standard, message_type = catalog.identify(root)   # root of what the signature covers
    header = standard.header(root)
    standard.validate(root)
    facts = standard.routing_facts(root)
"""

from .catalog import Catalog
from .errors import (
    MessageError,
    StandardLoadError,
    StandardsError,
    ValidationIssue,
)
from .model import Header, MessageType, Party
from .standard import Standard

__all__ = [
    "Catalog",
    "Header",
    "MessageError",
    "MessageType",
    "Party",
    "Standard",
    "StandardLoadError",
    "StandardsError",
    "ValidationIssue",
]

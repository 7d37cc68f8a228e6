"""What the XTA endpoint remembers (metadata only): sends, the boxes' index, cursors.

store  the XTA store: SQLite in WAL mode, shared by the endpoint processes of a host
rows   its rows as the endpoint sees them, and their vocabularies
"""

from broker.stores.xta.rows import (
    BoxEntry,
    CloseResult,
    Outcome,
    Padding,
    SendClaim,
    SentMessage,
)
from broker.stores.xta.store import XtaStore

__all__ = [
    "BoxEntry",
    "CloseResult",
    "Outcome",
    "Padding",
    "SendClaim",
    "SentMessage",
    "XtaStore",
]

"""The benchmark's own parties (prefix ``bnch``), so their queues never meet the example
world's. Kept apart from ``bench.world`` so that the signing processes import only this.

    bnch:broker       the broker worker (ECDSA P-256, signs receipts)
    bnch:portal-ec    an author signing with ECDSA P-256
    bnch:portal-rsa   an author signing with RSA-3072
    bnch:meld         receives xmeld registrations (named as reader)
    bnch:bau          receives xbau building applications (named as reader)
"""

from __future__ import annotations

from typing import Literal

__all__ = ["AGENCY_BAU", "AGENCY_MELD", "AUTHORS", "BROKER", "KeyKind"]

KeyKind = Literal["ec", "rsa"]
BROKER = "bnch:broker"
AGENCY_MELD = "bnch:meld"
AGENCY_BAU = "bnch:bau"
AUTHORS: dict[KeyKind, str] = {"ec": "bnch:portal-ec", "rsa": "bnch:portal-rsa"}

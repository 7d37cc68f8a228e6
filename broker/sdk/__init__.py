"""The client libraries: the portal publishes and collects receipts, the agency receives.

Modules::

    portal  Portal: sign, publish, collect and verify receipts
    agency  AgencyClient: receive, verify end to end, hand over, ack, confirm receipt
"""

from broker.sdk.agency import AgencyClient, Delivery, Handler
from broker.sdk.portal import Portal, SubmissionState

__all__ = ["AgencyClient", "Delivery", "Handler", "Portal", "SubmissionState"]

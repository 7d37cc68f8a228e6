"""The audit trail: append-only, hash-chained, sealed; and the check that names a break.

See `broker.stores.audit.trail` for the file format and `broker.stores.audit.verify` for the check.
"""

from broker.stores.audit.trail import AuditError, AuditTrail, SealSigner
from broker.stores.audit.verify import AuditProblem, AuditReport, verify_trail

__all__ = ["AuditError", "AuditProblem", "AuditReport", "AuditTrail", "SealSigner", "verify_trail"]

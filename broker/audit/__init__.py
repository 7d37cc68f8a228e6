"""The audit trail: append-only, hash-chained, sealed; and the check that names a break.

See `broker.audit.trail` for the file format and `broker.audit.verify` for the check.
"""

from broker.audit.trail import AuditError, AuditTrail, SealSigner
from broker.audit.verify import AuditProblem, AuditReport, verify_trail

__all__ = ["AuditError", "AuditProblem", "AuditReport", "AuditTrail", "SealSigner", "verify_trail"]

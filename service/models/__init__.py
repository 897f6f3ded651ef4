"""Every ORM table, one module per aggregate. Importing this registers them all."""

from service.models.audit import AuditCheckpoint, AuditEvent, AuditLogEntry, Lease
from service.models.client import OAuthClient, RatePlanRow, UsedAssertion
from service.models.credit_check import CreditCheck
from service.models.keys import RevokedToken, SigningKey
from service.models.merchant import CreditRecord, Merchant, RecordHistory
from service.models.policy import VerdictPolicy

__all__ = [
    "AuditCheckpoint",
    "AuditEvent",
    "AuditLogEntry",
    "CreditCheck",
    "CreditRecord",
    "Lease",
    "Merchant",
    "OAuthClient",
    "RatePlanRow",
    "RecordHistory",
    "RevokedToken",
    "SigningKey",
    "UsedAssertion",
    "VerdictPolicy",
]

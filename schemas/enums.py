"""Closed vocabularies of the contract (DOMAIN.md)."""

from __future__ import annotations

from enum import StrEnum


class EntityType(StrEnum):
    COMPANY = "COMPANY"
    INDIVIDUAL_BUSINESS = "INDIVIDUAL_BUSINESS"
    COOPERATIVE = "COOPERATIVE"
    SOCIAL_ORGANIZATION = "SOCIAL_ORGANIZATION"
    PUBLIC_INSTITUTION = "PUBLIC_INSTITUTION"
    OTHER = "OTHER"


class RegistrationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    DEREGISTERED = "DEREGISTERED"


class Category(StrEnum):
    DISHONEST_JUDGMENT_DEBTOR = "DISHONEST_JUDGMENT_DEBTOR"
    JUDGMENT_DEBTOR = "JUDGMENT_DEBTOR"
    SERIOUS_ILLEGAL_DISHONEST = "SERIOUS_ILLEGAL_DISHONEST"
    ABNORMAL_OPERATION = "ABNORMAL_OPERATION"
    ADMINISTRATIVE_PENALTY = "ADMINISTRATIVE_PENALTY"
    MAJOR_TAX_VIOLATION = "MAJOR_TAX_VIOLATION"
    SOCIAL_INSURANCE_ARREARS = "SOCIAL_INSURANCE_ARREARS"
    COURT_CASE = "COURT_CASE"
    GAMBLING_SUSPECTED = "GAMBLING_SUSPECTED"
    CREDIT_COMMITMENT_BREACH = "CREDIT_COMMITMENT_BREACH"
    HONOR = "HONOR"


class Severity(StrEnum):
    MINOR = "MINOR"
    GENERAL = "GENERAL"
    SERIOUS = "SERIOUS"


class RecordStatus(StrEnum):
    ACTIVE = "ACTIVE"
    UNDER_OBJECTION = "UNDER_OBJECTION"
    REPAIRED = "REPAIRED"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"


COUNTING_STATUSES = frozenset({RecordStatus.ACTIVE, RecordStatus.UNDER_OBJECTION})


class Verdict(StrEnum):
    CLEAR = "CLEAR"
    CAUTION = "CAUTION"
    RESTRICTED = "RESTRICTED"


VERDICT_RANK = {Verdict.CLEAR: 0, Verdict.CAUTION: 1, Verdict.RESTRICTED: 2}


class Purpose(StrEnum):
    ONBOARDING = "ONBOARDING"
    PERIODIC_REVIEW = "PERIODIC_REVIEW"
    TRANSACTION_RISK = "TRANSACTION_RISK"
    DISPUTE_HANDLING = "DISPUTE_HANDLING"
    REGULATORY_REPORTING = "REGULATORY_REPORTING"


class Scope(StrEnum):
    CREDIT_CHECK = "credit:check"
    CREDIT_DETAIL = "credit:detail"
    CREDIT_PII = "credit:pii"
    ADMIN_CLIENTS = "admin:clients"
    ADMIN_DATA = "admin:data"
    AUDIT_READ = "audit:read"


class ClientStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class AuthMethod(StrEnum):
    CLIENT_SECRET_BASIC = "client_secret_basic"
    PRIVATE_KEY_JWT = "private_key_jwt"


class Outcome(StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    ERROR = "error"

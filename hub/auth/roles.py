"""The hub's roles: what each may ever be granted (a scope ceiling) and which hub functions it may use."""

from __future__ import annotations

from enum import StrEnum

from hub.auth.scopes import Grants
from hub.fhir.access import ALL_TYPES, INTERACTIONS, patient_data_types


class Role(StrEnum):
    """Who a client is, as far as the hub's functions are concerned."""

    ADMIN = "admin"
    #: Hospital IT: manages the sources and runs of its own institutions; writes their data.
    SOURCE_ADMIN = "source-admin"
    #: Downstream application: reads (optionally only some consortia).
    APP = "app"
    #: Data-governance staff: mapping-conflict and patient-match review.
    GOVERNANCE = "governance"
    #: Reading center (影像/心电诊断中心): worklists and reports.
    READER = "reader"
    #: Ordering clinicians' systems: 检查检验结果互认 checks.
    CLINICIAN_CDS = "clinician-cds"


class Permission(StrEnum):
    """Hub functions beyond FHIR interactions (which scopes govern)."""

    MANAGE_CLIENTS = "manage-clients"
    READ_AUDIT = "read-audit"
    MANAGE_SOURCES = "manage-sources"
    REVIEW_MAPPINGS = "review-mappings"
    REVIEW_MATCHES = "review-matches"
    READ_WORKLISTS = "read-worklists"
    CHECK_RECOGNITION = "check-recognition"
    #: The recognition catalogue and quality-control (室间质评) records.
    MANAGE_RECOGNITION = "manage-recognition"
    #: The figures the dashboards show (recognition rate, avoided tests…).
    READ_INDICATORS = "read-indicators"
    BULK_EXPORT = "bulk-export"
    #: Tele-diagnosis configuration: reading centers, routing rules, SLA targets, the reader roster.
    MANAGE_TELEDIAGNOSIS = "manage-telediagnosis"
    #: Send an exam to be read at a reading center (a site's systems).
    REQUEST_READING = "request-reading"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.SOURCE_ADMIN: frozenset({Permission.MANAGE_SOURCES, Permission.REQUEST_READING}),
    Role.APP: frozenset({Permission.BULK_EXPORT, Permission.READ_INDICATORS}),
    Role.GOVERNANCE: frozenset({Permission.REVIEW_MAPPINGS, Permission.REVIEW_MATCHES, Permission.MANAGE_RECOGNITION,
                                Permission.READ_INDICATORS}),
    Role.READER: frozenset({Permission.READ_WORKLISTS}),
    Role.CLINICIAN_CDS: frozenset({Permission.CHECK_RECOGNITION}),
}

_READ = frozenset("rs")
_ALL = frozenset(INTERACTIONS)
_TERMINOLOGY = ("CodeSystem", "ValueSet", "ConceptMap", "NamingSystem")
#: What readers write through FHIR; their reading Tasks change through the worklist endpoints
#: (claim, release, report), which keep the routing state with them.
_REPORTS = ("DiagnosticReport", "Observation", "ImagingStudy", "Media")
_RECOGNITION_READS = (
    "Patient", "Observation", "DiagnosticReport", "ImagingStudy", "ServiceRequest", "Specimen",
    "Encounter", "Organization", "CodeSystem", "ValueSet", "ConceptMap",
)


def scope_ceiling(role: Role) -> Grants:
    """The most a client of ``role`` may be granted.

    Applications, hospital IT and reading centers may also manage ``Subscription``s: they are
    notified of what they may read.
    """
    if role is Role.ADMIN:
        return {ALL_TYPES: _ALL}
    if role is Role.SOURCE_ADMIN:
        return {ALL_TYPES: _READ, **{t: _ALL for t in sorted(patient_data_types())}, "Subscription": _ALL}
    if role is Role.APP:
        return {ALL_TYPES: _READ, "Subscription": _ALL}
    if role is Role.GOVERNANCE:
        return {ALL_TYPES: _READ, **{t: _ALL for t in _TERMINOLOGY}}
    if role is Role.READER:
        return {ALL_TYPES: _READ, **{t: frozenset("crus") for t in _REPORTS}, "Subscription": _ALL}
    return {t: _READ for t in _RECOGNITION_READS}


def needs_institution(role: Role) -> bool:
    """Hospital IT clients must be bound to at least one institution."""
    return role is Role.SOURCE_ADMIN

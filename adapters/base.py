"""The adapter contract: what a source adapter reads and the canonical records it emits.

An adapter (a plugin of the ``hub.adapters`` entry-point group) is a factory called
with a :class:`SourceConfig`; the object it returns reads the source in pages of
:class:`SourceRow` (raw values, JSON-able, with a key and an update time) and turns
each row into canonical records (:meth:`Adapter.convert`). It knows nothing of FHIR or
of the hub's storage.

The two steps are separate on purpose: a row that cannot be converted (an unparseable
date, an unknown enum value, a missing required field) raises :class:`RecordProblem`,
and the hub quarantines the *raw* row with the reason, so that it can be converted
again after the profile or the source is fixed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

#: The record kinds, in the order a run reads them (patients before what refers to them).
RECORD_KINDS = (
    "Patient",
    "Encounter",
    "Diagnosis",
    "LabReport",
    "ExamReport",
    "MedicationOrder",
    "Referral",
    "ChronicFollowUp",
)
#: Source system kinds (what hospital IT registers).
SYSTEM_KINDS = ("HIS", "EMR", "LIS", "PACS", "RIS", "ECG", "EHR")
ENCOUNTER_CLASSES = ("outpatient", "emergency", "inpatient", "checkup")
EXAM_MODALITIES = ("CT", "MR", "DX", "CR", "US", "NM", "PT", "MG", "XA", "RF", "ES", "ECG", "PATH")
REPORT_STATUSES = ("registered", "partial", "preliminary", "final", "amended", "corrected", "cancelled")


class AdapterError(Exception):
    """Base of the errors adapters raise. Messages must never hold secrets or personal data."""


class ConnectionProblem(AdapterError):
    """The source cannot be read. ``reason`` is one of :data:`CONNECTION_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


#: Why a source cannot be read (what ``$test-connection`` reports).
CONNECTION_REASONS = (
    "driver-missing",
    "host-unreachable",
    "login-failed",
    "database-missing",
    "schema-mismatch",
    "configuration",
    "error",
)


class RecordProblem(AdapterError):
    """A source row cannot become a canonical record (it goes to quarantine with this reason)."""

    def __init__(self, reason: str, *, field_name: str | None = None) -> None:
        super().__init__(f"{field_name}: {reason}" if field_name else reason)
        self.reason = str(self)
        self.field_name = field_name


@dataclass(frozen=True)
class SourceConfig:
    """What an adapter is given: the registered source system (secrets decrypted)."""

    source_id: str
    institution: str
    #: ODBC connection string or DSN, SQLAlchemy URL, directory, or ``mllp://host:port``.
    connection: str
    #: Adapter options (profile file, page size, …) as registered.
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Position:
    """Where an incremental read stopped: the last row's update time, its key as the tie-break.

    Both are kept as the source gave them (a date-time, or text for sources that store
    times as text) so that the next read compares like with like.
    """

    updated_at: Any = None
    key: Any = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (stored as the watermark)."""
        if isinstance(self.updated_at, datetime):
            return {"updated_at": self.updated_at.isoformat(), "type": "datetime", "key": self.key}
        return {"updated_at": self.updated_at, "key": self.key}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "Position":
        """The position stored by :meth:`to_json` (the start of the source for None)."""
        if not data:
            return cls()
        moment = data.get("updated_at")
        if data.get("type") == "datetime" and moment:
            moment = datetime.fromisoformat(moment)
        return cls(moment, data.get("key"))

    @property
    def started(self) -> bool:
        """False at the start of the source (nothing read yet)."""
        return self.updated_at is not None


@dataclass(frozen=True)
class SourceRow:
    """One raw source row (values JSON-able), with its kind, key and update time."""

    kind: str
    key: str
    position: Position
    raw: Mapping[str, Any]


# -- canonical records ------------------------------------------------------


@dataclass(frozen=True)
class CanonicalRecord:
    """Common to every record: its source key and the time the source last changed it."""

    key: str
    updated_at: datetime | None


@dataclass(frozen=True)
class PatientRecord(CanonicalRecord):
    """A person as one institution records them (identifiers are the hospital's)."""

    name: str
    #: GB/T 2261.1 sex code: 0 unknown, 1 male, 2 female, 9 unspecified.
    sex: str
    birth_date: date | None = None
    #: 居民身份证号 (GB 11643), checked by the hub.
    id_number: str | None = None
    phone: str | None = None
    #: Local marital-status code (mapped by the terminology step).
    marital_status: str | None = None
    ethnicity: str | None = None
    address: str | None = None
    #: 病案号 / 门诊号 when it differs from the key.
    record_number: str | None = None


@dataclass(frozen=True)
class EncounterRecord(CanonicalRecord):
    """A visit: outpatient, emergency, inpatient or check-up."""

    patient_key: str
    encounter_class: str
    start: datetime
    end: datetime | None = None
    department_code: str | None = None
    department_name: str | None = None
    attending_code: str | None = None
    attending_name: str | None = None


@dataclass(frozen=True)
class DiagnosisRecord(CanonicalRecord):
    """A diagnosis made in a visit (local or ICD-10 code)."""

    patient_key: str
    code: str
    display: str
    encounter_key: str | None = None
    #: ``primary`` or ``secondary``.
    rank: str = "primary"
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class LabResultRecord:
    """One lab result item (one row of a lab report)."""

    key: str
    item_code: str
    item_name: str
    value: str
    unit: str | None = None
    reference_range: str | None = None
    #: H/L/N/A (high, low, normal, abnormal) or None.
    abnormal_flag: str | None = None


@dataclass(frozen=True)
class LabReportRecord(CanonicalRecord):
    """A lab report with its results."""

    patient_key: str
    report_name: str
    report_time: datetime
    status: str = "final"
    report_code: str | None = None
    encounter_key: str | None = None
    specimen: str | None = None
    collected_at: datetime | None = None
    #: The Organization id of the institution that performed it (default: the source's).
    performing_institution: str | None = None
    results: tuple[LabResultRecord, ...] = ()


@dataclass(frozen=True)
class ExamReportRecord(CanonicalRecord):
    """An imaging, ECG or pathology report."""

    patient_key: str
    modality: str
    exam_name: str
    report_time: datetime
    status: str = "final"
    exam_code: str | None = None
    encounter_key: str | None = None
    body_site: str | None = None
    findings: str | None = None
    impression: str | None = None
    study_uid: str | None = None
    performing_institution: str | None = None


@dataclass(frozen=True)
class MedicationOrderRecord(CanonicalRecord):
    """A medication order (prescription or inpatient order)."""

    patient_key: str
    drug_code: str
    drug_name: str
    ordered_at: datetime
    encounter_key: str | None = None
    dose: str | None = None
    dose_unit: str | None = None
    route: str | None = None
    frequency: str | None = None
    status: str = "active"


@dataclass(frozen=True)
class ReferralRecord(CanonicalRecord):
    """A referral (转诊) up to or down from another institution."""

    patient_key: str
    #: ``up`` (上转) or ``down`` (下转).
    direction: str
    from_institution: str
    to_institution: str
    referred_at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class ChronicFollowUpRecord(CanonicalRecord):
    """A hypertension or diabetes follow-up visit (慢病随访)."""

    patient_key: str
    #: ``hypertension`` or ``diabetes``.
    program: str
    visited_at: datetime
    #: 门诊 / 家庭 / 电话 (clinic, home, phone) as the source says it.
    visit_kind: str | None = None
    systolic: int | None = None
    diastolic: int | None = None
    fasting_glucose: float | None = None


# -- the adapter ------------------------------------------------------------


class Adapter(Protocol):
    """A source reader made for one registered source system."""

    #: Profile name and version (recorded in every resource's provenance).
    name: str
    version: str

    def kinds(self) -> tuple[str, ...]:
        """The record kinds this source provides, in :data:`RECORD_KINDS` order."""

    def check(self) -> None:
        """Connect and check every table and column the profile reads; raise :class:`ConnectionProblem`."""

    def read(self, kind: str, after: Position, page_size: int) -> Iterator[list[SourceRow]]:
        """Rows of ``kind`` changed after ``after``, in (update time, key) order, one page at a time."""

    def convert(self, row: SourceRow) -> CanonicalRecord:
        """The canonical record of a raw row; raises :class:`RecordProblem`."""

    def close(self) -> None:
        """Release connections."""

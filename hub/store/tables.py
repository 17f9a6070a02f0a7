"""Tables of the FHIR store.

``hub_resource`` holds the current version of every resource (its JSON as text, served
as stored); ``hub_resource_version`` holds every version, the current one included;
``hub_idx_*`` hold typed search-index rows of current versions, keyed by ``res_pk``.
The consortium services' tables (exports, Subscriptions, 互认) are in :mod:`hub.store.service_tables`,
on the same ``metadata``; :mod:`hub.store.schema` holds them all. Schema changes go through Alembic
(``hub/migrations``); a test keeps both in step.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: BIGINT on server databases, INTEGER (the rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "hub_resource",
    metadata,
    Column("res_pk", BigId, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", Text, nullable=True),
    UniqueConstraint("resource_type", "res_id", name="uq_hub_resource_type_id"),
    Index("ix_hub_resource_type_updated", "resource_type", "last_updated"),
    #: One type in storage order: bulk export and reindexing page through it by key.
    Index("ix_hub_resource_type_pk", "resource_type", "res_pk"),
)

resource_version = Table(
    "hub_resource_version",
    metadata,
    Column("res_pk", BigId, ForeignKey("hub_resource.res_pk", ondelete="CASCADE"), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("content", Text, nullable=True),
    Index("ix_hub_resource_version_updated", "last_updated"),
    Index("ix_hub_resource_version_type_updated", "resource_type", "last_updated"),
)

token_index = Table(
    "hub_idx_token",
    metadata,
    Column("res_pk", BigId, ForeignKey("hub_resource.res_pk", ondelete="CASCADE"), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("param", String(100), nullable=False),
    Column("system", Text, nullable=False),
    Column("value", Text, nullable=False),
    #: hash(type, param, system, value): ``system|code`` searches.
    Column("hash_sys_value", BigInteger, nullable=False),
    #: hash(type, param, value): ``code`` searches (any system).
    Column("hash_value", BigInteger, nullable=False),
    #: hash(type, param, system): ``system|`` searches.
    Column("hash_sys", BigInteger, nullable=False),
    Index("ix_hub_idx_token_sys_value", "hash_sys_value", "res_pk"),
    Index("ix_hub_idx_token_value", "hash_value", "res_pk"),
    Index("ix_hub_idx_token_sys", "hash_sys", "res_pk"),
    Index("ix_hub_idx_token_res", "res_pk"),
)

#: Text compared byte by byte (code point order) on PostgreSQL, so prefix ranges use the index.
OrderedText = Text().with_variant(Text(collation="C"), "postgresql")


def _index_table(name: str, *columns: Column, indexes: dict[str, tuple[str, ...]]) -> Table:
    """A typed search-index table: rows of current versions, keyed by ``res_pk``.

    The search indexes end with ``res_pk`` (and carry the compared columns), so a search
    reads the keys it needs from the index alone.
    """
    return Table(
        name,
        metadata,
        Column("res_pk", BigId, ForeignKey("hub_resource.res_pk", ondelete="CASCADE"), nullable=False),
        Column("resource_type", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *columns,
        *(Index(f"ix_{name}_{purpose}", *cols) for purpose, cols in indexes.items()),
        Index(f"ix_{name}_res", "res_pk", "param"),
    )


string_index = _index_table(
    "hub_idx_string",
    #: Case-, width- and accent-folded (hub.fhir.search_values.normalize_string), at most 200 characters.
    Column("value_norm", OrderedText, nullable=False),
    Column("value_exact", Text, nullable=False),
    indexes={"value": ("resource_type", "param", "value_norm", "res_pk")},
)

date_index = _index_table(
    "hub_idx_date",
    #: First and last microsecond (since 1970, UTC) the value covers.
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    indexes={"low": ("resource_type", "param", "low", "high", "res_pk"),
             "high": ("resource_type", "param", "high", "low", "res_pk")},
)

number_index = _index_table(
    "hub_idx_number",
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("system", Text, nullable=False),
    Column("code", Text, nullable=False),
    indexes={"low": ("resource_type", "param", "low", "high", "res_pk")},
)

uri_index = _index_table(
    "hub_idx_uri",
    Column("value", OrderedText, nullable=False),
    indexes={"value": ("resource_type", "param", "value", "res_pk")},
)

reference_index = _index_table(
    "hub_idx_reference",
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(64), nullable=False),
    #: Absolute or canonical references (empty for local ones).
    Column("url", Text, nullable=False),
    indexes={"target": ("target_id", "target_type", "param", "resource_type", "res_pk"),
             "url": ("url", "param", "resource_type", "res_pk")},
)

#: Progress of ``hub reindex`` runs, so an interrupted run resumes where it stopped.
reindex_job = Table(
    "hub_reindex_job",
    metadata,
    Column("job", String(100), primary_key=True),
    Column("last_pk", BigInteger, nullable=False),
    Column("done", Integer, nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=True),
)

INDEX_TABLES = {
    "token": token_index, "string": string_index, "date": date_index, "number": number_index,
    "uri": uri_index, "reference": reference_index,
}

#: Registered API clients (``hub clients create``): secrets only as hashes.
client = Table(
    "hub_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    #: Space-separated granted scopes.
    Column("scopes", Text, nullable=False),
    #: JSON lists of Organization ids.
    Column("institutions", Text, nullable=False),
    Column("consortia", Text, nullable=False),
    Column("secret_hash", Text, nullable=True),
    #: JSON Web Key Set of the client's public keys (``private_key_jwt``).
    Column("jwks", Text, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

#: ``jti`` of client assertions already used (replay protection), until they expire.
client_assertion = Table(
    "hub_client_assertion",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires", BigInteger, nullable=False),
    Index("ix_hub_client_assertion_expires", "expires"),
)

#: The audit trail: one AuditEvent (JSON) per interaction with clinical data.
audit_event = Table(
    "hub_audit_event",
    metadata,
    Column("audit_pk", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    #: Microseconds since 1970 (UTC).
    Column("recorded", BigInteger, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("action", String(1), nullable=False),
    Column("subtype", String(32), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("entity", String(200), nullable=False),
    Column("source_ip", String(64), nullable=False),
    Column("content", Text, nullable=False),
    Index("ix_hub_audit_event_recorded", "recorded"),
    Index("ix_hub_audit_event_client", "client_id", "recorded"),
    Index("ix_hub_audit_event_entity", "entity", "recorded"),
)

#: The patients each audit event concerns (keyed by event id, so a batch is two multi-row inserts).
audit_patient = Table(
    "hub_audit_patient",
    metadata,
    Column("event_id", String(64), ForeignKey("hub_audit_event.event_id", ondelete="CASCADE"), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Index("ix_hub_audit_patient_patient", "patient_id", "event_id"),
)

#: Source systems registered by hospital IT (``hub sources add``); the connection is encrypted.
source_system = Table(
    "hub_source",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("institution", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    #: HIS, EMR, LIS, PACS, RIS, ECG or EHR.
    Column("system_kind", String(16), nullable=False),
    #: The adapter (an entry point of ``hub.adapters``) and the profile version registered.
    Column("adapter", String(64), nullable=False),
    Column("adapter_version", String(32), nullable=False),
    #: ODBC string / DSN, SQLAlchemy URL, directory or MLLP address, AES-GCM encrypted.
    Column("connection", Text, nullable=False),
    #: Adapter options (JSON).
    Column("options", Text, nullable=False),
    #: Five-field cron expression (None: run only when asked).
    Column("schedule", String(100), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("ix_hub_source_institution", "institution"),
)

#: Where each source's incremental read stopped, per record kind (moved with the data it covers).
ingest_watermark = Table(
    "hub_ingest_watermark",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("record_kind", String(32), primary_key=True),
    #: JSON: the last row's update time and key.
    Column("position", Text, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

#: Ingest runs: one row per run, with its counts.
ingest_run = Table(
    "hub_ingest_run",
    metadata,
    Column("run_id", BigId, primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False),
    #: manual, schedule, api, replay.
    Column("trigger", String(16), nullable=False),
    #: running, succeeded, failed, interrupted.
    Column("status", String(16), nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("heartbeat", DateTime(timezone=True), nullable=False),
    Column("holder", String(200), nullable=False),
    Column("records_read", Integer, nullable=False),
    Column("created", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_hub_ingest_run_source", "source_id", "run_id"),
)

#: One run per source at a time, across processes: a lease renewed by the running run.
ingest_lock = Table(
    "hub_ingest_lock",
    metadata,
    Column("source_id", String(64), primary_key=True),
    Column("run_id", BigInteger, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),
)

#: Source rows that could not be stored, with the reason; replayed after a fix.
quarantine = Table(
    "hub_quarantine",
    metadata,
    Column("q_id", BigId, primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("record_kind", String(32), nullable=False),
    Column("source_key", String(200), nullable=False),
    #: The raw row (JSON), encrypted: it holds ID and phone numbers.
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    #: open, resolved (stored later, by a replay or a rerun), discarded.
    Column("status", String(16), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("resolved", DateTime(timezone=True), nullable=True),
    Index("ix_hub_quarantine_open", "source_id", "status", "record_kind", "source_key"),
)

#: Mapping conflicts for the data-governance review: what the mapping tables could not answer.
mapping_conflict = Table(
    "hub_mapping_conflict",
    metadata,
    Column("conflict_id", BigId, primary_key=True, autoincrement=True),
    #: unmapped, ambiguous, inconsistent, invalid-target, unit, display-drift.
    Column("kind", String(24), nullable=False),
    #: The local code system (``urn:hub:code:<source>:<element>``); the element for ``inconsistent``.
    Column("system", String(300), nullable=False),
    Column("code", String(200), nullable=False),
    #: What distinguishes conflicts of one code: the unit, the new display, the invalid target.
    Column("detail", String(300), nullable=False),
    Column("element", String(64), nullable=False),
    Column("display", Text, nullable=False),
    #: open, approved, rejected, not-applicable, resolved (the cause went away by itself).
    Column("status", String(16), nullable=False),
    Column("occurrences", BigInteger, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    #: JSON lists: sample values, source ids, institution ids; JSON object: kind-specific facts.
    Column("samples", Text, nullable=False),
    Column("sources", Text, nullable=False),
    Column("institutions", Text, nullable=False),
    Column("info", Text, nullable=False),
    #: Optimistic lock: a decision names the version it saw.
    Column("version", Integer, nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=True),
    UniqueConstraint("kind", "system", "code", "detail", name="uq_hub_mapping_conflict_key"),
    Index("ix_hub_mapping_conflict_status", "status", "kind", "occurrences"),
)

#: Every review decision, kept (who, when, why, what it changed).
mapping_decision = Table(
    "hub_mapping_decision",
    metadata,
    Column("decision_id", BigId, primary_key=True, autoincrement=True),
    Column("conflict_id", BigInteger, nullable=False),
    #: approve, reject, not-applicable.
    Column("action", String(16), nullable=False),
    #: JSON: the chosen target and scope; the re-normalization counts.
    Column("target", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_hub_mapping_decision_conflict", "conflict_id", "decision_id"),
)

# -- EMPI (master patient index) --------------------------------------------------------------

#: Regional persons: one golden Patient each (res_id = person_id), with the regional identifier.
empi_person = Table(
    "hub_empi_person",
    metadata,
    Column("person_pk", BigId, primary_key=True, autoincrement=True),
    Column("person_id", String(64), nullable=False),
    #: 区域主索引号: region code, sequence, Luhn check digit.
    Column("regional_id", String(32), nullable=True),
    #: active, merged (into ``merged_into``), retired (no source left).
    Column("status", String(16), nullable=False),
    Column("merged_into", String(64), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    UniqueConstraint("person_id", name="uq_hub_empi_person_person_id"),
    UniqueConstraint("regional_id", name="uq_hub_empi_person_regional_id"),
)

#: Source Patients and the person each belongs to (exactly one), with how the link was made.
empi_record = Table(
    "hub_empi_record",
    metadata,
    Column("record_pk", BigId, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("person_id", String(64), nullable=False),
    #: certain, probable (automatic links), possible (alone while in review); manual links are certain.
    Column("grade", String(16), nullable=False),
    #: auto or manual: manual links are never changed by the engine.
    Column("origin", String(8), nullable=False),
    Column("score", Float, nullable=True),
    Column("institution", String(64), nullable=False),
    #: The comparable features (JSON; ID and phone numbers as blind indexes only).
    Column("features", Text, nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    UniqueConstraint("patient_id", name="uq_hub_empi_record_patient_id"),
    Index("ix_hub_empi_record_person", "person_id", "patient_id"),
)

#: Blocking keys of the records (candidates share a key).
empi_block = Table(
    "hub_empi_block",
    metadata,
    Column("block_key", BigInteger, primary_key=True, autoincrement=False),
    Column("record_pk", BigInteger, primary_key=True, autoincrement=False),
    Index("ix_hub_empi_block_record", "record_pk"),
)

#: Pairs of source Patients decided to be different people (never linked automatically).
empi_no_match = Table(
    "hub_empi_no_match",
    metadata,
    Column("patient_a", String(64), primary_key=True),
    Column("patient_b", String(64), primary_key=True),
    Column("decided_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_hub_empi_no_match_b", "patient_b", "patient_a"),
)

#: Possible matches for governance review: a record against a candidate person.
empi_review = Table(
    "hub_empi_review",
    metadata,
    Column("review_id", BigId, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("candidate_person", String(64), nullable=False),
    Column("score", Float, nullable=False),
    #: JSON: the field levels and weights (no values).
    Column("comparison", Text, nullable=False),
    #: open, linked, not-linked, obsolete (the records changed or were linked otherwise).
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("reason", Text, nullable=True),
    Index("ix_hub_empi_review_status", "status", "score"),
    Index("ix_hub_empi_review_patient", "patient_id", "candidate_person"),
)

#: The history of every link change: automatic and manual, with who and why.
empi_event = Table(
    "hub_empi_event",
    metadata,
    Column("event_id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    #: new-person, auto-link, moved, removed, review, link, not-link, merge, unmerge, not-duplicate, unlink,
    #: do-not-match.
    Column("action", String(16), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("person_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=True),
    Column("other_person", String(64), nullable=True),
    Column("reason", Text, nullable=False),
    #: JSON: scores, moved records (what an unmerge needs).
    Column("detail", Text, nullable=False),
    Index("ix_hub_empi_event_person", "person_id", "event_id"),
    Index("ix_hub_empi_event_patient", "patient_id", "event_id"),
)

#: Patients written since the EMPI last looked (filled by the store in the writing transaction).
empi_queue = Table(
    "hub_empi_queue",
    metadata,
    Column("queue_pk", BigId, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("enqueued", DateTime(timezone=True), nullable=False),
)

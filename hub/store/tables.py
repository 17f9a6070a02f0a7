"""Tables of the FHIR store.

``hub_resource`` holds the current version of every resource (its JSON as text, served
as stored); ``hub_resource_version`` holds every version, the current one included;
``hub_idx_*`` hold typed search-index rows of current versions, keyed by ``res_pk``.
Schema changes go through Alembic (``hub/migrations``); a test keeps both in step.
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

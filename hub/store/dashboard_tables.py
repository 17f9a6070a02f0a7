"""Tables of the dashboards (一屏看全区): the facts the indicators count, and the queue of writes to read them from.

Every committed resource write is queued (:data:`dash_change`) in its own transaction; the dashboards read
the queued resources and keep one or more narrow :data:`dash_fact` rows per resource (a visit, a referral, a
follow-up, a blood-pressure reading, a stored record and its coding). The indicators are indexed SQL over
those rows: no search over the resource tables, no JSON parsed when a dashboard is asked.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table

from hub.store.tables import BigId, metadata

#: Resources written since the dashboards last read them (filled by the store in the writing transaction).
dash_change = Table(
    "hub_dash_change",
    metadata,
    Column("change_pk", BigId, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
)

#: What the indicators count, per resource (no personal data: Patient ids and codes only).
dash_fact = Table(
    "hub_dash_fact",
    metadata,
    Column("fact_pk", BigId, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    #: visit, follow-up:hypertension, follow-up:diabetes, bp, glucose, referral, record.
    Column("kind", String(24), nullable=False),
    #: The local day (``HUB_TIMEZONE``, YYYY-MM-DD) the fact happened on ('' unknown).
    Column("day", String(10), nullable=False),
    #: The instant it happened (microseconds since 1970, UTC; 0 unknown): orders facts of one day.
    Column("moment", BigInteger, nullable=False),
    #: The institution (Organization id) it belongs to: the visit's provider, the referring institution…
    Column("institution", String(64), nullable=False),
    #: The Patient id ('' none); the EMPI's person is looked up when counting.
    Column("patient", String(64), nullable=False),
    #: visit: the encounter class (AMB, EMER…); follow-up: the program; referral: up, down or lateral;
    #: record: the source system id.
    Column("code", String(64), nullable=False),
    #: referral: the receiving institution; bp and glucose: the Encounter id of the visit.
    Column("other", String(64), nullable=False),
    #: The resource's status (referral: active, completed…).
    Column("status", String(16), nullable=False),
    #: bp: systolic and diastolic (mmHg); glucose: mmol/L; record: coded values and those with a standard code.
    Column("value1", Float, nullable=True),
    Column("value2", Float, nullable=True),
    Index("ix_hub_dash_fact_resource", "resource_type", "res_id"),
    #: Facts of a kind in a period (index-only for the visit counts).
    Index("ix_hub_dash_fact_kind_day", "kind", "day", "institution", "code"),
    #: Readings by the visit they were taken at.
    Index("ix_hub_dash_fact_kind_other", "kind", "other"),
)

#: The records per source and institution, with their coded values (the sums of the ``record`` facts, kept by the
#: refresh in the same transaction: the data center's health reads a few rows, not a million).
dash_total = Table(
    "hub_dash_total",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("institution", String(64), primary_key=True),
    Column("records", BigInteger, nullable=False),
    Column("coded", BigInteger, nullable=False),
    Column("standard", BigInteger, nullable=False),
)

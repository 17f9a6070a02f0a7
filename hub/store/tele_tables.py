"""Tables of tele-diagnosis (分布式检查、集中式诊断): the routing configuration, the reading tasks' state
and the readers' shifts and loads, and the queue of exams waiting for intake.

The reading tasks themselves are FHIR ``Task`` resources in the store (searchable like any other);
:data:`tele_task` holds what routing, claims and the SLA sweep need as indexed columns, written in
the same transaction as each Task version.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table, Text

from hub.store.tables import BigId, metadata

#: The tele-diagnosis configuration (centers, routing rules, SLA targets), one row per version loaded.
tele_config = Table(
    "hub_tele_config",
    metadata,
    Column("config_pk", BigId, primary_key=True, autoincrement=True),
    Column("version", String(64), nullable=False),
    #: JSON: the checked configuration.
    Column("content", Text, nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
    Column("loaded_by", String(200), nullable=False),
)

#: One row per reading Task: its routing, claim and SLA state (the Task resource carries the same).
tele_task = Table(
    "hub_tele_task",
    metadata,
    Column("task_id", String(64), primary_key=True),
    #: The exam read: ``ImagingStudy/<id>`` or ``ServiceRequest/<id>`` (one Task per exam).
    Column("focus", String(200), nullable=False, unique=True),
    #: The order behind it (``ServiceRequest/<id>``), when known.
    Column("order_ref", String(200)),
    Column("patient", String(200)),
    #: The institution where the exam was done or ordered (the report goes back to it).
    Column("site", String(64), nullable=False),
    Column("center_id", String(64), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("body_site", String(64)),
    Column("priority", String(16), nullable=False),
    #: queued (at the center, no reader) · assigned (on a reader's list) · claimed · completed · cancelled.
    Column("state", String(16), nullable=False),
    #: The PractitionerRole id of the reader it is assigned to or claimed by.
    Column("reader", String(64)),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    #: 0 none, 1 warned (50 % of the SLA), 2 escalated (100 %).
    Column("sla_level", Integer, nullable=False),
    #: When the sweep acts on it next (the next SLA step); NULL once closed or fully escalated.
    Column("next_escalation", DateTime(timezone=True)),
    Column("claimed_at", DateTime(timezone=True)),
    #: A claim not reported by then returns the task to the queue.
    Column("claim_expires", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("report", String(200)),
    Index("ix_hub_tele_task_next_escalation", "next_escalation"),
    Index("ix_hub_tele_task_claim_expires", "claim_expires"),
    Index("ix_hub_tele_task_state", "center_id", "state", "priority"),
    Index("ix_hub_tele_task_reader", "reader", "state"),
    Index("ix_hub_tele_task_order", "order_ref"),
    Index("ix_hub_tele_task_created", "created"),
)

#: Each reader's shift and load (the PractitionerRole holds who the reader is and what they may read).
tele_reader = Table(
    "hub_tele_reader",
    metadata,
    #: The PractitionerRole id.
    Column("role_id", String(64), primary_key=True),
    Column("on_shift", Boolean, nullable=False),
    Column("shift_start", DateTime(timezone=True)),
    #: Tasks assigned to or claimed by the reader and not finished (the instantaneous load).
    Column("open_tasks", Integer, nullable=False),
    #: Tasks given to the reader since the shift started (the cumulative load).
    Column("shift_assigned", Integer, nullable=False),
)

#: The types whose writes wait for tele-diagnosis's intake.
INTAKE_TYPES = frozenset({"ImagingStudy", "ServiceRequest"})

#: Committed writes of exams (ImagingStudy, ServiceRequest) waiting for intake, written by the store in
#: the writing transaction (a write that rolls back leaves none).
tele_intake = Table(
    "hub_tele_intake",
    metadata,
    Column("intake_pk", BigId, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("enqueued", DateTime(timezone=True), nullable=False),
)

"""Tables of the consortium's services on top of the store: Bulk Data export jobs, Subscription
deliveries, and 检查检验结果互认 (catalogue, quality-control records, checks, decisions).

They share :data:`hub.store.tables.metadata`; :mod:`hub.store.schema` holds every table at once.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.store.tables import BigId, metadata

# -- downstream access: Bulk Data export, Subscriptions --------------------------------------

#: Bulk Data export jobs ($export): who asked, what, and how far the background run is.
export_job = Table(
    "hub_export_job",
    metadata,
    #: A random UUID: the job's URL is its only handle.
    Column("job_id", String(36), primary_key=True),
    #: The client that asked: the only one that may poll, fetch the files or cancel.
    Column("client_id", String(200), nullable=False),
    #: accepted, in-progress, completed, failed (cancelled jobs are deleted with their files).
    Column("status", String(16), nullable=False),
    #: The kick-off request URL (the manifest's ``request``), encrypted.
    Column("request", Text, nullable=False),
    #: JSON: level, group, types, since, type filters, elements; encrypted.
    Column("spec", Text, nullable=False),
    #: JSON: the FHIR access of the token that asked (types and institutions it may read).
    Column("access", Text, nullable=False),
    #: The instant the export stands for: versions as they were then.
    Column("transaction_time", DateTime(timezone=True), nullable=False),
    #: PostgreSQL: the first transaction id not yet started at kick-off (the run waits for older writers).
    Column("writers_mark", BigInteger, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    #: Refreshed while a run is alive: a run that stops refreshing is taken over.
    Column("heartbeat", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("exported", BigInteger, nullable=False),
    Column("progress", Text, nullable=False),
    #: Runs started (a run whose process died is started again, a few times at most).
    Column("attempts", Integer, nullable=False),
    #: A failed job: the HTTP status and OperationOutcome text the status request answers.
    Column("error_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    #: When the files are deleted.
    Column("expires", DateTime(timezone=True), nullable=True),
    Index("ix_hub_export_job_status", "status", "created"),
    Index("ix_hub_export_job_client", "client_id", "status"),
)

#: The NDJSON files of an export job (output, and error files of OperationOutcomes).
export_file = Table(
    "hub_export_file",
    metadata,
    Column("job_id", String(36), ForeignKey("hub_export_job.job_id", ondelete="CASCADE"), primary_key=True),
    Column("file_name", String(120), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("resource_type", String(64), nullable=False),
    #: output or error.
    Column("kind", String(8), nullable=False),
    Column("count", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
)

#: The member Patients of a group-level export's Group (ids, with the EMPI's same-person Patients), taken
#: when the job starts: its pages test each resource's Patient references against them.
export_member = Table(
    "hub_export_member",
    metadata,
    Column("job_id", String(36), ForeignKey("hub_export_job.job_id", ondelete="CASCADE"), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
)

#: Resource writes for the Subscription matcher (filled by the store in the writing transaction,
#: only for types some active Subscription watches): notified after commit, never for a rollback.
subscription_event = Table(
    "hub_subscription_event",
    metadata,
    Column("event_pk", BigId, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("enqueued", DateTime(timezone=True), nullable=False),
)

#: Notifications of Subscriptions: one per matching resource version, with its attempts (the delivery log).
subscription_delivery = Table(
    "hub_subscription_delivery",
    metadata,
    Column("delivery_pk", BigId, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    #: pending, delivered, failed (retries exhausted), dropped (the Subscription is off or gone).
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", DateTime(timezone=True), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("last_attempt", DateTime(timezone=True), nullable=True),
    #: The endpoint's HTTP status of the last attempt (None: no answer).
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_hub_subscription_delivery_due", "status", "next_attempt"),
    Index("ix_hub_subscription_delivery_subscription", "subscription_id", "delivery_pk"),
)

# -- 检查检验结果互认 (mutual recognition of results) ---------------------------------------------

#: Change counters of the recognition rules (catalogue and quality-control records): a writer marking
#: results reloads its rules when the counter moved, in this process or another.
recognition_stamp = Table(
    "hub_recognition_stamp",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("counter", BigInteger, nullable=False),
)

#: The recognition catalogue (互认项目目录), one row per version loaded; the newest is in force.
recognition_catalogue = Table(
    "hub_recognition_catalogue",
    metadata,
    Column("catalogue_pk", BigId, primary_key=True, autoincrement=True),
    #: The catalogue's own version label.
    Column("version", String(64), nullable=False),
    #: JSON: the checked catalogue (items, validity, scope, qualification rule, price).
    Column("content", Text, nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
    Column("loaded_by", String(200), nullable=False),
)

#: External quality assessment (室间质评) results: an institution passed (or failed) an item in a year.
recognition_eqa = Table(
    "hub_recognition_eqa",
    metadata,
    Column("eqa_pk", BigId, primary_key=True, autoincrement=True),
    Column("institution", String(64), nullable=False),
    #: The catalogue item's id.
    Column("item_id", String(64), nullable=False),
    Column("year", Integer, nullable=False),
    Column("passed", Boolean, nullable=False),
    #: Who ran the assessment (国家卫生健康委临床检验中心, 省临检中心…) and its certificate number.
    Column("scheme", String(200), nullable=False),
    Column("certificate", String(200), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("institution", "item_id", "year", name="uq_hub_recognition_eqa_result"),
)

#: Every recognition check (an order checked for prior results) and the decision taken on it.
recognition_check = Table(
    "hub_recognition_check",
    metadata,
    #: A random UUID: the CDS Hooks card's uuid, the handle of the decision.
    Column("check_id", String(36), primary_key=True),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    #: The local day of ``checked_at`` (YYYY-MM-DD): figures are summed per day, portably.
    Column("check_day", String(10), nullable=False),
    #: The ordering institution.
    Column("institution", String(64), nullable=False),
    #: The catalogue item (None: the requested code is not in the catalogue, or not mapped).
    Column("item_id", String(64), nullable=True),
    #: The requested code as given (system|code).
    Column("requested", String(300), nullable=False),
    #: The regional person (or Patient) checked; no personal data.
    Column("person", String(64), nullable=True),
    #: api, order-select or order-sign.
    Column("origin", String(32), nullable=False),
    #: The order as the ordering system names it (ServiceRequest/…), if any.
    Column("order_ref", String(200), nullable=True),
    #: How many prior results were recognizable (0: the order is not eligible for recognition).
    Column("recognizable", Integer, nullable=False),
    #: The recognizable result offered first (Observation/… or DiagnosticReport/…) and where it was done.
    Column("result_ref", String(200), nullable=True),
    Column("performer", String(64), nullable=True),
    #: The item's price in fen (分), counted as avoided when the result is recognized.
    Column("price_fen", BigInteger, nullable=True),
    #: recognized (the order was dropped) or retested (ordered anyway, with a reason); None: undecided.
    Column("decision", String(16), nullable=True),
    Column("reason", String(32), nullable=True),
    Column("comment", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("checked_by", String(200), nullable=False),
    #: The clinician as the ordering system names them (CDS Hooks ``userId``: Practitioner/…), if known.
    Column("clinician", String(200), nullable=True),
    #: The CDS Hooks ``hookInstance`` of the call that made the check.
    Column("hook_instance", String(64), nullable=True),
    Index("ix_hub_recognition_check_day", "check_day", "institution"),
    Index("ix_hub_recognition_check_order", "institution", "order_ref"),
)

#: Every decision taken on a check, in order (the check row holds the latest).
recognition_decision = Table(
    "hub_recognition_decision",
    metadata,
    Column("decision_pk", BigId, primary_key=True, autoincrement=True),
    Column("check_id", String(36), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("comment", Text, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("clinician", String(200), nullable=True),
    Index("ix_hub_recognition_decision_check", "check_id", "decision_pk"),
)

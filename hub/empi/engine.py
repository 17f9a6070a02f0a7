"""The matching engine: every queued Patient write placed under exactly one regional person.

For each written source Patient: its features, the candidates sharing a blocking key, the best
comparison per candidate person, then

- an automatic link (deterministic ID rule, or score >= auto-link) → the record joins that person;
- otherwise the record stays (or starts) alone as its own person, and every candidate person
  scoring >= review becomes a review item for governance staff.

Records placed by a person's hand (origin ``manual``) keep their person: the engine only
refreshes their features. Pairs decided "not the same person" are never linked automatically.
Placeholder identities (无名氏, newborns under the mother, the no-match tag) stand alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from hub.config import Settings
from hub.empi.blocking import blocking_keys
from hub.empi.features import MARKED_NO_MATCH, Features, features_of, is_golden
from hub.empi.golden import golden_patient, merged_patient, regional_id
from hub.empi.rules import MatchRules, load_rules
from hub.empi.scoring import AUTO_LINK, CERTAIN, REVIEW, Comparison, compare
from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.fhir.service import FhirService
from hub.store.database import Database
from hub.store.empi import EmpiStore, RecordRow

#: The advisory lock every EMPI unit of work holds (one matcher at a time, as the invariants need).
EMPI_LOCK = "hub:empi"
ENGINE = "empi-engine"
#: A run refreshes the planner statistics after placing this many writes.
ANALYZE_EVERY = 20_000


@dataclass
class RunStats:
    """What one run of the queue did."""

    processed: int = 0
    new_persons: int = 0
    auto_links: int = 0
    reviews: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0

    def add(self, other: RunStats) -> None:
        """Add another run's counts."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Candidate:
    """The best comparison of a record with one person."""

    person_id: str
    comparison: Comparison


def _rank(comparison: Comparison) -> tuple[int, int, float]:
    return (comparison.decision == AUTO_LINK, comparison.deterministic, comparison.score)


class Matcher:
    """Matching and golden-record upkeep inside one EMPI unit of work.

    Record, person and history writes are kept in memory and written together by :meth:`flush`
    (the candidates of later records in the same unit see them), so a page of records costs a few
    statements, not ten per record.
    """

    def __init__(self, service: FhirService, store: EmpiStore, rules: MatchRules, region_code: str,
                 actor: str = ENGINE, *, write: bool = True) -> None:
        self.service, self.store, self.rules = service, store, rules
        self.region_code = region_code
        self.actor = actor
        self.now = now_utc()
        if write:
            service.repository.lock([EMPI_LOCK])
        #: Persons whose golden Patient is rewritten when the unit of work finishes.
        self.touched: set[str] = set()
        #: Persons left without sources, and the person that absorbed them (their golden Patient points there).
        self.absorbed: dict[str, str] = {}
        self._next_person, self._next_record = store.next_keys() if write else (0, 0)
        self._pending: dict[str, RecordRow] = {}
        self._pending_keys: dict[str, list[int]] = {}
        self._known: set[str] = set()
        self._new_persons: list[tuple[int, str, str]] = []
        self._events: list[dict[str, Any]] = []
        #: The database's records under the blocking keys of the page being placed (read in one go).
        self._prefetched: dict[int, list[RecordRow]] = {}
        self._removed: set[str] = set()

    def prefetch(self, features: list[Features]) -> None:
        """Read the candidates of a whole page of records at once (their blocking keys' records)."""
        keys = {key for f in features for key in blocking_keys(f)}
        self._prefetched = self.store.blocked(keys, self.rules.max_block_size) if keys else {}

    # -- state (the database plus what this unit has not written yet) ----------------------

    def records(self, patient_ids: list[str]) -> dict[str, RecordRow]:
        """The records of these Patients as they stand in this unit of work."""
        found = self.store.records([p for p in patient_ids if p not in self._pending])
        found.update((p, self._pending[p]) for p in patient_ids if p in self._pending)
        return found

    def members(self, person_id: str) -> list[RecordRow]:
        """The records of a person as they stand in this unit of work."""
        rows = {r.patient_id: r for r in self.store.members([person_id]) if r.patient_id not in self._pending}
        rows.update((p, r) for p, r in self._pending.items() if r.person_id == person_id)
        return sorted(rows.values(), key=lambda r: r.record_pk)

    def log(self, action: str, person_id: str, *, patient_id: str | None = None, other_person: str | None = None,
            reason: str = "", detail: dict[str, Any] | None = None) -> None:
        """Add an event to this unit's history."""
        self._events.append({"at": self.now, "action": action, "actor": self.actor, "person_id": person_id,
                             "patient_id": patient_id, "other_person": other_person, "reason": reason,
                             "detail": detail})

    def new_person(self) -> str:
        """A new person (written by :meth:`flush`)."""
        pk = self._next_person
        self._next_person += 1
        person_id = str(uuid.uuid4())
        self._new_persons.append((pk, person_id, regional_id(self.region_code, pk)))
        self.touched.add(person_id)
        return person_id

    def save(self, record: RecordRow | None, patient_id: str, person_id: str, grade: str, origin: str,
             score: float | None, features: Features) -> None:
        """Keep a record's new state (written by :meth:`flush`)."""
        if record is None:
            pk = self._next_record
            self._next_record += 1
        else:
            pk = record.record_pk
            self._known.add(patient_id)
        self._pending[patient_id] = RecordRow(pk, patient_id, person_id, grade, origin, score, features.institution,
                                              features.as_json())
        self._pending_keys[patient_id] = blocking_keys(features)
        self.touched.add(person_id)
        if record is not None:
            self.touched.add(record.person_id)

    def flush(self) -> None:
        """Write the persons, records, keys and history kept so far."""
        if self._new_persons:
            self.store.insert_persons(self._new_persons, self.now)
            self._new_persons = []
        if self._pending:
            new = [r for p, r in self._pending.items() if p not in self._known]
            changed = [r for p, r in self._pending.items() if p in self._known]
            keys = {self._pending[p].record_pk: k for p, k in self._pending_keys.items()}
            self.store.write_records(new, changed, keys, self.now)
            self._pending, self._pending_keys, self._known = {}, {}, set()
        if self._events:
            self.store.log(self._events)
            self._events = []

    # -- candidates ------------------------------------------------------------------------

    def candidates(self, features: Features, *, exclude: str | None = None,
                   barred: set[str] | None = None) -> list[Candidate]:
        """Candidate persons of ``features``, best first, without the record ``exclude`` and the persons of
        the records in ``barred`` (decided to be someone else)."""
        if features.placeholder:
            return []
        keys = blocking_keys(features)
        if all(key in self._prefetched for key in keys):
            stored = list({r.record_pk: r for key in keys for r in self._prefetched[key]}.values())
        else:
            stored = self.store.candidates(keys, self.rules.max_block_size)
        rows = [r for r in stored if r.patient_id not in self._pending and r.patient_id not in self._removed]
        wanted = set(keys)
        rows += [self._pending[p] for p, k in self._pending_keys.items() if wanted.intersection(k)]
        if barred:
            barred_persons = {r.person_id for r in self.records(sorted(barred)).values()}
            rows = [r for r in rows if r.person_id not in barred_persons]
        best: dict[str, Candidate] = {}
        for row in sorted(rows, key=lambda r: r.record_pk):  # equal scores: the older record's person
            if row.patient_id == exclude:
                continue
            other = Features.from_json(row.features)
            if other.placeholder:
                continue
            comparison = compare(features, other, self.rules)
            current = best.get(row.person_id)
            if current is None or _rank(comparison) > _rank(current.comparison):
                best[row.person_id] = Candidate(row.person_id, comparison)
        return sorted(best.values(), key=lambda c: _rank(c.comparison), reverse=True)

    # -- one record ------------------------------------------------------------------------

    def place(self, patient_id: str, resource: dict[str, Any] | None, record: RecordRow | None,
              stats: RunStats, features: Features | None = None) -> None:
        """Place one written source Patient (None: deleted); ``features`` when already computed."""
        if resource is None:
            if record is not None:
                self.flush()
                self.store.remove_record(record)
                self._removed.add(patient_id)
                self.store.obsolete_reviews([patient_id], self.now)
                self.log("removed", record.person_id, patient_id=patient_id, reason="the source Patient was deleted")
                self.touched.add(record.person_id)
                stats.removed += 1
            return
        if is_golden(resource):
            stats.skipped += 1
            return
        features = features or features_of(resource, self.service.protector)  # type: ignore[arg-type]
        if record is not None and record.features == features.as_json():
            stats.unchanged += 1
            return
        if record is not None and record.origin == "manual":
            if record.features.get("placeholder") == MARKED_NO_MATCH:
                features = replace(features, placeholder=MARKED_NO_MATCH)
            self.save(record, patient_id, record.person_id, record.grade, "manual", record.score, features)
            return
        barred = self.store.no_match_with(patient_id) if record is not None else None
        candidates = self.candidates(features, exclude=patient_id, barred=barred)
        best = candidates[0] if candidates else None
        current = record.person_id if record is not None else None
        if best is not None and best.comparison.decision == AUTO_LINK:
            person, grade, score = best.person_id, best.comparison.grade, best.comparison.score
            if person != current:
                self.leave(record, person)
                self.log("auto-link", person, patient_id=patient_id, reason="automatic match",
                         detail=best.comparison.as_json())
                stats.auto_links += 1
        else:
            grade, score = CERTAIN, None
            if record is not None and all(m.patient_id == patient_id for m in self.members(record.person_id)):
                person = record.person_id
            else:
                self.leave(record, None)
                person = self.new_person()
                self.log("new-person", person, patient_id=patient_id, reason="no automatic match")
                stats.new_persons += 1
        self.save(record, patient_id, person, grade, "auto", score, features)
        review = [c for c in candidates if c.comparison.decision == REVIEW and c.person_id != person]
        if record is not None:
            self.store.obsolete_reviews([patient_id], self.now, keep_persons=[c.person_id for c in review])
        for candidate in review:
            if self.store.open_review(patient_id, candidate.person_id, candidate.comparison.score,
                                      candidate.comparison.as_json(), self.now):
                self.log("review", candidate.person_id, patient_id=patient_id, other_person=person,
                         reason=candidate.comparison.held_back or "possible match", detail=candidate.comparison.as_json())
                stats.reviews += 1

    def leave(self, record: RecordRow | None, joining: str | None) -> None:
        """The record is about to leave its person (for ``joining``): that person's golden record changes."""
        if record is not None:
            self.touched.add(record.person_id)
            if joining is not None:
                self.absorbed.setdefault(record.person_id, joining)
            self.log("moved", record.person_id, patient_id=record.patient_id, other_person=joining,
                     reason="the record left this person")

    # -- golden records --------------------------------------------------------------------

    def finish(self) -> None:
        """Write what is kept, then rewrite the golden Patients of the touched persons; persons left without
        sources are merged into the person that absorbed them (their golden record points there), or retired."""
        self.flush()
        if not self.touched:
            return
        persons = self.store.persons(self.touched)
        members: dict[str, list[RecordRow]] = {}
        for row in self.store.members(self.touched):
            members.setdefault(row.person_id, []).append(row)
        sources = self.service.repository.read_current_many(
            [("Patient", r.patient_id) for rows in members.values() for r in rows])
        writes: list[tuple[str, str, dict[str, Any]]] = []
        for person_id in sorted(self.touched):
            person = persons.get(person_id)
            if person is None:
                continue
            rows = members.get(person_id, [])
            if not rows:
                survivor = self.absorbed.get(person_id) or person.merged_into
                status = "merged" if survivor else "retired"
                if person.status != status or person.merged_into != survivor:
                    self.store.set_status(person_id, status, survivor, self.now)
                    self.store.obsolete_reviews_of_person(person_id, self.now)
                if survivor:
                    writes.append(("Patient", person_id, merged_patient(person_id, person.regional_id or "", survivor)))
                elif self.service.repository.read_current("Patient", person_id) is not None:
                    self.service.delete("Patient", person_id)
                continue
            if person.status != "active":
                self.store.set_status(person_id, "active", None, self.now)
            documents = []
            for row in rows:
                stored = sources.get(("Patient", row.patient_id))
                if stored is not None and stored.content is not None and not stored.deleted:
                    documents.append((stored.last_updated, jsonio.loads_stored(stored.content)))
            links = [{"patient_id": r.patient_id, "grade": r.grade, "origin": r.origin, "score": r.score} for r in rows]
            writes.append(("Patient", person_id, golden_patient(person_id, person.regional_id or "", links, documents)))
        if writes:
            self.service.upsert_many(writes)
        self.touched.clear()
        self.absorbed.clear()


class Engine:
    """Runs the EMPI over the queue of Patient writes."""

    def __init__(self, database: Database, rules: MatchRules | None = None, settings: Settings | None = None) -> None:
        self.database = database
        settings = settings or database.settings
        self.rules = rules or load_rules(settings.empi_rules_file, settings.empi_region)
        self.region_code = settings.empi_region_code

    def matcher(self, service: FhirService, store: EmpiStore, actor: str = ENGINE, *, write: bool = True) -> Matcher:
        """A matcher for one unit of work (``write``: it holds the EMPI lock and may change links)."""
        return Matcher(service, store, self.rules, self.region_code, actor, write=write)

    def run_once(self, batch: int = 200) -> RunStats:
        """Process up to ``batch`` queued writes in one transaction."""
        stats = RunStats()
        with self.database.empi_batch() as (service, store):
            matcher = self.matcher(service, store)
            queued = store.queued(batch)
            if not queued:
                return stats
            ids = list(dict.fromkeys(patient_id for _key, patient_id in queued))
            current = service.repository.read_current_many([("Patient", i) for i in ids])
            records = matcher.records(ids)
            resources: dict[str, dict[str, Any] | None] = {}
            features: dict[str, Features] = {}
            for patient_id in ids:
                stored = current.get(("Patient", patient_id))
                live = stored is not None and not stored.deleted and stored.content is not None
                resources[patient_id] = jsonio.loads_stored(stored.content) if live and stored and stored.content \
                    else None
                resource = resources[patient_id]
                if resource is not None and not is_golden(resource):
                    features[patient_id] = features_of(resource, self.database.protector)
            matcher.prefetch(list(features.values()))
            for patient_id in ids:
                matcher.place(patient_id, resources[patient_id], records.get(patient_id), stats,
                              features.get(patient_id))
                stats.processed += 1
            matcher.finish()
            store.dequeue([key for key, _id in queued])
        return stats

    def run(self, batch: int = 200, limit: int | None = None) -> RunStats:
        """Process the queue until it is empty (or ``limit`` writes were processed).

        A long run refreshes the planner statistics as it goes (as ingest does): the EMPI tables grow
        from empty, and the golden Patients it writes join the store."""
        total = RunStats()
        since_analyze = 0
        while limit is None or total.processed < limit:
            stats = self.run_once(batch)
            total.add(stats)
            since_analyze += stats.processed
            if since_analyze >= ANALYZE_EVERY:
                self.database.analyze_store()
                since_analyze = 0
            if stats.processed == 0:
                break
        return total

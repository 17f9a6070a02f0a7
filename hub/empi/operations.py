"""Decisions people make on the EMPI: link, unlink, merge, unmerge, not-duplicate, review decisions.

Every decision is manual (origin ``manual``): the engine never changes it later. Each runs in one
transaction under the EMPI lock, is kept in the history with who and why, and rewrites the golden
Patients it changes. Searches follow the links at query time, so everything that reads through
them (recognition, dashboards) follows at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from hub.empi.engine import Engine, Matcher
from hub.empi.features import MARKED_NO_MATCH, Features
from hub.empi.scoring import CERTAIN
from hub.errors import BusinessRuleViolation, Conflict, InvalidRequest, NotFound
from hub.store.empi import PersonRow, RecordRow

#: Review decisions.
LINK, NOT_LINK = "link", "not-link"


def _reason(reason: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidRequest("Give the reason for the decision (reason)")
    if len(text) > 2000:
        raise InvalidRequest("The reason is limited to 2000 characters")
    return text


class EmpiOperations:
    """Manual EMPI decisions over one :class:`Engine`'s database and rules."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _unit(self, actor: str) -> Iterator[Matcher]:
        with self.engine.database.empi_batch() as (service, store):
            matcher = self.engine.matcher(service, store, actor)
            yield matcher
            matcher.finish()

    # -- lookups ---------------------------------------------------------------------------

    @staticmethod
    def _record(matcher: Matcher, patient_id: str) -> RecordRow:
        record = matcher.records([patient_id]).get(patient_id)
        if record is None:
            raise NotFound(f"Patient/{patient_id} is not in the master patient index (not a source Patient, "
                           "or not matched yet)")
        return record

    @staticmethod
    def _active(matcher: Matcher, person_id: str) -> PersonRow:
        person = matcher.store.persons([person_id]).get(person_id)
        if person is None:
            raise NotFound(f"No regional person {person_id}")
        if person.status == "merged":
            raise BusinessRuleViolation(f"Person {person_id} was merged into {person.merged_into}; use that person")
        if person.status != "active":
            raise BusinessRuleViolation(f"Person {person_id} has no source records left ({person.status})")
        return person

    # -- decisions -------------------------------------------------------------------------

    def link(self, patient_id: str, person_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Put a source Patient under a person, for good."""
        reason = _reason(reason)
        with self._unit(actor) as matcher:
            return self._link(matcher, patient_id, person_id, reason)

    def _link(self, matcher: Matcher, patient_id: str, person_id: str, reason: str) -> dict[str, Any]:
        record = self._record(matcher, patient_id)
        self._active(matcher, person_id)
        old = record.person_id
        members = [m.patient_id for m in matcher.members(person_id) if m.patient_id != patient_id]
        if old != person_id:
            matcher.leave(record, person_id)
        matcher.save(record, patient_id, person_id, CERTAIN, "manual", record.score, Features.from_json(record.features))
        matcher.store.remove_no_match((patient_id, m) for m in members)
        matcher.store.obsolete_reviews([patient_id], matcher.now)
        matcher.log("link", person_id, patient_id=patient_id, other_person=old if old != person_id else None,
                    reason=reason)
        return {"patient": patient_id, "person": person_id, "previous_person": old}

    @staticmethod
    def _set_apart(matcher: Matcher, record: RecordRow, others: list[str], reason: str) -> str:
        """Move a record out of its person into a new one, kept apart from ``others`` for good; the new person."""
        matcher.leave(record, None)
        person = matcher.new_person()
        matcher.store.add_no_match(((record.patient_id, o) for o in others), matcher.actor, reason, matcher.now)
        return person

    def unlink(self, patient_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Take a source Patient out of its person into a new person of its own, for good."""
        reason = _reason(reason)
        with self._unit(actor) as matcher:
            record = self._record(matcher, patient_id)
            others = [m.patient_id for m in matcher.members(record.person_id) if m.patient_id != patient_id]
            if not others:
                raise BusinessRuleViolation(f"Patient/{patient_id} is already its person's only source")
            person = self._set_apart(matcher, record, others, reason)
            matcher.save(record, patient_id, person, CERTAIN, "manual", None, Features.from_json(record.features))
            matcher.store.obsolete_reviews([patient_id], matcher.now)
            matcher.log("unlink", record.person_id, patient_id=patient_id, other_person=person, reason=reason)
            return {"patient": patient_id, "person": person, "previous_person": record.person_id}

    def do_not_match(self, patient_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Mark a source Patient a placeholder identity (无名氏, a shared test record): it stands alone under a
        person of its own, and no record is ever linked to it automatically, through all its updates."""
        reason = _reason(reason)
        with self._unit(actor) as matcher:
            record = self._record(matcher, patient_id)
            others = [m.patient_id for m in matcher.members(record.person_id) if m.patient_id != patient_id]
            person = self._set_apart(matcher, record, others, reason) if others else record.person_id
            features = replace(Features.from_json(record.features), placeholder=MARKED_NO_MATCH)
            matcher.save(record, patient_id, person, CERTAIN, "manual", None, features)
            matcher.store.obsolete_reviews([patient_id], matcher.now)
            matcher.store.obsolete_reviews_of_person(person, matcher.now)
            matcher.log("do-not-match", person, patient_id=patient_id, other_person=record.person_id
                        if person != record.person_id else None, reason=reason)
            return {"patient": patient_id, "person": person, "previous_person": record.person_id}

    def merge(self, source: str, target: str, actor: str, reason: str) -> dict[str, Any]:
        """Move every source record of person ``source`` to ``target``; ``source`` is then replaced by ``target``."""
        reason = _reason(reason)
        if source == target:
            raise BusinessRuleViolation("A person cannot be merged into itself")
        with self._unit(actor) as matcher:
            self._active(matcher, source)
            self._active(matcher, target)
            moved = matcher.members(source)
            kept = [m.patient_id for m in matcher.members(target)]
            for record in moved:
                matcher.save(record, record.patient_id, target, record.grade, "manual", record.score,
                             Features.from_json(record.features))
            matcher.absorbed[source] = target
            matcher.store.remove_no_match((m.patient_id, k) for m in moved for k in kept)
            matcher.store.obsolete_reviews([m.patient_id for m in moved], matcher.now)
            matcher.store.obsolete_reviews_of_person(source, matcher.now)
            matcher.log("merge", target, other_person=source, reason=reason, detail={"records": [
                {"patient_id": r.patient_id, "grade": r.grade, "origin": r.origin, "score": r.score} for r in moved]})
            return {"person": target, "merged": source, "moved": [r.patient_id for r in moved]}

    def unmerge(self, merged: str, actor: str, reason: str) -> dict[str, Any]:
        """Undo the last merge of ``merged``: the records it brought go back to it (those still there)."""
        reason = _reason(reason)
        with self._unit(actor) as matcher:
            person = matcher.store.persons([merged]).get(merged)
            if person is None:
                raise NotFound(f"No regional person {merged}")
            event = matcher.store.last_merge_into(merged)
            if person.status != "merged" or event is None:
                raise BusinessRuleViolation(f"Person {merged} is not merged into another person")
            survivor = event["survivor"]
            moved = [r["patient_id"] for r in event["detail"].get("records", [])]
            current = matcher.records(moved)
            back = [current[p] for p in moved if p in current and current[p].person_id == survivor]
            if not back:
                raise BusinessRuleViolation(f"None of the records merged from {merged} is still under {survivor}")
            for record in back:
                matcher.save(record, record.patient_id, merged, CERTAIN, "manual", record.score,
                             Features.from_json(record.features))
            matcher.store.set_status(merged, "active", None, matcher.now)
            staying = [m.patient_id for m in matcher.members(survivor)]
            matcher.store.add_no_match(((b.patient_id, s) for b in back for s in staying), matcher.actor, reason,
                                       matcher.now)
            matcher.log("unmerge", merged, other_person=survivor, reason=reason,
                        detail={"records": [b.patient_id for b in back], "merge_event": event["id"]})
            return {"person": merged, "from": survivor, "restored": [b.patient_id for b in back]}

    def not_duplicate(self, person_a: str, person_b: str, actor: str, reason: str) -> dict[str, Any]:
        """Record that two persons are different people: never linked automatically; their review items close."""
        reason = _reason(reason)
        if person_a == person_b:
            raise BusinessRuleViolation("A person is always the same as itself")
        with self._unit(actor) as matcher:
            self._active(matcher, person_a)
            self._active(matcher, person_b)
            a = [m.patient_id for m in matcher.members(person_a)]
            b = [m.patient_id for m in matcher.members(person_b)]
            pairs = matcher.store.add_no_match(((x, y) for x in a for y in b), matcher.actor, reason, matcher.now)
            matcher.store.settle_reviews(a, person_b, "not-linked", matcher.actor, reason, matcher.now)
            matcher.store.settle_reviews(b, person_a, "not-linked", matcher.actor, reason, matcher.now)
            matcher.log("not-duplicate", person_a, other_person=person_b, reason=reason, detail={"pairs": pairs})
            return {"persons": [person_a, person_b], "pairs": pairs}

    def decide(self, review_id: int, version: int | None, decision: str, actor: str, reason: str) -> dict[str, Any]:
        """Decide a review item: ``link`` the record to the candidate person, or ``not-link``.

        ``version`` is the item's version the reviewer saw: a changed item answers 409.
        """
        reason = _reason(reason)
        if decision not in (LINK, NOT_LINK):
            raise InvalidRequest(f"decision must be '{LINK}' or '{NOT_LINK}'")
        with self._unit(actor) as matcher:
            item = matcher.store.review(review_id)
            if item is None:
                raise NotFound(f"No match review item {review_id}")
            if item["status"] != "open":
                raise Conflict(f"Review item {review_id} is already closed ({item['status']})")
            if version is not None and item["version"] != version:
                raise Conflict(f"Review item {review_id} changed since it was read (version {item['version']}, "
                               f"not {version}); reload it")
            patient_id, candidate = item["patient_id"], item["candidate_person"]
            status = "linked" if decision == LINK else "not-linked"
            if not matcher.store.close_review(review_id, item["version"], status, matcher.actor, reason, matcher.now):
                raise Conflict(f"Review item {review_id} was decided concurrently; reload it")
            if decision == LINK:
                result = self._link(matcher, patient_id, candidate, reason)
            else:
                self._active(matcher, candidate)
                members = [m.patient_id for m in matcher.members(candidate)]
                matcher.store.add_no_match(((patient_id, m) for m in members), matcher.actor, reason, matcher.now)
                matcher.log("not-link", candidate, patient_id=patient_id, reason=reason)
                result = {"patient": patient_id, "person": self._record(matcher, patient_id).person_id}
            return {"review": review_id, "decision": decision, **result}

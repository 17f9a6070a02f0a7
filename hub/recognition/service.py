"""The recognition service of one database: catalogue, quality-control records, checks, decisions, figures.

:func:`install` puts the HR marker on the database (every process that writes results installs it:
the app, the CLI, the workers) and returns the service the API and the CLI use.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from hub.coding.mapping_tables import source_scopes
from hub.coding.terminology import PROCESS_CACHE, Terminology
from hub.errors import HubError, InvalidRequest, NotFound
from hub.fhir.instants import aware, now_utc
from hub.recognition import decisions
from hub.recognition.catalogue import Catalogue, Item, from_json, load_catalogue, parse_text
from hub.recognition.check import Checker, CheckRequest, CheckResult, LocalCodes, check_row, find_subjects
from hub.recognition.eqa import eqa_records
from hub.recognition.marker import HrMarker, Remarker
from hub.recognition.rules import Rules, RulesCache
from hub.store.database import Database
from hub.store.recognition import RecognitionStore

#: The hooks whose checks name an order (a second call for the same order replaces the first's check).
SERVICES_HOOKS = frozenset({"order-select", "order-sign"})
#: How long a hook call for an order counts as a repeat of an earlier one.
REPEAT_WINDOW = timedelta(days=1)


class Recognition:
    """检查检验结果互认 over one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.cache = RulesCache()
        self.codes = LocalCodes()
        self.remarker = Remarker(database)

    @contextmanager
    def _store(self, *, write: bool) -> Iterator[RecognitionStore]:
        with self.database.connection(write=write) as connection:
            yield RecognitionStore(connection)

    def rules(self) -> Rules:
        """The rules in force."""
        with self.database.connection(write=False) as connection:
            return self.cache.current(connection)

    # -- catalogue ---------------------------------------------------------------------------

    def catalogue(self) -> dict[str, Any]:
        """The catalogue in force (JSON form); 404 when none was loaded."""
        with self._store(write=False) as store:
            content = store.catalogue()
        if content is None:
            raise NotFound("No recognition catalogue has been loaded (PUT /recognition/catalogue, or "
                           "hub recognition catalogue FILE)")
        return content

    def load_catalogue(self, raw: bytes | str, actor: str, *, wait: bool = True) -> dict[str, Any]:
        """Check and put a catalogue in force; re-mark the results of items whose rule changed (``wait`` False:
        a large re-marking runs in the background)."""
        catalogue, content = load_catalogue(parse_text(raw))
        self._check_codes(catalogue)
        with self._store(write=True) as store:
            store.bump()
            before = from_json(store.catalogue())
            store.save_catalogue(content, actor, now_utc())
        changed = _changed_items(before, catalogue)
        return {"version": catalogue.version, "items": len(catalogue.items), "changed_items": len(changed),
                "remarked": self.remarker.run(changed, wait=wait)}

    def _check_codes(self, catalogue: Catalogue) -> None:
        """Every item's code must be a code of a code system the hub holds (LOINC, the exam items…)."""
        problems = []
        with self.database.fhir_service(write=False) as service:
            terminology = Terminology(service, PROCESS_CACHE)
            units = self.codes.code_systems(service).units
            for item in catalogue.items.values():
                if item.unit and (units is None or units.resolve(item.unit) is None):
                    problems.append(f"{item.item_id}: unit '{item.unit}' is not a UCUM unit the hub knows")
                system = terminology.code_system(item.system)
                if system is None:
                    problems.append(f"{item.item_id}: code system {item.system} is not loaded (hub terminology load)")
                elif system.get(item.code) is None:
                    problems.append(f"{item.item_id}: {item.code} is not a code of {item.system}")
        if problems:
            raise InvalidRequest(f"The catalogue has {len(problems)} unknown code(s) or unit(s): "
                                 + "; ".join(problems[:20]))

    # -- quality control ---------------------------------------------------------------------

    def eqa_records(self, **filters: Any) -> list[dict[str, Any]]:
        """Quality-control records (filters: institution, item_id, year)."""
        with self._store(write=False) as store:
            return store.eqa_records(**filters)

    def save_eqa(self, entries: Sequence[dict[str, Any]], actor: str, *, wait: bool = True) -> dict[str, Any]:
        """Record quality-control results and re-mark the results they decide."""
        rules = self.rules()
        records = eqa_records(entries, rules)
        with self._store(write=True) as store:
            saved = store.save_eqa(records, actor, now_utc())
        items = [rules.catalogue.items[i] for i in sorted({r.item_id for r in records})]
        return {"saved": saved, "remarked": self.remarker.run(items, wait=wait)}

    def delete_eqa(self, eqa_id: int, *, wait: bool = True) -> dict[str, Any]:
        """Remove a quality-control record and re-mark the results it decided."""
        with self._store(write=True) as store:
            record = store.delete_eqa(eqa_id)
        if record is None:
            raise NotFound(f"No quality-control record {eqa_id}")
        item = self.rules().catalogue.items.get(record.item_id)
        return {"deleted": eqa_id, "remarked": self.remarker.run([item] if item is not None else [], wait=wait)}

    def remark(self, *, level_rules_only: bool = False, wait: bool = True) -> dict[str, Any]:
        """Set the HR mark again on every stored result of the catalogue's items (of those qualified by hospital
        level only: after institutions changed); a repair after an interrupted re-marking."""
        items = [i for i in self.rules().catalogue.items.values() if i.rule == "level" or not level_rules_only]
        return {"items": len(items), "remarked": self.remarker.run(items, wait=wait)}

    # -- checks ------------------------------------------------------------------------------

    def _scopes(self, scope: str) -> list[str]:
        with self.database.sources(write=False) as sources:
            source = sources.get(scope)
        return source_scopes(source.source_id, source.adapter) if source is not None else [scope]

    def check(self, requests: Sequence[CheckRequest], actor: str) -> list[CheckResult]:
        """Check orders and record the checks."""
        with self.database.empi_batch(write=False) as (service, empi):
            rules = self.cache.current(empi.connection)
            for request in requests:
                org = rules.institutions.get(request.institution)
                if org is None or org.kind not in ("institution", ""):
                    raise InvalidRequest(f"Unknown ordering institution '{request.institution}' (the Organization "
                                         "id of an institution, not of a consortium or region)")
            checker = Checker(rules, self.codes, self._scopes)
            results = [checker.run(service, empi, request) for request in requests]
        now = now_utc()
        with self._store(write=True) as store:
            rows = []
            for result in results:
                if self._checked_before(store, result, now):
                    continue
                rows.append(check_row(result, actor, now))
            store.record_checks(rows)
        return results

    @staticmethod
    def _checked_before(store: RecognitionStore, result: CheckResult, now: datetime) -> bool:
        """Whether an order checked again by a hook (order-select, then order-sign) was decided on already (it is
        then not recorded again); an undecided earlier check of it is replaced (an order counts once)."""
        request = result.request
        if not request.order_ref or request.origin not in SERVICES_HOOKS or result.item is None:
            return False
        earlier = store.latest_for_order(request.institution, request.order_ref, result.item.item_id,
                                         now - REPEAT_WINDOW)
        if earlier is None:
            return False
        if earlier["decision"] is not None:
            result.already_decided = True
            return True
        store.forget_check(earlier["check_id"])
        return False

    def knows_patient(self, key: str) -> bool:
        """Whether ``key`` (Patient/<id> or an identifier system|value) names a Patient the hub holds."""
        with self.database.empi_batch(write=False) as (service, empi):
            if key.startswith("Patient/"):
                stored = service.repository.read_current("Patient", key[len("Patient/"):])
                return stored is not None and not stored.deleted
            try:
                return bool(find_subjects(service, empi, key))
            except HubError:  # malformed, or naming two people: the next key the caller has is tried
                return False

    def decide(self, wanted: Sequence[decisions.Decision], actor: str,
               institutions: frozenset[str] | None) -> list[dict[str, Any]]:
        """Record decisions taken on checks, all or none."""
        now = now_utc()
        with self._store(write=True) as store:
            return [decisions.decide(store, decision, actor, institutions, now) for decision in wanted]

    def check_record(self, check_id: str) -> dict[str, Any] | None:
        """A recorded check with its decisions (JSON form)."""
        with self._store(write=False) as store:
            found = store.check(check_id)
            if found is None:
                return None
            return {**_json_row(found), "decisions": store.decisions(check_id)}

    def checks(self, first: date, last: date, *, institutions: frozenset[str] | None, decision: str | None,
               reason: str | None, eligible: bool | None, offset: int, count: int) -> dict[str, Any]:
        """Recorded checks, newest first, filtered (JSON form) and how many match."""
        if decision is not None and decision not in (*decisions.DECISIONS, "undecided"):
            raise InvalidRequest("decision must be recognized, retested or undecided")
        with self._store(write=False) as store:
            rows, total = store.checks(first_day=first.isoformat(), last_day=last.isoformat(),
                                       institutions=institutions, decision=decision, reason=reason,
                                       eligible=eligible, limit=count, offset=offset)
        return {"total": total, "offset": offset, "checks": [_json_row(row) for row in rows]}

    def catalogue_history(self) -> list[dict[str, Any]]:
        """Every catalogue loaded, newest first."""
        with self._store(write=False) as store:
            return store.catalogue_history()

    def figures(self, first: date, last: date, *, period: str, group: str,
                institutions: frozenset[str] | None = None) -> dict[str, Any]:
        """The recognition figures (see :func:`hub.recognition.decisions.figures`)."""
        rules = self.rules()
        with self._store(write=False) as store:
            return decisions.figures(store, rules, first, last, period=period, group=group,
                                     institutions=institutions)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as JSON (instants as ISO 8601, in UTC)."""
    return {k: aware(v).isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _changed_items(before: Catalogue, after: Catalogue) -> list[Item]:
    """Items whose results may change mark: added, removed, or with another code or qualification."""
    def key(item: Item) -> tuple[Any, ...]:
        return item.system, item.code, item.rule, item.min_level

    changed = {}
    for item_id in set(before.items) | set(after.items):
        old, new = before.items.get(item_id), after.items.get(item_id)
        if old is None or new is None or key(old) != key(new):
            for item in (old, new):
                if item is not None:
                    changed[(item.system, item.code)] = item
    return list(changed.values())


_INSTALLED: WeakKeyDictionary[Database, Recognition] = WeakKeyDictionary()


def install(database: Database) -> Recognition:
    """Mark results HR as they are written to ``database``; the recognition service over it (one per
    database, however many apps or commands install it)."""
    recognition = _INSTALLED.get(database)
    if recognition is None:
        recognition = _INSTALLED[database] = Recognition(database)
        cache = recognition.cache
        database.markers.append(lambda connection: HrMarker(cache, connection))
    return recognition

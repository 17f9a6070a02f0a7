"""The recognition service of one database: catalogue, quality-control records, checks, decisions, figures.

:func:`install` puts the HR marker on the database (every process that writes results installs it:
the app, the CLI, the workers) and returns the service the API and the CLI use.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any
from weakref import WeakKeyDictionary

from hub.coding.mapping_tables import source_scopes
from hub.coding.terminology import PROCESS_CACHE, Terminology
from hub.errors import InvalidRequest, NotFound
from hub.fhir.instants import now_utc
from hub.recognition import decisions
from hub.recognition.catalogue import Catalogue, Item, from_json, load_catalogue, parse_text
from hub.recognition.check import Checker, CheckRequest, CheckResult, LocalCodes, check_row, find_subjects
from hub.recognition.marker import HrMarker, Remarked, remark
from hub.recognition.rules import Rules, RulesCache
from hub.store.database import Database
from hub.store.recognition import EqaRecord, RecognitionStore

_MAX_YEAR_SPAN = (2000, 2100)


class Recognition:
    """检查检验结果互认 over one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.cache = RulesCache()
        self.codes = LocalCodes()

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

    def load_catalogue(self, raw: bytes | str, actor: str) -> dict[str, Any]:
        """Check and put a catalogue in force; re-mark the results of items whose rule changed."""
        catalogue, content = load_catalogue(parse_text(raw))
        self._check_codes(catalogue)
        with self._store(write=True) as store:
            before = from_json(store.catalogue())
            store.save_catalogue(content, actor, now_utc())
        changed = _changed_items(before, catalogue)
        marked = remark(self.database, changed)
        return {"version": catalogue.version, "items": len(catalogue.items), "changed_items": len(changed),
                "remarked": marked.as_dict()}

    def _check_codes(self, catalogue: Catalogue) -> None:
        """Every item's code must be a code of a code system the hub holds (LOINC, the exam items…)."""
        problems = []
        with self.database.fhir_service(write=False) as service:
            terminology = Terminology(service, PROCESS_CACHE)
            for item in catalogue.items.values():
                system = terminology.code_system(item.system)
                if system is None:
                    problems.append(f"{item.item_id}: code system {item.system} is not loaded (hub terminology load)")
                elif system.get(item.code) is None:
                    problems.append(f"{item.item_id}: {item.code} is not a code of {item.system}")
        if problems:
            raise InvalidRequest(f"The catalogue has {len(problems)} unknown code(s): " + "; ".join(problems[:20]))

    # -- quality control ---------------------------------------------------------------------

    def eqa_records(self, **filters: Any) -> list[dict[str, Any]]:
        """Quality-control records (filters: institution, item_id, year)."""
        with self._store(write=False) as store:
            return store.eqa_records(**filters)

    def save_eqa(self, entries: Sequence[dict[str, Any]], actor: str) -> dict[str, Any]:
        """Record quality-control results and re-mark the results they decide."""
        rules = self.rules()
        records = [_eqa_record(entry, number, rules) for number, entry in enumerate(entries, start=1)]
        with self._store(write=True) as store:
            saved = store.save_eqa(records, actor, now_utc())
        marked = Remarked()
        for item_id, year in sorted({(r.item_id, r.year) for r in records}):
            part = remark(self.database, [rules.catalogue.items[item_id]], year)
            marked.examined += part.examined
            marked.updated += part.updated
        return {"saved": saved, "remarked": marked.as_dict()}

    def delete_eqa(self, eqa_id: int) -> dict[str, Any]:
        """Remove a quality-control record and re-mark the results it decided."""
        with self._store(write=True) as store:
            record = store.delete_eqa(eqa_id)
        if record is None:
            raise NotFound(f"No quality-control record {eqa_id}")
        item = self.rules().catalogue.items.get(record.item_id)
        marked = remark(self.database, [item], record.year) if item is not None else Remarked()
        return {"deleted": eqa_id, "remarked": marked.as_dict()}

    # -- checks ------------------------------------------------------------------------------

    def _scopes(self, scope: str) -> list[str]:
        with self.database.sources(write=False) as sources:
            source = sources.get(scope)
        return source_scopes(source.source_id, source.adapter) if source is not None else [scope]

    def check(self, requests: Sequence[CheckRequest], actor: str) -> list[CheckResult]:
        """Check orders and record the checks."""
        rules = self.rules()
        for request in requests:
            if request.institution not in rules.institutions:
                raise InvalidRequest(f"Unknown ordering institution '{request.institution}' (an Organization id)")
        checker = Checker(rules, self.codes, self._scopes)
        with self.database.empi_batch(write=False) as (service, empi):
            results = [checker.run(service, empi, request) for request in requests]
        now = now_utc()
        with self._store(write=True) as store:
            store.record_checks([check_row(r, actor, now) for r in results])
        return results

    def knows_patient(self, key: str) -> bool:
        """Whether ``key`` (Patient/<id> or an identifier system|value) names a Patient the hub holds."""
        with self.database.empi_batch(write=False) as (service, empi):
            if key.startswith("Patient/"):
                stored = service.repository.read_current("Patient", key[len("Patient/"):])
                return stored is not None and not stored.deleted
            try:
                return bool(find_subjects(service, empi, key))
            except InvalidRequest:
                return False

    def decide(self, wanted: Sequence[tuple[str, str, str | None, str | None]], actor: str,
               institutions: frozenset[str] | None) -> list[dict[str, Any]]:
        """Record the decisions (check id, decision, reason, comment) taken on checks, all or none."""
        now = now_utc()
        with self._store(write=True) as store:
            return [decisions.decide(store, check_id, decision, reason, comment, actor, institutions, now)
                    for check_id, decision, reason, comment in wanted]

    def check_record(self, check_id: str) -> dict[str, Any] | None:
        """A recorded check."""
        with self._store(write=False) as store:
            return store.check(check_id)

    def figures(self, first: date, last: date, *, period: str, group: str,
                institutions: frozenset[str] | None = None) -> dict[str, Any]:
        """The recognition figures (see :func:`hub.recognition.decisions.figures`)."""
        rules = self.rules()
        with self._store(write=False) as store:
            return decisions.figures(store, rules, first, last, period=period, group=group,
                                     institutions=institutions)


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


def _eqa_record(entry: Any, number: int, rules: Rules) -> EqaRecord:
    where = f"record {number}"
    if not isinstance(entry, dict):
        raise InvalidRequest(f"{where}: must be an object with institution, item, year, passed")
    institution, item_id = str(entry.get("institution") or ""), str(entry.get("item") or "")
    year, passed = entry.get("year"), entry.get("passed")
    if institution not in rules.institutions:
        raise InvalidRequest(f"{where}: unknown institution '{institution}' (an Organization id)")
    if item_id not in rules.catalogue.items:
        raise InvalidRequest(f"{where}: '{item_id}' is not an item of the catalogue in force")
    if rules.catalogue.items[item_id].rule != "eqa":
        raise InvalidRequest(f"{where}: item '{item_id}' is qualified by hospital level, not by 室间质评")
    if not isinstance(year, int) or isinstance(year, bool) or not _MAX_YEAR_SPAN[0] <= year <= _MAX_YEAR_SPAN[1]:
        raise InvalidRequest(f"{where}: year must be a year like 2026")
    if not isinstance(passed, bool):
        raise InvalidRequest(f"{where}: passed must be true or false")
    scheme, certificate = str(entry.get("scheme") or ""), str(entry.get("certificate") or "")
    if len(scheme) > 200 or len(certificate) > 200:
        raise InvalidRequest(f"{where}: scheme and certificate are limited to 200 characters")
    return EqaRecord(institution, item_id, year, passed, scheme, certificate)


_INSTALLED: WeakKeyDictionary[Database, Recognition] = WeakKeyDictionary()


EQA_COLUMNS = ("institution", "item", "year", "passed", "scheme", "certificate")
_TRUE, _FALSE = {"true", "1", "yes", "pass", "passed", "合格", "通过"}, {"false", "0", "no", "fail", "failed", "不合格",
                                                                      "未通过"}


def read_eqa_csv(raw: bytes) -> list[dict[str, Any]]:
    """Quality-control records from CSV (columns institution,item,year,passed[,scheme,certificate])."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("The quality-control file must be UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in EQA_COLUMNS[:4] if c not in (reader.fieldnames or ())]
    if missing:
        raise InvalidRequest(f"The quality-control file lacks the column(s) {', '.join(missing)} "
                             f"(columns: {','.join(EQA_COLUMNS)})")
    out = []
    for line, row in enumerate(reader, start=2):
        passed = (row.get("passed") or "").strip().lower()
        year = (row.get("year") or "").strip()
        if passed not in _TRUE | _FALSE or not year.isdigit():
            raise InvalidRequest(f"line {line}: year must be a year and passed true or false")
        out.append({"institution": (row.get("institution") or "").strip(), "item": (row.get("item") or "").strip(),
                    "year": int(year), "passed": passed in _TRUE, "scheme": (row.get("scheme") or "").strip(),
                    "certificate": (row.get("certificate") or "").strip()})
    return out


def install(database: Database) -> Recognition:
    """Mark results HR as they are written to ``database``; the recognition service over it (one per
    database, however many apps or commands install it)."""
    recognition = _INSTALLED.get(database)
    if recognition is None:
        recognition = _INSTALLED[database] = Recognition(database)
        cache = recognition.cache
        database.markers.append(lambda connection: HrMarker(cache, connection))
    return recognition

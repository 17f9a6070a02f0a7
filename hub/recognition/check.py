"""The recognition check: which prior results of a patient an order could use instead of a new test.

Given a patient (a ``Patient/<id>`` reference or any identifier the EMPI knows: a record number,
the ID number, the regional identifier), the ordering institution, the requested item (the
orderer's local code, mapped through its mapping tables, or a standard code) and a time, the
check finds the patient's results of that item at every institution — following the EMPI's
links at query time, so merges and unmerges count at once — and sorts them into those that may
be recognized and those that may not, each with its reasons. Every check is recorded (it is the
base of the recognition figures); its id is the handle of the decision taken on it.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.mapping_index import build_index
from hub.coding.mapping_tables import split_local
from hub.coding.normalizer import LOINC, MappingIndex
from hub.coding.terminology import PROCESS_CACHE, Terminology, escape
from hub.coding.units import UCUM, Units
from hub.errors import BusinessRuleViolation, Forbidden, InvalidRequest
from hub.fhir import jsonio
from hub.fhir.access import institution_tags
from hub.fhir.instants import now_utc
from hub.fhir.search import parse_query, parse_search
from hub.fhir.search_values import local_zone
from hub.fhir.service import FhirService
from hub.recognition.catalogue import Item, validity_text, validity_words
from hub.recognition.rules import FINAL, Rules, performer_of, result_time, result_year
from hub.store.empi import EmpiStore
from hub.store.recognition import CheckRow

#: Results of one item and patient looked at (newest first); older ones are not candidates anyway.
MAX_RESULTS = 200
#: Statuses of results that are not results at all.
_VOID = frozenset({"cancelled", "entered-in-error"})
#: Candidates shown without their value: outside the orderer's scope, or not a result yet.
_WITHHELD = frozenset({"out-of-scope", "not-final"})
REASONS = {
    "expired": "已超过互认有效期",
    "not-qualified": "检查检验机构不具备该项目互认资质",
    "not-final": "结果尚未审核发布",
    "out-of-scope": "检查检验机构不在互认范围内",
    "unit-not-comparable": "单位无法换算，结果不可比",
}


@dataclass(frozen=True)
class CheckRequest:
    """One order to check."""

    patient: str
    institution: str
    code: str
    at: datetime | None = None
    unit: str | None = None
    origin: str = "api"
    order_ref: str | None = None
    #: Other codings of the order, tried in turn when ``code`` is no catalogue item.
    alternatives: tuple[str, ...] = ()
    #: The caller is bound to the ordering institution: it names only its own patients (or by ID number).
    bound: bool = False
    #: CDS Hooks ``userId`` and ``hookInstance``.
    clinician: str | None = None
    hook_instance: str | None = None


@dataclass
class CheckResult:
    """What a check found (``as_dict`` is its JSON form), and the row recorded for it."""

    check_id: str
    request: CheckRequest
    item: Item | None
    standard_code: str | None
    subjects: list[str]
    recognizable: list[dict[str, Any]] = field(default_factory=list)
    not_recognizable: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    #: The same order was checked and decided on in an earlier hook call: not recorded again, no card.
    already_decided: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        item = self.item
        return {
            "check": self.check_id,
            "requested": self.request.code,
            "code": self.standard_code,
            "item": None if item is None else {
                "id": item.item_id, "name": item.name, "category": item.category, "kind": item.kind,
                "code": f"{item.system}|{item.code}", "validity": validity_text(item.validity), "scope": item.scope,
                "price": f"{item.price_fen / 100:.2f}" if item.price_fen is not None else None},
            "institution": self.request.institution,
            "at": (self.request.at or now_utc()).isoformat(),
            "patients": [{"reference": f"Patient/{subject}"} for subject in self.subjects],
            "recognizable": self.recognizable,
            "not_recognizable": self.not_recognizable,
            "message": self.message,
        }


@dataclass(frozen=True)
class CodeSystems:
    """What a check needs of the terminology: the UCUM units and the LOINC items (usual unit, molar mass)."""

    stamp: tuple[Any, ...]
    units: Units | None
    loinc: CodeSystemIndex | None

    def loinc_facts(self, code: str) -> tuple[str | None, Decimal | None]:
        """A LOINC item's usual unit and molar mass (for mass ↔ substance conversions)."""
        concept = self.loinc.get(code) if self.loinc is not None else None
        if concept is None:
            return None, None
        unit = next(iter(concept.values("unit")), None)
        mass = next(iter(concept.values("molar-mass")), None)
        return (str(unit) if unit else None), (Decimal(str(mass)) if mass is not None else None)


class LocalCodes:
    """The terminology a check uses, kept in memory and rebuilt when it changes (one indexed read per check):
    the orderers' mapping tables (local code → standard code), the UCUM units and the LOINC items."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, ...], tuple[tuple[Any, ...], MappingIndex]] = {}
        self._systems = CodeSystems((), None, None)

    def code_systems(self, service: FhirService) -> CodeSystems:
        """The units and LOINC items as the hub holds them now."""
        stamp = (service.repository.type_stamp("CodeSystem"),)
        if self._systems.stamp != stamp:
            terminology = Terminology(service, PROCESS_CACHE)
            ucum = terminology.code_system(UCUM)
            self._systems = CodeSystems(stamp, Units.from_code_system(ucum) if ucum is not None else None,
                                        terminology.code_system(LOINC))
        return self._systems

    def standard(self, service: FhirService, scopes_of: Any, system: str, code: str) -> tuple[str, str] | None:
        """The standard (system, code) a local code maps to; the code itself when it is not local."""
        local = split_local(system)
        if local is None:
            return system, code
        scope, element = local
        scopes = tuple(scopes_of(scope))
        repository = service.repository
        stamp = (repository.type_stamp("ConceptMap"), repository.type_stamp("CodeSystem"))
        cached = self._indexes.get(scopes)
        if cached is None or cached[0] != stamp:
            cached = (stamp, build_index(Terminology(service, PROCESS_CACHE), list(scopes)))
            with self._lock:
                self._indexes[scopes] = cached
        index = cached[1]
        target = index.targets.get((element, code))
        coding = target.coding if target is not None and not target.ambiguous else None
        if coding is None and element in index.direct:
            concept = index.direct[element].get(code)
            coding = {"system": index.direct[element].url, "code": code} if concept is not None else None
        return (str(coding["system"]), str(coding["code"])) if coding else None


def split_code(text: str, name: str = "code") -> tuple[str, str]:
    """``system|code`` → (system, code)."""
    system, bar, code = (text or "").strip().rpartition("|")
    if not bar or not system or not code:
        raise InvalidRequest(f"'{name}' must be 'system|code' (a local code of the orderer, or a LOINC or "
                             "urn:hub:exam-item code)")
    return system, code


def find_subjects(service: FhirService, empi: EmpiStore, patient: str, *, orderer: str | None = None) -> list[str]:
    """The Patient ids whose results are the patient's: the regional person (golden id, which searches follow
    to every linked source) of the Patients ``patient`` names, or the Patient itself when it is not in the EMPI.

    ``orderer`` (a caller bound to that institution) may name only a Patient of its own (by id or by its own
    record number) or anyone by the citizen ID number the patient shows at registration. An identifier that
    names two different people is refused: a check never mixes two patients' results.
    """
    text = (patient or "").strip()
    if text.startswith("Patient/") and orderer is None:
        found_ids = [text[len("Patient/"):]]
        return _subjects(empi, found_ids)
    if text.startswith("Patient/"):
        stored = service.repository.read_current("Patient", text[len("Patient/"):])
        found = [stored] if stored is not None and not stored.deleted else []
        by_citizen_id = False
    elif "|" in text:
        system, value = split_code(text, "patient")
        spec = service.conditional_spec("Patient", f"identifier={escape(system)}|{escape(value)}")
        found = service.repository.search(replace(spec, count=20))
        by_citizen_id = service.protector is not None and service.protector.is_citizen_id_system(system)
    else:
        raise InvalidRequest("'patient' must be Patient/<id> or an identifier 'system|value'")
    if orderer is not None and found and not by_citizen_id and not any(
            orderer in (institution_tags(s.content) or ()) for s in found):
        raise Forbidden("Name the patient by a Patient or record number of your own institution, or by the "
                        "citizen ID number")
    return _subjects(empi, [s.id for s in found])


def _subjects(empi: EmpiStore, ids: list[str]) -> list[str]:
    """The regional persons of these Patients (or the Patients, outside the EMPI); one at most."""
    records = empi.records(ids)
    persons = empi.persons(ids)
    subjects = set()
    for patient_id in ids:
        person = persons.get(patient_id)
        if patient_id in records:
            subjects.add(records[patient_id].person_id)
        elif person is not None and person.merged_into:  # a golden Patient merged since: its survivor
            subjects.add(person.merged_into)
        else:
            subjects.add(patient_id)
    if len(subjects) > 1:
        raise BusinessRuleViolation(f"The identifier names {len(subjects)} different people in the master patient "
                                    "index (not linked, or decided not to be the same person): name the patient "
                                    "by its Patient id, or settle the match first")
    return sorted(subjects)


def _results(service: FhirService, item: Item, references: str) -> list[Any]:
    """The patient's results of the item: all of them, or (more than :data:`MAX_RESULTS`) the newest (results
    with only ``issued`` have no search date: they sort last)."""
    query = f"subject={references}&code={escape(item.system)}|{escape(item.code)}"
    found = []
    for sort in ("", "&_sort=-date"):  # sorting costs a join: only for the rare patient with that many results
        spec = parse_search(item.resource_type, parse_query(query + sort), service.registry,
                            default_count=MAX_RESULTS, max_count=MAX_RESULTS).spec
        found = service.repository.search(spec)
        if len(found) < MAX_RESULTS:
            break
    return found


def _quantity(resource: dict[str, Any]) -> dict[str, Any] | None:
    quantity = resource.get("valueQuantity")
    return quantity if isinstance(quantity, dict) and quantity.get("value") is not None else None


class Checker:
    """Runs checks over one unit of work's FHIR service (unrestricted: the check answers for the region)."""

    def __init__(self, rules: Rules, codes: LocalCodes, scopes_of: Any) -> None:
        self.rules = rules
        self.codes = codes
        self.scopes_of = scopes_of

    def _item(self, service: FhirService, request: CheckRequest) -> tuple[Item | None, str | None, str]:
        """The catalogue item of the order (its code, or the first alternative that is one), the standard code
        found, and why there is none."""
        standard_text, why = None, ""
        for text in (request.code, *request.alternatives):
            system, code = split_code(text)
            standard = self.codes.standard(service, self.scopes_of, system, code)
            if standard is None:
                why = why or f"本地项目代码 {code} 尚未映射到标准代码，无法判断互认"
                continue
            standard_text = standard_text or f"{standard[0]}|{standard[1]}"
            item = self.rules.catalogue.item_for(*standard)
            if item is not None:
                return item, f"{standard[0]}|{standard[1]}", ""
            why = "该项目不在互认项目目录内"
        return None, standard_text, why

    def run(self, service: FhirService, empi: EmpiStore, request: CheckRequest) -> CheckResult:
        """Check one order."""
        check_id = str(uuid.uuid4())
        item, standard_text, why = self._item(service, request)
        if item is None:
            return CheckResult(check_id, request, None, standard_text, [], message=why)
        systems = self.codes.code_systems(service)
        units = systems.units if item.kind == "lab" else None
        usual_unit, molar_mass = systems.loinc_facts(item.code) if item.system == LOINC else (None, None)
        if request.unit and (units is None or units.resolve(request.unit) is None):
            raise InvalidRequest(f"unit '{request.unit}' is not a unit the hub knows (a UCUM code, like mmol/L)")
        subjects = find_subjects(service, empi, request.patient,
                                 orderer=request.institution if request.bound else None)
        result = CheckResult(check_id, request, item, standard_text, subjects)
        if not subjects:
            result.message = "未找到该患者（区域主索引中没有这个标识）"
            return result
        at = request.at or now_utc()
        references = ",".join(f"Patient/{s}" for s in subjects)
        wanted = request.unit or item.unit or usual_unit
        for stored in _results(service, item, references):
            if stored.content is None:
                continue
            resource = jsonio.loads_stored(stored.content)
            entry = self._assess(resource, stored.resource_type, stored.id, item, request, at,
                                 (units, wanted, molar_mass))
            if entry is not None:
                (result.not_recognizable if entry["reasons"] else result.recognizable).append(entry)
        for entries in (result.recognizable, result.not_recognizable):
            entries.sort(key=lambda e: e["date"] or "", reverse=True)
        result.message = (f"{len(result.recognizable)} 项既往结果可互认" if result.recognizable
                          else "没有可互认的既往结果")
        return result

    def _assess(self, resource: dict[str, Any], resource_type: str, resource_id: str, item: Item,
                request: CheckRequest, at: datetime, conversion: tuple[Units | None, str | None, Decimal | None],
                ) -> dict[str, Any] | None:
        status = str(resource.get("status") or "")
        moment = result_time(resource)
        if status in _VOID or moment is None or moment > at:
            return None  # not a result, or not a prior one
        performer = self.rules.institution_of(performer_of(resource))
        org = self.rules.institutions.get(performer or "")
        reasons: list[dict[str, str]] = []

        def reason(code: str, detail: str) -> None:
            reasons.append({"code": code, "text": f"{REASONS[code]}：{detail}"})

        if status not in FINAL:
            reason("not-final", f"状态为 {status}")
        if not performer or not self.rules.in_scope(item, request.institution, performer):
            reason("out-of-scope", "不在同一医联体" if item.scope == "consortium" else "不在本区域")
        year = result_year(moment)
        qualified = self.rules.qualified(item, performer, year)
        if not qualified:
            reason("not-qualified", f"{year} 年度未通过室间质评" if item.rule == "eqa"
                   else f"机构级别低于 {item.min_level}")
        age = at - moment
        if age > item.validity:
            reason("expired", f"已过 {_age_text(age)}，有效期 {validity_words(item.validity)}")
        entry: dict[str, Any] = {
            "result": f"{resource_type}/{resource_id}", "status": status, "date": moment.astimezone(local_zone())
            .isoformat(), "age_hours": round(age.total_seconds() / 3600, 1), "institution": performer,
            "institution_name": org.name if org is not None else None,
            "hr": status in FINAL and qualified,
        }
        if any(r["code"] in _WITHHELD for r in reasons):
            entry["reasons"] = reasons  # not a result the orderer may use: where and when only, no value
            return entry
        if resource_type == "DiagnosticReport":
            entry["conclusion"] = resource.get("conclusion")
        else:
            _value(resource, entry, conversion, reason)
            _context(resource, entry)
        entry["reasons"] = reasons
        return entry



def _value(resource: dict[str, Any], entry: dict[str, Any],
           conversion: tuple[Units | None, str | None, Decimal | None], reason: Any) -> None:
    """The result's value in ``entry``, converted to the wanted unit (a reason when it does not convert)."""
    quantity = _quantity(resource)
    if quantity is None:
        entry["value"] = resource.get("valueString") or _concept_text(resource.get("valueCodeableConcept"))
        return
    units, wanted, molar_mass = conversion
    value, written = _number(quantity.get("value")), quantity.get("unit") or quantity.get("code")
    entry.update({"value": value, "unit": written})
    if quantity.get("comparator"):  # "<0.01": the bound converts, the comparator stays
        entry["comparator"] = quantity["comparator"]
    if not wanted:
        return
    target = units.resolve(wanted) if units is not None else None
    source = None
    if units is not None:
        source = units.resolve(str(quantity.get("code") or "")) or units.resolve(str(written or ""))
    converted = None
    if units is not None and target is not None and source is not None:
        try:
            converted = units.convert(Decimal(str(value)), source, target, molar_mass)
        except InvalidOperation:
            converted = None
    if converted is None or target is None or source is None:
        reason("unit-not-comparable", f"{written or '无单位'} 无法换算为 {wanted}")
        return
    if target.code != source.code:
        entry.update({"value": _number(converted), "unit": target.code,
                      "original": {"value": value, "unit": written}})


def _context(resource: dict[str, Any], entry: dict[str, Any]) -> None:
    """The reference range and interpretation (H/L flags) the performing lab reported."""
    ranges = [r.get("text") for r in resource.get("referenceRange") or () if isinstance(r, dict) and r.get("text")]
    if ranges:
        entry["reference_range"] = ranges[0]
    flags = [c.get("code") for i in resource.get("interpretation") or () if isinstance(i, dict)
             for c in i.get("coding") or () if isinstance(c, dict) and c.get("code")]
    if flags:
        entry["interpretation"] = flags[0]


def _number(value: Any) -> Any:
    """A stored number (Decimal as parsed) as JSON can carry it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    return value


def _concept_text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    return concept.get("text") or next((c.get("display") for c in concept.get("coding") or () if c.get("display")),
                                       None)


def _age_text(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.0f} 小时" if hours < 48 else f"{hours / 24:.1f} 天"


def check_row(result: CheckResult, actor: str, at: datetime) -> CheckRow:
    """The row recording a check."""
    best = result.recognizable[0] if result.recognizable else None
    item = result.item
    return CheckRow(
        check_id=result.check_id, checked_at=at, check_day=at.astimezone(local_zone()).date().isoformat(),
        institution=result.request.institution, item_id=item.item_id if item else None,
        requested=result.request.code[:300], person=result.subjects[0][:64] if result.subjects else None,
        origin=result.request.origin, order_ref=(result.request.order_ref or None),
        recognizable=len(result.recognizable), result_ref=best["result"] if best else None,
        performer=best["institution"] if best else None, price_fen=item.price_fen if item else None,
        checked_by=actor, clinician=(result.request.clinician or "")[:200] or None,
        hook_instance=(result.request.hook_instance or "")[:64] or None)

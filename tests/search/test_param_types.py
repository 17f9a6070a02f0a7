"""Search parameter types over HTTP: one fixed set of resources, a table of queries and the ids they must find.

Each case is ``GET [base]/{type}?{query}``; the ids of the ``match`` entries must equal the expected set exactly.
Dates without a time zone are only compared with dates (the server reads them in HUB_TIMEZONE).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.search.support import base_url, ids, latest, link, load, search

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL = "http://hospital-a.example/codes"
MRN = "http://hospital.example/mrn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
TAGS = "http://example.org/tags"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
VIP_PROFILE = "http://example.org/fhir/StructureDefinition/vip-patient"
SOURCE = "http://hospital-a.example/his"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _id_type(code: str) -> dict:
    return {"coding": [{"system": V2_0203, "code": code}]}


def _patient(pid: str, name: dict, **extra: object) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [name], **extra}


def _obs(oid: str, codings: list[dict], subject: dict | None, text: str | None = None, **extra: object) -> dict:
    code: dict = {"coding": codings}
    if text:
        code["text"] = text
    resource = {"resourceType": "Observation", "id": oid, "status": "final", "code": code, **extra}
    if subject is not None:
        resource["subject"] = subject
    return resource


def _qty(value: float, code: str) -> dict:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def _component(code: str, value: float) -> dict:
    return {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": _qty(value, "mm[Hg]")}


SBP = {"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}
GLUCOSE = {"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"}
P1, P2, P3, P4 = ({"reference": f"Patient/p{n}"} for n in (1, 2, 3, 4))

RESOURCES: list[dict] = [
    {"resourceType": "Organization", "id": "org1", "name": "昆山市第一人民医院"},
    {"resourceType": "Organization", "id": "org2", "name": "Li, Wang & Partners"},
    _patient(
        "p1", {"family": "Smith", "given": ["John"]}, gender="male", birthDate="1970-06-01", active=True,
        identifier=[{"type": _id_type("MR"), "system": MRN, "value": "12345"}],
        telecom=[{"system": "phone", "value": "13800000001"}, {"system": "email", "value": "john@example.org"}],
        address=[{"line": ["Main Street 1"], "city": "Kunshan"}],
        managingOrganization={"reference": "Organization/org1"},
        meta={"tag": [{"system": TAGS, "code": "vip"}], "profile": [VIP_PROFILE],
              "security": [{"system": CONFIDENTIALITY, "code": "R"}], "source": SOURCE},
    ),
    _patient(
        "p2", {"family": "Smithson", "given": ["Anna"]}, gender="female", birthDate="1970-12-31", active=False,
        identifier=[{"type": _id_type("SS"), "system": "http://other.example/ids", "value": "12345"}],
        telecom=[{"system": "sms", "value": "13800000001"}, {"system": "email", "value": "anna@example.org"}],
        address=[{"city": "Suzhou"}], meta={"tag": [{"system": TAGS, "code": "new"}]},
    ),
    _patient("p3", {"family": "Müller", "given": ["Jürgen"]}, birthDate="1985-03-15", address=[{"city": "Kunshan"}]),
    _patient("p4", {"text": "张三", "family": "张", "given": ["三"]}, gender="male", birthDate="2000-01-01",
             identifier=[{"value": "12345"}], address=[{"city": "昆山市"}]),
    _patient("p5", {"text": "李四", "family": "李", "given": ["四"]}, gender="female"),
    _patient("p6", {"text": "张伟", "family": "张", "given": ["伟"]}, gender="female", birthDate="1999-05-20",
             identifier=[{"type": _id_type("MR"), "system": MRN, "value": "67890"}]),
    _patient("p7", {"family": "王", "given": ["小明"]}, gender="male", birthDate="1988-08-08"),
    _obs("o1", [SBP, {"system": LOCAL, "code": "SBP"}], P1, "收缩压", valueQuantity=_qty(120, "mm[Hg]"),
         effectiveDateTime="2025-01-15T08:30:00Z", encounter={"reference": "Encounter/e1"}),
    _obs("o2", [GLUCOSE], P2, valueQuantity=_qty(5.4, "mmol/L"), effectiveDateTime="2024-12-31T23:00:00Z"),
    _obs("o3", [GLUCOSE], P1, valueQuantity=_qty(5.44, "mmol/L"),
         effectivePeriod={"start": "2025-03-10T00:00:00Z", "end": "2025-03-20T00:00:00Z"}),
    _obs("o4", [GLUCOSE], P3, valueQuantity=_qty(5.7, "mmol/L"), effectiveDateTime="2025-03-15T12:00:00Z"),
    _obs("o5", [GLUCOSE], P4, valueQuantity=_qty(5.4, "mg/dL")),
    _obs("o6", [SBP, {"code": "SBP"}], P1, valueQuantity=_qty(95, "mm[Hg]"),
         effectiveDateTime="2025-02-01T10:00:00+08:00"),
    _obs("o7", [{"system": LOINC, "code": "85354-9"}], P2, effectiveDateTime="2025-04-01T09:00:00Z",
         component=[_component("8480-6", 130), _component("8462-4", 85)]),
    _obs("o8", [{"system": LOCAL, "code": "BP-PANEL"}], {"identifier": {"system": MRN, "value": "55555"}},
         component=[_component("8480-6", 80), _component("8462-4", 95)]),
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"system": ACT, "code": "AMB"},
     "subject": P1,
     "period": {"start": "2025-03-01", "end": "2025-03-31"}},
    {"resourceType": "Encounter", "id": "e2", "status": "in-progress", "class": {"system": ACT, "code": "IMP"},
     "subject": P2,
     "period": {"start": "2025-04-02"}},
    {"resourceType": "RiskAssessment", "id": "ra1", "status": "final", "subject": P1,
     "prediction": [{"probabilityDecimal": 0.8}]},
    {"resourceType": "RiskAssessment", "id": "ra2", "status": "final", "subject": P2,
     "prediction": [{"probabilityDecimal": 0.3}]},
    {"resourceType": "RiskAssessment", "id": "ra3", "status": "final", "subject": P3,
     "prediction": [{"probabilityDecimal": 0.52}]},
    {"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://x.org/fhir/ValueSet/a"},
    {"resourceType": "ValueSet", "id": "vs2", "status": "active", "url": "http://x.org/fhir/ValueSet/ab"},
    {"resourceType": "ValueSet", "id": "vs3", "status": "active", "url": "http://y.org/fhir/ValueSet/a"},
]

ALL_OBS = {f"o{n}" for n in range(1, 9)}


def case(resource_type: str, query: str, expected: set[str], name: str) -> object:
    return pytest.param(resource_type, query, expected, id=name)


STRING_CASES = [
    case("Patient", "family=smi", {"p1", "p2"}, "string-starts-with"),
    case("Patient", "family=SMITH", {"p1", "p2"}, "string-case-insensitive"),
    case("Patient", "family=ＳＭＩＴＨ", {"p1", "p2"}, "string-full-width-normalized"),
    case("Patient", "name=müll", {"p3"}, "string-accent-in-query"),
    case("Patient", "name=mull", {"p3"}, "string-accent-insensitive"),
    case("Patient", "family=MULLER", {"p3"}, "string-accent-and-case"),
    case("Patient", "given=jurg", {"p3"}, "string-given-accent"),
    case("Patient", "name=john", {"p1"}, "string-name-covers-given"),
    case("Patient", "name=张", {"p4", "p6"}, "string-chinese-family"),
    case("Patient", "name=张三", {"p4"}, "string-chinese-full-name"),
    case("Patient", "given=三", {"p4"}, "string-chinese-given"),
    case("Patient", "family=张", {"p4", "p6"}, "string-chinese-family-param"),
    case("Patient", "family=ith", set(), "string-not-infix"),
    case("Patient", "family:exact=Smith", {"p1"}, "string-exact"),
    case("Patient", "family:exact=smith", set(), "string-exact-case-sensitive"),
    case("Patient", "family:exact=Smit", set(), "string-exact-whole-value"),
    case("Patient", "family:exact=Müller", {"p3"}, "string-exact-accent"),
    case("Patient", "family:exact=Muller", set(), "string-exact-accent-sensitive"),
    case("Patient", "name:exact=张三", {"p4"}, "string-exact-chinese-text"),
    case("Patient", "family:contains=mith", {"p1", "p2"}, "string-contains"),
    case("Patient", "family:contains=SON", {"p2"}, "string-contains-end"),
    case("Patient", "name:contains=urg", {"p3"}, "string-contains-accent"),
    case("Patient", "address-city=kun", {"p1", "p3"}, "string-address-city"),
    case("Patient", "address-city=昆山", {"p4"}, "string-address-city-chinese"),
    case("Patient", "address-city:exact=Kunshan", {"p1", "p3"}, "string-address-city-exact"),
    case("Patient", "address=suzhou", {"p2"}, "string-address-any-part"),
    case("Patient", "address=main", {"p1"}, "string-address-line"),
    case("Patient", "address=main%20street", {"p1"}, "string-with-space"),
    case("Patient", "family=smith,müller", {"p1", "p2", "p3"}, "string-or"),
    case("Patient", "name=john&name=smith", {"p1"}, "string-and-repeated"),
    case("Patient", "family=smith&given=anna", {"p2"}, "string-and-two-params"),
    case("Patient", "name=smith&name=zzz", set(), "string-and-no-match"),
    case("Patient", "name=王小明", {"p7"}, "string-chinese-family-given-without-text"),
    case("Organization", "name=昆山市", {"org1"}, "string-organization-name"),
    case("Organization", "name=li\\,%20wang", {"org2"}, "string-escaped-comma"),
    case("Organization", "name=li,昆山", {"org1", "org2"}, "string-unescaped-comma-is-or"),
]

TOKEN_CASES = [
    case("Patient", "gender=female", {"p2", "p5", "p6"}, "token-code"),
    case("Patient", "gender=male,female", {"p1", "p2", "p4", "p5", "p6", "p7"}, "token-or"),
    case("Patient", "gender:not=male", {"p2", "p3", "p5", "p6"}, "token-not-includes-missing"),
    case("Patient", "gender:missing=true", {"p3"}, "token-missing-true"),
    case("Patient", "gender:missing=false", {"p1", "p2", "p4", "p5", "p6", "p7"}, "token-missing-false"),
    case("Patient", "active=true", {"p1"}, "token-boolean-true"),
    case("Patient", "active=false", {"p2"}, "token-boolean-false"),
    case("Patient", "active:missing=true", {"p3", "p4", "p5", "p6", "p7"}, "token-boolean-missing"),
    case("Patient", "identifier=12345", {"p1", "p2", "p4"}, "token-identifier-any-system"),
    case("Patient", f"identifier={MRN}|12345", {"p1"}, "token-system-and-code"),
    case("Patient", "identifier=|12345", {"p4"}, "token-no-system"),
    case("Patient", f"identifier={MRN}|", {"p1", "p6"}, "token-system-only"),
    case("Patient", f"identifier={MRN}|12345,|12345", {"p1", "p4"}, "token-or-system-code"),
    case("Patient", f"identifier:of-type={V2_0203}|MR|12345", {"p1"}, "token-of-type"),
    case("Patient", f"identifier:of-type={V2_0203}|MR|67890", {"p6"}, "token-of-type-other-value"),
    case("Patient", f"identifier:of-type={V2_0203}|SS|67890", set(), "token-of-type-wrong-type"),
    case("Patient", "phone=13800000001", {"p1"}, "token-phone-filters-system"),
    case("Patient", "email=anna@example.org", {"p2"}, "token-email"),
    case("Patient", "email=13800000001", set(), "token-email-not-sms"),
    case("Patient", "telecom=13800000001", {"p1", "p2"}, "token-telecom-any-system"),
    case("Observation", "code=8480-6", {"o1", "o6"}, "token-codeable-concept"),
    case("Observation", f"code={LOINC}|2339-0", {"o2", "o3", "o4", "o5"}, "token-coding-system-code"),
    case("Observation", "code=SBP", {"o1", "o6"}, "token-code-any-system"),
    case("Observation", "code=|SBP", {"o6"}, "token-coding-without-system"),
    case("Observation", f"code={LOCAL}|", {"o1", "o8"}, "token-coding-system-only"),
    case("Observation", f"code={LOINC}|8480-6,{LOINC}|85354-9", {"o1", "o6", "o7"}, "token-codings-or"),
    case("Observation", "code:not=8480-6", ALL_OBS - {"o1", "o6"}, "token-not"),
    case("Observation", "code:text=systolic", {"o1", "o6"}, "token-text-display"),
    case("Observation", "code:text=收缩", {"o1"}, "token-text-concept-text"),
    case("Observation", "combo-code=8462-4", {"o7", "o8"}, "token-combo-code-component"),
    case("Observation", "combo-code:not=8462-4", ALL_OBS - {"o7", "o8"}, "token-combo-code-not"),
    case("Observation", "combo-code:missing=true", set(), "token-combo-code-missing"),
]

DATE_CASES = [
    case("Patient", "birthdate=1970", {"p1", "p2"}, "date-year"),
    case("Patient", "birthdate=1970-06", {"p1"}, "date-month"),
    case("Patient", "birthdate=1970-06-01", {"p1"}, "date-day"),
    case("Patient", "birthdate=eq1970-06-01", {"p1"}, "date-eq"),
    case("Patient", "birthdate=ne1970-06-01", {"p2", "p3", "p4", "p6", "p7"}, "date-ne"),
    case("Patient", "birthdate=gt1985-03-15", {"p4", "p6", "p7"}, "date-gt"),
    case("Patient", "birthdate=ge1985-03-15", {"p3", "p4", "p6", "p7"}, "date-ge"),
    case("Patient", "birthdate=lt1985", {"p1", "p2"}, "date-lt-year"),
    case("Patient", "birthdate=le1985-03-15", {"p1", "p2", "p3"}, "date-le"),
    case("Patient", "birthdate=sa1985", {"p4", "p6", "p7"}, "date-sa"),
    case("Patient", "birthdate=eb1985", {"p1", "p2"}, "date-eb"),
    case("Patient", "birthdate=ap1970-06-01", {"p1", "p2"}, "date-ap"),
    case("Patient", "birthdate=ge1970&birthdate=lt1986", {"p1", "p2", "p3"}, "date-and-range"),
    case("Patient", "birthdate=1970-06-01,2000", {"p1", "p4"}, "date-or"),
    case("Patient", "birthdate:missing=true", {"p5"}, "date-missing"),
    case("Observation", "date=ge2025-01-01T00:00:00Z", {"o1", "o3", "o4", "o6", "o7"}, "datetime-ge-utc"),
    case("Observation", "date=lt2025-01-01T00:00:00Z", {"o2"}, "datetime-lt-utc"),
    case("Observation", "date=ge2025-01-01T07:00:00%2B08:00", {"o1", "o2", "o3", "o4", "o6", "o7"},
         "datetime-offset-honoured"),
    case("Observation", "date=2025-02-01T02:00:00Z", {"o6"}, "datetime-eq-across-zones"),
    case("Observation", "date=2025-03-15", {"o4"}, "date-eq-excludes-wider-period"),
    case("Observation", "date=ge2025-03-15", {"o3", "o4", "o7"}, "date-ge-overlapping-period"),
    case("Observation", "date=le2025-03-15", {"o1", "o2", "o3", "o4", "o6"}, "date-le-overlapping-period"),
    case("Observation", "date=ne2025-03-15", {"o1", "o2", "o3", "o6", "o7"}, "date-ne-period"),
    case("Observation", "date=gt2025-03-15T12:00:00Z", {"o3", "o7"}, "datetime-gt-instant"),
    case("Observation", "date=sa2025-03-05", {"o3", "o4", "o7"}, "date-sa-period-starts-after"),
    case("Observation", "date=sa2025-03-12", {"o4", "o7"}, "date-sa-period-starts-inside"),
    case("Observation", "date=eb2025-03-15", {"o1", "o2", "o6"}, "date-eb-period-ends-inside"),
    case("Observation", "date=eb2025-03-25", {"o1", "o2", "o3", "o4", "o6"}, "date-eb-period-ends-before"),
    case("Observation", "date:missing=true", {"o5", "o8"}, "date-missing-observation"),
    case("Encounter", "date=2025-03", {"e1"}, "period-inside-month"),
    case("Encounter", "date=2025-03-15", set(), "period-not-inside-day"),
    case("Encounter", "date=ge2025-03-15", {"e1", "e2"}, "period-ge"),
    case("Encounter", "date=le2025-03-15", {"e1"}, "period-le"),
    case("Encounter", "date=sa2025-03-31", {"e2"}, "period-sa"),
    case("Encounter", "date=eb2025-04-02", {"e1"}, "period-eb"),
    case("Encounter", "date=ge2030-01-01", {"e2"}, "period-open-end-is-ongoing"),
]

NUMBER_QUANTITY_CASES = [
    case("RiskAssessment", "probability=gt0.5", {"ra1", "ra3"}, "number-gt"),
    case("RiskAssessment", "probability=lt0.5", {"ra2"}, "number-lt"),
    case("RiskAssessment", "probability=ge0.52", {"ra1", "ra3"}, "number-ge"),
    case("RiskAssessment", "probability=0.5", {"ra3"}, "number-eq-precision"),
    case("RiskAssessment", "probability=0.8", {"ra1"}, "number-eq"),
    case("RiskAssessment", "probability=0.52,0.3", {"ra2", "ra3"}, "number-or"),
    case("Observation", "value-quantity=5.4", {"o2", "o3", "o5"}, "quantity-eq-precision-any-unit"),
    case("Observation", f"value-quantity=5.4|{UCUM}|mmol/L", {"o2", "o3"}, "quantity-system-code"),
    case("Observation", "value-quantity=5.4||mmol/L", {"o2", "o3"}, "quantity-unit-any-system"),
    case("Observation", f"value-quantity=5.4|{UCUM}|mg/dL", {"o5"}, "quantity-other-unit"),
    case("Observation", "value-quantity=5.40", {"o2", "o5"}, "quantity-eq-more-significant-figures"),
    case("Observation", f"value-quantity=gt5|{UCUM}|mmol/L", {"o2", "o3", "o4"}, "quantity-prefix-and-unit"),
    case("Observation", "value-quantity=gt100", {"o1"}, "quantity-gt"),
    case("Observation", "value-quantity=gt6", {"o1", "o6"}, "quantity-gt-small"),
    case("Observation", "value-quantity=lt5.5", {"o2", "o3", "o5"}, "quantity-lt"),
    case("Observation", "value-quantity=ge95", {"o1", "o6"}, "quantity-ge"),
    case("Observation", "value-quantity=le5.7", {"o2", "o3", "o4", "o5"}, "quantity-le"),
    case("Observation", "value-quantity=ne5.4", {"o1", "o4", "o6"}, "quantity-ne"),
    case("Observation", "value-quantity=ap5.4", {"o2", "o3", "o4", "o5"}, "quantity-ap"),
]

REFERENCE_CASES = [
    case("Observation", "subject=Patient/p1", {"o1", "o3", "o6"}, "reference-type-id"),
    case("Observation", "subject=p1", {"o1", "o3", "o6"}, "reference-bare-id"),
    case("Observation", "subject={base}/Patient/p1", {"o1", "o3", "o6"}, "reference-absolute-server-url"),
    case("Observation", "subject:Patient=p1", {"o1", "o3", "o6"}, "reference-type-modifier"),
    case("Observation", "subject=http://other.example/fhir/Patient/p1", set(), "reference-other-server"),
    case("Observation", "patient=p1", {"o1", "o3", "o6"}, "reference-patient-param"),
    case("Observation", "patient=Patient/p3", {"o4"}, "reference-patient-typed"),
    case("Observation", "subject=Patient/p2,Patient/p3", {"o2", "o4", "o7"}, "reference-or"),
    case("Observation", f"subject:identifier={MRN}|55555", {"o8"}, "reference-identifier"),
    case("Observation", "encounter=Encounter/e1", {"o1"}, "reference-encounter"),
    case("Observation", "encounter:missing=false", {"o1"}, "reference-missing-false"),
    case("Patient", "organization=Organization/org1", {"p1"}, "reference-organization"),
    case("Patient", "organization:missing=true", {"p2", "p3", "p4", "p5", "p6", "p7"}, "reference-missing-true"),
    case("RiskAssessment", "subject=Patient/p1", {"ra1"}, "reference-riskassessment"),
    case("Encounter", "subject=p2", {"e2"}, "reference-encounter-subject"),
]

URI_CASES = [
    case("ValueSet", "url=http://x.org/fhir/ValueSet/a", {"vs1"}, "uri-exact"),
    case("ValueSet", "url=http://x.org/fhir/ValueSet", set(), "uri-no-prefix-by-default"),
    case("ValueSet", "url:below=http://x.org/fhir", {"vs1", "vs2"}, "uri-below"),
    case("ValueSet", "url:above=http://x.org/fhir/ValueSet/a/extra", {"vs1"}, "uri-above"),
]

COMPOSITE_CASES = [
    case("Observation", f"code-value-quantity={LOINC}|8480-6$gt100", {"o1"}, "composite-code-value"),
    case("Observation", f"code-value-quantity={LOINC}|2339-0$gt5.5", {"o4"}, "composite-code-restricts"),
    case("Observation", "code-value-quantity=8480-6$gt100", {"o1"}, "composite-code-without-system"),
    case("Observation", f"component-code-value-quantity={LOINC}|8462-4$lt90", {"o7"}, "composite-same-component"),
    case("Observation", f"component-code-value-quantity={LOINC}|8480-6$gt100", {"o7"}, "composite-component-gt"),
    case("Observation", f"combo-code-value-quantity={LOINC}|8480-6$gt100", {"o1", "o7"}, "composite-combo"),
    case("Observation", f"combo-code-value-quantity={LOINC}|8462-4$gt90", {"o8"}, "composite-combo-component"),
]

COMMON_CASES = [
    case("Patient", "_id=p1,p3", {"p1", "p3"}, "common-id-or"),
    case("Patient", "_id=o1", set(), "common-id-other-type"),
    case("Patient", "_id=p1&family=zzz", set(), "common-id-and"),
    case("Patient", f"_tag={TAGS}|vip", {"p1"}, "common-tag"),
    case("Patient", "_tag=new", {"p2"}, "common-tag-code-only"),
    case("Patient", f"_profile={VIP_PROFILE}", {"p1"}, "common-profile"),
    case("Patient", f"_security={CONFIDENTIALITY}|R", {"p1"}, "common-security"),
    case("Patient", f"_source={SOURCE}", {"p1"}, "common-source"),
]


@pytest.mark.parametrize(
    ("resource_type", "query", "expected"),
    STRING_CASES + TOKEN_CASES + DATE_CASES + NUMBER_QUANTITY_CASES + REFERENCE_CASES + URI_CASES
    + COMPOSITE_CASES + COMMON_CASES,
)
def test_search_finds_exactly(fhir: httpx.Client, resource_type: str, query: str, expected: set[str]) -> None:
    """``GET [type]?query`` matches exactly the expected resources of the fixture set."""
    load(fhir, RESOURCES)
    bundle = search(fhir, f"/{resource_type}?{query.replace('{base}', base_url(fhir))}")
    found = ids(bundle)
    assert link(bundle, "next") is None, "fixture results fit one page"
    assert len(found) == len(set(found)), f"duplicate entries: {found}"
    assert {e["resource"]["resourceType"] for e in bundle.get("entry", [])} <= {resource_type}
    assert set(found) == expected


def test_last_updated_compares_with_stored_instants(fhir: httpx.Client) -> None:
    """``_lastUpdated`` with a prefix compares with the server's meta.lastUpdated."""
    before = latest(load(fhir, RESOURCES))
    time.sleep(0.05)
    changed = fhir.get("/Patient/p3").json()
    changed["active"] = True
    updated = fhir.put("/Patient/p3", json=changed)
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["lastUpdated"] > before
    assert ids(search(fhir, "/Patient", {"_lastUpdated": f"gt{before}"})) == ["p3"]
    older = ids(search(fhir, "/Patient", {"_lastUpdated": f"le{before}"}))
    assert set(older) == {"p1", "p2", "p4", "p5", "p6", "p7"}
    assert ids(search(fhir, "/Patient", {"_lastUpdated": "lt2000-01-01"})) == []


def test_index_follows_updates_and_deletes(fhir: httpx.Client) -> None:
    """After an update only the new values match; a deleted resource is found by no search."""
    load(fhir, RESOURCES)
    changed = fhir.get("/Patient/p1").json()
    changed["name"] = [{"family": "Smyth", "given": ["John"]}]
    changed["birthDate"] = "1971-01-01"
    assert fhir.put("/Patient/p1", json=changed).status_code == 200
    assert fhir.delete("/Patient/p2").status_code in (200, 204)
    assert ids(search(fhir, "/Patient?family=smith")) == []
    assert ids(search(fhir, "/Patient?family=smyth")) == ["p1"]
    assert ids(search(fhir, "/Patient?birthdate=1970")) == []
    assert ids(search(fhir, "/Patient?birthdate=1971")) == ["p1"]
    assert ids(search(fhir, "/Patient?identifier=12345&_sort=_id")) == ["p1", "p4"]
    assert ids(search(fhir, "/Patient?_id=p2")) == []

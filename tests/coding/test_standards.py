"""The shipped terminology against the standards' own codes and rules (no database)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from hub.coding.catalog import catalog_resources
from hub.coding.codesystems import CodeSystemIndex
from hub.coding.units import Units


@pytest.fixture(scope="module")
def systems() -> dict[str, CodeSystemIndex]:
    return {r.resource_id: CodeSystemIndex(r.resource) for r in catalog_resources() if r.resource_type == "CodeSystem"}


def _codes(index: CodeSystemIndex) -> dict[str, str | None]:
    return {c.code: c.display for c in index.concepts.values()}


def test_gb_t_2261_1_sex_is_the_standard_table(systems: dict[str, CodeSystemIndex]) -> None:
    assert _codes(systems["gb-t-2261.1-sex"]) == {"0": "未知的性别", "1": "男性", "2": "女性", "9": "未说明的性别"}
    assert systems["gb-t-2261.1-sex"].url == "urn:oid:2.16.156.10011.2.3.3.4"


def test_gb_t_2261_2_marital_status(systems: dict[str, CodeSystemIndex]) -> None:
    marital = systems["gb-t-2261.2-marital"]
    assert _codes(marital) == {"10": "未婚", "20": "已婚", "21": "初婚", "22": "再婚", "23": "复婚", "30": "丧偶",
                               "40": "离婚", "90": "未说明的婚姻状况"}
    assert marital.subsumption("20", "22") == "subsumes"


def test_gb_t_3304_ethnicity_is_56_two_digit_codes(systems: dict[str, CodeSystemIndex]) -> None:
    ethnicity = systems["gb-t-3304-ethnicity"]
    codes = _codes(ethnicity)
    assert list(codes) == [f"{n:02d}" for n in range(1, 57)]
    assert (codes["01"], codes["02"], codes["03"], codes["04"], codes["05"]) == ("汉族", "蒙古族", "回族", "藏族", "维吾尔族")
    assert codes["56"] == "基诺族"
    assert ethnicity.get("1") is not None and ethnicity.get("1").code == "01"  # unpadded input accepted
    assert ethnicity.get("57") is None


def test_ws_364_value_sets(systems: dict[str, CodeSystemIndex]) -> None:
    id_types = _codes(systems["ws364-cv02.01.101-id-document"])
    assert id_types["01"] == "居民身份证" and id_types["03"] == "护照" and "99" in id_types
    assert systems["ws364-cv02.01.101-id-document"].url == "urn:oid:2.16.156.10011.2.3.1.1"
    abo = _codes(systems["ws364-cv04.50.005-abo"])
    assert [abo[c] for c in ("1", "2", "3", "4")] == ["A型", "B型", "O型", "AB型"]
    rh = _codes(systems["ws364-cv04.50.020-rh"])
    assert rh["1"] == "阴性" and rh["2"] == "阳性"


def test_icd10_clinical_edition_codes_have_the_national_format(systems: dict[str, CodeSystemIndex]) -> None:
    icd = systems["icd10-cn-clinical"]
    patterns = {"diagnosis": re.compile(r"^[A-Z][0-9]{2}\.[0-9x][0-9]{2}$"),
                "extension": re.compile(r"^[A-Z][0-9]{2}\.[0-9x][0-9]{2}x[0-9]{3}$"),
                "category": re.compile(r"^[A-Z][0-9]{2}$"), "block": re.compile(r"^[A-Z][0-9]{2}-[A-Z][0-9]{2}$"),
                "chapter": re.compile(r"^[A-Z][0-9]{2}-[A-Z][0-9]{2}$")}
    kinds: dict[str, int] = {}
    for concept in icd.concepts.values():
        kind = concept.values("kind")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
        assert patterns[kind].match(concept.code), concept.code
        assert all(p in icd.concepts for p in concept.parents), concept.code
        if kind in ("diagnosis", "extension"):
            assert concept.parents[0] == (concept.code[:3] if kind == "diagnosis" else concept.code[:7])
    assert kinds["diagnosis"] + kinds["extension"] >= 300
    assert kinds["chapter"] == 22
    assert icd.get("I10.x00") is not None and icd.get("E11.900").display == "2型糖尿病"
    assert icd.get("I10.x00x002").display == "高血压"
    assert icd.subsumption("I00-I99", "I10.x00x002") == "subsumes"  # chapter → block → category → code → extension


def _loinc_check_digit(body: str) -> int:
    total = 0
    for position, digit in enumerate(int(c) for c in reversed(body)):
        if position % 2 == 0:
            digit *= 2
            total += digit // 10 + digit % 10
        else:
            total += digit
    return (10 - total % 10) % 10


def test_loinc_subset_codes_pass_the_mod10_check_and_have_chinese_names(systems: dict[str, CodeSystemIndex]) -> None:
    loinc = systems["loinc-cn"]
    assert _loinc_check_digit("2345") == 7 and _loinc_check_digit("718") == 7  # LOINC's own examples
    items = [c for c in loinc.concepts.values() if c.values("kind") == ["item"]]
    assert len(items) >= 200
    for concept in loinc.concepts.values():
        body, _, check = concept.code.partition("-")
        assert int(check) == _loinc_check_digit(body), concept.code
        assert concept.display and re.search(r"[\u4e00-\u9fff]", concept.display), concept.code
    panels = {c.display for c in loinc.concepts.values() if c.values("kind") == ["panel"]}
    assert {"血常规", "肝功能", "肾功能", "电解质"} <= panels
    assert loinc.get("4548-4").display == "糖化血红蛋白"


@pytest.fixture(scope="module")
def units(systems: dict[str, CodeSystemIndex]) -> Units:
    return Units.from_code_system(systems["ucum-common"])


@pytest.mark.parametrize(("value", "source", "target", "molar_mass", "expected"), [
    ("5.6", "mmol/L", "mg/dL", "180.16", "100.9"),      # glucose
    ("100", "mg/dL", "mmol/L", "180.16", "5.551"),
    ("5.2", "mmol/L", "mg/dL", "386.65", "201.1"),      # cholesterol
    ("200", "mg/dL", "mmol/L", "386.65", "5.173"),
    ("1.7", "mmol/L", "mg/dL", "885.7", "150.6"),       # triglycerides
    ("88", "umol/L", "mg/dL", "113.12", "0.9955"),      # creatinine
    ("130", "g/L", "g/dL", None, "13.00"),
    ("13.5", "g/dL", "g/L", None, "135.0"),
    ("6.5", "10*9/L", "/uL", None, "6500"),
    ("6.5", "10*9/L", "10*3/uL", None, "6.500"),
])
def test_lab_unit_conversions(units: Units, value: str, source: str, target: str, molar_mass: str | None,
                              expected: str) -> None:
    converted = units.convert(Decimal(value), units.resolve(source), units.resolve(target),
                              Decimal(molar_mass) if molar_mass else None)
    assert str(converted) == expected


def test_units_written_the_lis_way_are_recognized_and_impossible_conversions_refused(units: Units) -> None:
    assert units.resolve("×10^9/L").code == "10*9/L"
    assert units.resolve("μmol/L").code == "umol/L"
    assert units.resolve("mmol/l").code == "mmol/L"
    assert units.resolve("furlong") is None
    assert units.convert(Decimal(1), units.resolve("mmol/L"), units.resolve("mg/dL"), None) is None  # no molar mass
    assert units.convert(Decimal(1), units.resolve("U/L"), units.resolve("g/L"), Decimal(1)) is None

"""The consortium roster: the Kunshan sample, USCC checks, loading YAML/CSV into the store, the CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fhir.resources.R4B.organization import Organization
from typer.testing import CliRunner

from hub.config import Settings
from hub.errors import InvalidRequest
from hub.fhir.validation import validate_resource
from hub.registry.roster import USCC_SYSTEM, apply_roster, load_roster, uscc_check_character, uscc_valid
from hub.store.database import Database
from hub.store.organizations import KIND_SYSTEM, LEVEL_SYSTEM, ROLE_SYSTEM, institutions_under, summary

SAMPLE = Path(__file__).resolve().parents[2] / "hub" / "samples" / "kunshan-roster.yaml"
CONSORTIUM = "consortium-ks"

#: Published codes (python-stdnum's test list, hutool's tests, the code commonly cited as an example).
PUBLISHED_USCC = ["91350100M000100Y43", "91110000600037341L", "121200004013590816", "9144030071526726XG",
                  "91310110666007217T", "91310115591693856A"]


def _sample() -> list[dict]:
    return load_roster(SAMPLE)


def _by_kind(organizations: list[dict], kind: str) -> list[dict]:
    return [o for o in organizations if summary(o)["kind"] == kind]


def _uscc(organization: dict) -> str:
    return next(i["value"] for i in organization.get("identifier", []) if i["system"] == USCC_SYSTEM)


# -- the sample ---------------------------------------------------------------------------------


def test_every_sample_organization_is_valid_fhir() -> None:
    organizations = _sample()
    for organization in organizations:
        Organization.model_validate(organization)
        validate_resource(organization, "Organization")  # the hub's own checks on write
        assert organization["active"] is True
        assert any(c["system"] == KIND_SYSTEM for t in organization["type"] for c in t["coding"])


def test_sample_has_three_named_zones_and_thirty_odd_institutions() -> None:
    organizations = _sample()
    assert [o["id"] for o in _by_kind(organizations, "region")] == ["region-ks"]
    assert [o["id"] for o in _by_kind(organizations, "consortium")] == [CONSORTIUM]
    zones = _by_kind(organizations, "zone")
    assert sorted(z["name"] for z in zones) == sorted(["市一院片区", "中医院片区", "高新区片区"])
    assert all(summary(z)["parent"] == CONSORTIUM for z in zones)
    institutions = _by_kind(organizations, "institution")
    assert 25 <= len(institutions) <= 40
    zone_ids = {z["id"] for z in zones}
    assert all(summary(i)["parent"] in zone_ids for i in institutions)
    leads = Counter(summary(i)["parent"] for i in institutions if summary(i)["role"] == "lead")
    assert leads == Counter(zone_ids)  # one lead hospital per zone
    assert {summary(i)["level"] for i in institutions} == {"tertiary", "secondary", "primary", "chc", "township"}
    codes = [_uscc(i) for i in institutions]
    assert all(uscc_valid(code) for code in codes) and len(set(codes)) == len(codes)


def test_sample_keeps_the_ids_of_the_demo_and_the_tests() -> None:
    by_id = {o["id"]: o for o in _sample()}
    zone_of = {z["name"]: z["id"] for z in _by_kind(list(by_id.values()), "zone")}
    assert by_id["org-ks-1"]["name"] == "昆山市第一人民医院"
    assert summary(by_id["org-ks-1"])["role"] == "lead"
    assert summary(by_id["org-ks-1"])["parent"] == zone_of["市一院片区"]
    assert by_id["org-ks-tcm"]["name"] == "昆山市中医医院"
    assert summary(by_id["org-ks-tcm"])["role"] == "lead"
    assert summary(by_id["org-ks-tcm"])["parent"] == zone_of["中医院片区"]
    assert by_id["org-ks-chc-yushan"]["name"] == "玉山镇社区卫生服务中心"
    assert summary(by_id["org-ks-chc-yushan"])["level"] == "chc"


def test_parents_come_before_their_children() -> None:
    seen: set[str] = set()
    for organization in _sample():
        parent = summary(organization)["parent"]
        assert not parent or parent in seen, organization["id"]
        seen.add(organization["id"])


def test_institution_types_carry_role_level_and_provider() -> None:
    hospital = next(o for o in _sample() if o["id"] == "org-ks-1")
    codings = {(c["system"], c["code"]): c.get("display") for t in hospital["type"] for c in t["coding"]}
    assert codings[ROLE_SYSTEM, "lead"] == "牵头医院"
    assert codings[LEVEL_SYSTEM, "tertiary"] == "三级医院"
    assert ("http://terminology.hl7.org/CodeSystem/organization-type", "prov") in codings
    assert hospital["partOf"] == {"reference": "Organization/zone-ks-1"}
    assert {i["system"] for i in hospital["identifier"]} == {USCC_SYSTEM,
                                                             "urn:hub:identifier:medical-institution-license"}


# -- USCC (GB 32100-2015) ------------------------------------------------------------------------


@pytest.mark.parametrize("code", PUBLISHED_USCC)
def test_published_codes_are_valid(code: str) -> None:
    assert uscc_valid(code)
    assert uscc_check_character(code[:17]) == code[17]


@pytest.mark.parametrize("code", PUBLISHED_USCC)
def test_a_changed_check_character_is_refused(code: str) -> None:
    for other in "0123456789ABCDEFGHJKLMNPQRTUWXY":
        if other != code[17]:
            assert not uscc_valid(code[:17] + other)


@pytest.mark.parametrize("code", ["91350211M00013FA1N",  # early pilot code off the standard (hutool's test)
                                  "91110000600037341N", "9111000060003IOZSV", "91350100m000100Y43",
                                  "91350100M000100Y4", "913501A0M000100Y43", ""])
def test_malformed_or_wrong_codes_are_refused(code: str) -> None:
    assert not uscc_valid(code)


# -- the store ----------------------------------------------------------------------------------


def test_loading_twice_creates_then_changes_nothing(database: Database) -> None:
    organizations = _sample()
    with database.fhir_service(write=True) as service:
        assert apply_roster(service, organizations) == {"created": len(organizations), "updated": 0, "unchanged": 0}
    with database.fhir_service(write=True) as service:
        assert apply_roster(service, _sample()) == {"created": 0, "updated": 0, "unchanged": len(organizations)}
    with database.unit_of_work(write=False) as repository:
        for organization in organizations:
            stored = repository.read_current("Organization", organization["id"])
            assert stored is not None and stored.version_id == 1, organization["id"]


def test_a_renamed_institution_is_updated(database: Database) -> None:
    organizations = _sample()
    with database.fhir_service(write=True) as service:
        apply_roster(service, organizations)
    renamed = [{**o, "name": "昆山市第一人民医院（本部）"} if o["id"] == "org-ks-1" else o for o in organizations]
    with database.fhir_service(write=True) as service:
        assert apply_roster(service, renamed) == {"created": 0, "updated": 1, "unchanged": len(organizations) - 1}


def test_the_consortium_reaches_every_institution(database: Database) -> None:
    organizations = _sample()
    with database.fhir_service(write=True) as service:
        apply_roster(service, organizations)
    with database.unit_of_work(write=False) as repository:
        reached = institutions_under(repository, {CONSORTIUM})
        zone = next(z["id"] for z in _by_kind(organizations, "zone") if z["name"] == "市一院片区")
        in_zone = institutions_under(repository, {zone})
    assert reached == {o["id"] for o in organizations} - {"region-ks"}
    assert {"org-ks-1", "org-ks-chc-yushan"} <= in_zone and "org-ks-tcm" not in in_zone


# -- CSV ----------------------------------------------------------------------------------------

_CSV = """id,name,parent,kind,role,level,uscc,license,alias
region-x,示例市,,region,,,,,
cons-x,示例医共体,region-x,医共体,,,,,
zone-x,示例片区,cons-x,zone,,,,,
hosp-x,示例市人民医院,zone-x,institution,牵头医院,三级医院,91350100M000100Y43,46603383232058311A1885,示例一院|人民医院
chc-x,示例社区卫生服务中心,zone-x,institution,member,chc,121200004013590816,,
"""

_YAML = """organizations:
  - {id: region-x, name: 示例市, kind: region}
  - {id: cons-x, name: 示例医共体, kind: consortium, parent: region-x}
  - {id: zone-x, name: 示例片区, kind: zone, parent: cons-x}
  - {id: hosp-x, name: 示例市人民医院, kind: institution, parent: zone-x, role: lead, level: tertiary,
     uscc: 91350100M000100Y43, license: 46603383232058311A1885, alias: [示例一院, 人民医院]}
  - {id: chc-x, name: 示例社区卫生服务中心, kind: institution, parent: zone-x, role: member, level: chc,
     uscc: 121200004013590816}
"""


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_csv_gives_the_same_organizations_as_yaml(tmp_path: Path, bom: bytes) -> None:
    (tmp_path / "r.csv").write_bytes(bom + _CSV.encode("utf-8"))
    (tmp_path / "r.yaml").write_text(_YAML, encoding="utf-8")
    from_csv = load_roster(tmp_path / "r.csv")
    assert from_csv == load_roster(tmp_path / "r.yaml")
    assert [o["id"] for o in from_csv] == ["region-x", "cons-x", "zone-x", "hosp-x", "chc-x"]
    hospital = from_csv[3]
    assert hospital["alias"] == ["示例一院", "人民医院"]
    assert summary(hospital) == {"id": "hosp-x", "name": "示例市人民医院", "kind": "institution", "role": "lead",
                                 "level": "tertiary", "parent": "zone-x"}
    for organization in from_csv:
        Organization.model_validate(organization)


def test_csv_roster_loads_into_the_store(database: Database, tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_bytes(b"\xef\xbb\xbf" + _CSV.encode("utf-8"))
    with database.fhir_service(write=True) as service:
        assert apply_roster(service, load_roster(tmp_path / "r.csv"))["created"] == 5
    with database.unit_of_work(write=False) as repository:
        assert institutions_under(repository, {"cons-x"}) == {"cons-x", "zone-x", "hosp-x", "chc-x"}


# -- errors -------------------------------------------------------------------------------------


def _refused(tmp_path: Path, csv_text: str, known_ids: frozenset[str] = frozenset()) -> str:
    (tmp_path / "bad.csv").write_text(csv_text, encoding="utf-8")
    with pytest.raises(InvalidRequest) as caught:
        load_roster(tmp_path / "bad.csv", known_ids)
    return caught.value.message + "\n" + "\n".join(issue.diagnostics for issue in caught.value.issues)


_HEAD = "id,name,parent,kind,role,level,uscc\nzone-x,片区,cons-x,zone,,,\n"
_GOOD = "91350100M000100Y43"


@pytest.mark.parametrize(("rows", "offender", "problem"), [
    (f"hosp-a,医院,zone-nope,institution,member,chc,{_GOOD}\n", "hosp-a", "unknown parent 'zone-nope'"),
    (f"hosp-a,医院,hosp-b,institution,member,chc,{_GOOD}\n"
     f"hosp-b,医院,hosp-a,institution,member,chc,121200004013590816\n", "hosp-a", "cycle hosp-a → hosp-b → hosp-a"),
    ("hosp-a,医院,zone-x,institution,member,chc,91350100M000100Y44\n", "hosp-a", "check character"),
    (f"hosp-a,医院,zone-x,institution,member,chc,{_GOOD}\nhosp-a,医院二,zone-x,institution,member,chc,\n",
     "hosp-a", "duplicate id"),
    (f"hosp_a!,医院,zone-x,institution,member,chc,{_GOOD}\n", "hosp_a!", "not a FHIR id"),
    (f"hosp-a,医院,zone-x,hospital,member,chc,{_GOOD}\n", "hosp-a", "unknown kind"),
    (f"hosp-a,医院,zone-x,institution,boss,chc,{_GOOD}\n", "hosp-a", "unknown role"),
    (f"hosp-a,医院,zone-x,institution,member,quaternary,{_GOOD}\n", "hosp-a", "unknown level"),
    ("hosp-a,医院,zone-x,institution,member,chc,\n", "hosp-a", "统一社会信用代码"),
    (f"hosp-a,医院,zone-x,institution,member,chc,{_GOOD}\nzone-y,片区二,hosp-a,zone,,,\n", "zone-y", "cannot be part"),
])
def test_each_problem_names_the_offending_row(tmp_path: Path, rows: str, offender: str, problem: str) -> None:
    message = _refused(tmp_path, _HEAD + rows, frozenset({"cons-x"}))
    headline = message.splitlines()[0]  # the error's own message: its first problem
    assert offender in headline and problem in headline, message


def test_a_parent_must_be_in_the_file_or_known(tmp_path: Path) -> None:
    message = _refused(tmp_path, _HEAD)
    assert "zone-x" in message and "unknown parent 'cons-x'" in message
    (tmp_path / "ok.csv").write_text(_HEAD, encoding="utf-8")
    assert load_roster(tmp_path / "ok.csv", frozenset({"cons-x"}))[0]["partOf"] == {"reference": "Organization/cons-x"}


def test_every_problem_is_listed(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text(_HEAD + "a!,x,zone-x,institution,boss,chc,\n", encoding="utf-8")
    with pytest.raises(InvalidRequest) as caught:
        load_roster(tmp_path / "bad.csv")
    diagnostics = " ".join(issue.diagnostics for issue in caught.value.issues)
    for part in ("not a FHIR id", "unknown role", "统一社会信用代码", "unknown parent 'cons-x'"):
        assert part in diagnostics


def test_bad_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("[]", encoding="utf-8")
    (tmp_path / "typo.csv").write_text("id,name,kind,parnet\n", encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("organizations: [ {id: a\n", encoding="utf-8")
    (tmp_path / "field.yaml").write_text("- {id: a, name: A, kind: region, partOf: b}\n", encoding="utf-8")
    for name, part in (("r.json", "unsupported"), ("typo.csv", "parnet"), ("broken.yaml", "not valid YAML"),
                       ("field.yaml", "partOf")):
        with pytest.raises(InvalidRequest, match=part):
            load_roster(tmp_path / name)


# -- the command --------------------------------------------------------------------------------


def test_registry_cli_loads_and_lists(database: Database, settings: Settings, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli.registry import registry_app

    monkeypatch.setenv("HUB_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("HUB_KEY_DIR", settings.key_dir)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    first = runner.invoke(registry_app, ["load", str(SAMPLE)])
    assert first.exit_code == 0, first.output
    total = len(_sample())
    assert "created" in first.output and str(total) in first.output
    second = runner.invoke(registry_app, ["load", str(SAMPLE)])
    assert second.exit_code == 0 and f"│ unchanged     │ {total}" in second.output, second.output
    listed = runner.invoke(registry_app, ["list"])
    assert listed.exit_code == 0, listed.output
    for text in ("市一院片区", "中医院片区", "高新区片区", "org-ks-chc-yushan", "牵头医院"):
        assert text in listed.output
    (tmp_path / "bad.csv").write_text(_HEAD, encoding="utf-8")
    refused = runner.invoke(registry_app, ["load", str(tmp_path / "bad.csv")])
    assert refused.exit_code == 1 and "Not loaded" in refused.output and "cons-x" in refused.output
    assert "Traceback" not in refused.output

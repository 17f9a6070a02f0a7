"""The configuration and the reader roster as data: defaults, every problem reported at once, the sample."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from hub.errors import InvalidRequest
from hub.fhir.validation import validate_resource
from hub.telediagnosis.config import load_config, parse_text
from hub.telediagnosis.readers import reader_of, roster_resources
from tests.telediagnosis.support import CONFIG, READERS

SAMPLES = Path(__file__).resolve().parents[2] / "hub" / "samples"


def test_sla_targets_default_to_published_policies_and_can_be_overridden() -> None:
    config, content = load_config(parse_text(CONFIG))
    assert config.sla_target("ECG", "stat") == timedelta(minutes=15)  # 急诊心电 15 分钟
    assert config.sla_target("DX", "stat") == timedelta(minutes=30)  # 急诊 X 线 30 分钟
    assert config.sla_target("MR", "stat") == timedelta(minutes=60)  # 急诊 CT/MR 60 分钟
    assert config.sla_target("MR", "routine") == timedelta(hours=24)  # 常规 CT/MR 24 小时
    assert config.sla_target("CT", "routine") == timedelta(hours=24) and config.sla_target("PT", "stat") == \
        timedelta(minutes=60)  # another modality: the "*" row
    assert config.claim_timeout == timedelta(minutes=30) and config.warn_at == 0.5
    assert config.subspecialty("MR", "69536005") == "neuro" and config.subspecialty("CT", "69536005") is None
    assert load_config(content)[0] == config  # what is stored loads back the same


def test_every_problem_is_reported_at_once() -> None:
    document = parse_text(CONFIG)
    document["centers"][0].update(hours=["18:00-08:00"], modalities=["ct scanner"], colour="red")
    document["centers"][1]["id"] = document["centers"][0]["id"]
    document.update(warn_at=1.5, claim_timeout_minutes=0, sla_minutes={"CT": {"stat": -1, "soon": 5}})
    with pytest.raises(InvalidRequest) as refused:
        load_config(document)
    message = refused.value.message
    for expected in ("18:00-08:00", "'ct scanner' is not a DICOM modality", "unknown field 'colour'",
                     "id 'ks-imaging' is used twice", "warn_at", "claim_timeout_minutes", "sla_minutes.CT.stat",
                     "'soon' is not a priority"):
        assert expected in message, expected
    assert message.startswith("The configuration has 8 problem(s)")
    odd = ("[1, 2]", "centers: 5\nversion: x", "{1: 2, a: 3}", "version: \"\\a\"", b"\xff\xfe", "[" * 3000,
           "version: x\ncenters: [{id: [1], institution: {a: 1}}, {id: [1], institution: {a: 1}}]",
           "version: x\ncenters: [{id: c, institution: o, name: \"X\\x07Y\", modalities: [CT]}]")
    for text in odd:
        with pytest.raises(InvalidRequest):
            load_config(parse_text(text))


def test_the_reader_roster_becomes_valid_practitioner_roles() -> None:
    config, _ = load_config(parse_text(CONFIG))
    resources, shifts = roster_resources(READERS, config)
    roles = [r for r in resources if r["resourceType"] == "PractitionerRole"]
    assert len(roles) == 8 and shifts["img-off"] is False and shifts["img-a"] is True
    for resource in resources:
        validate_resource(resource, resource["resourceType"])
    readers = {r.role_id: r for r in map(reader_of, roles) if r is not None}
    chief = readers["img-chief"]
    assert chief.supervisor and chief.institution == "org-ks-imaging" and chief.capacity == 5
    assert readers["img-a"].modalities == {"CT", "DX", "MR"} and readers["img-a"].subspecialties == {"neuro"}
    assert reader_of({**roles[1], "active": False}) is None
    bad = "readers:\n  - {id: x, name: 某, center: ks-ecg, modalities: [CT], capacity: 0, subspecialties: 3}\n" \
          "  - {id: y, center: nowhere}\n  - {name: 无}\n" \
          '  - {id: z, name: 某, center: ks-ecg, modalities: [ECG], on_shift: "false", supervisor: "no"}\n'
    with pytest.raises(InvalidRequest) as refused:
        roster_resources(bad, config)
    message = refused.value.message
    assert message.startswith("The reader roster has 7 problem(s)")  # every entry checked, not only the first
    assert "readers[z]: on_shift must be true or false" in message and "readers[z]: supervisor" in message


def test_the_samples_load() -> None:
    config, _ = load_config(parse_text((SAMPLES / "telediagnosis.yaml").read_bytes()))
    assert {c.institution for c in config.centers} == {"org-ks-imaging", "org-ks-ecg"}
    resources, shifts = roster_resources((SAMPLES / "telediagnosis-readers.yaml").read_bytes(), config)
    assert len(resources) == 14 and sum(shifts.values()) == 6

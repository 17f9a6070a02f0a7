"""The consortium's source systems, written the way each vendor's system stores its data.

- **前置库** (``frontdb``): the regional front-end database every primary site, the TCM hospital and the
  secondary hospitals fill (``adapters/frontdb``), one SQLite file per institution;
- the lead hospital's **pinyin HIS** (``his-pinyin``: ``BRXXK``/``JZJLK``/``ZDJLK``, '男'/'女', ``CSRQ``
  as ``YYYYMMDD``, pinyin diagnosis codes) and its **English LIS** (``lis-english``: ``lab_report``/
  ``lab_result``, flags ↑/↓);
- the TCM hospital's LIS, which sends **HL7 v2** ``ORU^R01`` files to a drop folder (``hl7v2-drop``).

Each writer returns the local codes it wrote (:class:`Written`), so what the mapping review must show
can be told from the data: the codes listed in :data:`UNMAPPED` have no row in the source's tables.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.frontdb.schema import ddl_statements
from hub.synthetic.consortium import (
    DIABETES,
    HYPERTENSION,
    LAB_TESTS,
    LEAD,
    PANELS,
    TCM,
    ConsortiumPlan,
    InstitutionData,
    LabOrder,
)

#: Local lab-item codes of each system by neutral test id (codes with no mapping row are in UNMAPPED).
LAB_CODES: dict[str, dict[str, str]] = {
    "frontdb": {"wbc": "WBC", "hgb": "HGB", "plt": "PLT", "glu": "GLU", "fbg": "FBG", "tc": "TC", "tg": "TG",
                "crea": "CREA", "alt": "ALT", "hba1c": "HBA1C", "hcy": "HCY", "ddimer": "DDIMER", "tsh": "TSH"},
    "lis-english": {"wbc": "WBC", "hgb": "HGB", "plt": "PLT", "glu": "GLU", "tc": "CHOL", "tg": "TRIG",
                    "crea": "CREA", "alt": "ALT", "hcy": "HCY", "ddimer": "DDIM", "tsh": "TSH"},
    "hl7v2": {"wbc": "WBC", "hgb": "HGB", "plt": "PLT", "glu": "GLU", "tc": "TC", "tg": "TG", "crea": "CR",
              "alt": "ALT", "tsh": "TSH"},
}
#: Local codes (element, code) each system sends that no mapping table maps: each becomes a conflict.
UNMAPPED: dict[str, frozenset[tuple[str, str]]] = {
    "frontdb": frozenset({("lab-item", "TG"), ("lab-item", "HCY"), ("lab-item", "DDIMER"), ("lab-item", "TSH")}),
    "lis-english": frozenset({("lab-item", "HCY"), ("lab-item", "DDIM"), ("lab-item", "TSH")}),
    "hl7v2": frozenset({("lab-item", "TSH"), ("lab-panel", "GLUCOSE")}),
    "his-pinyin": frozenset({("diagnosis", "GM"), ("marital-status", "0"), ("marital-status", "1")}),
}
#: The front-end database's panel codes and names (the others are sent by name only).
FRONTDB_PANELS = {"cbc": ("CBC", "血常规"), "lipid": ("LIPID4", "血脂四项")}
#: The pinyin HIS's own diagnosis codes (the others it sends as ICD-10 国家临床版 codes).
HIS_DIAGNOSES = {HYPERTENSION[0]: "GXY", DIABETES[0]: "TNB2", "J00.x00": "GM"}
_ENGLISH = {"wbc": "White blood cells", "hgb": "Hemoglobin", "plt": "Platelets", "glu": "Glucose",
            "tc": "Cholesterol", "tg": "Triglycerides", "crea": "Creatinine", "alt": "丙氨酸氨基转移酶",
            "hcy": "Homocysteine", "ddimer": "D-Dimer", "tsh": "TSH"}
_HIS_TABLES = (
    "CREATE TABLE IF NOT EXISTS BRXXK (BRID VARCHAR(20) PRIMARY KEY, HZXM VARCHAR(50), SFZH VARCHAR(20), "
    "BRXB VARCHAR(4), CSRQ VARCHAR(8), HYZK VARCHAR(2), LXDH VARCHAR(20), JTZZ VARCHAR(200), BAH VARCHAR(20), "
    "XGSJ DATETIME NOT NULL)",
    "CREATE INDEX IF NOT EXISTS IX_BRXXK_XGSJ ON BRXXK (XGSJ, BRID)",
    "CREATE TABLE IF NOT EXISTS JZJLK (JZID VARCHAR(20) PRIMARY KEY, BRID VARCHAR(20), JZLX VARCHAR(4), "
    "JZSJ DATETIME, CYSJ DATETIME NULL, KSDM VARCHAR(10), KSMC VARCHAR(50), YSGH VARCHAR(10), YSXM VARCHAR(20), "
    "XGSJ DATETIME NOT NULL)",
    "CREATE INDEX IF NOT EXISTS IX_JZJLK_XGSJ ON JZJLK (XGSJ, JZID)",
    "CREATE TABLE IF NOT EXISTS ZDJLK (ZDID VARCHAR(20) PRIMARY KEY, BRID VARCHAR(20), JZID VARCHAR(20), ZDDM VARCHAR(20), "
    "ZDMC VARCHAR(100), ZDLB VARCHAR(2), ZDSJ DATETIME, XGSJ DATETIME NOT NULL)",
    "CREATE INDEX IF NOT EXISTS IX_ZDJLK_XGSJ ON ZDJLK (XGSJ, ZDID)",
)
_LIS_TABLES = (
    "CREATE TABLE IF NOT EXISTS lab_report (id INTEGER PRIMARY KEY, patient_no VARCHAR(20), visit_no VARCHAR(20), "
    "panel_code VARCHAR(20), panel_name VARCHAR(50), sample_type VARCHAR(20), sampled_at TIMESTAMP, "
    "reported_at TIMESTAMP, state VARCHAR(10), modified_at TIMESTAMP NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_lab_report_modified ON lab_report (modified_at, id)",
    "CREATE TABLE IF NOT EXISTS lab_result (id INTEGER PRIMARY KEY, report_id INTEGER, item_code VARCHAR(20), "
    "item_name VARCHAR(50), result_value VARCHAR(20), unit VARCHAR(20), ref_range VARCHAR(30), flag VARCHAR(4))",
    "CREATE INDEX IF NOT EXISTS ix_lab_result_report ON lab_result (report_id)",
)


@dataclass
class Written:
    """What a writer put into one source: its top-level rows, the rows the hub must quarantine (record kind,
    key, why) and the local codes of the rows it must store."""

    rows: int = 0
    dirty: list[tuple[str, str, str]] = field(default_factory=list)
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, other: "Written") -> None:
        """Count ``other``'s rows too."""
        self.rows += other.rows
        self.dirty += other.dirty
        self.codes.update(other.codes)


@dataclass(frozen=True)
class DemoSource:
    """A source system of the demo and where its data is."""

    source_id: str
    institution: str
    name: str
    kind: str
    adapter: str
    style: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def connection(self) -> str:
        """How the hub reads it: the directory of the drop folder; a database over the SQLite ODBC driver, or
        with a SQLAlchemy URL where the driver cannot open the path (non-ASCII characters, ``;`` or braces)."""
        if self.adapter == "hl7v2-drop":
            return str(self.path)
        text = str(self.path)
        if text.isascii() and not set(text) & set(";{}"):
            return f"DRIVER={{SQLite3}};DATABASE={text};"
        return f"sqlite:///{text}"


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _impossible(moment: datetime) -> str:
    return f"{moment:%Y}-02-30 {moment:%H:%M:%S}"


def _range(test: str) -> str:
    low, high = LAB_TESTS[test][2], LAB_TESTS[test][3]
    return f"{low:g}-{high:g}"


def demo_sources(plan: ConsortiumPlan, names: dict[str, str], directory: Path, drop: Path,
                 yushan: tuple[str, str]) -> list[DemoSource]:
    """The sources of the plan's institutions (``names`` their Chinese names); ``yushan`` is the hand-made
    sample's (institution, source id), whose front-end database the generated rows join."""
    out = []
    for institution in plan.institutions:
        short = institution.removeprefix("org-ks-")
        if institution == LEAD:
            out.append(DemoSource("demo-ks1-his", LEAD, f"{names[LEAD]} HIS（拼音库）", "HIS", "his-pinyin",
                                  "his-pinyin", directory / "his-ks1.db"))
            out.append(DemoSource("demo-ks1-lis", LEAD, f"{names[LEAD]} LIS", "LIS", "lis-english", "lis-english",
                                  directory / "lis-ks1.db"))
            continue
        source_id = yushan[1] if institution == yushan[0] else f"demo-{short}-frontdb"
        out.append(DemoSource(source_id, institution, f"{names[institution]} 前置库", "EHR", "frontdb", "frontdb",
                              directory / f"frontdb-{short}.db"))
        if institution == TCM:
            out.append(DemoSource("demo-tcm-lis-hl7", TCM, f"{names[TCM]} LIS（HL7 v2 报告目录）", "LIS",
                                  "hl7v2-drop", "hl7v2", drop / "demo-tcm-lis", {"settle_seconds": 0}))
    return out


def write_source(source: DemoSource, data: InstitutionData) -> Written:
    """Write ``data`` into ``source`` in its vendor's style (a database file is added to, never replaced)."""
    source.path.parent.mkdir(parents=True, exist_ok=True)
    if source.style == "hl7v2":
        return _write_hl7(source.path, data.labs, source.name.split(" ")[0])
    with sqlite3.connect(source.path) as db:
        if source.style == "his-pinyin":
            return _write_his(db, data)
        if source.style == "lis-english":
            return _write_lis(db, data.labs)
        return _write_frontdb(db, data, with_labs=data.institution != TCM)


# -- 前置库 -------------------------------------------------------------------------------------------


def _write_frontdb(db: sqlite3.Connection, data: InstitutionData, *, with_labs: bool) -> Written:
    if db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'hdr_patient'").fetchone()[0] == 0:
        for statement in ddl_statements("sqlite"):
            db.execute(statement)
    written = Written()
    site = data.institution
    db.executemany(
        "INSERT INTO hdr_patient (patient_id, name, sex_code, birth_date, id_card_type, id_card_no, phone, "
        "marital_status_code, nation_code, address, record_no, update_time) VALUES (?,?,?,?,?,?,?,?,'01',?,?,?)",
        [(r.key, r.name, r.sex, r.birth, "01" if r.id_number else None, r.id_number, r.phone, r.marital,
          r.address, r.key, _text(r.updated)) for r in data.registrations])
    written.codes.update(("marital-status", r.marital) for r in data.registrations if r.problem is None)
    db.executemany(
        "INSERT INTO hdr_encounter (visit_id, patient_id, visit_type_code, visit_time, discharge_time, dept_code, "
        "dept_name, doctor_code, doctor_name, update_time) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(v.key, v.patient, {"outpatient": "1", "emergency": "2", "inpatient": "3"}[v.kind],
          _impossible(v.start) if v.problem else _text(v.start), _text(v.end), *v.department, *v.doctor,
          _text(v.start)) for v in data.visits])
    db.executemany(
        "INSERT INTO hdr_diagnosis (diag_id, patient_id, visit_id, diag_code, diag_name, diag_type, diag_time, "
        "update_time) VALUES (?,?,?,?,?,?,?,?)",
        [(f"{v.key}-{n}", v.patient, v.key, code, name, "1" if n == 0 else "2", _text(v.start), _text(v.start))
         for v in data.visits for n, (code, name) in enumerate(v.diagnoses)])
    written.rows += len(data.registrations) + len(data.visits) + sum(len(v.diagnoses) for v in data.visits)
    written.dirty += [("Patient", r.key, r.problem) for r in data.registrations if r.problem]
    written.dirty += [("Encounter", v.key, v.problem) for v in data.visits if v.problem]
    if with_labs:
        db.executemany(
            "INSERT INTO hdr_lab_report (report_id, patient_id, visit_id, report_code, report_name, specimen_name, "
            "collect_time, report_time, report_status, perform_org_code, update_time) "
            "VALUES (?,?,?,?,?,'静脉血',?,?,'final',?,?)",
            [(lab.key, lab.patient, lab.visit, *FRONTDB_PANELS.get(lab.panel, (None, PANELS[lab.panel][0])),
              _text(lab.collected), _text(lab.reported), site, _text(lab.reported)) for lab in data.labs])
        codes = LAB_CODES["frontdb"]
        db.executemany(
            "INSERT INTO hdr_lab_result (result_id, report_id, item_code, item_name, result_value, unit, ref_range, "
            "abnormal_flag) VALUES (?,?,?,?,?,?,?,?)",
            [(f"{lab.key}-{n}", lab.key, codes[r.test], LAB_TESTS[r.test][0], r.value, LAB_TESTS[r.test][1],
              _range(r.test), r.flag) for lab in data.labs for n, r in enumerate(lab.results)])
        written.rows += len(data.labs)
        written.codes.update(("lab-item", codes[r.test]) for lab in data.labs for r in lab.results)
        written.codes.update(("lab-panel", FRONTDB_PANELS[lab.panel][0]) for lab in data.labs
                             if lab.panel in FRONTDB_PANELS)
    db.executemany(
        "INSERT INTO hdr_exam_report (report_id, patient_id, modality, exam_code, exam_name, body_part, study_uid, "
        "report_time, report_status, perform_org_code, update_time) VALUES (?,?,?,?,?,?,?,?,'registered',?,?)",
        [(e.key, e.patient, e.item[2], e.item[0], e.item[1], e.item[3], e.study_uid, _text(e.at), site, _text(e.at))
         for e in data.exams])
    db.executemany(
        "INSERT INTO hdr_referral (referral_id, patient_id, direction, from_org_code, to_org_code, referral_time, "
        "reason, update_time) VALUES (?,?,?,?,?,?,?,?)",
        [(r.key, r.patient, "1" if r.direction == "up" else "2", r.from_org, r.to_org, _text(r.at), r.reason,
          _text(r.at)) for r in data.referrals])
    db.executemany(
        "INSERT INTO hdr_chronic_followup (followup_id, patient_id, program_code, visit_time, visit_method, sbp, "
        "dbp, fbg, update_time) VALUES (?,?,?,?,?,?,?,?,?)",
        [(f.key, f.patient, "1" if f.program == "hypertension" else "2", _text(f.at), f.method, f.sbp, f.dbp, f.fbg,
          _text(f.at)) for f in data.follow_ups])
    written.rows += len(data.exams) + len(data.referrals) + len(data.follow_ups)
    return written


# -- the lead hospital's HIS and LIS ------------------------------------------------------------------


def _write_his(db: sqlite3.Connection, data: InstitutionData) -> Written:
    for statement in _HIS_TABLES:
        db.execute(statement)
    written = Written()
    sexes = {"1": "男", "2": "女"}
    marital = {"1": "0", "2": "1"}  # the HIS's own 0 未婚 1 已婚
    db.executemany(
        "INSERT INTO BRXXK (BRID, HZXM, SFZH, BRXB, CSRQ, HYZK, LXDH, JTZZ, BAH, XGSJ) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(r.key, r.name, r.id_number, sexes.get(r.sex, r.sex), (r.birth or "").replace("-", "") or None,
          marital[r.marital], r.phone, r.address, f"BA{r.key}", _text(r.updated)) for r in data.registrations])
    written.codes.update(("marital-status", marital[r.marital]) for r in data.registrations if r.problem is None)
    db.executemany(
        "INSERT INTO JZJLK (JZID, BRID, JZLX, JZSJ, CYSJ, KSDM, KSMC, YSGH, YSXM, XGSJ) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [(v.key, v.patient, {"outpatient": "门诊", "emergency": "急诊", "inpatient": "住院"}[v.kind], _text(v.start),
          _text(v.end), *v.department, *v.doctor, _text(v.start)) for v in data.visits])
    diagnoses = [(f"{v.key}-{n}", v.patient, v.key, HIS_DIAGNOSES.get(code, code), name, "主" if n == 0 else "次",
                  _text(v.start), _text(v.start)) for v in data.visits for n, (code, name) in enumerate(v.diagnoses)]
    db.executemany("INSERT INTO ZDJLK (ZDID, BRID, JZID, ZDDM, ZDMC, ZDLB, ZDSJ, XGSJ) VALUES (?,?,?,?,?,?,?,?)",
                   diagnoses)
    written.codes.update(("diagnosis", row[3]) for row in diagnoses)
    written.rows = len(data.registrations) + len(data.visits) + len(diagnoses)
    written.dirty += [("Patient", r.key, r.problem) for r in data.registrations if r.problem]
    return written


def _write_lis(db: sqlite3.Connection, labs: Sequence[LabOrder]) -> Written:
    for statement in _LIS_TABLES:
        db.execute(statement)
    codes = LAB_CODES["lis-english"]
    flags = {"H": "↑", "L": "↓", "N": ""}
    db.executemany(
        "INSERT INTO lab_report (id, patient_no, visit_no, panel_code, panel_name, sample_type, sampled_at, "
        "reported_at, state, modified_at) VALUES (?,?,?,NULL,?,'Serum',?,?,'AUDITED',?)",  # ids: the key's number
        [(int(lab.key[1:]), lab.patient, lab.visit, PANELS[lab.panel][0], _text(lab.collected), _text(lab.reported),
          _text(lab.reported)) for lab in labs])
    results = [(int(lab.key[1:]) * 100 + n, int(lab.key[1:]), codes[r.test], _ENGLISH[r.test], r.value,
                LAB_TESTS[r.test][1], _range(r.test), flags[r.flag]) for lab in labs for n, r in enumerate(lab.results)]
    db.executemany("INSERT INTO lab_result (id, report_id, item_code, item_name, result_value, unit, ref_range, flag) "
                   "VALUES (?,?,?,?,?,?,?,?)", results)
    return Written(rows=len(labs), codes=Counter(("lab-item", row[2]) for row in results))


# -- the TCM hospital's LIS: HL7 v2 files ---------------------------------------------------------------


def _hl7_time(moment: datetime) -> str:
    return f"{moment:%Y%m%d%H%M%S}+0800"


def _message(lab: LabOrder, number: int, sender: str) -> str:
    codes = LAB_CODES["hl7v2"]
    panel_name = PANELS[lab.panel][0]
    patient = "" if lab.problem else lab.patient
    lines = [
        f"MSH|^~\\&|LIS|{sender}|HUB|区域健康数据中心|{_hl7_time(lab.reported)}||ORU^R01^ORU_R01|"
        f"TCM{number:08d}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        f"PID|1||{patient}^^^KSTCM^MR",
        f"PV1|1|O|||||||||||||||||{lab.visit or ''}",
        f"ORC|RE|{lab.key}|{lab.key}",
        f"OBR|1|{lab.key}|{lab.key}|{lab.panel.upper()}^{panel_name}^L|||{_hl7_time(lab.collected)}|||||||"
        f"{_hl7_time(lab.collected)}|BLD&全血&HL70487|||||||{_hl7_time(lab.reported)}|||F",
    ]
    for n, result in enumerate(lab.results, start=1):
        name, unit = LAB_TESTS[result.test][0], LAB_TESTS[result.test][1]
        lines.append(f"OBX|{n}|NM|{codes[result.test]}^{name}^L||{result.value}|{unit}|{_range(result.test)}|"
                     f"{result.flag}|||F|||{_hl7_time(lab.reported)}")
    return "\r".join(lines) + "\r"


def _write_hl7(directory: Path, labs: Iterable[LabOrder], sender: str) -> Written:
    """One file per day of reports, several messages each (as a LIS's interface engine batches them)."""
    directory.mkdir(parents=True, exist_ok=True)
    days: dict[str, list[str]] = {}
    written = Written()
    for number, lab in enumerate(sorted(labs, key=lambda lab: lab.reported), start=1):
        days.setdefault(f"{lab.reported:%Y%m%d}", []).append(_message(lab, number, sender))
        written.rows += 1
        if lab.problem:
            written.dirty.append(("LabReport", lab.key, lab.problem))
        else:
            written.codes.update(("lab-item", LAB_CODES["hl7v2"][r.test]) for r in lab.results)
            written.codes[("lab-panel", lab.panel.upper())] += 1
    for day, messages in days.items():
        (directory / f"ORU_{day}.hl7").write_text("".join(messages), encoding="utf-8")
    return written

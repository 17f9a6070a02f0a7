"""The demo's hand-made rows of 玉山镇社区卫生服务中心's front-end database (张伟's second registration, a mistyped ID
number, a few lab results); :mod:`hub.cli.demo_consortium` adds the generated rows and runs the source."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from adapters.frontdb.schema import ddl_statements
from hub.privacy.citizen_id import citizen_id_problem
from hub.synthetic.consortium import ID_MISTYPED
from hub.synthetic.vendors import Written

DEMO_SOURCE = "demo-yushan-frontdb"
DEMO_INSTITUTION = "org-ks-chc-yushan"
_PATIENTS = [
    ("Y0001", "陈建国", "1", "1956-04-12", "320583195604120018", "13962600001"),
    ("Y0002", "周秀英", "2", "1961-09-30", "320583196109300024", "13962600002"),
    ("Y0003", "吴立新", "1", "1972-01-15", "320583197201150019", None),
    # a mistyped ID number (wrong check character): quarantined with the reason, shown by hub ingest quarantine
    ("Y0004", "郑小红", "2", "1980-02-29", "320583198002290027", None),
    # 张伟 of the lead hospital (pat-1), registered here in traditional characters with his old 15-digit
    # number: the master patient index links the two records to one regional person
    ("Y0005", "張偉", "1", "1968-03-12", "320583680312001", "+86 139 1234 5678"),
]
_LABS = [  # report id, patient, name, [(code, name, value, unit, range, flag)]
    ("LR001", "Y0001", "空腹血糖", [("GLU", "葡萄糖", "7.8", "mmol/L", "3.9-6.1", "H")]),
    ("LR002", "Y0002", "血脂四项", [("TC", "总胆固醇", "5.9", "mmol/L", "2.8-5.2", "H"),
                                ("TG", "甘油三酯", "1.2", "mmol/L", "0.56-1.7", "N")]),
    ("LR003", "Y0003", "血常规", [("WBC", "白细胞计数", "6.1", "10*9/L", "3.5-9.5", "N"),
                               ("HGB", "血红蛋白", "142", "g/L", "130-175", "N")]),
]


def fill_yushan(path: Path) -> Written:
    """Write the hand-made rows into a new front-end database file; what they are."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        for statement in ddl_statements("sqlite"):
            db.execute(statement)
        db.executemany(
            "INSERT INTO hdr_patient (patient_id, name, sex_code, birth_date, id_card_type, id_card_no, phone, "
            "update_time) VALUES (?, ?, ?, ?, '01', ?, ?, '2025-06-01 08:00:00')", _PATIENTS)
        for report_id, patient_id, name, items in _LABS:
            db.execute(
                "INSERT INTO hdr_lab_report (report_id, patient_id, report_name, specimen_name, collect_time, "
                "report_time, report_status, update_time) VALUES (?, ?, ?, '静脉血', '2025-06-02 07:30:00', "
                "'2025-06-02 10:00:00', 'final', '2025-06-02 10:00:00')", (report_id, patient_id, name))
            db.executemany(
                "INSERT INTO hdr_lab_result (result_id, report_id, item_code, item_name, result_value, unit, "
                "ref_range, abnormal_flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(f"{report_id}-{n}", report_id, *item) for n, item in enumerate(items)])
        db.execute(
            "INSERT INTO hdr_chronic_followup (followup_id, patient_id, program_code, visit_time, visit_method, sbp, "
            "dbp, fbg, update_time) VALUES ('FU001', 'Y0001', '2', '2025-06-03 09:00:00', '2', 138, 86, 7.2, "
            "'2025-06-03 09:00:00')")
    dirty = [("Patient", row[0], ID_MISTYPED) for row in _PATIENTS if citizen_id_problem(row[4])]
    codes = Counter(("lab-item", item[0]) for _r, _p, _n, items in _LABS for item in items)
    return Written(rows=len(_PATIENTS) + len(_LABS) + 1, dirty=dirty, codes=codes)  # + the one follow-up

"""Synthetic lab data in a real front-end database (MariaDB or PostgreSQL) for the ingest benchmark.

Patients, lab reports and their results are written with multi-row INSERTs over ODBC,
so generating a million results takes about a minute.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pyodbc

from adapters.frontdb.schema import ddl_statements

ITEMS = [  # (code, name, unit, low, high)
    ("WBC", "白细胞计数", "10*9/L", 3.5, 9.5), ("RBC", "红细胞计数", "10*12/L", 4.3, 5.8),
    ("HGB", "血红蛋白", "g/L", 130, 175), ("PLT", "血小板计数", "10*9/L", 125, 350),
    ("GLU", "葡萄糖", "mmol/L", 3.9, 6.1), ("ALT", "丙氨酸氨基转移酶", "U/L", 9, 50),
    ("AST", "天门冬氨酸氨基转移酶", "U/L", 15, 40), ("CREA", "肌酐", "umol/L", 57, 111),
    ("TC", "总胆固醇", "mmol/L", 2.8, 5.2), ("TG", "甘油三酯", "mmol/L", 0.56, 1.7),
]
_CHECK = "10X98765432"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def citizen_id(rng: random.Random, birth: datetime) -> str:
    """A synthetic ID number with a correct check character."""
    body = f"320583{birth:%Y%m%d}{rng.randint(0, 999):03d}"
    return body + _CHECK[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def _insert(cursor: pyodbc.Cursor, table: str, columns: list[str], rows: list[tuple[object, ...]]) -> None:
    for start in range(0, len(rows), 500):
        chunk = rows[start:start + 500]
        placeholders = ", ".join("(" + ", ".join("?" for _ in columns) + ")" for _ in chunk)
        cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES {placeholders}",
                       [value for row in chunk for value in row])


_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国红梅玉兰志强文辉海燕春梅晓东永刚振华德明"


def fill(connection: str, dialect: str, *, patients: int, reports: int, results_per_report: int = 10,
         seed: int = 7) -> None:
    """Create the front-end tables in an empty database and fill them."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 8, 0, 0)
    with pyodbc.connect(connection, autocommit=True) as raw:
        if dialect == "mariadb":
            raw.setencoding(encoding="utf-8")
        cursor = raw.cursor()
        for statement in ddl_statements(dialect):
            cursor.execute(statement)
        rows = []
        for number in range(patients):
            birth = datetime(1940, 1, 1) + timedelta(days=rng.randint(0, 30000))
            name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
            rows.append((f"P{number:07d}", name, rng.choice("12"), birth.date(), citizen_id(rng, birth),
                         f"13{rng.randint(100000000, 999999999)}", start))
        _insert(cursor, "hdr_patient", ["patient_id", "name", "sex_code", "birth_date", "id_card_no", "phone",
                                        "update_time"], rows)
        for first in range(0, reports, 5000):
            report_rows, result_rows = [], []
            for number in range(first, min(first + 5000, reports)):
                moment = start + timedelta(seconds=number * 7)
                report_id = f"R{number:08d}"
                report_rows.append((report_id, f"P{rng.randrange(patients):07d}", "PANEL", "生化/血常规组合",
                                    "静脉血", moment, moment + timedelta(hours=2), "final", moment + timedelta(hours=2)))
                for item in range(results_per_report):
                    code, name, unit, low, high = ITEMS[item % len(ITEMS)]
                    value = round(rng.uniform(low * 0.8, high * 1.2), 2)
                    flag = "H" if value > high else "L" if value < low else "N"
                    result_rows.append((f"{report_id}-{item:02d}", report_id, code, name, str(value), unit,
                                        f"{low}-{high}", flag))
            _insert(cursor, "hdr_lab_report", ["report_id", "patient_id", "report_code", "report_name",
                                               "specimen_name", "collect_time", "report_time", "report_status",
                                               "update_time"], report_rows)
            _insert(cursor, "hdr_lab_result", ["result_id", "report_id", "item_code", "item_name", "result_value",
                                               "unit", "ref_range", "abnormal_flag"], result_rows)

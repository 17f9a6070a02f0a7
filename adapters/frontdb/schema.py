"""The regional front-end database (前置库): the tables hospitals fill, as data.

Every member institution (or its vendor) copies its data into these tables; the hub's
``frontdb`` adapter reads them incrementally by ``update_time``. Column names are
English snake case; each column's comment gives the WS 445 / WS 365 / WS 363 data
element (数据元) it carries and the code system of coded values. The published DDL
files next to this module (``mariadb.sql``, ``postgresql.sql``, ``sqlserver.sql``, and
``sqlite.sql`` for local trials)
are generated from here with ``python -m adapters.frontdb.schema`` (a test keeps
them equal).
"""

from __future__ import annotations

import sys
from pathlib import Path

#: (column, type, NOT NULL, comment). Types: id, text, longtext, date, datetime, int, decimal.
Column = tuple[str, str, bool, str]

_UPDATED: Column = ("update_time", "datetime", True, "最后更新时间 (增量抽取的水位列; 每次修改须更新)")

TABLES: dict[str, tuple[str, tuple[Column, ...], tuple[str, ...]]] = {
    "hdr_patient": ("患者基本信息 (WS 445 / WS 365 个人基本信息)", (
        ("patient_id", "id", True, "患者ID (院内唯一标识)"),
        ("name", "text", True, "姓名 DE02.01.039.00"),
        ("sex_code", "id", True, "性别代码 DE02.01.040.00 (GB/T 2261.1: 0 未知的性别 1 男 2 女 9 未说明的性别)"),
        ("birth_date", "date", False, "出生日期 DE02.01.005.01"),
        ("id_card_type", "id", False, "身份证件类别代码 DE02.01.031.00 (WS 364 CV02.01.101; 01 居民身份证)"),
        ("id_card_no", "id", False, "身份证件号码 DE02.01.030.00 (GB 11643, 18 位)"),
        ("phone", "id", False, "本人电话号码 DE02.01.010.00"),
        ("marital_status_code", "id", False, "婚姻状况代码 DE02.01.018.00 (GB/T 2261.2)"),
        ("nation_code", "id", False, "民族 DE02.01.025.00 (GB/T 3304, 两位数字)"),
        ("address", "text", False, "现住址"),
        ("record_no", "id", False, "病案号"),
        _UPDATED,
    ), ("patient_id",)),
    "hdr_encounter": ("就诊记录 (门诊/急诊/住院/体检)", (
        ("visit_id", "id", True, "就诊流水号"),
        ("patient_id", "id", True, "患者ID"),
        ("visit_type_code", "id", True, "就诊类型 (1 门诊 2 急诊 3 住院 4 体检)"),
        ("visit_time", "datetime", True, "就诊/入院日期时间"),
        ("discharge_time", "datetime", False, "出院日期时间"),
        ("dept_code", "id", False, "科室代码"),
        ("dept_name", "text", False, "科室名称"),
        ("doctor_code", "id", False, "接诊/主治医师工号"),
        ("doctor_name", "text", False, "接诊/主治医师姓名"),
        _UPDATED,
    ), ("visit_id",)),
    "hdr_diagnosis": ("诊断记录", (
        ("diag_id", "id", True, "诊断记录ID"),
        ("patient_id", "id", True, "患者ID"),
        ("visit_id", "id", False, "就诊流水号"),
        ("diag_code", "id", True, "诊断代码 (ICD-10 国家临床版 2.0 或院内代码)"),
        ("diag_name", "text", True, "诊断名称"),
        ("diag_type", "id", False, "诊断类别 (1 主要诊断 2 其他诊断)"),
        ("diag_time", "datetime", False, "诊断日期时间"),
        _UPDATED,
    ), ("diag_id",)),
    "hdr_lab_report": ("检验报告", (
        ("report_id", "id", True, "检验报告单号"),
        ("patient_id", "id", True, "患者ID"),
        ("visit_id", "id", False, "就诊流水号"),
        ("report_code", "id", False, "检验项目组合代码"),
        ("report_name", "text", True, "检验项目组合名称 (如 血常规)"),
        ("specimen_name", "text", False, "标本类型 (如 静脉血)"),
        ("collect_time", "datetime", False, "采样日期时间"),
        ("report_time", "datetime", True, "报告日期时间"),
        ("report_status", "id", True, "报告状态 (final 已审核 / preliminary 初步 / corrected 更正 / cancelled 作废)"),
        ("perform_org_code", "id", False, "检验机构代码 (区域机构 ID; 空 = 本机构)"),
        _UPDATED,
    ), ("report_id",)),
    "hdr_lab_result": ("检验结果明细 (随所属报告的 update_time 抽取)", (
        ("result_id", "id", True, "结果明细ID"),
        ("report_id", "id", True, "检验报告单号"),
        ("item_code", "id", True, "检验项目代码 (院内)"),
        ("item_name", "text", True, "检验项目名称"),
        ("result_value", "text", True, "检验结果值"),
        ("unit", "id", False, "计量单位"),
        ("ref_range", "text", False, "参考范围"),
        ("abnormal_flag", "id", False, "异常标识 (H 偏高 L 偏低 N 正常 A 异常)"),
    ), ("result_id",)),
    "hdr_exam_report": ("检查报告 (影像/心电/病理)", (
        ("report_id", "id", True, "检查报告单号"),
        ("patient_id", "id", True, "患者ID"),
        ("visit_id", "id", False, "就诊流水号"),
        ("modality", "id", True, "检查类别 (DICOM 模态: CT MR DX US …; ECG 心电; PATH 病理)"),
        ("exam_code", "id", False, "检查项目代码"),
        ("exam_name", "text", True, "检查项目名称"),
        ("body_part", "text", False, "检查部位"),
        ("findings", "longtext", False, "检查所见"),
        ("impression", "longtext", False, "诊断意见 / 检查结论"),
        ("study_uid", "id", False, "DICOM Study Instance UID"),
        ("report_time", "datetime", True, "报告日期时间"),
        ("report_status", "id", True, "报告状态"),
        ("perform_org_code", "id", False, "检查机构代码"),
        _UPDATED,
    ), ("report_id",)),
    "hdr_medication_order": ("用药医嘱 / 处方", (
        ("order_id", "id", True, "医嘱/处方明细ID"),
        ("patient_id", "id", True, "患者ID"),
        ("visit_id", "id", False, "就诊流水号"),
        ("drug_code", "id", True, "药品代码"),
        ("drug_name", "text", True, "药品名称"),
        ("dose", "id", False, "单次剂量"),
        ("dose_unit", "id", False, "剂量单位"),
        ("route", "text", False, "给药途径"),
        ("frequency", "id", False, "用药频次"),
        ("order_time", "datetime", True, "开立日期时间"),
        ("order_status", "id", True, "医嘱状态 (active completed stopped cancelled)"),
        _UPDATED,
    ), ("order_id",)),
    "hdr_referral": ("双向转诊", (
        ("referral_id", "id", True, "转诊单号"),
        ("patient_id", "id", True, "患者ID"),
        ("direction", "id", True, "转诊方向 (1 上转 2 下转)"),
        ("from_org_code", "id", True, "转出机构代码"),
        ("to_org_code", "id", True, "转入机构代码"),
        ("referral_time", "datetime", True, "转诊日期时间"),
        ("reason", "text", False, "转诊原因"),
        _UPDATED,
    ), ("referral_id",)),
    "hdr_chronic_followup": ("慢病随访 (高血压/糖尿病, WS 365)", (
        ("followup_id", "id", True, "随访记录ID"),
        ("patient_id", "id", True, "患者ID"),
        ("program_code", "id", True, "随访类别 (1 高血压 2 2型糖尿病)"),
        ("visit_time", "datetime", True, "随访日期"),
        ("visit_method", "id", False, "随访方式 (1 门诊 2 家庭 3 电话)"),
        ("sbp", "int", False, "收缩压 mmHg"),
        ("dbp", "int", False, "舒张压 mmHg"),
        ("fbg", "decimal", False, "空腹血糖 mmol/L"),
        _UPDATED,
    ), ("followup_id",)),
}

_TYPES = {
    "mariadb": {"id": "VARCHAR(64)", "text": "VARCHAR(500)", "longtext": "TEXT", "date": "DATE",
                "datetime": "DATETIME", "int": "INT", "decimal": "DECIMAL(10,2)"},
    "postgresql": {"id": "VARCHAR(64)", "text": "VARCHAR(500)", "longtext": "TEXT", "date": "DATE",
                   "datetime": "TIMESTAMP(0)", "int": "INTEGER", "decimal": "NUMERIC(10,2)"},
    "sqlite": {"id": "TEXT", "text": "TEXT", "longtext": "TEXT", "date": "TEXT", "datetime": "TEXT", "int": "INTEGER",
               "decimal": "NUMERIC"},
    "sqlserver": {"id": "NVARCHAR(64)", "text": "NVARCHAR(500)", "longtext": "NVARCHAR(MAX)", "date": "DATE",
                  "datetime": "DATETIME2(0)", "int": "INT", "decimal": "DECIMAL(10,2)"},
}


def _quote(text: str) -> str:
    return text.replace("'", "''")


def ddl(dialect: str) -> str:
    """The CREATE TABLE script of the front-end database for ``mariadb``, ``postgresql``, ``sqlserver`` or ``sqlite``."""
    types = _TYPES[dialect]
    out = [f"-- 区域健康数据中心 前置库表结构 ({dialect}). Generated by adapters/frontdb/schema.py; do not edit.", ""]
    for table, (title, columns, key) in TABLES.items():
        lines = []
        for name, kind, required, comment in columns:
            line = f"  {name} {types[kind]}{' NOT NULL' if required else ''}"
            if dialect == "mariadb":
                line += f" COMMENT '{_quote(comment)}'"
            lines.append(line)
        lines.append(f"  CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(key)})")
        suffix = f" COMMENT='{_quote(title)}' DEFAULT CHARSET=utf8mb4" if dialect == "mariadb" else ""
        out.append(f"CREATE TABLE {table} (\n" + ",\n".join(lines) + f"\n){suffix};")
        names = [c[0] for c in columns]
        if "update_time" in names:
            out.append(f"CREATE INDEX ix_{table}_update ON {table} (update_time, {key[0]});")
        if table == "hdr_lab_result":
            out.append(f"CREATE INDEX ix_{table}_report ON {table} (report_id);")
        if dialect == "postgresql":
            out.append(f"COMMENT ON TABLE {table} IS '{_quote(title)}';")
            out.extend(f"COMMENT ON COLUMN {table}.{c[0]} IS '{_quote(c[3])}';" for c in columns)
        elif dialect == "sqlserver":
            out.append(
                f"EXEC sp_addextendedproperty 'MS_Description', N'{_quote(title)}', 'SCHEMA', 'dbo', 'TABLE', '{table}';"
            )
        out.append("")
    return "\n".join(out)


def ddl_statements(dialect: str) -> list[str]:
    """The script of :func:`ddl` as single statements (for drivers that run one at a time)."""
    statements = []
    for chunk in ddl(dialect).split(";\n"):
        text = "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        if text:
            statements.append(text.rstrip(";"))
    return statements


def write_files(directory: Path = Path(__file__).parent) -> None:
    """Regenerate the published DDL files."""
    for dialect in _TYPES:
        (directory / f"{dialect}.sql").write_text(ddl(dialect), encoding="utf-8")


if __name__ == "__main__":
    write_files(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)

"""The deterministic data set of the search benchmark: Patients of Kunshan and their lab Observations.

Every resource is a function of its number, so ``--reuse`` can draw query values without
reading the database.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import accumulate

SEED = 20261123
BUNDLE_SIZE = 500
MRN_SYSTEM = "urn:hub:mrn:org-ks-1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: The 20 commonest Chinese surnames, weighted by their share of the population (‰).
SURNAMES = [("王", 71), ("李", 70), ("张", 67), ("刘", 54), ("陈", 45), ("杨", 31), ("黄", 22), ("赵", 20),
            ("吴", 20), ("周", 19), ("徐", 13), ("孙", 12), ("马", 12), ("朱", 11), ("胡", 10), ("郭", 10),
            ("何", 9), ("高", 9), ("林", 9), ("罗", 9)]
SURNAME_CUM = list(accumulate(w for _, w in SURNAMES))
GIVEN = {
    "male": "伟强磊军勇杰涛明超刚平辉鹏华飞斌宇浩凯健俊帆建国志文博",
    "female": "芳娜敏静丽艳娟霞燕玲英秀婷雪琳慧颖欣怡佳梅兰红洁晶倩",
}
TOWNS = ["玉山镇", "周市镇", "陆家镇", "花桥镇", "千灯镇", "张浦镇", "巴城镇", "周庄镇", "淀山湖镇", "锦溪镇"]

#: Lab tests: LOINC code, text, UCUM unit, value range, decimals, relative frequency.
LABS = [
    ("718-7", "血红蛋白", "g/dL", 10.5, 17.5, 1, 90),
    ("6690-2", "白细胞", "10*3/uL", 3.2, 11.0, 2, 90),
    ("789-8", "红细胞", "10*6/uL", 3.6, 5.9, 2, 85),
    ("777-3", "血小板", "10*3/uL", 100, 400, 0, 85),
    ("4544-3", "红细胞压积", "%", 34, 52, 1, 70),
    ("1558-6", "空腹血糖", "mg/dL", 68, 220, 0, 60),
    ("2345-7", "随机血糖", "mg/dL", 70, 260, 0, 25),
    ("4548-4", "糖化血红蛋白", "%", 4.3, 11.0, 1, 30),
    ("2093-3", "总胆固醇", "mg/dL", 110, 290, 0, 45),
    ("2571-8", "甘油三酯", "mg/dL", 40, 420, 0, 45),
    ("2085-9", "高密度脂蛋白胆固醇", "mg/dL", 28, 95, 0, 40),
    ("13457-7", "低密度脂蛋白胆固醇", "mg/dL", 50, 200, 0, 40),
    ("1742-6", "丙氨酸氨基转移酶", "U/L", 5, 90, 0, 55),
    ("1920-8", "天门冬氨酸氨基转移酶", "U/L", 8, 80, 0, 55),
    ("2324-2", "γ-谷氨酰转移酶", "U/L", 8, 150, 0, 25),
    ("6768-6", "碱性磷酸酶", "U/L", 35, 160, 0, 20),
    ("1975-2", "总胆红素", "mg/dL", 0.2, 2.2, 1, 30),
    ("1751-7", "白蛋白", "g/dL", 3.0, 5.3, 1, 30),
    ("2160-0", "肌酐", "mg/dL", 0.4, 2.0, 2, 55),
    ("3094-0", "尿素氮", "mg/dL", 6, 32, 0, 45),
    ("3084-1", "尿酸", "mg/dL", 2.4, 10.0, 1, 35),
    ("33914-3", "估算肾小球滤过率", "mL/min/{1.73_m2}", 25, 130, 0, 15),
    ("2823-3", "钾", "mmol/L", 3.2, 5.5, 1, 40),
    ("2951-2", "钠", "mmol/L", 132, 148, 0, 40),
    ("2075-0", "氯", "mmol/L", 95, 111, 0, 30),
    ("17861-6", "钙", "mg/dL", 8.2, 10.8, 1, 15),
    ("1988-5", "C反应蛋白", "mg/L", 0.3, 60, 1, 25),
    ("3016-3", "促甲状腺激素", "m[IU]/L", 0.2, 7.0, 2, 12),
    ("3024-7", "游离甲状腺素", "ng/dL", 0.7, 2.0, 2, 8),
    ("2276-4", "铁蛋白", "ng/mL", 10, 450, 0, 6),
    ("5902-2", "凝血酶原时间", "s", 9.5, 16.0, 1, 10),
    ("6301-6", "国际标准化比值", "{INR}", 0.8, 3.2, 2, 10),
]
LAB_CUM = list(accumulate(lab[-1] for lab in LABS))
FIRST_DAY = date(2020, 1, 1)
DAYS = (date(2026, 10, 31) - FIRST_DAY).days + 1
BIRTH_FIRST = date(1935, 1, 1)
BIRTH_DAYS = (date(2020, 12, 31) - BIRTH_FIRST).days + 1


def patient_id(n: int) -> str:
    return f"pt-{n:06d}"


def mrn(n: int) -> str:
    return f"MRN{n:08d}"


def make_patient(n: int) -> dict:
    """Patient number ``n`` (1-based); the same every time, so ``--reuse`` can draw from it."""
    rng = random.Random(f"patient:{n}")
    gender = rng.choice(["male", "female"])
    family = rng.choices(SURNAMES, cum_weights=SURNAME_CUM)[0][0]
    given = "".join(rng.sample(GIVEN[gender], rng.choice([1, 2, 2])))
    town = rng.choice(TOWNS)
    return {
        "resourceType": "Patient",
        "id": patient_id(n),
        "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": mrn(n)}],
        "active": True,
        "name": [{"use": "official", "text": family + given, "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}",
                     "use": "mobile"}],
        "gender": gender,
        "birthDate": (BIRTH_FIRST + timedelta(days=rng.randrange(BIRTH_DAYS))).isoformat(),
        "address": [{"use": "home", "text": f"江苏省苏州市昆山市{town}", "state": "江苏省", "city": "昆山市",
                     "district": town}],
    }


def make_observation(n: int, r: int) -> dict:
    """Observation ``r`` (0-based) of patient ``n``; deterministic like :func:`make_patient`."""
    rng = random.Random(f"observation:{n}:{r}")
    code, text, unit, low, high, decimals, _ = rng.choices(LABS, cum_weights=LAB_CUM)[0]
    day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
    seconds = 7 * 3600 + rng.randrange(10 * 3600)  # drawn between 07:00 and 17:00
    value = round(rng.uniform(low, high), decimals)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}], "text": text},
        "subject": {"reference": f"Patient/{patient_id(n)}"},
        "effectiveDateTime": f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
                             "+08:00",
        "valueQuantity": {"value": int(value) if decimals == 0 else value, "unit": unit, "system": UCUM,
                          "code": unit},
    }


def _bundle(entries: list[dict]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                      ensure_ascii=False, separators=(",", ":")).encode()


def patient_bundles(patients: int) -> Iterator[tuple[bytes, int]]:
    for first in range(1, patients + 1, BUNDLE_SIZE):
        numbers = range(first, min(first + BUNDLE_SIZE, patients + 1))
        yield _bundle([{"resource": make_patient(n), "request": {"method": "PUT", "url": f"Patient/{patient_id(n)}"}}
                       for n in numbers]), len(numbers)


def observation_bundles(patients: int, per_patient: int) -> Iterator[tuple[bytes, int]]:
    """Round ``r`` holds each patient's ``r``-th Observation, patients shuffled: arrival order is mixed."""
    order = list(range(1, patients + 1))
    random.Random(SEED).shuffle(order)
    pending: list[dict] = []
    for r in range(per_patient):
        for n in order:
            pending.append({"resource": make_observation(n, r), "request": {"method": "POST", "url": "Observation"}})
            if len(pending) == BUNDLE_SIZE:
                yield _bundle(pending), len(pending)
                pending = []
    if pending:
        yield _bundle(pending), len(pending)

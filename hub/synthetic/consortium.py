"""A synthetic consortium's year of care: who is registered where, and what happened to them.

Residents (from :mod:`hub.synthetic.population`: realistic Chinese names, valid GB 11643 ID numbers,
households sharing a phone and an address) live in the area of one primary site (社区卫生服务中心,
卫生院 or 一级医院) and are registered there; some also at the lead hospital, the TCM hospital or a
secondary hospital, typed again by that front desk (with that desk's errors). Over the year before
``today`` they visit (mostly their primary site), have lab tests (at hospitals, and at primary sites for
chronic-disease care), have exams done at their primary site to be read by the central imaging and ECG
centers, are referred up and down, and — when hypertensive or diabetic — are followed up by their site.

Deliberately dirty rows, each recorded with the reason the hub must give (:attr:`Registration.problem`
and friends): ID numbers with a wrong check character, impossible dates, codes outside a closed list,
lab items no mapping table knows, and one person registered at two hospitals with a typo.

Everything here is vendor-neutral; :mod:`hub.synthetic.vendors` writes it the way each vendor's system
stores it. The plan is a pure function of ``(seed, patients, today)``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from hub.errors import InvalidRequest
from hub.synthetic.population import ErrorRates, Person, PopulationGenerator

#: Front-desk errors of the demo's registrations: fewer than the EMPI benchmark's, so most records link.
DESK_ERRORS = ErrorRates(id_missing=0.12, id_legacy_15=0.05, id_typo=0.008, name_homophone=0.015, name_typo=0.005,
                         name_traditional=0.01, name_spaced=0.01, birth_transposed=0.004, birth_day_month=0.003,
                         birth_missing=0.0, sex_missing=0.0, phone_changed=0.08, phone_missing=0.08,
                         phone_country_code=0.05, address_missing=0.15, address_moved=0.04)
PRIMARY_LEVELS = ("chc", "township", "primary")
LEAD, TCM = "org-ks-1", "org-ks-tcm"
IMAGING, ECG = "org-ks-imaging", "org-ks-ecg"

#: Lab tests by neutral id: (Chinese name, unit, low, high of the reference range, mean, spread, decimals).
LAB_TESTS: dict[str, tuple[str, str, float, float, float, float, int]] = {
    "wbc": ("白细胞计数", "10*9/L", 3.5, 9.5, 6.4, 1.8, 2),
    "hgb": ("血红蛋白", "g/L", 115, 175, 138, 15, 0),
    "plt": ("血小板计数", "10*9/L", 125, 350, 230, 60, 0),
    "glu": ("葡萄糖", "mmol/L", 3.9, 7.8, 6.0, 1.5, 1),
    "fbg": ("空腹血糖", "mmol/L", 3.9, 6.1, 5.6, 1.2, 1),
    "tc": ("总胆固醇", "mmol/L", 2.8, 5.2, 4.8, 0.9, 2),
    "tg": ("甘油三酯", "mmol/L", 0.56, 1.7, 1.5, 0.7, 2),
    "crea": ("肌酐", "umol/L", 57, 111, 78, 18, 0),
    "alt": ("丙氨酸氨基转移酶", "U/L", 9, 50, 26, 12, 0),
    "hba1c": ("糖化血红蛋白", "%", 4.0, 6.0, 6.4, 1.1, 1),
    "hcy": ("同型半胱氨酸", "umol/L", 5, 15, 12, 4, 1),
    "ddimer": ("D-二聚体", "mg/L", 0, 0.5, 0.3, 0.2, 2),
    "tsh": ("促甲状腺激素", "mIU/L", 0.27, 4.2, 2.1, 1.0, 2),
}
#: Panels by neutral id: (name, tests).
PANELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cbc": ("血常规", ("wbc", "hgb", "plt")),
    "glucose": ("血糖", ("glu",)),
    "fasting": ("空腹血糖", ("fbg",)),
    "lipid": ("血脂", ("tc", "tg")),
    "renal": ("肾功能", ("crea",)),
    "liver": ("肝功能", ("alt",)),
    "diabetes": ("糖尿病监测", ("fbg", "hba1c")),
    "cardio": ("心血管风险", ("hcy", "ddimer")),
    "thyroid": ("甲状腺功能", ("tsh",)),
}
#: Exams done at primary sites and read centrally: (exam item, name, modality, body part, share).
EXAMS = (("DX-CHEST", "胸部X线摄影（正位）", "DX", "胸部", 35), ("ECG-12", "常规十二导联心电图", "ECG", "心脏", 40),
         ("US-ABDOMEN", "腹部超声（肝胆胰脾）", "US", "腹部", 15), ("CT-HEAD", "头颅CT平扫", "CT", "头颅", 10))
#: Everyday diagnoses (ICD-10 国家临床版 2.0) and the chronic ones.
COMMON_DIAGNOSES = (("J06.900", "急性上呼吸道感染"), ("J20.900", "急性支气管炎"), ("J02.900", "急性咽炎"),
                    ("J00.x00", "急性鼻咽炎［感冒］"), ("E78.500", "高脂血症"), ("I25.103", "冠状动脉粥样硬化性心脏病"))
HYPERTENSION = ("I10.x00x002", "高血压")
DIABETES = ("E11.900", "2型糖尿病")
#: Why a dirty row must be quarantined (the hub's reason names the field).
ID_MISTYPED, BAD_BIRTH, BAD_SEX = "ID number mistyped", "birth date is not a date", "sex code outside the closed list"
BAD_VISIT_TIME, NO_PATIENT_ID = "visit time is not a date", "no patient id (PID-3)"
DEPARTMENTS = (("0301", "全科医疗科"), ("0302", "内科"), ("0303", "外科"), ("0304", "中医科"), ("0305", "急诊科"))


@dataclass
class Registration:
    """A Patient row of one institution."""

    key: str
    label: int
    name: str
    sex: str  # GB/T 2261.1: 1 男, 2 女
    birth: str | None
    id_number: str | None
    phone: str | None
    address: str | None
    marital: str  # GB/T 2261.2 first digit as front-end databases write it: 1 未婚 2 已婚 3 丧偶 4 离婚
    updated: datetime
    #: Why the hub must quarantine the row (None: it is clean).
    problem: str | None = None


@dataclass
class Visit:
    """An Encounter with its diagnoses."""

    key: str
    patient: str
    kind: str  # outpatient, emergency, inpatient
    start: datetime
    end: datetime | None
    department: tuple[str, str]
    doctor: tuple[str, str]
    diagnoses: list[tuple[str, str]] = field(default_factory=list)
    problem: str | None = None


@dataclass
class LabResult:
    """One result of a lab order."""

    test: str
    value: str
    flag: str  # H, L or N


@dataclass
class LabOrder:
    """A lab report with its results."""

    key: str
    patient: str
    visit: str | None
    panel: str
    collected: datetime
    reported: datetime
    results: list[LabResult]
    problem: str | None = None


@dataclass
class Exam:
    """An exam done at a site and sent to a reading center."""

    key: str
    patient: str
    item: tuple[str, str, str, str, int]
    at: datetime
    study_uid: str


@dataclass
class Referral:
    """A referral up (基层 → 医院) or down (医院 → 基层), recorded by the primary site."""

    key: str
    patient: str
    direction: str
    from_org: str
    to_org: str
    at: datetime
    reason: str


@dataclass
class FollowUp:
    """A hypertension or diabetes follow-up with its readings."""

    key: str
    patient: str
    program: str  # hypertension, diabetes
    at: datetime
    method: str  # 1 门诊, 2 家庭, 3 电话
    sbp: int | None
    dbp: int | None
    fbg: float | None


@dataclass
class InstitutionData:
    """What one institution's systems hold."""

    institution: str
    registrations: list[Registration] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    labs: list[LabOrder] = field(default_factory=list)
    exams: list[Exam] = field(default_factory=list)
    referrals: list[Referral] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)


@dataclass
class ConsortiumPlan:
    """The generated consortium: residents and each institution's data."""

    seed: int
    patients: int
    today: date
    persons: list[Person]
    institutions: dict[str, InstitutionData]
    #: Persons registered at two hospitals with a typo in one name (the EMPI must link them or ask).
    typo_pairs: list[tuple[str, str]] = field(default_factory=list)
    #: (person label, home site, its patient key, the lead hospital's report key and time) of recent blood counts.
    recent_labs: list[tuple[int, str, str, str, datetime]] = field(default_factory=list)

    def rows(self) -> Iterator[tuple[str, object]]:
        """Every row with its institution."""
        for data in self.institutions.values():
            for group in (data.registrations, data.visits, data.labs, data.exams, data.referrals, data.follow_ups):
                for row in group:
                    yield data.institution, row


class ConsortiumGenerator:
    """Generates a :class:`ConsortiumPlan` from a roster's institutions (id, level)."""

    def __init__(self, institutions: Iterable[tuple[str, str]], seed: int = 7, today: date | None = None) -> None:
        levels = dict(institutions)
        self.sites = sorted(i for i, level in levels.items() if level in PRIMARY_LEVELS)
        self.secondary = sorted(i for i, level in levels.items()
                                if level == "secondary" and i not in (IMAGING, ECG))
        missing = {LEAD, TCM, IMAGING, ECG} - set(levels)
        if missing or not self.sites or not self.secondary:
            raise InvalidRequest(f"The roster lacks institutions the demo needs: {sorted(missing) or 'primary sites'}")
        self.seed = seed
        self.today = today or date.today()
        self.random = random.Random(seed * 7919 + 1)  # a stream apart from the population's
        self.people = PopulationGenerator(seed, DESK_ERRORS, today=self.today - timedelta(days=1))
        self.data = {i: InstitutionData(i) for i in [*self.sites, LEAD, TCM, *self.secondary]}
        self._numbers: dict[str, int] = {}
        #: Days since the birth of the person whose events are being made (nothing happens before it).
        self._age_days = 100 * 365

    # -- helpers ----------------------------------------------------------------------------------

    def _key(self, institution: str, prefix: str) -> str:
        number = self._numbers.get(f"{institution}:{prefix}", 0) + 1
        self._numbers[f"{institution}:{prefix}"] = number
        return f"{prefix}{number:06d}"

    def _moment(self, first_day: int, last_day: int = 1) -> datetime:
        """A working-hours moment between ``first_day`` and ``last_day`` days before today (never today),
        and not before the person was born."""
        first_day = min(first_day, self._age_days)
        day = self.today - timedelta(days=self.random.randint(min(last_day, first_day), first_day))
        return datetime.combine(day, time(self.random.randint(8, 16), self.random.randint(0, 59),
                                          self.random.randint(0, 59)))

    def _doctor(self, institution: str) -> tuple[str, str]:
        number = self.random.randint(1, 12)
        return f"D{number:03d}", f"{institution[-4:].upper()}医生{number}"

    # -- people -----------------------------------------------------------------------------------

    def _register(self, person: Person, institution: str, *, clean: bool = False) -> Registration:
        typed = self.people.typed(person, clean=clean)
        key = self._key(institution, "P" if institution != LEAD else "1")
        since = self._moment(1500, 366)
        problem = None
        if typed.id_number and len(typed.id_number) == 18 and typed.id_number != person.id_number:
            problem = ID_MISTYPED
        row = Registration(key, person.label, typed.name, "1" if person.sex == "male" else "2", typed.birth,
                           typed.id_number, typed.phone, typed.address,
                           "2" if (self.today - person.birth).days > 25 * 365 else "1", since, problem)
        self.data[institution].registrations.append(row)
        return row

    # -- events -----------------------------------------------------------------------------------

    def _visit(self, institution: str, patient: str, kind: str, diagnoses: list[tuple[str, str]]) -> Visit:
        start = self._moment(365)
        end = start + timedelta(days=self.random.randint(3, 12)) if kind == "inpatient" else None
        if end is not None and end.date() >= self.today:
            end = None  # still in hospital
        department = DEPARTMENTS[4] if kind == "emergency" else self.random.choice(DEPARTMENTS[:4])
        visit = Visit(self._key(institution, "V"), patient, kind, start, end, department,
                      self._doctor(institution), diagnoses)
        self.data[institution].visits.append(visit)
        return visit

    def _result(self, test: str, *, high: bool = False) -> LabResult:
        _name, _unit, low, top, mean, spread, decimals = LAB_TESTS[test]
        value = max(self.random.gauss(mean + (spread if high else 0), spread), low / 3)
        flag = "H" if value > top else "L" if value < low else "N"
        return LabResult(test, f"{value:.{decimals}f}", flag)

    def _lab(self, institution: str, patient: str, panel: str, at: datetime, visit: str | None = None,
             *, high: bool = False) -> LabOrder:
        reported = at + timedelta(minutes=self.random.randint(40, 240))
        order = LabOrder(self._key(institution, "L"), patient, visit, panel, at, reported,
                         [self._result(test, high=high) for test in PANELS[panel][1]])
        self.data[institution].labs.append(order)
        return order

    def _chronic(self, site: str, patient: str, program: str) -> None:
        count = self.random.choices((1, 2, 3, 4, 5), (8, 12, 20, 45, 15))[0]
        days = sorted(self.random.sample(range(1, 365), count), reverse=True)
        controlled = self.random.random() < 0.62
        for day in days:
            at = self._moment(day, day)
            sbp = dbp = fbg = None
            if program == "hypertension":
                sbp = int(self.random.gauss(128 if controlled else 150, 8))
                dbp = int(self.random.gauss(80 if controlled else 94, 5))
            else:
                fbg = round(self.random.gauss(6.2 if controlled else 8.4, 0.6), 1)
            self.data[site].follow_ups.append(FollowUp(
                self._key(site, "F"), patient, program, at, self.random.choice("1112233"), sbp, dbp, fbg))
        if program == "diabetes" and self.random.random() < 0.5:
            self._lab(site, patient, "diabetes", self._moment(300), high=not controlled)
        if program == "hypertension" and self.random.random() < 0.3:
            self._lab(site, patient, "lipid", self._moment(300), high=True)

    def _exam(self, site: str, patient: str) -> None:
        item = self.random.choices(EXAMS, [e[4] for e in EXAMS])[0]
        at = self._moment(20)
        number = self._numbers["exams"] = self._numbers.get("exams", 0) + 1  # across the consortium
        uid = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{self.seed}:{self.today}:{number}').int}"  # DICOM UUID form
        self.data[site].exams.append(Exam(self._key(site, "E"), patient, item, at, uid))

    def _referrals(self, site: str, patient: str, hospital: str) -> None:
        at = self._moment(300, 10)
        self.data[site].referrals.append(Referral(self._key(site, "R"), patient, "up", site, hospital, at,
                                                  self.random.choice(("病情需进一步诊治", "需住院治疗", "影像异常待查"))))
        if self.random.random() < 0.45:
            back = at + timedelta(days=self.random.randint(5, 9))
            self.data[site].referrals.append(Referral(self._key(site, "R"), patient, "down", hospital, site, back,
                                                      "病情稳定，转回社区康复管理"))

    def _hospital_care(self, hospital: str, patient: str, chronic: list[tuple[str, str]]) -> None:
        for _ in range(self.random.choices((1, 2, 3), (55, 30, 15))[0]):
            kind = self.random.choices(("outpatient", "emergency", "inpatient"), (80, 13, 7))[0]
            diagnoses = [self.random.choice(COMMON_DIAGNOSES)] if not chronic or self.random.random() < 0.4 \
                else list(chronic)
            visit = self._visit(hospital, patient, kind, diagnoses)
            if self.random.random() < 0.45:
                panel = self.random.choices(("cbc", "glucose", "lipid", "renal", "liver", "cardio", "thyroid"),
                                            (35, 20, 15, 10, 10, 6, 4))[0]
                if hospital == TCM and panel == "cardio":
                    panel = "cbc"
                self._lab(hospital, patient, panel, visit.start, visit.key)

    # -- the plan ---------------------------------------------------------------------------------

    def plan(self, patients: int) -> ConsortiumPlan:
        """The consortium of ``patients`` residents."""
        persons = self.people.persons(patients)
        plan = ConsortiumPlan(self.seed, patients, self.today, persons, self.data)
        for person in persons:
            self._person(plan, person)
        self._dirty(plan)
        return plan

    def _person(self, plan: ConsortiumPlan, person: Person) -> None:
        site = self.sites[person.household % len(self.sites)]
        self._age_days = (self.today - person.birth).days
        home = self._register(person, site)
        age = self._age_days // 365
        chronic: list[tuple[str, str]] = []
        if age >= 35 and self.random.random() < 0.05 + age * 0.004:
            chronic.append(HYPERTENSION)
        if age >= 35 and self.random.random() < 0.02 + age * 0.0015:
            chronic.append(DIABETES)
        hospitals = [h for h, share in ((LEAD, 0.30), (TCM, 0.12)) if self.random.random() < share]
        if self.random.random() < 0.12:
            hospitals.append(self.secondary[person.household % len(self.secondary)])
        if home.problem is None:
            for _ in range(self.random.choices((0, 1, 2, 3, 4), (20, 35, 25, 12, 8))[0]):
                self._visit(site, home.key, "outpatient", list(chronic[:1])
                            if chronic and self.random.random() < 0.5 else [self.random.choice(COMMON_DIAGNOSES)])
            for code, _name in chronic:
                self._chronic(site, home.key, "hypertension" if code == HYPERTENSION[0] else "diabetes")
            if self.random.random() < 0.06 + (0.06 if chronic else 0):
                self._exam(site, home.key)
            if hospitals and self.random.random() < 0.10:
                self._referrals(site, home.key, hospitals[0])
        for hospital in hospitals:
            row = self._register(person, hospital)
            if row.problem is None:
                self._hospital_care(hospital, row.key, chronic)
                if hospital == LEAD and home.problem is None and self.random.random() < 0.08:
                    recent = self._lab(LEAD, row.key, "cbc", self._moment(2))
                    plan.recent_labs.append((person.label, site, home.key, recent.key, recent.reported))

    def _dirty(self, plan: ConsortiumPlan) -> None:
        """The rows a careful reviewer would find: impossible dates, unknown codes, a duplicate with a typo."""
        count = max(2, plan.patients // 500)
        self._age_days = 100 * 365
        lead = self.data[LEAD].registrations

        def some(rows: list[Any]) -> list[Any]:
            return self.random.sample(rows, min(count, len(rows)))

        for row in some([r for r in lead if r.problem is None and r.birth]):
            row.birth = row.birth[:5] + "02-30" if row.birth else None  # 2 月 30 日
            row.problem = BAD_BIRTH
        for row in some([r for r in lead if r.problem is None]):
            row.sex = "不详"
            row.problem = BAD_SEX
        quarantined = {r.key for r in lead if r.problem}  # their visits and labs wait with them: left out here
        self.data[LEAD].visits = [v for v in self.data[LEAD].visits if v.patient not in quarantined]
        self.data[LEAD].labs = [lab for lab in self.data[LEAD].labs if lab.patient not in quarantined]
        kept = {lab.key for lab in self.data[LEAD].labs}
        plan.recent_labs = [entry for entry in plan.recent_labs if entry[3] in kept]
        for site in some(self.sites):
            visits = self.data[site].visits
            if visits:
                visit = self.random.choice(visits)
                visit.problem = BAD_VISIT_TIME
                visit.diagnoses = []  # a visit that cannot be stored carries no diagnosis that would point to it
        for lab in some(self.data[TCM].labs):
            lab.problem = NO_PATIENT_ID
        # one person registered at two hospitals, typed with a homophone and without the ID number
        both = [p for p in plan.persons if p.birth.year < 2000][: count]
        for person in both:
            first = self._register(person, LEAD, clean=True)
            second = self._register(person, TCM, clean=True)
            second.name = self.people.homophone(second.name)
            second.id_number = None
            plan.typo_pairs.append((first.key, second.key))

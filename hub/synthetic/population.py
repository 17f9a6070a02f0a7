"""A labelled synthetic population: residents, their households, and the messy records hospitals keep.

Each person gets one to four source Patients at member institutions; every record carries the
errors front desks make, at stated rates: names typed with a homophone (张丽 → 张莉) or a wrong
character, in traditional characters or with spaces; birth dates with transposed digits or day
and month swapped; ID numbers missing, in the 15-digit legacy form, or mistyped; phones changed,
missing or written +86; addresses missing or moved. Households share a phone and an address;
some hold twins (same birth date, same surname). A few 无名氏 emergency admissions stand alone.

The label of every record (the person it really is) lets a benchmark count correct and wrong links.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import opencc
from faker import Faker
from faker.providers.person.zh_CN import Provider as NameProvider
from pypinyin import Style, lazy_pinyin

from hub.privacy.citizen_id import check_character

_S2T = opencc.OpenCC("s2t")
#: Characters of given names (Faker's and other common ones).
_GIVEN_EXTRA = (
    "子涵浩然宇轩梓萱欣怡雨桐一诺思远嘉懿俊杰晨曦佳琪紫涵文博梦琪静怡雅婷志强建国秀英桂英玉兰"
    "海燕春梅丽娟晓东红霞凤英永刚振华德明国平淑珍美玲翠花立新海涛金凤家豪宏伟丹丹婷婷晶晶"
)
_REGIONS = ("320583", "320505", "320506", "320507", "320508", "320509", "320581", "320582", "320585")
_STREETS = ("人民路", "前进路", "朝阳路", "黄河路", "长江路", "柏庐路", "马鞍山路", "同丰路", "萧林路", "震川路")
_TOWNS = ("玉山镇", "周市镇", "陆家镇", "花桥镇", "张浦镇", "千灯镇", "淀山湖镇", "巴城镇", "锦溪镇", "周庄镇")


@dataclass(frozen=True)
class ErrorRates:
    """How often each error occurs in one record."""

    id_missing: float = 0.35
    id_legacy_15: float = 0.15  # of people born before 1985 whose record has an ID
    id_typo: float = 0.02
    name_homophone: float = 0.04
    name_typo: float = 0.02
    name_traditional: float = 0.03
    name_spaced: float = 0.02
    birth_transposed: float = 0.02
    birth_day_month: float = 0.01
    birth_missing: float = 0.01
    sex_missing: float = 0.02
    phone_changed: float = 0.15
    phone_missing: float = 0.20
    phone_country_code: float = 0.10
    address_missing: float = 0.30
    address_moved: float = 0.10


@dataclass
class Person:
    """A resident as they really are."""

    label: int
    name: str
    sex: str
    birth: date
    id_number: str
    phone: str
    address: str
    household: int
    twin_of: int | None = None


@dataclass(frozen=True)
class Typed:
    """A person as one front desk typed them (None: left empty)."""

    name: str
    birth: str | None
    id_number: str | None
    phone: str | None
    address: str | None


@dataclass
class Population:
    """Persons and their source records (label, institution, Patient JSON)."""

    persons: list[Person] = field(default_factory=list)
    records: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


class PopulationGenerator:
    """Generates a reproducible labelled population (``seed``)."""

    def __init__(self, seed: int = 7, rates: ErrorRates | None = None, institutions: int = 12,
                 today: date = date(2026, 12, 1)) -> None:
        #: Births are before this day (the benchmarks keep the fixed default, so their figures stay comparable).
        self.today = today
        self.random = random.Random(seed)
        self.faker = Faker("zh_CN")
        self.faker.seed_instance(seed)
        self.rates = rates or ErrorRates()
        self.institutions = [f"org-{n:02d}" for n in range(1, institutions + 1)]
        surnames = NameProvider.last_names
        self.surnames = list(surnames)
        self.surname_weights = [float(surnames[s]) for s in self.surnames]  # type: ignore[index]
        chars = {c for name in (*NameProvider.first_names_male, *NameProvider.first_names_female) for c in name}
        self.given_chars = sorted(chars | set(_GIVEN_EXTRA))
        self.homophones: dict[str, list[str]] = {}
        by_sound: dict[str, list[str]] = {}
        for char in self.given_chars:
            by_sound.setdefault(lazy_pinyin(char, style=Style.NORMAL)[0], []).append(char)
        for group in by_sound.values():
            for char in group:
                others = [c for c in group if c != char]
                if others:
                    self.homophones[char] = others
        self._issued: set[str] = set()

    # -- people ------------------------------------------------------------------------------

    def _given(self) -> str:
        count = 2 if self.random.random() < 0.72 else 1
        return "".join(self.random.choice(self.given_chars) for _ in range(count))

    def _surname(self) -> str:
        return self.random.choices(self.surnames, self.surname_weights)[0]

    def _birth(self, low_age: int = 0, high_age: int = 92) -> date:
        age_days = self.random.randint(low_age * 365, high_age * 365)
        return self.today - timedelta(days=age_days)

    def _id_number(self, birth: date, sex: str) -> str:
        while True:  # numbers are unique, as the real ones are
            sequence = self.random.randrange(0, 500) * 2 + (1 if sex == "male" else 0)  # odd for men
            first17 = f"{self.random.choice(_REGIONS)}{birth:%Y%m%d}{sequence:03d}"
            if first17 not in self._issued:
                self._issued.add(first17)
                return first17 + check_character(first17)

    def _phone(self) -> str:
        return "1" + self.random.choice("3578") + "".join(self.random.choice("0123456789") for _ in range(9))

    def _address(self) -> str:
        return (f"江苏省昆山市{self.random.choice(_TOWNS)}{self.random.choice(_STREETS)}"
                f"{self.random.randint(1, 999)}号{self.random.randint(1, 30)}幢{self.random.randint(101, 2204)}室")

    def _person(self, label: int, household: int, surname: str, sex: str, birth: date, phone: str,
                address: str) -> Person:
        return Person(label, surname + self._given(), sex, birth, self._id_number(birth, sex), phone, address, household)

    def persons(self, count: int) -> list[Person]:
        """``count`` persons in households of one to five, some with twins."""
        out: list[Person] = []
        household = 0
        while len(out) < count:
            household += 1
            phone, address = self._phone(), self._address()
            surname = self._surname()
            size = self.random.choices((1, 2, 3, 4, 5), (30, 30, 22, 12, 6))[0]
            adult = self._birth(22, 90)
            for member in range(size):
                if len(out) >= count:
                    break
                sex = self.random.choice(("male", "female"))
                if member == 0:
                    birth = adult
                elif member == 1:
                    birth = min(adult + timedelta(days=self.random.randint(-1500, 1500)), date(2004, 1, 1))
                else:
                    birth = self._birth(0, max(1, (self.today - adult).days // 365 - 20))
                person = self._person(len(out), household, surname, sex, birth, phone, address)
                out.append(person)
                if member >= 2 and self.random.random() < 0.08 and len(out) < count:
                    twin_sex = sex if self.random.random() < 0.5 else self.random.choice(("male", "female"))
                    twin = self._person(len(out), household, surname, twin_sex, birth, phone, address)
                    twin.twin_of = person.label
                    out.append(twin)
        return out

    # -- records -----------------------------------------------------------------------------

    def _name(self, name: str) -> str:
        r, rates = self.random.random, self.rates
        chars = list(name)
        if r() < rates.name_homophone:
            spots = [i for i in range(1, len(chars)) if chars[i] in self.homophones]
            if spots:
                i = self.random.choice(spots)
                chars[i] = self.random.choice(self.homophones[chars[i]])
        elif r() < rates.name_typo and len(chars) > 1:
            chars[self.random.randrange(1, len(chars))] = self.random.choice(self.given_chars)
        text = "".join(chars)
        if r() < rates.name_traditional:
            text = _S2T.convert(text)
        if r() < rates.name_spaced:
            text = text[0] + " " + text[1:]
        return text

    def _birth_text(self, birth: date) -> str | None:
        r, rates = self.random.random, self.rates
        if r() < rates.birth_missing:
            return None
        text = birth.isoformat()
        if r() < rates.birth_transposed:
            digits = list(text.replace("-", ""))
            i = self.random.choice((2, 3, 4, 6))
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            candidate = "".join(digits)
            text = f"{candidate[:4]}-{candidate[4:6]}-{candidate[6:]}"
        elif r() < rates.birth_day_month and birth.day <= 12:
            text = f"{birth.year:04d}-{birth.day:02d}-{birth.month:02d}"
        try:
            typed = date.fromisoformat(text)
        except ValueError:
            return birth.isoformat()
        return text if typed <= self.today else birth.isoformat()  # registration software refuses the future

    def _id_text(self, person: Person) -> str | None:
        r, rates = self.random.random, self.rates
        if r() < rates.id_missing:
            return None
        number = person.id_number
        if person.birth.year < 1985 and r() < rates.id_legacy_15:
            return number[:6] + number[8:17]
        if r() < rates.id_typo:
            i = self.random.randrange(0, 17)
            number = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1:]
        return number

    def homophone(self, name: str) -> str:
        """``name`` with one given-name character replaced by a homophone (as typed from hearing it)."""
        spots = [i for i in range(1, len(name)) if name[i] in self.homophones]
        if not spots:  # no homophone known: a wrong character, as heard
            return name[0] + self.random.choice([c for c in self.given_chars if c != name[1:2]]) + name[2:]
        i = self.random.choice(spots)
        return name[:i] + self.random.choice(self.homophones[name[i]]) + name[i + 1:]

    def typed(self, person: Person, *, clean: bool = False) -> Typed:
        """``person`` as a front desk types them, with its errors (none when ``clean``)."""
        if clean:
            return Typed(person.name, person.birth.isoformat(), person.id_number, person.phone, person.address)
        r, rates = self.random.random, self.rates
        phone: str | None = None
        if r() >= rates.phone_missing:
            phone = self._phone() if r() < rates.phone_changed else person.phone
            if r() < rates.phone_country_code:
                phone = "+86 " + phone
        address = None
        if r() >= rates.address_missing:
            address = self._address() if r() < rates.address_moved else person.address
        return Typed(self._name(person.name), self._birth_text(person.birth), self._id_text(person), phone, address)

    def record(self, person: Person, institution: str, key: str) -> dict[str, Any]:
        """One source Patient of ``person`` as ``institution`` keeps it."""
        r, rates = self.random.random, self.rates
        identifiers: list[dict[str, Any]] = [{"system": f"urn:hub:mrn:{institution}", "value": key}]
        number = self._id_text(person)
        if number:
            identifiers.append({"system": "urn:oid:2.16.156.10011.1.3", "value": number})
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "meta": {"tag": [{"system": "urn:hub:institution", "code": institution}]},
            "identifier": identifiers,
            "name": [{"use": "official", "text": self._name(person.name)}],
        }
        if r() >= rates.sex_missing:
            resource["gender"] = person.sex
        birth = self._birth_text(person.birth)
        if birth:
            resource["birthDate"] = birth
        if r() >= rates.phone_missing:
            phone = self._phone() if r() < rates.phone_changed else person.phone
            if r() < rates.phone_country_code:
                phone = "+86 " + phone
            resource["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
        if r() >= rates.address_missing:
            resource["address"] = [{"text": self._address() if r() < rates.address_moved else person.address}]
        return resource

    def population(self, persons: int, placeholders: float = 0.005) -> Population:
        """``persons`` persons, each with one to four records at different institutions."""
        population = Population(self.persons(persons))
        number = 0
        for person in population.persons:
            count = self.random.choices((1, 2, 3, 4), (40, 35, 18, 7))[0]
            for institution in self.random.sample(self.institutions, count):
                number += 1
                population.records.append((person.label, institution, self.record(person, institution, f"M{number:08d}")))
        for extra in range(int(persons * placeholders)):
            number += 1
            institution = self.random.choice(self.institutions)
            label = -(extra + 1)
            population.records.append((label, institution, {
                "resourceType": "Patient",
                "meta": {"tag": [{"system": "urn:hub:institution", "code": institution}]},
                "identifier": [{"system": f"urn:hub:mrn:{institution}", "value": f"M{number:08d}"}],
                "name": [{"text": self.random.choice(("无名氏", "无名氏1", "未知", "急诊患者"))}],
                "gender": self.random.choice(("male", "female")),
            }))
        self.random.shuffle(population.records)
        return population


def _pairs(groups: dict[Any, list[str]]) -> Iterator[tuple[str, str]]:
    for ids in groups.values():
        ids = sorted(ids)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                yield a, b


@dataclass(frozen=True)
class LinkQuality:
    """Pairwise quality of the EMPI's links against the labels."""

    true_pairs: int
    auto_pairs: int
    auto_correct: int
    review_items: int
    review_true: int
    found_pairs: int

    @property
    def auto_precision(self) -> float:
        """Share of the pairs put under one person that are one person."""
        return self.auto_correct / self.auto_pairs if self.auto_pairs else 1.0

    @property
    def auto_recall(self) -> float:
        """Share of the true pairs linked automatically."""
        return self.auto_correct / self.true_pairs if self.true_pairs else 1.0

    @property
    def recall(self) -> float:
        """Share of the true pairs linked automatically or put in front of a reviewer."""
        return self.found_pairs / self.true_pairs if self.true_pairs else 1.0

    def as_dict(self) -> dict[str, float | int]:
        """JSON form."""
        return {"true_pairs": self.true_pairs, "auto_pairs": self.auto_pairs, "auto_correct": self.auto_correct,
                "auto_precision": round(self.auto_precision, 5), "auto_recall": round(self.auto_recall, 5),
                "recall_auto_plus_review": round(self.recall, 5), "review_items": self.review_items,
                "review_items_true": self.review_true}


def link_quality(labels: dict[str, int], person_of: dict[str, str],
                 reviews: list[tuple[str, str]]) -> LinkQuality:
    """Compare the EMPI (``person_of`` each record; open ``reviews`` as (record, candidate person)) with the labels.

    A true pair counts as found when both records are under one person, or when a review item puts
    one record against the person holding the other.
    """
    true = set(_pairs(_group(labels)))
    linked = set(_pairs(_group(person_of)))
    members = _group(person_of)
    reviewed: set[tuple[str, str]] = set()
    review_true = 0
    for record, person in reviews:
        others = members.get(person, [])
        if any(labels.get(o) == labels.get(record) for o in others):
            review_true += 1
        for other in others:
            reviewed.add((record, other) if record < other else (other, record))
    correct = len(linked & true)
    return LinkQuality(true_pairs=len(true), auto_pairs=len(linked), auto_correct=correct,
                       review_items=len(reviews), review_true=review_true, found_pairs=len(true & (linked | reviewed)))


def _group(assignment: dict[str, Any]) -> dict[Any, list[str]]:
    groups: dict[Any, list[str]] = {}
    for record_id, key in assignment.items():
        groups.setdefault(key, []).append(record_id)
    return groups

"""What the EMPI knows of one source Patient: its normalized, comparable features.

ID and phone numbers are kept only as blind indexes (keyed hashes): equal numbers have equal
hashes, and the EMPI tables never hold a number in clear.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from hub.empi.normalize import (
    citizen_id_18,
    fuzzy_pinyin,
    normalize_address,
    normalize_mobile,
    normalize_name,
)
from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.protected import PersonalDataProtector
from hub.privacy.citizen_id import birth_date_of, sex_of

#: meta.tag system of the EMPI's own marks.
EMPI_TAG = "urn:hub:empi"
#: The tag of golden (regional person) Patients.
GOLDEN_CODE = "golden"
#: The tag a source puts on a placeholder identity the EMPI must never match (无名氏 admissions).
NO_MATCH_CODE = "no-match"

#: The placeholder reason of a record governance staff marked "do not match" (kept across its updates).
MARKED_NO_MATCH = "marked do-not-match"

#: Names front desks give unidentified patients: 无名氏, 未知, 不详, 急诊患者3 …
_PLACEHOLDER_NAME = re.compile(
    r"^(无名氏?|未知|不详|匿名|待查|某某|无|无名男|无名女|患者|病人|急诊|急诊患者|三无|unknown|anonymous|noname|x+)"
    r"[\da-z]*$"
)
#: Newborns registered under the mother (王芳之子, 李娜之女2, 张丽婴儿): twins would look identical.
_NEWBORN_NAME = re.compile(r"(之子|之女|之婴|婴儿|之男|之女婴|之男婴|[男女]婴)\d*$")
_GB_SEX = {"male": "1", "female": "2"}
_SEX_EXTENSION = "urn:hub:extension:gb-t-2261.1-sex"


@dataclass(frozen=True, slots=True)
class Features:
    """The comparable features of one source Patient."""

    name: str = ""
    #: The fuzzy pinyin (``zan wei``), empty for names without Chinese characters or Latin letters.
    pinyin: str = ""
    birth_date: str = ""
    #: GB/T 2261.1: 1 male, 2 female; empty when unknown (0) or unstated (9).
    sex: str = ""
    #: Blind index of the 18-character ID number; empty without a valid one.
    id_hash: str = ""
    #: The ID number's encoded birth date or sex contradicts the record's own.
    id_conflict: bool = False
    phones: tuple[str, ...] = ()
    address: str = ""
    #: Why this identity must never be matched (placeholder name, newborn, no-match tag); empty otherwise.
    placeholder: str = ""
    institution: str = ""

    def as_json(self) -> dict[str, Any]:
        """The stored form (phones as a list)."""
        data = asdict(self)
        data["phones"] = list(self.phones)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Features:
        """The features of a stored form."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["phones"] = tuple(known.get("phones") or ())
        return cls(**known)


def _tags(resource: dict[str, Any], system: str) -> set[str]:
    meta = resource.get("meta") or {}
    return {t.get("code") for t in meta.get("tag") or () if isinstance(t, dict) and t.get("system") == system}


def institution_of(resource: dict[str, Any]) -> str:
    """The institution a Patient is tagged with (the first, in code order; empty if none)."""
    return next(iter(sorted(_tags(resource, INSTITUTION_TAG) - {None})), "")


def is_golden(resource: dict[str, Any]) -> bool:
    """Whether a Patient is one of the EMPI's golden (regional person) records."""
    return GOLDEN_CODE in _tags(resource, EMPI_TAG)


def name_text(resource: dict[str, Any]) -> str:
    """The name a Patient goes by (official or usual first; text, else family + given)."""
    names = [n for n in resource.get("name") or () if isinstance(n, dict)]
    names.sort(key=lambda n: (n.get("use") not in ("official", "usual", None), n.get("use") == "old"))
    for name in names:
        text = name.get("text") or (name.get("family") or "") + "".join(name.get("given") or ())
        if text:
            return str(text)
    return ""


def _sex(resource: dict[str, Any]) -> str:
    for extension in (resource.get("_gender") or {}).get("extension") or ():
        if extension.get("url") == _SEX_EXTENSION:
            code = (extension.get("valueCoding") or {}).get("code")
            return code if code in ("1", "2") else ""
    return _GB_SEX.get(resource.get("gender") or "", "")


def _address(resource: dict[str, Any]) -> str:
    for address in resource.get("address") or ():
        if not isinstance(address, dict) or address.get("use") == "old":
            continue
        text = address.get("text") or "".join(
            str(address.get(k) or "") for k in ("state", "city", "district")) + "".join(address.get("line") or ())
        if text:
            return normalize_address(text)
    return ""


def features_of(resource: dict[str, Any], protector: PersonalDataProtector) -> Features:
    """The features of a source Patient (its ID and phone numbers decrypted, as read from the store)."""
    name = normalize_name(name_text(resource))
    birth = str(resource.get("birthDate") or "")[:10]
    birth = birth if len(birth) == 10 else ""
    sex = _sex(resource)
    id_hash, id_conflict = "", False
    for identifier in resource.get("identifier") or ():
        if not isinstance(identifier, dict) or not protector.is_citizen_id(identifier):
            continue
        number = citizen_id_18(str(identifier.get("value") or ""))
        if number is None:
            continue
        id_hash = protector.blind_identifier(number)
        encoded_birth, encoded_sex = birth_date_of(number), sex_of(number)
        id_conflict = bool((birth and encoded_birth and encoded_birth.isoformat() != birth)
                           or (sex and encoded_sex and encoded_sex != sex))
        break
    phones = sorted({
        protector.blind_phone(digits)
        for telecom in resource.get("telecom") or ()
        if isinstance(telecom, dict) and telecom.get("system") in ("phone", "sms")
        and (digits := normalize_mobile(str(telecom.get("value") or "")))
    })
    placeholder = ""
    if NO_MATCH_CODE in _tags(resource, EMPI_TAG):
        placeholder = "tagged no-match"
    elif not name or _PLACEHOLDER_NAME.match(name):
        placeholder = "placeholder name"
    elif _NEWBORN_NAME.search(name):
        placeholder = "newborn registered under the mother"
    return Features(
        name=name, pinyin=fuzzy_pinyin(name), birth_date=birth, sex=sex, id_hash=id_hash,
        id_conflict=id_conflict, phones=tuple(phones), address=_address(resource), placeholder=placeholder,
        institution=institution_of(resource),
    )

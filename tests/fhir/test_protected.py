"""Personal data protected at rest: which FHIR values are encrypted, revealed, blinded, re-encrypted."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from hub.fhir.jsonio import dumps, loads_stored
from hub.fhir.protected import (
    CITIZEN_ID_SYSTEM,
    ID_DOCUMENT_TYPE_SYSTEM,
    PersonalDataProtector,
    looks_like_citizen_id,
    looks_like_phone,
    normalize_citizen_id,
    normalize_phone,
)
from hub.privacy import DataKeyring, KeyringError, is_token, key_id_of

ID_NUMBER = "11010519491231002X"  # GB 11643 example
OTHER_ID = "320583198001011234"
MOTHER_ID = "110105195501010027"
MOBILE = "13812345678"
CONTACT_MOBILE = "13987654321"
SECRETS = (ID_NUMBER, OTHER_ID, MOTHER_ID, MOBILE, CONTACT_MOBILE, "12345678", "87654321", "1234-5678")
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.4.642.1.1.1"


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": CITIZEN_ID_SYSTEM, "value": ID_NUMBER},
            {
                "type": {"coding": [{"system": ID_DOCUMENT_TYPE_SYSTEM, "code": "01", "display": "居民身份证"}]},
                "system": "urn:oid:1.2.156.112604.1.2.1",
                "value": OTHER_ID,
            },
            {"system": MRN_SYSTEM, "value": "MRN-0001", "assigner": {"display": "第一人民医院"}},
        ],
        "name": [{"text": "王小明"}],
        "telecom": [
            {"system": "phone", "value": "+86 138-1234-5678", "use": "mobile"},
            {"system": "email", "value": "wang@example.cn"},
            {"system": "sms", "value": MOBILE},
        ],
        "contact": [
            {
                "name": {"text": "李华"},
                "telecom": [{"system": "phone", "value": CONTACT_MOBILE}, {"system": "url", "value": "https://x.cn"}],
            }
        ],
        "contained": [
            {
                "resourceType": "RelatedPerson",
                "id": "mother",
                "patient": {"reference": "Patient/p1"},
                "identifier": {"system": CITIZEN_ID_SYSTEM, "value": MOTHER_ID},
            }
        ],
        "extension": [{"url": "urn:x:weight", "valueDecimal": Decimal("3.50")}],
    }


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "体重"},
        "subject": {"identifier": {"system": CITIZEN_ID_SYSTEM, "value": ID_NUMBER}, "display": "王*明"},
        "performer": [{"identifier": {"system": MRN_SYSTEM, "value": "D-7"}}],
        "valueQuantity": {"value": Decimal("60.50"), "unit": "kg"},
    }


@pytest.fixture
def keyring() -> DataKeyring:
    return DataKeyring.generate("k1")


@pytest.fixture
def protector(keyring: DataKeyring) -> PersonalDataProtector:
    return PersonalDataProtector(keyring)


@pytest.mark.parametrize("make", [patient, observation])
def test_protected_json_holds_no_id_or_phone_digits(protector: PersonalDataProtector, make: Any) -> None:
    original = make()
    stored = dumps(protector.protect(original))
    for secret in SECRETS:
        assert secret.encode() not in stored
    assert original == make()  # the input is not changed


def test_what_is_protected_and_what_stays_plain(protector: PersonalDataProtector) -> None:
    stored = protector.protect(patient())
    identifiers = stored["identifier"]
    assert is_token(identifiers[0]["value"]) and is_token(identifiers[1]["value"])
    assert identifiers[1]["type"] == patient()["identifier"][1]["type"]
    assert identifiers[2]["value"] == "MRN-0001"
    assert [is_token(t["value"]) for t in stored["telecom"]] == [True, False, True]
    assert stored["telecom"][1]["value"] == "wang@example.cn"
    assert is_token(stored["contact"][0]["telecom"][0]["value"])
    assert stored["contact"][0]["telecom"][1]["value"] == "https://x.cn"
    assert is_token(stored["contained"][0]["identifier"]["value"])
    assert stored["name"] == [{"text": "王小明"}] and stored["extension"] == patient()["extension"]
    obs = protector.protect(observation())
    assert is_token(obs["subject"]["identifier"]["value"])
    assert obs["performer"][0]["identifier"]["value"] == "D-7"


def test_values_are_bound_to_their_kind(keyring: DataKeyring, protector: PersonalDataProtector) -> None:
    stored = protector.protect(patient())
    assert keyring.decrypt(stored["identifier"][0]["value"], "identifier") == ID_NUMBER
    assert keyring.decrypt(stored["telecom"][0]["value"], "telecom") == "+86 138-1234-5678"
    moved = copy.deepcopy(stored)
    moved["telecom"][0]["value"] = stored["identifier"][0]["value"]
    with pytest.raises(KeyringError):
        protector.reveal(moved)


@pytest.mark.parametrize("make", [patient, observation])
def test_reveal_undoes_protect(protector: PersonalDataProtector, make: Any) -> None:
    stored = protector.protect(make())
    assert protector.reveal(stored) == make()
    assert loads_stored(protector.reveal_bytes(dumps(stored))) == make()
    assert protector.reveal_bytes(dumps(stored)) == dumps(make())


def test_protect_is_idempotent(protector: PersonalDataProtector) -> None:
    once = protector.protect(patient())
    assert protector.protect(once) == once


def test_reveal_bytes_returns_the_same_object_without_tokens(protector: PersonalDataProtector) -> None:
    content = dumps(observation())
    assert protector.reveal_bytes(content) is content
    plain_patient = dumps({"resourceType": "Patient", "telecom": [{"system": "email", "value": "a@b.cn"}]})
    assert protector.reveal_bytes(plain_patient) is plain_patient
    mentions = dumps({"resourceType": "Basic", "code": {"text": "hub:enc: in prose"}})
    assert protector.reveal_bytes(mentions) is mentions


def test_blinded_values_match_across_spellings(protector: PersonalDataProtector) -> None:
    def phone_patient(phone: str, id_number: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "identifier": [{"system": CITIZEN_ID_SYSTEM, "value": id_number}],
            "telecom": [{"system": "phone", "value": phone}],
        }

    a = protector.blinded(phone_patient("+86 138-1234-5678", ID_NUMBER))
    b = protector.blinded(phone_patient("13812345678", ID_NUMBER[:-1] + "x"))
    c = protector.blinded(protector.protect(phone_patient("0086 138 1234 5678", ID_NUMBER)))
    assert a == b == c
    assert a["identifier"][0] == {"system": CITIZEN_ID_SYSTEM, "value": protector.blind_identifier(ID_NUMBER)}
    assert a["telecom"][0]["value"] == protector.blind_phone("13812345678")


def test_blinded_view_of_a_whole_patient(protector: PersonalDataProtector) -> None:
    plain_view = protector.blinded(patient())
    assert protector.blinded(protector.protect(patient())) == plain_view
    stored = dumps(plain_view)
    for secret in SECRETS:
        assert secret.encode() not in stored
    assert plain_view["identifier"][1]["value"] == protector.blind_identifier(OTHER_ID)
    assert plain_view["identifier"][2]["value"] == "MRN-0001"
    assert plain_view["telecom"][1]["value"] == "wang@example.cn"
    assert plain_view["contact"][0]["telecom"][0]["value"] == protector.blind_phone(CONTACT_MOBILE)


def test_reencrypt_after_rotation(keyring: DataKeyring) -> None:
    old = PersonalDataProtector(keyring)
    content = dumps(old.protect(patient()))
    assert old.reencrypt_bytes(content) is None  # already under the active key
    assert old.reencrypt_bytes(dumps(observation())) is None  # nothing encrypted
    rotated = PersonalDataProtector(keyring.with_new_active_key("k2"))
    rewritten = rotated.reencrypt_bytes(content)
    assert rewritten is not None
    resource = loads_stored(rewritten)
    tokens = [resource["identifier"][0]["value"], resource["telecom"][0]["value"],
              resource["contact"][0]["telecom"][0]["value"], resource["contained"][0]["identifier"]["value"]]
    assert all(key_id_of(token) == "k2" for token in tokens)
    assert b"k1:" not in rewritten
    assert rotated.reveal(resource) == patient()
    assert rotated.reencrypt_bytes(rewritten) is None


def test_citizen_id_rules(protector: PersonalDataProtector) -> None:
    assert protector.is_citizen_id_system(CITIZEN_ID_SYSTEM)
    assert not protector.is_citizen_id_system(MRN_SYSTEM)
    by_type = {"type": {"coding": [{"system": ID_DOCUMENT_TYPE_SYSTEM, "code": "01"}]}, "value": "x"}
    assert protector.is_citizen_id(by_type)
    assert not protector.is_citizen_id({"type": {"coding": [{"system": ID_DOCUMENT_TYPE_SYSTEM, "code": "03"}]}})
    custom = PersonalDataProtector(protector.keyring, frozenset({"urn:x:sfz"}))
    assert custom.is_citizen_id_system("urn:x:sfz") and not custom.is_citizen_id_system(CITIZEN_ID_SYSTEM)


def test_normalization() -> None:
    assert normalize_citizen_id(" 110105 19491231 002x ") == ID_NUMBER
    assert normalize_phone("+86 138-1234-5678") == "13812345678"
    assert normalize_phone("0086 13812345678") == "13812345678"
    assert normalize_phone("8613812345678") == "13812345678"
    assert normalize_phone("(0512) 6512-3456") == "051265123456"
    assert normalize_phone("86123456") == "86123456"  # a local number starting with 86 stays


def test_search_side_shapes() -> None:
    assert looks_like_citizen_id(ID_NUMBER) and looks_like_citizen_id(ID_NUMBER.lower())
    assert looks_like_citizen_id("110105491231002")
    assert not looks_like_citizen_id("11010517491231002X")  # born in the 1700s
    assert not looks_like_citizen_id("11010519491331002X")  # month 13
    assert not looks_like_citizen_id("MRN-0001") and not looks_like_citizen_id(MOBILE)
    assert looks_like_phone("+86 138-1234-5678") and looks_like_phone(MOBILE) and looks_like_phone("0512-65123456")
    assert looks_like_phone("6512345")
    assert not looks_like_phone("123456") and not looks_like_phone(ID_NUMBER) and not looks_like_phone("MRN-1234567")

"""SMART scopes, role ceilings and client registration rules."""

from __future__ import annotations

import pytest

from hub.auth.clients import ClientError, new_client
from hub.auth.passwords import hash_secret, verify_secret
from hub.auth.roles import ROLE_PERMISSIONS, Permission, Role, scope_ceiling
from hub.auth.scopes import ScopeError, format_grants, grants_of, intersect, parse_scope
from hub.fhir.access import Access


@pytest.mark.parametrize(("scope", "resource_type", "letters"), [
    ("system/Patient.read", "Patient", "rs"),
    ("system/Patient.write", "Patient", "cud"),
    ("system/*.*", "*", "cruds"),
    ("system/Observation.rs", "Observation", "rs"),
    ("system/Observation.cruds", "Observation", "cruds"),
    ("system/*.c", "*", "c"),
])
def test_scope_forms(scope: str, resource_type: str, letters: str) -> None:
    assert parse_scope(scope) == (resource_type, frozenset(letters))


@pytest.mark.parametrize("scope", ["user/Patient.read", "patient/*.read", "system/Nope.read", "system/Patient.sr",
                                   "system/Patient.rr", "system/Patient", "system/Patient.execute", "openid"])
def test_bad_scopes_are_refused(scope: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(scope)


def test_grants_merge_and_format_as_v2() -> None:
    grants = grants_of(["system/Patient.read", "system/Patient.write", "system/*.s"])
    assert format_grants(grants) == ["system/*.s", "system/Patient.cruds"]


def test_intersect_cuts_a_wildcard_request_to_the_ceiling() -> None:
    ceiling = scope_ceiling(Role.CLINICIAN_CDS)
    granted = intersect(grants_of(["system/*.*"]), ceiling)
    assert granted["Observation"] == frozenset("rs") and "Condition" not in granted and "*" not in granted
    assert intersect(grants_of(["system/Condition.read"]), ceiling) == {}


def test_access_checks_each_interaction() -> None:
    access = Access("c", grants_of(["system/Observation.rs", "system/Patient.r"]))
    assert access.allows("Observation", "s") and access.allows("Patient", "r")
    assert not access.allows("Patient", "s") and not access.allows("Observation", "c")
    assert not Access.unrestricted().allows("AuditEvent", "c")  # the trail is the hub's alone
    assert Access.unrestricted().allows("AuditEvent", "r")


def test_role_permissions() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert Permission.MANAGE_SOURCES in ROLE_PERMISSIONS[Role.SOURCE_ADMIN]
    assert Permission.REVIEW_MATCHES in ROLE_PERMISSIONS[Role.GOVERNANCE]
    assert Permission.READ_WORKLISTS in ROLE_PERMISSIONS[Role.READER]
    assert Permission.CHECK_RECOGNITION in ROLE_PERMISSIONS[Role.CLINICIAN_CDS]
    assert all(Permission.READ_AUDIT not in ROLE_PERMISSIONS[r] for r in Role if r is not Role.ADMIN)


@pytest.mark.parametrize(("role", "options", "message"), [
    (Role.SOURCE_ADMIN, {}, "at least one institution"),
    (Role.ADMIN, {"institutions": ["org-a"]}, "cannot be limited"),
    (Role.APP, {"scopes": ["system/Patient.write"]}, "at most"),
    (Role.APP, {"scopes": ["nonsense"]}, "not a system scope"),
    (Role.APP, {"jwks": {"keys": [{"kty": "nope"}]}}, "JWKS"),
])
def test_registration_rules(role: Role, options: dict, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        new_client("x", role, **options)


def test_new_client_defaults_to_its_role_ceiling_and_hashes_the_secret() -> None:
    client, secret = new_client("LIS 昆山市第一人民医院", Role.SOURCE_ADMIN, institutions=["org-ks-1"])
    assert client.grants == scope_ceiling(Role.SOURCE_ADMIN) and secret and len(secret) >= 40
    assert client.secret_hash and verify_secret(secret, client.secret_hash)
    assert not verify_secret(secret + "x", client.secret_hash)
    assert hash_secret(secret) != client.secret_hash  # salted

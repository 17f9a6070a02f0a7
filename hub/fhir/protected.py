"""Personal data protected at rest (PIPL Art. 51): which FHIR values, and their stored form.

Citizen ID numbers (an ``Identifier.value``) and phone numbers (a ``ContactPoint.value`` of
system ``phone`` or ``sms``) are stored encrypted (:meth:`PersonalDataProtector.protect`),
decrypted on read (:meth:`~PersonalDataProtector.reveal_bytes`) and indexed for search by
their blind index (:meth:`~PersonalDataProtector.blinded`), wherever they occur in a resource:
contained resources, ``contact[]``, ``Reference.identifier``, an extension's ``valueIdentifier``
or ``valueContactPoint``. Every method is pure: inputs are
never changed, results are new objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hub.fhir.criteria import AllOf, AnyOf, ChainCriterion, Criterion, HasCriterion, TokenCriterion
from hub.fhir.jsonio import dumps, loads_stored
from hub.privacy import DataKeyring, is_token, key_id_of

#: Identifier.system of the resident ID number (居民身份证号), the OID the WS/T 500
#: shared-document specification (电子病历共享文档规范) uses for it.
CITIZEN_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
DEFAULT_CITIZEN_ID_SYSTEMS: frozenset[str] = frozenset({CITIZEN_ID_SYSTEM})
#: Identifier.type coding system of WS 364 CV02.01.101 身份证件类别代码; code ``01`` = 居民身份证.
#: An Identifier of this type is a citizen ID whatever its system.
ID_DOCUMENT_TYPE_SYSTEM = "urn:oid:2.16.156.10011.2.3.1.1"
CITIZEN_ID_TYPE_CODE = "01"

#: Encryption contexts (AES-GCM associated data): the kind of element a value sits in.
IDENTIFIER_CONTEXT = "identifier"
TELECOM_CONTEXT = "telecom"
#: Blind-index kinds.
CITIZEN_ID_KIND = "citizen-id"
PHONE_KIND = "phone"
#: ContactPoint systems whose values are phone numbers.
PHONE_SYSTEMS = frozenset({"phone", "sms"})

#: Keys holding Identifiers / ContactPoints: the elements, and an extension's value of that type.
_IDENTIFIER_KEYS = frozenset({"identifier", "valueIdentifier"})
_CONTACT_POINT_KEYS = frozenset({"telecom", "valueContactPoint"})
_TOKEN_MARK = b"hub:enc:"
#: JSON that has none of these keys has nothing to protect.
_ELEMENT_MARKS = tuple(f'"{key}"'.encode() for key in sorted(_IDENTIFIER_KEYS | _CONTACT_POINT_KEYS))
_CITIZEN_ID_18 = re.compile(r"^[1-9]\d{5}(18|19|20)\d{2}(0[1-9]|1[0-2])\d{2}\d{3}[\dXx]$", re.ASCII)
_CITIZEN_ID_15 = re.compile(r"^\d{15}$", re.ASCII)
_MOBILE = re.compile(r"^1[3-9]\d{9}$", re.ASCII)
_COUNTRY_MOBILE = re.compile(r"^(?:0086|86)(1[3-9]\d{9})$", re.ASCII)
_PHONE_TEXT = re.compile(r"^[\d\s+()\-.]+$", re.ASCII)

#: (context, protected by the rules, value) -> the value to put in its place.
_Visit = Callable[[str, bool, str], str]


def normalize_citizen_id(value: str) -> str:
    """An ID number as compared and blinded: spaces removed, a final ``x`` upper-cased."""
    text = "".join(value.split())
    return text[:-1] + "X" if text.endswith("x") else text


def normalize_phone(value: str) -> str:
    """A phone number as compared and blinded: digits only, without the +86 / 0086 / 86 of a mobile.

    ``+86 138-1234-5678`` → ``13812345678``.
    """
    digits = "".join(ch for ch in value if "0" <= ch <= "9")
    mobile = _COUNTRY_MOBILE.match(digits)
    return mobile.group(1) if mobile else digits


def looks_like_citizen_id(value: str) -> bool:
    """Whether ``value`` has the shape of a GB 11643 ID number (18 characters, or legacy 15 digits).

    The checksum is not verified.
    """
    text = normalize_citizen_id(value)
    return bool(_CITIZEN_ID_18.match(text) or _CITIZEN_ID_15.match(text))


def looks_like_phone(value: str) -> bool:
    """Whether ``value`` (digits and ``+ - ( ) .`` spaces only) is 7-13 digits or a mainland mobile."""
    if not _PHONE_TEXT.match(value):
        return False
    digits = normalize_phone(value)
    return 7 <= len(digits) <= 13 or bool(_MOBILE.match(digits))


class PersonalDataProtector:
    """Encrypts, decrypts and blinds the protected values of FHIR resources with a :class:`DataKeyring`."""

    def __init__(self, keyring: DataKeyring, citizen_id_systems: frozenset[str] = DEFAULT_CITIZEN_ID_SYSTEMS) -> None:
        self.keyring = keyring
        self.citizen_id_systems = frozenset(citizen_id_systems)
        #: Text one of which any JSON holding a protected value contains (a citizen-ID system or
        #: document type, a phone/sms ContactPoint system, an encrypted value).
        self._value_marks = tuple(
            mark.encode() for mark in (*sorted(self.citizen_id_systems), ID_DOCUMENT_TYPE_SYSTEM,
                                       *(f'"{system}"' for system in sorted(PHONE_SYSTEMS)))
        ) + (_TOKEN_MARK,)

    def may_hold(self, content: bytes) -> bool:
        """False when resource JSON certainly holds no protected value (then nothing needs a walk)."""
        return any(mark in content for mark in _ELEMENT_MARKS) and any(mark in content for mark in self._value_marks)

    # -- rules ---------------------------------------------------------------------------

    def is_citizen_id_system(self, system: str) -> bool:
        """Whether an Identifier of ``system`` holds a citizen ID number."""
        return system in self.citizen_id_systems

    def is_citizen_id(self, identifier: dict[str, Any]) -> bool:
        """Whether an Identifier (JSON) is a citizen ID: by its system, or by its WS 364 type code ``01``."""
        system = identifier.get("system")
        if isinstance(system, str) and self.is_citizen_id_system(system):
            return True
        kind = identifier.get("type")
        codings = kind.get("coding") if isinstance(kind, dict) else None
        return isinstance(codings, list) and any(
            isinstance(coding, dict)
            and coding.get("system") == ID_DOCUMENT_TYPE_SYSTEM
            and coding.get("code") == CITIZEN_ID_TYPE_CODE
            for coding in codings
        )

    # -- search side ---------------------------------------------------------------------

    def blind_identifier(self, value: str) -> str:
        """The blind index of a citizen ID number (as searched and as indexed)."""
        return self.keyring.blind(CITIZEN_ID_KIND, normalize_citizen_id(value))

    def blind_phone(self, value: str) -> str:
        """The blind index of a phone number (as searched and as indexed)."""
        return self.keyring.blind(PHONE_KIND, normalize_phone(value))

    # -- whole resources -----------------------------------------------------------------

    def protect(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The copy to store: protected values encrypted (values already encrypted are kept)."""

        def visit(context: str, protected: bool, value: str) -> str:
            return self.keyring.encrypt(value, context) if protected and not is_token(value) else value

        return self._walk(resource, visit)

    def protect_bytes(self, content: bytes) -> bytes:
        """Resource JSON as stored: :meth:`protect` applied; ``content`` itself when it holds nothing to protect."""
        if not self.may_hold(content):
            return content
        return dumps(self.protect(loads_stored(content)))

    def reveal(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The copy to serve: every encrypted value decrypted. Raises KeyringError for an unknown key or bad data."""
        return self._walk(resource, self._reveal_value)

    def reveal_bytes(self, content: bytes) -> bytes:
        """Stored JSON with its encrypted values decrypted; ``content`` itself when it holds none."""
        if _TOKEN_MARK not in content:
            return content
        changed = False

        def visit(context: str, protected: bool, value: str) -> str:
            nonlocal changed
            plain = self._reveal_value(context, protected, value)
            changed = changed or plain is not value
            return plain

        revealed = self._walk(loads_stored(content), visit)
        return dumps(revealed) if changed else content

    def blinded(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The view indexed for search: protected values (plain or encrypted) replaced by their blind index."""

        def visit(context: str, protected: bool, value: str) -> str:
            if not (protected or is_token(value)):
                return value
            plain = self.keyring.decrypt(value, context) if is_token(value) else value
            return self.blind_identifier(plain) if context == IDENTIFIER_CONTEXT else self.blind_phone(plain)

        return self._walk(resource, visit)

    def reencrypt_bytes(self, content: bytes) -> bytes | None:
        """Stored JSON with values under an old key re-encrypted under the active key; None if none is old."""
        if _TOKEN_MARK not in content:
            return None
        active = self.keyring.active
        changed = False

        def visit(context: str, protected: bool, value: str) -> str:
            nonlocal changed
            if not is_token(value) or key_id_of(value) == active:
                return value
            changed = True
            return self.keyring.encrypt(self.keyring.decrypt(value, context), context)

        rewritten = self._walk(loads_stored(content), visit)
        return dumps(rewritten) if changed else None

    # -- the walk ------------------------------------------------------------------------

    def _reveal_value(self, context: str, protected: bool, value: str) -> str:
        return self.keyring.decrypt(value, context) if is_token(value) else value

    def _walk(self, node: Any, visit: _Visit) -> Any:
        """A copy of ``node`` with each Identifier / ContactPoint value replaced by ``visit``.

        ``visit`` sees every string ``value`` of an Identifier and of a ContactPoint, with
        ``protected`` telling whether the rules protect it (citizen ID; phone or sms).
        """
        if isinstance(node, dict):
            copy: dict[str, Any] = {}
            for key, value in node.items():
                if key in _IDENTIFIER_KEYS:
                    copy[key] = self._each(value, visit, self._identifier)
                elif key in _CONTACT_POINT_KEYS:
                    copy[key] = self._each(value, visit, self._contact_point)
                else:
                    copy[key] = self._walk(value, visit)
            return copy
        if isinstance(node, list):
            return [self._walk(item, visit) for item in node]
        return node

    def _each(self, value: Any, visit: _Visit, one: Callable[[Any, _Visit], Any]) -> Any:
        if isinstance(value, list):
            return [one(item, visit) for item in value]
        return one(value, visit)

    def _identifier(self, identifier: Any, visit: _Visit) -> Any:
        copy = self._walk(identifier, visit)  # Identifier.assigner may hold an identifier too
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            copy["value"] = visit(IDENTIFIER_CONTEXT, self.is_citizen_id(identifier), identifier["value"])
        return copy

    def _contact_point(self, contact_point: Any, visit: _Visit) -> Any:
        copy = self._walk(contact_point, visit)
        if isinstance(contact_point, dict) and isinstance(contact_point.get("value"), str):
            system = contact_point.get("system")
            protected = isinstance(system, str) and system in PHONE_SYSTEMS
            copy["value"] = visit(TELECOM_CONTEXT, protected, contact_point["value"])
        return copy


def blind_criteria(criteria: tuple[Criterion, ...], protector: PersonalDataProtector) -> tuple[Criterion, ...]:
    """Search criteria with searched ID and phone numbers as they are indexed (blinded).

    A value under a citizen-ID system or the ``phone``/``sms`` system is replaced by its
    blind index; a value that looks like an ID number (under any system: the identifier may
    be marked by its WS 364 type alone) or, without a system, like a phone number gets its
    blind index added as an alternative (the plain value still finds an unprotected one).
    """
    return tuple(_blind(criterion, protector) for criterion in criteria)


def _blind(criterion: Criterion, protector: PersonalDataProtector) -> Criterion:
    if isinstance(criterion, TokenCriterion):
        values: list[tuple[str | None, str | None]] = []
        for system, code in criterion.values:
            if code is None:
                values.append((system, code))
            elif system is not None and protector.is_citizen_id_system(system):
                values.append((system, protector.blind_identifier(code)))
            elif system in PHONE_SYSTEMS:
                values.append((system, protector.blind_phone(code)))
            else:  # any other system: an ID number may be marked by its document type alone
                values.append((system, code))
                if looks_like_citizen_id(code):
                    values.append((system, protector.blind_identifier(code)))
                if system in (None, "") and looks_like_phone(code):
                    values.append((system, protector.blind_phone(code)))
        return TokenCriterion(criterion.param, tuple(values), criterion.negate)
    if isinstance(criterion, ChainCriterion):
        return ChainCriterion(criterion.param, criterion.target_type, blind_criteria(criterion.criteria, protector))
    if isinstance(criterion, HasCriterion):
        return HasCriterion(criterion.source_type, criterion.param, blind_criteria(criterion.criteria, protector))
    if isinstance(criterion, AnyOf):
        return AnyOf(blind_criteria(criterion.alternatives, protector))
    if isinstance(criterion, AllOf):
        return AllOf(blind_criteria(criterion.criteria, protector))
    return criterion

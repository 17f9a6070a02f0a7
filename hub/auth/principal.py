"""The principal of a request: the client a valid access token names, with its role and reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hub.auth.roles import ROLE_PERMISSIONS, Permission, Role
from hub.auth.scopes import Grants
from hub.errors import Forbidden
from hub.fhir.access import Access


@dataclass(frozen=True)
class Principal:
    """Who is calling: a registered client, its role, granted scopes and institutional reach."""

    client_id: str
    role: Role
    grants: Grants = field(default_factory=dict)
    #: Organization ids the client is bound to (its own data), empty: not bound.
    institutions: frozenset[str] = frozenset()
    #: Consortium (or region) Organization ids limiting what it reads, empty: not limited.
    consortia: frozenset[str] = frozenset()

    @property
    def bound(self) -> bool:
        """True when the client sees only some institutions' patient data."""
        return bool(self.institutions or self.consortia)

    def can(self, permission: Permission) -> bool:
        """Does the role include ``permission``?"""
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        """Raise :class:`Forbidden` unless the role includes ``permission``."""
        if not self.can(permission):
            raise Forbidden(f"The role '{self.role}' may not {permission.value.replace('-', ' ')}")

    def access(self, reach: frozenset[str] | None, writable: frozenset[str] = frozenset()) -> Access:
        """Its FHIR access: ``reach`` the institutions it reads (its own and those under its
        consortia), ``writable`` those whose patient data it changes (its own and their branches)."""
        return Access(self.client_id, self.grants, reach if self.bound else None, self.institutions, writable)

    def resolved_access(self, reach: Callable[[frozenset[str], frozenset[str]], tuple[frozenset[str], ...]]) -> Access:
        """Its FHIR access, its institutions and consortia resolved by ``reach`` (the Organization ids
        under each set: :meth:`hub.store.database.Database.reach`)."""
        if not self.bound:
            return self.access(None)
        readable, writable = reach(self.institutions | self.consortia, self.institutions)
        return self.access(readable, writable)

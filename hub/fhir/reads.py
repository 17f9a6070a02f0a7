"""The reading FHIR interactions: read, vread, search (type, system, compartment), $everything, history.

Each checks the principal's :class:`~hub.fhir.access.Access` first; the repository it reads
through already hides what the principal's institutions may not see.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hub.errors import Forbidden, Gone, InvalidRequest, NotFound
from hub.fhir.access import Access, nested_types, patient_data_types
from hub.fhir.bundles import history_bundle
from hub.fhir.compartments import everything_criteria, patient_compartment
from hub.fhir.criteria import CompartmentCriterion, Criterion
from hub.fhir.instants import parse_instant
from hub.fhir.protected import PersonalDataProtector, blind_criteria
from hub.fhir.repository import FhirRepository, HistorySpec, SearchSpec, StoredResource
from hub.fhir.resource_types import require_id, require_type, resource_types
from hub.fhir.search import parse_paging, parse_search
from hub.fhir.search_params import SearchRegistry
from hub.fhir.searching import SearchPage, included_resources, searchset_bundle
from hub.privacy import clip


@dataclass(frozen=True)
class Outcome:
    """What an interaction produced, before it is rendered for HTTP or a bundle entry."""

    status: int
    #: The stored version the interaction read or wrote.
    resource: StoredResource | None = None
    #: A body that is not a stored resource (a Bundle, an OperationOutcome).
    body: dict[str, Any] | None = None
    #: A human-readable note (rendered as an informational OperationOutcome).
    message: str | None = None


class ReadInteractions:
    """The reads of :class:`hub.fhir.service.FhirService` (which sets these attributes)."""

    repository: FhirRepository
    access: Access
    protector: PersonalDataProtector | None
    default_page_size: int
    max_page_size: int
    #: The search parameters in force (a property of the service).
    registry: SearchRegistry

    def _current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        require_id(resource_id)
        return self.repository.read_current(resource_type, resource_id)

    def read(self, resource_type: str, resource_id: str) -> Outcome:
        """``GET [type]/[id]``: 404 if never existed, 410 if deleted."""
        require_type(resource_type)
        self.access.require(resource_type, "r")
        current = self._current(resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if current.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted (version {current.version_id})")
        return Outcome(200, current)

    def vread(self, resource_type: str, resource_id: str, version: str) -> Outcome:
        """``GET [type]/[id]/_history/[vid]``."""
        require_type(resource_type)
        self.access.require(resource_type, "r")
        require_id(resource_id)
        if not (version.isascii() and version.isdigit()) or not 1 <= int(version) < 2**31:
            raise NotFound(f"Version '{clip(version, 20)}' of {resource_type}/{resource_id} is not known")
        stored = self.repository.read_version(resource_type, resource_id, int(version))
        if stored is None:
            raise NotFound(f"Version {version} of {resource_type}/{resource_id} is not known")
        if stored.deleted:
            raise Gone(f"Version {version} of {resource_type}/{resource_id} is a deletion")
        return Outcome(200, stored)

    def search(
        self, resource_type: str | None, params: list[tuple[str, str]], base_url: str, *, lenient: bool = False
    ) -> Outcome:
        """``GET [type]?…`` (or, with ``resource_type`` None, ``GET [base]?_type=…``): a searchset Bundle."""
        if resource_type is not None:
            require_type(resource_type)
            self.access.require(resource_type, "s")
        return self._search(resource_type, params, base_url, resource_type or "", lenient)

    def compartment_search(
        self, patient_id: str, resource_type: str, params: list[tuple[str, str]], base_url: str,
        *, lenient: bool = False,
    ) -> Outcome:
        """``GET Patient/[id]/[type]?…``: a search within the patient's compartment."""
        require_type(resource_type)
        self.access.require(resource_type, "s")
        self._require_patient(patient_id)
        compartment = patient_compartment().get(resource_type)
        if compartment is None:
            raise InvalidRequest(f"{resource_type} is not in the Patient compartment")
        criterion = CompartmentCriterion("Patient", patient_id, ((resource_type, compartment),))
        return self._search(resource_type, params, base_url, f"Patient/{patient_id}/{resource_type}", lenient,
                            (criterion,))

    def everything(self, patient_id: str, params: list[tuple[str, str]], base_url: str) -> Outcome:
        """``Patient/[id]/$everything``: the patient and its compartment, paged (``_since``, ``_type``, ``_count``)."""
        self._require_patient(patient_id)
        if not self.access.every_type:
            readable = self.access.types_allowed(sorted(patient_data_types()), "s")
            params = [*params, ("_type", ",".join(readable) or "Patient")]
        extra, rest = everything_criteria(patient_id, params)
        return self._search(None, rest, base_url, f"Patient/{patient_id}/$everything", False, extra,
                            link_params=list(params))

    def _require_patient(self, patient_id: str) -> None:
        self.access.require("Patient", "r")
        current = self._current("Patient", patient_id)
        if current is None or current.deleted:
            raise NotFound(f"Patient/{patient_id} is not known")

    def _search(
        self,
        resource_type: str | None,
        params: list[tuple[str, str]],
        base_url: str,
        path: str,
        lenient: bool,
        extra: tuple[Criterion, ...] = (),
        link_params: list[tuple[str, str]] | None = None,
    ) -> Outcome:
        request = parse_search(
            resource_type, params, self.registry, default_count=self.default_page_size,
            max_count=self.max_page_size, base_url=base_url, lenient=lenient, extra=extra,
        )
        if link_params is not None:
            request = replace(request, params=tuple(p for p in link_params if p[0] not in ("_after", "_before")))
        request = replace(request, spec=self._permitted(self._blinded(request.spec)))
        for nested in sorted(nested_types(request.spec.criteria)):
            self.access.require(nested, "s")  # a chain or _has searches that type too
        page = SearchPage(self.repository, request)
        matches, total = page.run()
        included = included_resources(self.repository, matches, request.includes) if request.includes else []
        included = [r for r in included if self.access.allows(r.resource_type, "r")]
        return Outcome(200, body=searchset_bundle(page, matches, included, total, base_url, path))

    def _permitted(self, spec: SearchSpec) -> SearchSpec:
        """A system-level search limited to the types the principal may search."""
        if spec.resource_type is not None or self.access.every_type:
            return spec
        asked = spec.types or tuple(sorted(resource_types()))
        allowed = self.access.types_allowed(asked, "s")
        if spec.types and len(allowed) != len(spec.types):
            refused = next(t for t in spec.types if t not in allowed)
            self.access.require(refused, "s")
        if not allowed:
            raise Forbidden("The access token allows searching no resource type")
        return replace(spec, types=tuple(allowed))

    def _blinded(self, spec: SearchSpec) -> SearchSpec:
        """Searched ID and phone numbers replaced by their blind index (how they are indexed)."""
        if self.protector is None:
            return spec
        return replace(spec, criteria=blind_criteria(spec.criteria, self.protector))

    def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        params: list[tuple[str, str]],
        base_url: str,
    ) -> Outcome:
        """System, type or instance ``_history`` (``_count``, ``_since``, ``_offset``)."""
        if resource_type is None:
            if not self.access.every_type:
                raise Forbidden("System history needs read access to every type (system/*.read)")
        else:
            require_type(resource_type)
            self.access.require(resource_type, "r")
        if resource_id is not None:
            require_id(resource_id)
            if self.repository.read_current(resource_type or "", resource_id) is None:
                raise NotFound(f"{resource_type}/{resource_id} is not known")
        paging = parse_paging(params, self.default_page_size, self.max_page_size)
        since = None
        for name, value in paging.rest:
            if name != "_since":
                raise InvalidRequest(
                    f"Parameter '{clip(name, 64)}' is not supported by _history (use _count, _since, _offset)"
                )
            since = parse_instant(name, value)
        kept = paging.kept + paging.rest
        spec = HistorySpec(resource_type, resource_id, since, paging.offset, paging.count)
        versions = self.repository.history(spec)
        total = self.repository.count_history(spec)
        path = "/".join(p for p in (resource_type, resource_id, "_history") if p)
        return Outcome(200, body=history_bundle(versions, total, spec, kept, path, base_url))

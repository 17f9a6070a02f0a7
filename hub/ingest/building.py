"""Turning a page of source rows into FHIR resources (no database): convert, check, map, build, sample-validate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.base import Adapter, CanonicalRecord, RecordProblem, SourceRow
from hub.coding.normalizer import Finding
from hub.fhir import jsonio
from hub.ingest.checks import Sampler, content_problem, record_problem
from hub.ingest.fhir_build import Resource, SourceContext, build_resources
from hub.ingest.mapping import Normalizer
from hub.privacy import clip, mask_text


@dataclass
class BuiltPage:
    """The resources of one page and its rejected rows."""

    kind: str
    rows: list[SourceRow]
    resources: list[tuple[str, str, Resource]] = field(default_factory=list)
    stored_keys: list[str] = field(default_factory=list)
    #: (source key, raw row, reason) of each row that goes to quarantine.
    rejected: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    validated: int = 0
    #: What the mapping tables could not answer on this page.
    findings: list[Finding] = field(default_factory=list)


class PageBuilder:
    """Converts, checks, maps and builds one page at a time for one source."""

    def __init__(self, adapter: Adapter, context: SourceContext, normalizer: Normalizer,
                 validate_every: int = 1000) -> None:
        self.adapter = adapter
        self.context = context
        self.normalizer = normalizer
        self.sampler = Sampler(validate_every)

    def build(self, kind: str, rows: list[SourceRow]) -> BuiltPage:
        """The page's resources, and the rows that go to quarantine with their reasons."""
        page = BuiltPage(kind, rows)
        before = self.sampler.validated
        for row in rows:
            built, reason = self._build(row)
            if reason is not None:
                page.rejected.append((row.key, dict(row.raw), clip(mask_text(reason), 500)))
                continue
            page.resources.extend(built)
            page.stored_keys.append(row.key)
        page.validated = self.sampler.validated - before
        page.findings = self.normalizer.drain()
        return page

    def _build(self, row: SourceRow) -> tuple[list[tuple[str, str, Resource]], str | None]:
        """The resources of one row, or the reason it goes to quarantine."""
        try:
            record: CanonicalRecord = self.adapter.convert(row)
        except RecordProblem as problem:
            return [], problem.reason
        except Exception as exc:  # noqa: BLE001 - a profile hook's bug quarantines the row, not the run
            return [], f"the adapter failed on this row ({type(exc).__name__})"
        problem = record_problem(record)
        if problem is not None:
            return [], problem
        built = []
        for resource_type, resource_id, resource in build_resources(record, self.context):
            try:
                resource = self.normalizer.normalize(resource)
            except Exception as exc:  # noqa: BLE001 - a value the mapping cannot handle quarantines the row
                return [], f"the code mapping failed on this row ({type(exc).__name__})"
            content = jsonio.dumps(resource)
            problem = content_problem(content) or self.sampler.problem(resource)
            if problem is not None:
                return [], problem
            built.append((resource_type, resource_id, resource))
        return built, None

"""Running a parsed search: one page, its total, its includes and the searchset Bundle.

Paging never uses OFFSET over a moving table by default: without ``_sort`` the pages
follow the store's key (``_after``/``_before`` cursors); with ``_sort`` (or an explicit
``_offset``) they are offsets within a snapshot (``_bound``: resources stored after the
first page are left out). Either way a page stays right while new resources arrive.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from hub.fhir.bundles import bundle_skeleton
from hub.fhir.jsonio import Fragment
from hub.fhir.repository import FhirRepository, StoredResource
from hub.fhir.search import Include, SearchRequest
from hub.fhir.subsetting import subset

#: At most this many resources are added by _include/_revinclude to one page.
MAX_INCLUDED = 1000
#: ``:iterate`` follows references at most this many rounds.
MAX_ITERATIONS = 3


def _link(base_url: str, path: str, params: list[tuple[str, str]]) -> str:
    return f"{base_url}/{path}" + (f"?{urlencode(params)}" if params else "")


class SearchPage:
    """One page of a search and what the Bundle says about it."""

    def __init__(self, repository: FhirRepository, request: SearchRequest) -> None:
        self.repository = repository
        self.request = request
        spec = request.spec
        self.keyset = not spec.sort and spec.offset == 0 and spec.bound is None
        if not self.keyset and spec.bound is None and spec.count > 0:
            spec = replace(spec, bound=repository.latest_key())
        self.spec = spec
        self.matches: list[StoredResource] = []
        self.more = False

    def run(self) -> tuple[list[StoredResource], int | None]:
        """Fetch the page (one row more than asked, to know whether there is a next page) and the total."""
        spec = self.spec
        request = self.request
        total: int | None = None
        if request.summary == "count" or spec.count == 0:
            return [], self.repository.count(replace(spec, bound=None))
        asked = replace(spec, count=spec.count + 1)
        if request.total == "none":
            rows = self.repository.search(asked)
        else:
            rows, total = self.repository.search_counted(asked)
        self.more = len(rows) > spec.count
        self.matches = rows[-spec.count:] if spec.before is not None else rows[: spec.count]
        return self.matches, total

    def links(self, base_url: str, path: str) -> list[dict[str, str]]:
        """``self``, ``next`` and ``previous`` links of this page."""
        spec, params = self.spec, list(self.request.params)
        links = [{"relation": "self", "url": _link(base_url, path, params + self._cursor(spec.after, spec.before))}]
        if spec.count == 0 or not self.matches and not (spec.before or spec.offset):
            return links
        if self.keyset:
            has_next = self.more if spec.before is None else True
            has_previous = spec.after is not None or (spec.before is not None and self.more)
            if has_next and self.matches:
                links.append({"relation": "next", "url": _link(base_url, path, params + self._cursor(
                    self.matches[-1].pk, None))})
            if has_previous and self.matches:
                links.append({"relation": "previous", "url": _link(base_url, path, params + self._cursor(
                    None, self.matches[0].pk))})
            return links
        snapshot = [("_bound", str(spec.bound))] if spec.bound is not None else []
        if self.more:
            links.append({"relation": "next", "url": _link(
                base_url, path, params + [("_offset", str(spec.offset + spec.count))] + snapshot)})
        if spec.offset > 0:
            links.append({"relation": "previous", "url": _link(
                base_url, path, params + [("_offset", str(max(0, spec.offset - spec.count)))] + snapshot)})
        links[0]["url"] = _link(base_url, path, params + ([("_offset", str(spec.offset))] if spec.offset else [])
                                + snapshot)
        return links

    @staticmethod
    def _cursor(after: int | None, before: int | None) -> list[tuple[str, str]]:
        if after is not None:
            return [("_after", str(after))]
        if before is not None:
            return [("_before", str(before))]
        return []


def included_resources(
    repository: FhirRepository, matches: list[StoredResource], includes: tuple[Include, ...]
) -> list[StoredResource]:
    """The resources ``_include``/``_revinclude`` add to a page (each once, never a match again)."""
    seen = {(m.resource_type, m.id) for m in matches}
    added: list[StoredResource] = []
    current = matches
    for round_number in range(MAX_ITERATIONS + 1):
        wanted = [i for i in includes if i.iterate or round_number == 0]
        if not wanted or not current:
            break
        found: list[StoredResource] = []
        forward = [(i.source_type, i.param, i.target_type) for i in wanted if not i.reverse]
        sources = [r.pk for r in current if any(s in ("*", r.resource_type) for s, _p, _t in forward)]
        if forward and sources:
            found.extend(repository.referenced(sources, forward, MAX_INCLUDED))
        targets = [(r.resource_type, r.id) for r in current]
        for include in (i for i in wanted if i.reverse):
            found.extend(repository.referring(targets, include.source_type, include.param, MAX_INCLUDED))
        fresh = []
        for resource in found:
            key = (resource.resource_type, resource.id)
            if key not in seen and len(added) < MAX_INCLUDED:
                seen.add(key)
                fresh.append(resource)
                added.append(resource)
        current = fresh
    return added


def searchset_bundle(
    page: SearchPage,
    matches: list[StoredResource],
    included: list[StoredResource],
    total: int | None,
    base_url: str,
    path: str,
) -> dict[str, Any]:
    """A ``searchset`` Bundle of ``matches`` then ``included``, stored bytes embedded as they are."""
    request = page.request
    bundle = bundle_skeleton("searchset")
    if total is not None:
        bundle["total"] = total
    bundle["link"] = page.links(base_url, path)
    entries = []
    for mode, resources in (("match", matches), ("include", included)):
        elements = request.elements if mode == "match" else None
        for stored in resources:
            content = stored.content or b"{}"
            if request.summary not in (None, "false", "count") or elements is not None:
                content = subset(content, request.summary, elements)
            entries.append({
                "fullUrl": f"{base_url}/{stored.resource_type}/{stored.id}",
                "resource": Fragment(content),
                "search": {"mode": mode},
            })
    if request.ignored:
        entries.append({"resource": _ignored_outcome(request.ignored), "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return bundle


def _ignored_outcome(names: tuple[str, ...]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "warning", "code": "not-supported",
                   "diagnostics": f"Search parameter '{name}' is not known and was ignored (handling=lenient)"}
                  for name in names],
    }

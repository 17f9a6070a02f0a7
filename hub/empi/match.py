"""``Patient/$match`` (FHIR R4): the regional persons a Patient resource may be, graded and scored.

The resource is compared as a source record would be (same normalization, blocking and rules);
nothing is stored. Each candidate person comes back as its golden Patient with ``search.score``
(a match probability: 0.5 at the review threshold, 0.95 at the auto-link threshold) and the
``match-grade`` extension: certain (same valid ID number), probable (auto-link score), possible
(review range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.empi.engine import Engine
from hub.empi.features import features_of
from hub.empi.scoring import NO_MATCH, Comparison
from hub.fhir.repository import StoredResource

#: Largest ``count`` honoured.
MAX_COUNT = 100


@dataclass(frozen=True)
class MatchResult:
    """One candidate person."""

    golden: StoredResource
    probability: float
    grade: str
    comparison: Comparison


def match_patient(engine: Engine, resource: dict[str, Any], *, count: int | None = None,
                  only_certain: bool = False) -> list[MatchResult]:
    """The candidate persons of a (validated) Patient resource, best first.

    With ``only_certain``, at most one result: the single person linked automatically, or none when
    there are several or none (R4: "the match should not return the results").
    """
    limit = min(max(count or 10, 1), MAX_COUNT)
    with engine.database.empi_batch(write=False) as (service, store):
        matcher = engine.matcher(service, store, write=False)
        features = features_of(resource, engine.database.protector)
        candidates = [c for c in matcher.candidates(features) if c.comparison.decision != NO_MATCH]
        if only_certain:
            candidates = [c for c in candidates if c.comparison.decision == "auto-link"]
            candidates = candidates if len(candidates) == 1 else []
        persons = store.persons(c.person_id for c in candidates)
        active = [c for c in candidates if c.person_id in persons and persons[c.person_id].status == "active"]
        goldens = service.repository.read_current_many([("Patient", c.person_id) for c in active[:limit]])
        results = []
        for candidate in active[:limit]:
            golden = goldens.get(("Patient", candidate.person_id))
            if golden is None or golden.deleted or golden.content is None:
                continue  # the golden record of a person placed in this instant is written with it
            results.append(MatchResult(golden, engine.rules.probability(candidate.comparison.score)
                                       if not candidate.comparison.deterministic else 1.0,
                                       candidate.comparison.grade, candidate.comparison))
        return results

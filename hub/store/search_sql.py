"""Search criteria → SQL (SQLAlchemy Core, the same statements on SQLite and PostgreSQL).

Every criterion becomes a condition on a ``hub_resource`` alias: an ``IN`` over the
index table of its type (uncorrelated, so both planners start from the index and not
from every resource of the type), ``NOT IN`` for ``:not``, a correlated ``EXISTS``
for ``:missing``. Chains nest the same conditions on another alias of
``hub_resource``; ``_has`` turns them around. The prefix rules are those of
:func:`hub.fhir.search_values.range_rule`, written as SQL.

The EMPI's links widen Patient targets (query-time, so a link change shows at once): a chain
through Patient (``Observation?patient.identifier=…``) matches what refers to any source Patient
of the same regional person, and a reference to a golden Patient (``subject=Patient/<person>``,
its compartment, ``$everything``) matches what refers to any of its sources. A reference to a
source Patient stays exact.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, not_, or_, select, union, union_all
from sqlalchemy.sql.expression import FromClause

from hub.fhir.criteria import (
    AllOf,
    AnyOf,
    ChainCriterion,
    CompartmentCriterion,
    Criterion,
    DateCriterion,
    HasCriterion,
    IdCriterion,
    LastUpdatedCriterion,
    MemberCriterion,
    MissingCriterion,
    NumberCriterion,
    RangeValue,
    ReferenceCriterion,
    RefersCriterion,
    SortKey,
    StringCriterion,
    TokenCriterion,
    UriCriterion,
)
from hub.fhir.search_values import micros_to_datetime, normalize_string, prefix_upper_bound, range_rule
from hub.store.service_tables import export_member
from hub.store.tables import (
    INDEX_TABLES,
    date_index,
    empi_record,
    number_index,
    reference_index,
    resource,
    string_index,
    token_index,
    uri_index,
)


@lru_cache(maxsize=65536)
def token_hash(*parts: str) -> int:
    """A signed 64-bit hash of ``parts`` (stable across processes and databases).

    Cached: the same codes, categories and tags recur in nearly every resource of a load."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def token_scope(resource_type: str, param: str) -> str:
    """The type part of a token hash: ``*`` for the common ``_tag``-style parameters of every type."""
    return "*" if param.startswith("_") else resource_type


def _range(low: Any, high: Any, value: RangeValue, exact: float | None = None) -> ColumnElement[bool]:
    """SQL of :func:`hub.fhir.search_values.range_rule` on columns ``low``/``high``."""
    return _compare(low, high, value.prefix, value.low, value.high, exact)


def _compare(low: Any, high: Any, prefix: str, start: Any, end: Any, exact: Any = None) -> ColumnElement[bool]:
    """Stored [low, high] against searched [start, end] by ``prefix``, as SQL (:func:`range_rule`)."""
    result: ColumnElement[bool] = range_rule(prefix, low, high, start, end, exact, both=and_, either=or_)
    return result


def _probe(query: Any) -> ColumnElement[bool]:
    """``EXISTS (query OFFSET 0)``: an OFFSET keeps PostgreSQL from pulling the probe up into a (merge or
    hash) semi-join over the whole table (it drops a bare LIMIT), so each candidate row costs one index
    lookup, and a page that starts far into a type does not rescan the index from its start."""
    return exists(query.limit(1).offset(0))


def _in_member_set(member_set: str, column: Any) -> ColumnElement[bool]:
    """``column`` (an id) is in the member set (a probe of its primary key)."""
    return _probe(select(literal(1)).where(export_member.c.job_id == member_set,
                                           export_member.c.patient_id == column))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _uri_parents(value: str) -> list[str]:
    """``value`` and each of its parents by path segment (for ``:above``)."""
    head, sep, path = value.partition("://")
    if not sep:
        return [value]
    segments = path.split("/")
    return [f"{head}://{'/'.join(segments[: i + 1])}" for i in range(len(segments))]


def _selectivity_rank(criterion: Criterion) -> int:
    """A guess at how few rows a criterion matches (lowest first): references and tokens are exact."""
    if isinstance(criterion, ReferenceCriterion):
        return 0
    if isinstance(criterion, TokenCriterion) and not criterion.negate:
        return 1
    if isinstance(criterion, (ChainCriterion, StringCriterion, UriCriterion)):
        return 2
    if isinstance(criterion, (DateCriterion, NumberCriterion)):
        return 3
    return 4


class SearchSql:
    """Builds the conditions of one search (one database dialect)."""

    def __init__(self, *, probe_after_first: bool = False) -> None:
        #: SQLite reads every ``IN (subquery)`` into a list: only the most selective criterion
        #: is written that way, the others as probes of the candidates (correlated EXISTS).
        self.probe_after_first = probe_after_first

    def conditions(
        self,
        criteria: tuple[Criterion, ...],
        alias: FromClause,
        resource_type: str | None,
        key: Any = None,
        *,
        driven: bool = False,
    ) -> list[ColumnElement[bool]]:
        """The SQL conditions on ``alias`` (a ``hub_resource``) for ``criteria``, all to hold.

        ``key`` is the column holding the resource key that index criteria test (default
        ``alias.res_pk``; an index table's ``res_pk`` lets the planner test them before
        reading the resource). ``driven``: the rows come from elsewhere (a sort index read
        in order), so on SQLite every criterion probes them.
        """
        if not self.probe_after_first or resource_type is None or (len(criteria) < 2 and not driven):
            return [self.condition(c, alias, resource_type, key) for c in criteria]
        ordered = sorted(criteria, key=_selectivity_rank)
        pk = alias.c.res_pk if key is None else key
        out = [] if driven else [self.condition(ordered[0], alias, resource_type, key)]
        for criterion in ordered if driven else ordered[1:]:
            keys = self.key_query(criterion, resource_type)
            if keys is None:
                out.append(self.condition(criterion, alias, resource_type, key))
            else:
                table_key = keys.selected_columns[0]
                out.append(keys.where(table_key == pk).exists())
        return out

    def key_query(self, criterion: Criterion, resource_type: str) -> Any | None:
        """The keys of the resources of ``resource_type`` matching ``criterion``, read from one index table alone.

        None when the criterion needs the resource row (ids, dates of change, negations,
        chains). Index rows exist only for current, non-deleted versions.
        """
        if isinstance(criterion, TokenCriterion):
            if criterion.negate:
                return None
            query = select(token_index.c.res_pk).where(or_(*self._token_hashes(criterion, resource_type)))
            if token_scope(resource_type, criterion.param) == "*":
                query = query.where(token_index.c.resource_type == resource_type)
            return query
        if isinstance(criterion, (StringCriterion, DateCriterion, NumberCriterion, UriCriterion, ReferenceCriterion)):
            table, matches = self._index_match(criterion)
            return select(table.c.res_pk).where(
                table.c.resource_type == resource_type, table.c.param == criterion.param, matches
            )
        return None

    def condition(
        self, criterion: Criterion, alias: FromClause, resource_type: str | None, key: Any = None
    ) -> ColumnElement[bool]:
        """The SQL condition of one criterion."""
        pk = alias.c.res_pk if key is None else key
        if isinstance(criterion, IdCriterion):
            found = alias.c.res_id.in_(criterion.ids)
            return not_(found) if criterion.negate else found
        if isinstance(criterion, LastUpdatedCriterion):
            column = alias.c.last_updated
            return or_(*(self._last_updated(column, v) for v in criterion.values))
        if isinstance(criterion, TokenCriterion):
            rows = select(token_index.c.res_pk).where(or_(*self._token_hashes(criterion, resource_type)))
            return pk.not_in(rows) if criterion.negate else pk.in_(rows)
        if isinstance(criterion, AnyOf):
            return or_(*(self.condition(c, alias, resource_type, key) for c in criterion.alternatives))
        if isinstance(criterion, AllOf):
            return and_(*(self.condition(c, alias, resource_type, key) for c in criterion.criteria))
        if isinstance(criterion, MissingCriterion):
            table = INDEX_TABLES[criterion.table]
            present = exists().where(table.c.res_pk == pk, table.c.param == criterion.param)
            return not_(present) if criterion.missing else present
        if isinstance(criterion, ChainCriterion):
            return pk.in_(self._chain(criterion, resource_type))
        if isinstance(criterion, HasCriterion):
            return alias.c.res_id.in_(self._has(criterion, resource_type))
        if isinstance(criterion, RefersCriterion) and criterion.member_set is not None and criterion.few_members:
            ref = reference_index.alias("refers")
            members = select(export_member.c.patient_id).where(export_member.c.job_id == criterion.member_set)
            return pk.in_(select(ref.c.res_pk).where(
                ref.c.target_id.in_(members), ref.c.target_type == criterion.target_type,
                ref.c.param.in_(criterion.params), *((ref.c.resource_type == resource_type,) if resource_type else ())))
        if isinstance(criterion, RefersCriterion):
            ref = reference_index.alias("refers")
            refers = [ref.c.res_pk == pk, ref.c.param.in_(criterion.params), ref.c.target_type == criterion.target_type]
            if criterion.member_set is not None:
                refers.append(_in_member_set(criterion.member_set, ref.c.target_id))
            return _probe(select(literal(1)).select_from(ref).where(*refers))
        if isinstance(criterion, MemberCriterion):
            return _in_member_set(criterion.member_set, alias.c.res_id)
        if isinstance(criterion, CompartmentCriterion):
            members = pk.in_(self._compartment(criterion, resource_type))
            if not criterion.include_self:
                return members
            own = alias.c.res_id == criterion.target_id
            if criterion.target_type == "Patient":  # a golden Patient's compartment holds its sources too
                own = or_(own, alias.c.res_id.in_(
                    select(empi_record.c.patient_id).where(empi_record.c.person_id == criterion.target_id)))
            return or_(members, and_(alias.c.resource_type == criterion.target_type, own))
        table, matches = self._index_match(criterion)
        query = select(table.c.res_pk).where(table.c.param == criterion.param, matches)
        if resource_type is not None:
            query = query.where(table.c.resource_type == resource_type)
        return pk.in_(query)

    def _token_hashes(self, criterion: TokenCriterion, resource_type: str | None) -> list[ColumnElement[bool]]:
        scope = token_scope(resource_type or "*", criterion.param)
        out = []
        for system, code in criterion.values:
            if system is None:
                out.append(token_index.c.hash_value == token_hash(scope, criterion.param, code or ""))
            elif code is None:
                out.append(token_index.c.hash_sys == token_hash(scope, criterion.param, system))
            else:
                out.append(token_index.c.hash_sys_value == token_hash(scope, criterion.param, system, code))
        return out

    def _index_match(self, criterion: Criterion) -> tuple[Any, ColumnElement[bool]]:
        if isinstance(criterion, StringCriterion):
            column = string_index.c.value_norm
            if criterion.mode == "exact":
                return string_index, or_(*(and_(column == normalize_string(v), string_index.c.value_exact == v)
                                           for v in criterion.values))
            if criterion.mode == "contains":
                return string_index, or_(*(column.like(f"%{_like_escape(v)}%", escape="\\")
                                           for v in criterion.values))
            return string_index, or_(*(and_(column >= v, column < prefix_upper_bound(v)) for v in criterion.values))
        if isinstance(criterion, DateCriterion):
            combine = and_ if criterion.all_of else or_
            return date_index, combine(*(_range(date_index.c.low, date_index.c.high, v) for v in criterion.values))
        if isinstance(criterion, NumberCriterion):
            alternatives = []
            for value in criterion.values:
                condition = _range(number_index.c.low, number_index.c.high, value, exact=value.value)
                if value.system is not None:
                    condition = and_(condition, number_index.c.system == value.system)
                if value.code is not None:
                    condition = and_(condition, number_index.c.code == value.code)
                alternatives.append(condition)
            return number_index, (and_ if criterion.all_of else or_)(*alternatives)
        if isinstance(criterion, UriCriterion):
            column = uri_index.c.value
            if criterion.mode == "below":
                return uri_index, or_(*(and_(column >= v, column < prefix_upper_bound(v)) for v in criterion.values))
            if criterion.mode == "above":
                return uri_index, column.in_([p for v in criterion.values for p in _uri_parents(v)])
            return uri_index, column.in_(criterion.values)
        if isinstance(criterion, ReferenceCriterion):
            return reference_index, or_(*(self._reference(criterion, v) for v in criterion.values))
        raise TypeError(f"unknown criterion {type(criterion).__name__}")

    def _reference(self, criterion: ReferenceCriterion, value: Any) -> ColumnElement[bool]:
        ref = reference_index.c
        if value.url is not None:
            return ref.url == value.url
        if value.target_type is not None:
            return and_(self._target(value.target_type, value.target_id), ref.target_type == value.target_type)
        if criterion.targets:
            target = self._target("Patient" if "Patient" in criterion.targets else "", value.target_id)
            return and_(target, ref.target_type.in_(criterion.targets))
        return and_(self._target("Patient", value.target_id), ref.target_type != "")

    @staticmethod
    def _target(target_type: str, target_id: str) -> ColumnElement[bool]:
        """``target_id`` is the id, or (for a Patient) a source Patient of the golden Patient with that id."""
        ref = reference_index.c
        if target_type != "Patient":
            return ref.target_id == target_id
        sources = select(empi_record.c.patient_id).where(empi_record.c.person_id == target_id)
        return ref.target_id.in_(union_all(select(literal(target_id)), sources))

    @staticmethod
    def _same_person(patient_ids: Any) -> Any:
        """The Patient ids of ``patient_ids`` and of every Patient of the same regional person."""
        linked = empi_record.alias("linked")
        persons = union(select(linked.c.person_id).where(linked.c.patient_id.in_(patient_ids)), patient_ids)
        members = select(empi_record.c.patient_id).where(empi_record.c.person_id.in_(persons))
        return union(patient_ids, members)

    def _last_updated(self, column: Any, value: RangeValue) -> ColumnElement[bool]:
        start, end = micros_to_datetime(int(value.low)), micros_to_datetime(int(value.high))
        return _compare(column, column, value.prefix, start, end)

    def _matching(self, resource_type: str, criteria: tuple[Criterion, ...], column: str) -> Any:
        """``column`` (``res_id`` or ``res_pk``) of the current ``resource_type`` resources matching ``criteria``."""
        other = resource.alias()
        return select(other.c[column]).where(
            other.c.resource_type == resource_type,
            other.c.deleted.is_(False),
            *self.conditions(criteria, other, resource_type),
        )

    def _chain(self, criterion: ChainCriterion, resource_type: str | None) -> Any:
        targets = self._matching(criterion.target_type, criterion.criteria, "res_id")
        if criterion.target_type == "Patient":
            targets = self._same_person(targets)
        ref = reference_index.c
        query = select(ref.res_pk).where(
            ref.param == criterion.param, ref.target_type == criterion.target_type, ref.target_id.in_(targets)
        )
        return query.where(ref.resource_type == resource_type) if resource_type else query

    def _has(self, criterion: HasCriterion, resource_type: str | None) -> Any:
        sources = self._matching(criterion.source_type, criterion.criteria, "res_pk")
        ref = reference_index.c
        query = select(ref.target_id).where(
            ref.resource_type == criterion.source_type, ref.param == criterion.param, ref.res_pk.in_(sources)
        )
        return query.where(ref.target_type == resource_type) if resource_type else query

    def _compartment(self, criterion: CompartmentCriterion, resource_type: str | None) -> Any:
        ref = reference_index.c
        per_type = [
            and_(ref.resource_type == source_type, ref.param.in_(params))
            for source_type, params in criterion.params
            if resource_type is None or source_type == resource_type
        ]
        return select(ref.res_pk).where(
            self._target(criterion.target_type, criterion.target_id),
            ref.target_type == criterion.target_type,
            or_(*per_type) if per_type else false(),
        )

    def sort_columns(self, keys: tuple[SortKey, ...], alias: FromClause) -> list[Any]:
        """ORDER BY terms for ``_sort`` (missing values last), then storage order."""
        terms: list[Any] = []
        for key in keys:
            if key.table in ("_id", "_lastUpdated"):
                column = alias.c.res_id if key.table == "_id" else alias.c.last_updated
                terms.append(column.desc() if key.descending else column.asc())
                continue
            table = INDEX_TABLES[key.table]
            column = {"string": "value_norm", "token": "value", "uri": "value", "reference": "target_id"}.get(
                key.table, "high" if key.descending else "low")
            aggregate = func.max if key.descending else func.min
            value = (
                select(aggregate(table.c[column]))
                .where(table.c.res_pk == alias.c.res_pk, table.c.param == key.param)
                .scalar_subquery()
            )
            terms.append(value.desc().nulls_last() if key.descending else value.asc().nulls_last())
        return terms


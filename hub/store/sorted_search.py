"""Searches sorted by one indexed value, read in the order of that value's index.

``Observation?code=…&_sort=-date`` may match a hundred thousand resources; sorting all
of them to return fifty costs a lookup each. Instead the date index is read in order
(newest first) and each row checked against the other criteria, which stops after a
page's worth of matches. A resource with several values appears first at its
smallest (ascending) or largest (descending) one, which is the FHIR sort value;
resources with no value come last, in storage order, as in the general query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, not_, select

from hub.fhir.criteria import SortKey
from hub.store.tables import INDEX_TABLES, resource

#: Index tables whose values sort by one column.
SORTABLE = {"date": ("low", "high"), "number": ("low", "high"), "string": ("value_norm", "value_norm")}


def index_sortable(sort: tuple[SortKey, ...], resource_type: str | None, before: int | None) -> bool:
    """Whether a search can be read in index order (one sort key on a date, number or string)."""
    return len(sort) == 1 and sort[0].table in SORTABLE and resource_type is not None and before is None


def search_index_sorted(
    connection: Connection,
    columns: tuple[Any, ...],
    conditions: Callable[[Any], list[ColumnElement[bool]]],
    key: SortKey,
    resource_type: str,
    offset: int,
    count: int,
) -> list[Any]:
    """Rows ``offset`` .. ``offset + count`` of the search in ``key`` order (then storage order).

    ``conditions(key_column)`` gives the search's conditions with index criteria testing
    ``key_column``: the sort index's own key, so they are checked before a resource is read.
    """
    table = INDEX_TABLES[key.table]
    ascending_column, descending_column = SORTABLE[key.table]
    value = table.c[descending_column if key.descending else ascending_column]
    ordered = (
        select(*columns)
        .select_from(table.join(resource, resource.c.res_pk == table.c.res_pk))
        .where(table.c.resource_type == resource_type, table.c.param == key.param, *conditions(table.c.res_pk))
        .order_by(value.desc() if key.descending else value.asc(), resource.c.res_pk)
    )
    wanted = offset + count
    limit = wanted + 16
    while True:
        rows = list(connection.execute(ordered.limit(limit)))
        distinct: dict[int, Any] = {}
        for row in rows:
            distinct.setdefault(row.res_pk, row)
        exhausted = len(rows) < limit
        if len(distinct) >= wanted or exhausted:
            break
        limit *= 4
    page = list(distinct.values())[offset:wanted]
    if len(page) < count and exhausted:
        has_value = exists().where(table.c.res_pk == resource.c.res_pk, table.c.param == key.param)
        missing = (
            select(*columns)
            .where(*conditions(None), not_(has_value))
            .order_by(resource.c.res_pk)
            .offset(max(0, offset - len(distinct)))
            .limit(count - len(page))
        )
        page.extend(connection.execute(missing))
    return page


def search_few_sorted(
    connection: Connection, columns: tuple[Any, ...], keys: Any, key: SortKey, offset: int, count: int
) -> list[Any]:
    """A sorted page of a one-criterion search with few matches: their sort values joined and ordered.

    ``keys`` selects the matching keys from the index alone; resources without a sort
    value come last (in storage order), as in every sorted search.
    """
    table = INDEX_TABLES[key.table]
    ascending_column, descending_column = SORTABLE[key.table]
    matched = keys.distinct().subquery()
    aggregate = func.max(table.c[descending_column]) if key.descending else func.min(table.c[ascending_column])
    value = aggregate.label("sort_value")
    page = (
        select(matched.c.res_pk, value)
        .select_from(matched.outerjoin(table, and_(table.c.res_pk == matched.c.res_pk, table.c.param == key.param)))
        .group_by(matched.c.res_pk)
        .order_by(value.desc().nulls_last() if key.descending else value.asc().nulls_last(), matched.c.res_pk)
        .offset(offset)
        .limit(count)
        .subquery()
    )
    query = (
        select(*columns)
        .join(page, page.c.res_pk == resource.c.res_pk)
        .order_by(page.c.sort_value.desc().nulls_last() if key.descending else page.c.sort_value.asc().nulls_last(),
                  resource.c.res_pk)
    )
    return list(connection.execute(query))

"""References inside resources: finding and rewriting them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def iter_references(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict holding a ``reference`` string, anywhere inside ``node``."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                yield item
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))

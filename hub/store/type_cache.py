"""A value computed from the stored resources of one type, computed again when any of them changed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hub.fhir.repository import FhirRepository

T = TypeVar("T")


class TypeCache(Generic[T]):
    """``load(repository)`` kept in memory, loaded again when the type's stamp moved (a write in any process)."""

    def __init__(self, resource_type: str, load: Callable[[FhirRepository], T], empty: T) -> None:
        self.resource_type = resource_type
        self.load = load
        self._lock = threading.Lock()
        self._stamp: Any = None
        self._value = empty

    def current(self, repository: FhirRepository) -> T:
        """The value as ``repository`` sees the type now (one indexed count when nothing changed)."""
        stamp = repository.type_stamp(self.resource_type)
        with self._lock:
            if stamp == self._stamp:
                return self._value
        value = self.load(repository)
        with self._lock:
            self._value, self._stamp = value, stamp
        return value

"""Operation parameters in and out: a query string or a ``Parameters`` body in, ``Parameters`` out.

FHIR operations take their inputs either as URL parameters (simple types) or as a
``Parameters`` resource (any type); :class:`OperationInput` reads both the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hub.errors import InvalidRequest
from hub.privacy import clip


class OperationInput:
    """The named inputs of one operation call."""

    def __init__(self, values: dict[str, list[Any]]) -> None:
        self._values = values

    @classmethod
    def from_query(cls, params: Iterable[tuple[str, str]]) -> "OperationInput":
        """Inputs given as URL parameters (``?system=…&code=…``)."""
        values: dict[str, list[Any]] = {}
        for name, value in params:
            values.setdefault(name, []).append(value)
        return cls(values)

    @classmethod
    def from_body(cls, body: Any, query: Iterable[tuple[str, str]] = ()) -> "OperationInput":
        """Inputs given as a ``Parameters`` resource (plus any URL parameters)."""
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise InvalidRequest("The operation's body must be a Parameters resource")
        values = cls.from_query(query)._values
        parts = body.get("parameter") or []
        if not isinstance(parts, list):
            raise InvalidRequest("Parameters.parameter must be a list")
        for part in parts:
            if not isinstance(part, dict) or not isinstance(part.get("name"), str):
                raise InvalidRequest("Each Parameters.parameter needs a name")
            value = next((part[k] for k in part if k.startswith("value")), part.get("resource"))
            values.setdefault(part["name"], []).append(value)
        return cls(values)

    def text(self, name: str) -> str | None:
        """A simple-typed input as text (the last one given)."""
        values = self._values.get(name)
        if not values:
            return None
        value = values[-1]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, str)):
            return str(value)
        raise InvalidRequest(f"Parameter '{name}' must be a simple value")

    def boolean(self, name: str, default: bool = False) -> bool:
        """A boolean input (``true``/``false``)."""
        value = self.text(name)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise InvalidRequest(f"Parameter '{name}' must be true or false, not '{clip(value, 40)}'")
        return value == "true"

    def integer(self, name: str, default: int, *, low: int = 0, high: int = 10_000) -> int:
        """A non-negative integer input, clamped to ``high``."""
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise InvalidRequest(f"Parameter '{name}' must be an integer, not '{clip(value, 40)}'") from None
        if number < low:
            raise InvalidRequest(f"Parameter '{name}' must be at least {low}")
        return min(number, high)

    def coding(self, name: str) -> dict[str, Any] | None:
        """A Coding input (only in a Parameters body)."""
        values = self._values.get(name)
        if not values:
            return None
        value = values[-1]
        if not isinstance(value, dict):
            raise InvalidRequest(f"Parameter '{name}' must be a Coding")
        return value

    def texts(self, name: str) -> list[str]:
        """Every value of a repeated simple input."""
        return [str(v) for v in self._values.get(name) or [] if isinstance(v, (str, int))]

    def resource(self, name: str) -> dict[str, Any] | None:
        """A resource input (only in a Parameters body)."""
        values = self._values.get(name)
        value = values[-1] if values else None
        return value if isinstance(value, dict) and "resourceType" in value else None

    def has(self, name: str) -> bool:
        """Whether the input was given."""
        return bool(self._values.get(name))


def parameters(*parts: tuple[str, Any] | dict[str, Any] | None) -> dict[str, Any]:
    """A ``Parameters`` resource: ``(name, value)`` pairs (type chosen by the value) or ready parts."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, dict):
            out.append(part)
            continue
        name, value = part
        if value is None:
            continue
        out.append({"name": name, **typed_value(value)})
    return {"resourceType": "Parameters", "parameter": out}


def typed_value(value: Any) -> dict[str, Any]:
    """``value[x]`` for a Python value: bool, int, str, a Coding or a resource."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, str):
        return {"valueString": value}
    if isinstance(value, dict) and "resourceType" in value:
        return {"resource": value}
    if isinstance(value, dict):
        return {"valueCoding": value}
    raise TypeError(f"no FHIR type for {type(value).__name__}")


def part(name: str, *parts: tuple[str, Any] | dict[str, Any] | None, **values: Any) -> dict[str, Any]:
    """One parameter with nested parts (``match``, ``property``, ``designation``)."""
    built: dict[str, Any] = {"name": name}
    for key, value in values.items():
        built[key] = value
    nested = parameters(*parts)["parameter"]
    if nested:
        built["part"] = nested
    return built


__all__ = ["OperationInput", "parameters", "part", "typed_value"]

"""Small validators that say where, what was expected and what came."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping


def preview(value: Any) -> str:
    """A bounded preview of a value: never formats more than a few items of a few levels
    (a huge or self-sharing value would otherwise be expanded whole)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = 50, 50, 40
    text = r.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def where(source: str | None, path: str) -> str:
    return f"{source}: {path}" if source else path


class Checker:
    """Raise :class:`InputDataError` messages prefixed with a source and a field path."""

    def __init__(self, source: str | None = None):
        self.source = source

    def fail(self, path: str, expected: str, got: Any = ..., *, show_got: bool = True) -> None:
        from metasel.errors import InputDataError

        msg = f"{where(self.source, path)}: expected {expected}"
        if show_got and got is not ...:
            msg += f", got {preview(got)}"
        raise InputDataError(msg)

    def mapping(self, value: Any, path: str) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(path, "a mapping", value)
        for k in value:
            if not isinstance(k, str):
                self.fail(path, "string keys", k)
        return value

    def known_keys(self, value: Mapping, path: str, allowed: Iterable[str]) -> None:
        from metasel.errors import InputDataError

        allowed = set(allowed)
        unknown = sorted(set(value) - allowed)
        if unknown:
            full = f"{path}.{unknown[0]}" if path else unknown[0]
            raise InputDataError(
                f"{where(self.source, full)}: unknown key; expected one of {sorted(allowed)}"
            )

    def required(self, value: Mapping, key: str, path: str) -> Any:
        from metasel.errors import InputDataError

        if key not in value or value[key] is None:
            full = f"{path}.{key}" if path else key
            raise InputDataError(f"{where(self.source, full)}: required field is missing")
        return value[key]

    def integer(self, value: Any, path: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and math.isfinite(value):
                value = int(value)
            else:
                self.fail(path, _int_word(minimum), value)
        if minimum is not None and value < minimum:
            self.fail(path, _int_word(minimum), value)
        if maximum is not None and value > maximum:
            self.fail(path, f"{_int_word(minimum)} of at most {maximum:,} (a plausible size)", value)
        return int(value)

    def number(
        self,
        value: Any,
        path: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        strict_min: bool = False,
    ) -> float:
        expected = "a finite number"
        if minimum is not None:
            expected += f" {'>' if strict_min else '>='} {minimum:g}"
        if maximum is not None:
            expected += f" <= {maximum:g}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, expected, value)
        value = float(value)
        if not math.isfinite(value):
            self.fail(path, expected, value)
        if minimum is not None and (value <= minimum if strict_min else value < minimum):
            self.fail(path, expected, value)
        if maximum is not None and value > maximum:
            self.fail(path, expected, value)
        return value

    def string(self, value: Any, path: str, *, choices: Iterable[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "a non-empty string" if choices is None else f"one of {sorted(choices)}", value)
        if choices is not None and value not in set(choices):
            self.fail(path, f"one of {sorted(choices)}", value)
        return value


def _int_word(minimum: int | None) -> str:
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    if minimum is None:
        return "an integer"
    return f"an integer >= {minimum}"

"""Typed reads of decoded JSON values: each names the JSON path of a value of the wrong type."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

T = TypeVar("T")
Reader = Callable[[Any, str], T]


class JsonShapeError(Exception):
    """A JSON value of the wrong type or out of range, at `field` (e.g. `pack_data.slots[0]`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def describe(value: Any) -> str:
    """The JSON type of `value` in words, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _wrong(path: str, wanted: str, value: Any) -> JsonShapeError:
    return JsonShapeError(path, f"expected {wanted}, got {describe(value)}")


def as_object(value: Any, path: str) -> dict[str, Any]:
    """`value` as a JSON object."""
    if not isinstance(value, dict):
        raise _wrong(path, "an object", value)
    return value


def as_list(value: Any, path: str) -> list[Any]:
    """`value` as a JSON list."""
    if not isinstance(value, list):
        raise _wrong(path, "a list", value)
    return value


def as_str(value: Any, path: str) -> str:
    """`value` as a string."""
    if not isinstance(value, str):
        raise _wrong(path, "a string", value)
    return value


def as_bool(value: Any, path: str) -> bool:
    """`value` as true or false."""
    if not isinstance(value, bool):
        raise _wrong(path, "true or false", value)
    return value


def as_int(value: Any, path: str) -> int:
    # bool is an int in Python but never a count in a pack; 25.0 is accepted as 25.
    """`value` as an integer."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(path, "an integer", value)
    if isinstance(value, float) and not value.is_integer():
        raise JsonShapeError(path, f"expected an integer, got {value}")
    return int(value)


def as_float(value: Any, path: str) -> float:
    """`value` as a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(path, "a number", value)
    return float(value)


def as_str_list(value: Any, path: str) -> list[str]:
    """`value` as a list of strings."""
    return [as_str(item, f"{path}[{index}]") for index, item in enumerate(as_list(value, path))]


def member_path(path: str, key: str) -> str:
    """The JSON path of `key` inside the object at `path` ("" for the top level)."""
    return f"{path}.{key}" if path else key


def refuse_unknown_keys(obj: dict[str, Any], known: Collection[str], path: str,
                        what: str) -> None:
    """Refuse a key of `obj` that is not in `known` (`what` names the object in the message):
    a misspelt key would otherwise be ignored and what it says silently lost."""
    for key in obj:
        if key not in known:
            raise JsonShapeError(member_path(path, key),
                                 f"unknown key {key!r}; {what} takes {', '.join(known)}")


def optional_member(obj: dict[str, Any], key: str, path: str, read: Reader[T], default: T) -> T:
    """`obj[key]` read with `read`, or `default` when the key is missing or null."""
    value = obj.get(key)
    if value is None:
        return default
    return read(value, member_path(path, key))


def optional_list(obj: dict[str, Any], key: str, path: str) -> list[Any]:
    """`obj[key]` as a list, or an empty list when the key is missing or null."""
    value = obj.get(key)
    return [] if value is None else as_list(value, f"{path}.{key}")

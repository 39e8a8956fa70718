"""The limits every service checks at its request edge, and the checks themselves.

A request that breaks one is refused with INVALID_ARGUMENT naming the field (never INTERNAL,
never a value that overflows later): ids and names are checked for length before anything echoes
them, enum numbers this version does not know are refused, durations are read without the
overflow `Duration.ToTimedelta` raises for ±2^62 s. The numbers are the contract: the protos'
comments and docs/API.md state them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import TypeVar

from stablenew.contract.errors import invalid_argument

E = TypeVar("E", bound=IntEnum)

# An id the services hand out, or one a client chooses (request ids, runner ids, consumer ids).
MAX_ID_CHARS = 256
# A label, display name, host, model name, reason or error message.
MAX_NAME_CHARS = 1024
# Free text: a prompt, a prepended text.
MAX_TEXT_CHARS = 64 * 1024
# Entries of a list of names (a runner's models) and of a string map (job metadata).
MAX_LIST_ITEMS = 1000
MAX_MAP_ENTRIES = 100
# The longest duration the services write (an estimate): a computed one is capped to it.
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600


def checked_id(value: str, field_path: str, required: bool = True) -> str:
    """`value`, or INVALID_ARGUMENT when it is empty (if `required`) or too long."""
    if required and not value:
        raise invalid_argument(field_path, "required")
    return checked_text(value, field_path, MAX_ID_CHARS)


def checked_text(value: str, field_path: str, limit: int = MAX_NAME_CHARS) -> str:
    """`value`, or INVALID_ARGUMENT when it holds more than `limit` characters."""
    if len(value) > limit:
        raise invalid_argument(field_path, f"at most {limit} characters (got {len(value)})")
    return value


def checked_names(values: Sequence[str], field_path: str,
                  limit: int = MAX_LIST_ITEMS) -> list[str]:
    """A list of names, each at most MAX_NAME_CHARS, at most `limit` of them."""
    if len(values) > limit:
        raise invalid_argument(field_path, f"at most {limit} items (got {len(values)})")
    for index, value in enumerate(values):
        checked_text(value, f"{field_path}[{index}]")
    return list(values)


def checked_map(values: Mapping[str, str], field_path: str) -> dict[str, str]:
    """A string map of at most MAX_MAP_ENTRIES, keys ids and values names by length."""
    if len(values) > MAX_MAP_ENTRIES:
        raise invalid_argument(field_path,
                               f"at most {MAX_MAP_ENTRIES} entries (got {len(values)})")
    for key, value in values.items():
        checked_text(key, f"{field_path} key", MAX_ID_CHARS)
        checked_text(value, f"{field_path}[{key[:MAX_ID_CHARS]}]")
    return dict(values)


def known_enum(enum_type: type[E], number: int, field_path: str,
               allow_unspecified: bool = True) -> E:
    """The member numbered `number`; INVALID_ARGUMENT for a number this version does not know
    (proto3 keeps unknown enum numbers) and, unless allowed, for 0 (UNSPECIFIED)."""
    try:
        member = enum_type(number)
    except ValueError:
        names = ", ".join(m.name for m in enum_type if m.value or allow_unspecified)
        raise invalid_argument(field_path, f"unknown value {number}; one of {names}") from None
    if member.value == 0 and not allow_unspecified:
        raise invalid_argument(field_path, "required")
    return member


def duration_seconds(seconds: int, nanos: int, field_path: str) -> float:
    """A google.protobuf.Duration's seconds and nanos as seconds, read without the overflow of
    `ToTimedelta` (the wire allows ±2^63 s): INVALID_ARGUMENT when negative or when the nanos
    are not those of a duration (0..999,999,999). The caller caps a long one."""
    if seconds < 0 or nanos < 0:
        raise invalid_argument(field_path, "must not be negative")
    if nanos >= 1_000_000_000:
        raise invalid_argument(field_path, "nanos must be below 1,000,000,000")
    return seconds + nanos / 1e9

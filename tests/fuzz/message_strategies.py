"""Hypothesis strategies for any protobuf message, built from its descriptor alone: what a
hostile or careless client can put on the wire. Values lean towards the edges that break
servers — empty and oversized strings, type limits, NaN and infinities, enum numbers no
version of the contract defines, durations far past what datetime can hold, long lists."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

# Strings that should be refused or clipped, never crash anything. The largest stays well under
# the 4 MiB default message limit of a client that did not raise it.
HUGE_STRING_SIZES = (300, 5_000, 100_000)
MAX_DEPTH = 3
MAX_LIST = 4
LONG_LIST = 2_000
# Only items up to this size are repeated LONG_LIST times: long lists of large (or of nested
# long-listed) items would build requests of gigabytes, which test the client's memory rather
# than the server. A long list stays a few MiB at most.
LONG_LIST_ITEM_BYTES = 1_024

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [value for value in (low, high, 0, 1, -1, 2**31 - 1, 2**62) if low <= value <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high),
                     st.integers(max(low, -1000), min(high, 1000)))


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(["", " ", "../../etc/passwd", "\x00", "%", "_", "é" * 3, "🙂"]),
        st.builds(lambda size, char: char * size, st.sampled_from(HUGE_STRING_SIZES),
                  st.sampled_from(["x", "%", "é"])),
    )


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _enum_numbers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None, field.full_name
    known = [value.number for value in field.enum_type.values]
    return st.one_of(st.sampled_from(known), st.sampled_from([-1, 99, 2**31 - 1, -(2**31)]))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in INT_RANGES:
        return _integers(*INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=40), st.just(b"\xff" * 5_000))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum_numbers(field)
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    raise AssertionError(f"no strategy for field type {kind} ({field.full_name})")


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_strategy(_message_type(field), depth + 1)
    return _scalar(field)


def _is_map(field: FieldDescriptor) -> bool:
    return (field.type == FieldDescriptor.TYPE_MESSAGE
            and _message_type(field).GetOptions().map_entry)


def _field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if _is_map(field):
        entry = _message_type(field)
        key, value = (entry.fields_by_name[name] for name in ("key", "value"))
        return st.dictionaries(_scalar(key), _value(value, depth), max_size=MAX_LIST)
    if field.is_repeated:
        items = _value(field, depth)
        return st.one_of(st.lists(items, max_size=MAX_LIST), items.map(_long_list))
    return _value(field, depth)


def _size(value: Any) -> int:
    if isinstance(value, Message):
        return value.ByteSize()
    return len(value) if isinstance(value, str | bytes) else 8


def _long_list(item: Any) -> list[Any]:
    """The item LONG_LIST times, or MAX_LIST times when it is too large to repeat that often."""
    return [item] * (LONG_LIST if _size(item) <= LONG_LIST_ITEM_BYTES else MAX_LIST)


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any subset of their fields set."""
    message_class = GetMessageClass(descriptor)
    if depth >= MAX_DEPTH:
        return st.just(message_class())
    if descriptor.full_name == "google.protobuf.Duration":
        return st.builds(lambda seconds: message_class(seconds=seconds),
                         st.sampled_from([-(2**62), -1, 0, 1, 5, 3600, 2**62]))
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(lambda seconds: message_class(seconds=seconds),
                         st.sampled_from([-(2**62), -1, 0, 1_700_000_000, 253402300800, 2**62]))
    fields = list(descriptor.fields)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = message_class()
        for field in fields:
            if draw(st.booleans()):
                _set(message, field, draw(_field_values(field, depth)))
        return message
    return build()

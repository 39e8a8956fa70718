"""Arguments of the SDK's methods turned into request fields, with a clear error (the
argument's name, what is wrong) for a value that cannot be sent, before any call is made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, TypeVar

from google.protobuf import json_format, timestamp_pb2

from stablenew.contract import model
from stablenew.contract.proto_mapping import to_proto
from stablenew.sdk.errors import FieldViolation, InvalidArgumentError
from stablenew.v1 import history_service_pb2, pipeline_pb2

E = TypeVar("E", bound=IntEnum)

# What a config argument may be: the contract twin, the message, or a mapping of its fields,
# nested ({"txt2img": {"steps": 20}}) or dotted ({"txt2img.steps": 20}).
ConfigLike = model.PipelineConfig | pipeline_pb2.PipelineConfig | Mapping[str, Any]


def invalid(field: str, description: str) -> InvalidArgumentError:
    """INVALID_ARGUMENT INVALID_FIELD naming the argument, raised before any call."""
    return InvalidArgumentError.local(f"{field}: {description}", "INVALID_FIELD",
                                      [FieldViolation(field, description)])


def enum_value(cls: type[E], value: E | str | int, field: str) -> E:
    """A member of `cls` from a member, its number, or its name in any case, with or without
    the proto prefix ("queued", "QUEUED" and "JOB_STATE_QUEUED" all name JobState.QUEUED)."""
    if isinstance(value, cls):
        return value
    try:
        if isinstance(value, str):
            name = value.strip().upper().replace("-", "_")
            members = {member.name: member for member in cls}
            match = members.get(name) or next(
                (m for n, m in members.items() if name.endswith(f"_{n}")), None)
            if match is None:
                raise KeyError(name)
            return match
        return cls(value)
    except (KeyError, ValueError):
        names = ", ".join(member.name for member in cls if member.value)
        raise invalid(field, f"{value!r} is not one of {names}") from None


def wire(member: IntEnum) -> Any:
    """An enum member as the generated code types a proto enum value."""
    return int(member)


def number(cls: type[E], value: E | str | int, field: str) -> Any:
    """`enum_value` as the number a request field takes."""
    return wire(enum_value(cls, value, field))


def enum_values(cls: type[E], value: E | str | int | Iterable[E | str | int] | None,
                field: str) -> list[E]:
    """One value or several, as a list (None: none)."""
    if value is None:
        return []
    if isinstance(value, str | int):
        return [enum_value(cls, value, field)]
    return [enum_value(cls, item, f"{field}[{index}]") for index, item in enumerate(value)]


def _nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"txt2img.steps": 20} as {"txt2img": {"steps": 20}}; nested mappings are kept, and keys
    sharing a group at any depth ("txt2img.hires_fix.enabled", "txt2img.hires_fix.upscaler")
    end up side by side in it."""
    result: dict[str, Any] = {}
    for key, value in values.items():
        head, _, rest = str(key).partition(".")
        if rest:
            _merge_into(result, head, _nested({rest: value}))
        elif isinstance(value, Mapping):
            _merge_into(result, head, _nested(value))
        else:
            result[head] = value
    return result


def _merge_into(result: dict[str, Any], head: str, group: dict[str, Any]) -> None:
    """Merge `group` into `result[head]`, group by group."""
    inner = result.setdefault(head, {})
    if not isinstance(inner, dict):
        raise TypeError(f"{head} is both a value and a group")
    for key, value in group.items():
        if isinstance(value, dict) and isinstance(inner.get(key), dict):
            _merge_into(inner, key, value)
        else:
            inner[key] = value


def pipeline_config(value: ConfigLike | None, field: str) -> pipeline_pb2.PipelineConfig | None:
    """The PipelineConfig message for a config argument (None stays None)."""
    if value is None:
        return None
    if isinstance(value, pipeline_pb2.PipelineConfig):
        return value
    if isinstance(value, model.PipelineConfig):
        message: pipeline_pb2.PipelineConfig = to_proto(value)
        return message
    if not isinstance(value, Mapping):
        raise invalid(field, f"expected a PipelineConfig or a mapping, not {type(value).__name__}")
    try:
        return json_format.ParseDict(_nested(value), pipeline_pb2.PipelineConfig())
    except (json_format.ParseError, TypeError) as error:
        raise invalid(field, str(error)) from None


def timestamp(value: datetime | timedelta, field: str) -> timestamp_pb2.Timestamp:
    """A Timestamp for a moment: an aware datetime, a naive one (local time), or a timedelta
    (that long ago)."""
    if isinstance(value, timedelta):
        moment = datetime.now(UTC) - value
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.astimezone()
    else:
        raise invalid(field, f"expected a datetime or a timedelta, not {type(value).__name__}")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def job_filter(
    state: Any = None,
    run_mode: Any = None,
    source: Any = None,
    prompt_source: Any = None,
    pack: str | None = None,
    text: str | None = None,
    since: datetime | timedelta | None = None,
    until: datetime | timedelta | None = None,
    bookmarked: bool | None = None,
) -> history_service_pb2.JobFilter:
    """The history's JobFilter; arguments left None do not filter."""
    result = history_service_pb2.JobFilter(
        states=[wire(s) for s in enum_values(model.JobState, state, "state")],
        prompt_pack_id=pack or "", text=text or "")
    if run_mode is not None:
        result.run_mode = wire(enum_value(model.RunMode, run_mode, "run_mode"))
    if source is not None:
        result.source = wire(enum_value(model.JobSource, source, "source"))
    if prompt_source is not None:
        result.prompt_source = wire(enum_value(model.PromptSource, prompt_source, "prompt_source"))
    if since is not None:
        result.created_after.CopyFrom(timestamp(since, "since"))
    if until is not None:
        result.created_before.CopyFrom(timestamp(until, "until"))
    if bookmarked is not None:
        result.bookmarked = bookmarked
    return result


def page_size(value: int) -> int:
    """A page size the services accept (0: their default)."""
    if value < 0:
        raise invalid("page_size", "must not be negative")
    return value

"""Protobuf <-> domain conversion for the twins in `stablenew.common.model`.

Each twin has the same field names as its message, so one converter per field kind (scalar,
enum, nested message, repeated, map, Timestamp, Duration) serves them all. The plan for a class is
built once from its type hints and cached: converting 10,000 normalized jobs stays cheap.

Nested messages left at their defaults are not set on the proto, so an unset submessage and an
all-default one read back the same.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from stablenew.common import model
from stablenew.v1 import job_pb2, pipeline_pb2

T = TypeVar("T")

# Domain twin -> generated message class.
TWINS: dict[type[Any], type[Message]] = {
    model.StageFlags: pipeline_pb2.StageFlags,
    model.HiresFixConfig: pipeline_pb2.HiresFixConfig,
    model.RefinerConfig: pipeline_pb2.RefinerConfig,
    model.Txt2ImgConfig: pipeline_pb2.Txt2ImgConfig,
    model.Img2ImgConfig: pipeline_pb2.Img2ImgConfig,
    model.AdetailerPass: pipeline_pb2.AdetailerPass,
    model.AdetailerConfig: pipeline_pb2.AdetailerConfig,
    model.UpscaleConfig: pipeline_pb2.UpscaleConfig,
    model.PipelineConfig: pipeline_pb2.PipelineConfig,
    model.PromptTag: pipeline_pb2.PromptTag,
    model.EntryOrigin: pipeline_pb2.EntryOrigin,
    model.NormalizedJob: pipeline_pb2.NormalizedJob,
    model.JobOrigin: job_pb2.JobOrigin,
    model.ImageRef: job_pb2.ImageRef,
    model.EntryResult: job_pb2.EntryResult,
    model.JobProgress: job_pb2.JobProgress,
    model.Job: job_pb2.Job,
    model.JobTransition: job_pb2.JobTransition,
}

# Domain enum -> generated enum (for the tests that keep them in step).
ENUM_TWINS: dict[type[IntEnum], Any] = {
    model.StageType: pipeline_pb2.StageType,
    model.UpscaleMode: pipeline_pb2.UpscaleMode,
    model.PromptSource: pipeline_pb2.PromptSource,
    model.PromptTagKind: pipeline_pb2.PromptTag.Kind,
    model.JobState: job_pb2.JobState,
    model.RunMode: job_pb2.RunMode,
    model.JobSource: job_pb2.JobSource,
    model.Priority: job_pb2.Priority,
    model.EntryStatus: job_pb2.EntryStatus,
}

Writer = Callable[[Message, str, Any], None]
Reader = Callable[[Any, str], Any]


def _without_none(hint: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, (hint, False) otherwise."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return args[0], True
    return hint, False


def _write_scalar(message: Message, name: str, value: Any) -> None:
    setattr(message, name, value)


def _write_timestamp(message: Message, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, name).FromDatetime(value)


def _read_timestamp(message: Message, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


def _write_duration(message: Message, name: str, value: timedelta | None) -> None:
    if value is not None:
        getattr(message, name).FromTimedelta(value)


def _read_duration(message: Message, name: str) -> timedelta | None:
    if not message.HasField(name):
        return None
    duration: duration_pb2.Duration = getattr(message, name)
    return duration.ToTimedelta()


def _write_nested(message: Message, name: str, value: Any) -> None:
    if value != type(value)():
        fill_proto(value, getattr(message, name))


def _write_nested_list(message: Message, name: str, values: list[Any]) -> None:
    repeated = getattr(message, name)
    for value in values:
        fill_proto(value, repeated.add())


def _writer_for(hint: Any) -> Writer:
    hint, _ = _without_none(hint)
    if hint is datetime:
        return _write_timestamp
    if hint is timedelta:
        return _write_duration
    if dataclasses.is_dataclass(hint):
        return _write_nested
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item):
            return _write_nested_list
        return lambda message, name, values: getattr(message, name).extend(values)
    if origin is dict:
        return lambda message, name, values: getattr(message, name).update(values)
    return _write_scalar


def _reader_for(hint: Any) -> Reader:
    hint, _ = _without_none(hint)
    if hint is datetime:
        return _read_timestamp
    if hint is timedelta:
        return _read_duration
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        cls = hint
        return lambda message, name: from_proto(cls, getattr(message, name))
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        enum_cls = hint
        return lambda message, name: enum_cls(getattr(message, name))
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item) or (isinstance(item, type) and issubclass(item, IntEnum)):
            convert = _reader_for(item)
            return lambda message, name: [
                convert(_Holder(value), "value") for value in getattr(message, name)
            ]
        return lambda message, name: list(getattr(message, name))
    if origin is dict:
        return lambda message, name: dict(getattr(message, name))
    return getattr


class _Holder:
    """Lets an item of a repeated field go through the same readers as a named field."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


Plan = tuple[list[tuple[str, Writer]], list[tuple[str, Reader]]]
_plans: dict[type[Any], Plan] = {}


def _plan(cls: type[Any]) -> Plan:
    """Per-field converters of a twin, built from its type hints on first use."""
    plan = _plans.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        plan = ([(name, _writer_for(hints[name])) for name in names],
                [(name, _reader_for(hints[name])) for name in names])
        _plans[cls] = plan
    return plan


def fill_proto(obj: Any, message: Message) -> Message:
    """Write a domain twin's fields into `message` and return it."""
    writers, _ = _plan(type(obj))
    for name, write in writers:
        write(message, name, getattr(obj, name))
    return message


def to_proto(obj: Any) -> Any:
    """The generated message for a domain twin."""
    return fill_proto(obj, TWINS[type(obj)]())


def from_proto(cls: type[T], message: Any) -> T:
    """The domain twin of `cls` read from its generated message."""
    _, readers = _plan(cls)
    return cls(**{name: read(message, name) for name, read in readers})


def job_to_proto(job: model.Job, view: int) -> job_pb2.Job:
    """The job as a message; JOB_VIEW_BASIC leaves out the entries and results (thousands)."""
    if view == job_pb2.JOB_VIEW_BASIC:
        # Never convert what is about to be dropped.
        job = dataclasses.replace(job, entries=[], results=[])
    message: job_pb2.Job = to_proto(job)
    return message

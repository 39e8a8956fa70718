"""Domain twins (stablenew.contract.model) against the generated messages, and the generic mapping
(stablenew.contract.proto_mapping) both ways.

Strategies are built from the dataclass type hints and the proto field types, so a field added to
a twin is covered without touching this file.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stablenew.contract import model
from stablenew.contract.proto_mapping import ENUM_TWINS, TWINS, from_proto, to_proto
from tests.fuzz.message_strategies import INT_RANGES

TWIN_CLASSES = list(TWINS)
ENUM_CLASSES = list(ENUM_TWINS)
TWIN_IDS = [cls.__name__ for cls in TWIN_CLASSES]

# google.protobuf.Duration: +-10,000 years.
MAX_DURATION = timedelta(seconds=315_576_000_000)
TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"


def descriptor_of(cls: type[Any]) -> Any:
    """The message Descriptor of a twin (typed Any: upb and python descriptors differ)."""
    return TWINS[cls].DESCRIPTOR


def hints_of(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def strip_optional(hint: Any) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        assert len(args) == 1, hint
        return args[0], True
    return hint, False


def is_repeated(field: FieldDescriptor) -> bool:
    repeated: bool = field.is_repeated
    return repeated


def is_map(field: FieldDescriptor) -> bool:
    message: Descriptor | None = field.message_type
    return message is not None and bool(message.GetOptions().map_entry)


def message_name(field: FieldDescriptor) -> str:
    message: Descriptor | None = field.message_type
    return "" if message is None else message.full_name


# --- structure: names, kinds, enums -------------------------------------------------------------


def test_every_model_dataclass_and_enum_has_a_twin() -> None:
    dataclasses_in_model = {obj for _, obj in inspect.getmembers(model, inspect.isclass)
                            if dataclasses.is_dataclass(obj) and obj.__module__ == model.__name__}
    enums_in_model = {obj for _, obj in inspect.getmembers(model, inspect.isclass)
                      if issubclass(obj, IntEnum) and obj.__module__ == model.__name__}
    assert dataclasses_in_model == set(TWINS)
    assert enums_in_model == set(ENUM_TWINS)


@pytest.mark.parametrize("cls", TWIN_CLASSES, ids=TWIN_IDS)
def test_field_names_equal_the_message_field_names(cls: type[Any]) -> None:
    dataclass_names = [f.name for f in dataclasses.fields(cls)]
    proto_names = [f.name for f in descriptor_of(cls).fields]
    assert set(dataclass_names) == set(proto_names), (
        f"only in the dataclass: {set(dataclass_names) - set(proto_names)}; "
        f"only in the message: {set(proto_names) - set(dataclass_names)}")
    assert len(dataclass_names) == len(proto_names)


def _check_item_kind(hint: Any, field: FieldDescriptor) -> None:
    """The Python type of one value (a scalar, or one item of a repeated field)."""
    kinds = {
        str: {FieldDescriptor.TYPE_STRING},
        bool: {FieldDescriptor.TYPE_BOOL},
        float: {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT},
        int: set(INT_RANGES),
    }
    if hint in kinds:
        assert field.type in kinds[hint], (field.full_name, hint, field.type)
    elif isinstance(hint, type) and issubclass(hint, IntEnum):
        assert field.type == FieldDescriptor.TYPE_ENUM, field.full_name
        assert hint in ENUM_TWINS, hint
        assert field.enum_type is ENUM_TWINS[hint].DESCRIPTOR, field.full_name
    elif dataclasses.is_dataclass(hint):
        assert field.type == FieldDescriptor.TYPE_MESSAGE, field.full_name
        assert field.message_type is descriptor_of(typing.cast(type[Any], hint)), field.full_name
    elif hint is datetime:
        assert message_name(field) == TIMESTAMP, field.full_name
    elif hint is timedelta:
        assert message_name(field) == DURATION, field.full_name
    else:
        pytest.fail(f"{field.full_name}: no mapping for {hint!r}")


@pytest.mark.parametrize("cls", TWIN_CLASSES, ids=TWIN_IDS)
def test_field_types_match_the_message(cls: type[Any]) -> None:
    hints = hints_of(cls)
    for field in descriptor_of(cls).fields:
        hint, optional = strip_optional(hints[field.name])
        origin = typing.get_origin(hint)
        if is_map(field):
            assert origin is dict, field.full_name
            assert typing.get_args(hint) == (str, str), field.full_name
        elif is_repeated(field):
            assert origin is list, field.full_name
            _check_item_kind(typing.get_args(hint)[0], field)
        else:
            assert origin is None, field.full_name
            _check_item_kind(hint, field)
        # Only message fields with presence (Timestamp, Duration) may be None in the domain.
        if optional:
            assert hint in (datetime, timedelta), field.full_name


def enum_prefix(descriptor: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


@pytest.mark.parametrize("enum_cls", ENUM_CLASSES, ids=[e.__name__ for e in ENUM_CLASSES])
def test_enum_members_equal_the_proto_enum(enum_cls: type[IntEnum]) -> None:
    descriptor: EnumDescriptor = ENUM_TWINS[enum_cls].DESCRIPTOR
    prefix = enum_prefix(descriptor)
    assert all(value.name.startswith(prefix) for value in descriptor.values), prefix
    proto = {value.name.removeprefix(prefix): value.number for value in descriptor.values}
    domain = {member.name: member.value for member in enum_cls}
    assert domain == proto
    assert list(domain) == list(proto)  # same order too
    assert domain.get("UNSPECIFIED") == 0


def test_prompt_tag_kind_uses_its_own_prefix() -> None:
    descriptor: EnumDescriptor = ENUM_TWINS[model.PromptTagKind].DESCRIPTOR
    assert enum_prefix(descriptor) == "KIND_"
    assert [v.name for v in descriptor.values][:2] == ["KIND_UNSPECIFIED", "KIND_LORA"]


@pytest.mark.parametrize("cls", TWIN_CLASSES, ids=TWIN_IDS)
def test_defaults_map_to_an_empty_message(cls: type[Any]) -> None:
    message = to_proto(cls())
    assert message.ByteSize() == 0
    assert from_proto(cls, TWINS[cls]()) == cls()


# --- strategies from type hints -----------------------------------------------------------------


def _value_strategy(hint: Any, field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if hint is str:
        return st.text(max_size=12)
    if hint is bool:
        return st.booleans()
    if hint is int:
        low, high = INT_RANGES[field.type]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 if low else 1]))
    if hint is float:
        if field.type == FieldDescriptor.TYPE_DOUBLE:
            return st.floats(allow_nan=False, allow_infinity=False)
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        return st.sampled_from(list(hint))
    if hint is datetime:
        # Timestamp covers years 1..9999, as datetime does; microseconds survive.
        return st.datetimes(timezones=st.just(UTC))
    if hint is timedelta:
        return st.timedeltas(min_value=-MAX_DURATION, max_value=MAX_DURATION)
    if dataclasses.is_dataclass(hint):
        return twin_strategy(typing.cast(type[Any], hint))
    raise AssertionError(f"no strategy for {hint!r}")


def _field_strategy(hint: Any, field: FieldDescriptor) -> st.SearchStrategy[Any]:
    hint, optional = strip_optional(hint)
    origin = typing.get_origin(hint)
    if origin is dict:
        strategy: st.SearchStrategy[Any] = st.dictionaries(
            st.text(max_size=8), st.text(max_size=8), max_size=3)
    elif origin is list:
        item = typing.get_args(hint)[0]
        size = 2 if dataclasses.is_dataclass(item) else 4
        strategy = st.lists(_value_strategy(item, field), max_size=size)
    else:
        strategy = _value_strategy(hint, field)
    return st.one_of(st.none(), strategy) if optional else strategy


_strategies: dict[type[Any], st.SearchStrategy[Any]] = {}


def twin_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    if cls not in _strategies:
        hints = hints_of(cls)
        fields = descriptor_of(cls).fields_by_name
        _strategies[cls] = st.builds(cls, **{
            f.name: _field_strategy(hints[f.name], fields[f.name])
            for f in dataclasses.fields(cls)
        })
    return _strategies[cls]


ROUND_TRIP = settings(max_examples=50, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("cls", TWIN_CLASSES, ids=TWIN_IDS)
def test_domain_proto_domain(cls: type[Any]) -> None:
    @ROUND_TRIP
    @given(twin_strategy(cls))
    def check(obj: Any) -> None:
        message = to_proto(obj)
        assert isinstance(message, TWINS[cls])
        # Through the wire too, as it travels between services.
        wire = TWINS[cls].FromString(message.SerializeToString())
        assert from_proto(cls, wire) == obj

    check()


@pytest.mark.parametrize("cls", TWIN_CLASSES, ids=TWIN_IDS)
def test_proto_domain_proto(cls: type[Any]) -> None:
    @ROUND_TRIP
    @given(twin_strategy(cls))
    def check(obj: Any) -> None:
        message = to_proto(obj)
        again = to_proto(from_proto(cls, message))
        assert again == message
        assert again.SerializeToString(deterministic=True) == \
            message.SerializeToString(deterministic=True)

    check()


# --- particular cases ---------------------------------------------------------------------------


def test_unset_timestamp_and_duration_read_as_none() -> None:
    job = from_proto(model.Job, TWINS[model.Job]())
    assert job.create_time is None
    assert job.progress.eta is None
    result = from_proto(model.EntryResult, TWINS[model.EntryResult]())
    assert result.duration is None


def test_zero_timestamp_and_duration_are_not_none() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    job = model.Job(create_time=epoch, progress=model.JobProgress(eta=timedelta(0)))
    back = from_proto(model.Job, to_proto(job))
    assert back.create_time == epoch
    assert back.progress.eta == timedelta(0)


def test_timestamps_read_back_in_utc() -> None:
    stamp = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    back = from_proto(model.JobTransition, to_proto(model.JobTransition(time=stamp)))
    assert back.time == stamp
    assert back.time is not None and back.time.tzinfo is not None
    assert back.time.utcoffset() == timedelta(0)


def test_enums_read_back_as_domain_enums() -> None:
    entry = model.NormalizedJob(stage_plan=[model.StageType.TXT2IMG, model.StageType.UPSCALE],
                                upscale=model.UpscaleConfig(mode=model.UpscaleMode.EXTRAS))
    back = from_proto(model.NormalizedJob, to_proto(entry))
    assert all(type(stage) is model.StageType for stage in back.stage_plan)
    assert type(back.upscale.mode) is model.UpscaleMode


def test_nested_lists_of_twins() -> None:
    job = model.Job(
        job_id="j1",
        entries=[model.NormalizedJob(index=i, prompt=f"p{i}",
                                     adetailer_passes=[model.AdetailerPass(model="face")],
                                     tags=[model.PromptTag(kind=model.PromptTagKind.LORA,
                                                           name="detail", weight=0.5)])
                 for i in range(3)],
        results=[model.EntryResult(images=[model.ImageRef(path="a.png", seed=2**40)])],
        metadata={"k": "v"},
    )
    message = to_proto(job)
    assert [e.prompt for e in message.entries] == ["p0", "p1", "p2"]
    assert message.results[0].images[0].seed == 2**40
    assert from_proto(model.Job, message) == job

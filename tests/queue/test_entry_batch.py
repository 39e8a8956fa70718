"""The queue's check of submitted entries in their wire form (queue/entries.py): every config
hash is re-checked, whichever way the entries group, and the summary facts match the entries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stablenew.contract.config_hash import config_hash
from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.model import (
    AdetailerPass,
    EntryOrigin,
    NormalizedJob,
    PromptSource,
    PromptTag,
    PromptTagKind,
    StageType,
    UpscaleConfig,
    UpscaleMode,
)
from stablenew.contract.proto_mapping import from_proto, to_proto
from stablenew.queue import codec
from stablenew.queue import entries as entries_module
from stablenew.queue.entries import entry_batch
from stablenew.v1 import job_pb2, pipeline_pb2

BASE = NormalizedJob(stage_plan=[StageType.TXT2IMG, StageType.ADETAILER], model="sd15",
                     sampler_name="Euler a", width=512, height=512, steps=20, cfg_scale=7.0,
                     batch_size=1, n_iter=1,
                     adetailer_passes=[AdetailerPass(model="face_yolov8n.pt")])
OTHER = dataclasses.replace(BASE, stage_plan=[StageType.TXT2IMG, StageType.UPSCALE], model="xl",
                            batch_size=2, n_iter=3, adetailer_passes=[],
                            upscale=UpscaleConfig(mode=UpscaleMode.EXTRAS,
                                                  upscaler="R-ESRGAN 4x+", factor=2.0))


def entry(index: int, config: NormalizedJob = BASE, **changes: Any) -> NormalizedJob:
    fields: dict[str, Any] = {
        "index": index, "prompt": f"a castle, variant {index}", "seed": 1000 + index,
        "origin": EntryOrigin(part_id="p1", prompt_source=PromptSource.PACK,
                              variant_index=index),
        "tags": [PromptTag(PromptTagKind.LORA, f"style{index}", 0.8)], **changes}
    job = dataclasses.replace(config, **fields)
    return dataclasses.replace(job, config_hash=config_hash(job))


def messages(jobs: list[NormalizedJob]) -> list[pipeline_pb2.NormalizedJob]:
    return [to_proto(job) for job in jobs]


def refused(work: Callable[[], object]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        work()
    assert caught.value.code == Code.INVALID_ARGUMENT
    return caught.value


def test_summary_facts_and_the_stored_form() -> None:
    jobs = [entry(0), entry(1), entry(2, OTHER), entry(3, model="")]
    batch = entry_batch(messages(jobs))
    assert batch.count == 4
    assert batch.estimated_images == 1 + 1 + 6 + 1
    assert batch.longest_stage_plan == (StageType.TXT2IMG, StageType.ADETAILER)
    assert (batch.has_adetailer, batch.has_upscale) == (True, True)
    assert batch.config_hashes == tuple(job.config_hash for job in jobs)
    assert batch.first_prompt == "a castle, variant 0"
    assert batch.required_models == ("sd15", "xl")
    assert batch.preferred_model == "sd15"
    assert codec.decode_entries(batch.encoded) == jobs


@pytest.mark.parametrize("field, value", [
    ("prompt", "not what was hashed"), ("negative_prompt", "lowres"), ("seed", 7),
    ("subseed", 9), ("input_images", ["in/other.png"]),
])
def test_a_changed_varying_field_inside_a_group_is_caught(field: str, value: Any) -> None:
    jobs = [entry(index) for index in range(5)]
    jobs[3] = dataclasses.replace(jobs[3], **{field: value})  # the hash is left as it was
    error = refused(lambda: entry_batch(messages(jobs)))
    assert error.reason == ErrorReason.CONFIG_HASH_MISMATCH
    assert [violation.field for violation in error.violations] == ["entries[3].config_hash"]


def test_a_changed_shared_field_is_caught_even_when_the_rest_of_the_group_is_large() -> None:
    jobs = [entry(index) for index in range(5)]
    jobs[4] = dataclasses.replace(jobs[4], steps=21)
    error = refused(lambda: entry_batch(messages(jobs)))
    assert [violation.field for violation in error.violations] == ["entries[4].config_hash"]


def test_index_origin_and_tags_may_differ_within_a_group() -> None:
    jobs = [entry(index) for index in range(3)]
    jobs[2] = dataclasses.replace(jobs[2], index=40, tags=[],
                                  origin=EntryOrigin(part_id="p9", row_index=3))
    assert entry_batch(messages(jobs)).count == 3


# A handful of configs and values, so that generated jobs both share groups and split them.
CONFIGS = st.sampled_from([BASE, OTHER, dataclasses.replace(BASE, steps=30)])


@st.composite
def submitted(draw: st.DrawFn) -> tuple[list[pipeline_pb2.NormalizedJob], int | None]:
    """Entries, some with a hash that no longer matches; and the first such index."""
    jobs = [entry(index, draw(CONFIGS), prompt=draw(st.sampled_from(["a", "b", "ü \"q\""])),
                  subseed=draw(st.integers(0, 2)))
            for index in range(draw(st.integers(1, 12)))]
    first_bad = None
    for index, job in enumerate(jobs):
        if draw(st.integers(0, 9)) == 0:
            change: dict[str, Any] = draw(st.sampled_from([
                {"seed": job.seed + 1}, {"cfg_scale": 7.5}, {"prompt": job.prompt + "!"},
                {"model": "other"}, {"input_images": ["x.png"]}]))
            jobs[index] = dataclasses.replace(job, **change)
            if first_bad is None:
                first_bad = index
    return messages(jobs), first_bad


def _made_odd(message: pipeline_pb2.NormalizedJob, how: str) -> None:
    """The same entry (same config hash) in a form another client might send."""
    if how == "default hires_fix":
        message.hires_fix.SetInParent()
    elif how == "default origin":  # of an entry whose origin is all defaults
        message.origin.SetInParent()
    elif how == "unknown field":
        message.MergeFromString(b"\xf8\x07\x01")  # field 127
    elif how == "unknown field in origin":
        message.origin.MergeFromString(b"\xf8\x07\x01")


ODD_FORMS = ("as is", "default hires_fix", "default origin", "unknown field",
             "unknown field in origin")


@settings(max_examples=150, deadline=None)
@given(configs=st.lists(CONFIGS, min_size=1, max_size=10),
       forms=st.lists(st.sampled_from(ODD_FORMS), min_size=10, max_size=10))
def test_what_is_stored_is_what_the_domain_conversion_writes(
        configs: list[NormalizedJob], forms: list[str]) -> None:
    jobs = [entry(index, config) for index, config in enumerate(configs)]
    jobs = [dataclasses.replace(job, origin=EntryOrigin()) if how == "default origin" else job
            for job, how in zip(jobs, forms, strict=False)]
    sent = messages(jobs)
    for message, how in zip(sent, forms, strict=False):
        _made_odd(message, how)
    batch = entry_batch(sent)
    stored = job_pb2.Job.FromString(batch.encoded).entries
    assert [m.SerializeToString() for m in stored] == [
        m.SerializeToString() for m in messages(jobs)]


@settings(max_examples=150, deadline=None)
@given(submission=submitted())
def test_accepted_exactly_when_every_hash_is_the_official_one(
        submission: tuple[list[pipeline_pb2.NormalizedJob], int | None]) -> None:
    entries, first_bad = submission
    official = [config_hash(from_proto(NormalizedJob, message)) == message.config_hash
                for message in entries]
    assert (first_bad is None) == all(official)
    if first_bad is None:
        assert entry_batch(entries).count == len(entries)
    else:
        error = refused(lambda: entry_batch(entries))
        assert error.violations[0].field == f"entries[{first_bad}].config_hash"


def test_unknown_enum_values_are_refused_naming_the_field() -> None:
    def with_change(change: Callable[[pipeline_pb2.NormalizedJob], None]) -> str:
        entries = messages([entry(0), entry(1)])
        change(entries[1])
        return refused(lambda: entry_batch(entries)).violations[0].field

    unknown_stage = pipeline_pb2.StageType.ValueType(99)
    assert with_change(lambda m: m.stage_plan.append(unknown_stage)) == "entries[1].stage_plan"
    assert with_change(lambda m: setattr(m.upscale, "mode", 42)) == "entries[1]"
    assert with_change(lambda m: setattr(m.img2img, "resize_mode", 4)) == "entries[1]"
    assert with_change(lambda m: setattr(m.origin, "prompt_source", 7)) == (
        "entries[1].origin.prompt_source")
    assert with_change(lambda m: setattr(m.tags[0], "kind", 12)) == "entries[1].tags[0].kind"


def test_no_entries_and_an_empty_stage_plan_are_refused() -> None:
    assert refused(lambda: entry_batch([])).violations[0].field == "entries"
    empty = messages([entry(0), entry(1, stage_plan=[])])
    assert refused(lambda: entry_batch(empty)).violations[0].field == "entries[1].stage_plan"


def test_the_fields_outside_the_shared_part_hold_no_nested_message() -> None:
    # An entry is stored as it came once its all-default origin is cleared: that is enough only
    # while origin is the one singular submessage among the fields outside the group key, and
    # neither it nor a tag holds a submessage of its own.
    fields = pipeline_pb2.NormalizedJob.DESCRIPTOR.fields_by_name
    outside = [fields[name] for name in entries_module._NOT_IN_GROUP_KEY]
    messages_outside = {field.name: field for field in outside if field.message_type}
    assert set(messages_outside) == {"origin", "tags"}
    assert messages_outside["tags"].is_repeated and not messages_outside["origin"].is_repeated
    for field in messages_outside.values():
        assert field.message_type is not None
        assert not [inner for inner in field.message_type.fields if inner.message_type]

"""The result types and the argument conversions, without a server: results are read-only
and keep their message, enums are members, and arguments that cannot be sent are refused
naming the argument."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta

import pytest

from stablenew.contract import model
from stablenew.contract.proto_mapping import to_proto
from stablenew.sdk import (
    Draft,
    EventKind,
    InvalidArgumentError,
    Job,
    JobState,
    QueueState,
    RunMode,
    StageType,
)
from stablenew.sdk._requests import enum_value, enum_values, pipeline_config, timestamp
from stablenew.sdk.types import read, read_event, read_queue_state
from stablenew.v1 import bundle_service_pb2, job_pb2, pipeline_pb2, queue_service_pb2


def test_a_job_is_the_contract_twin_read_only_with_its_message() -> None:
    message = to_proto(model.Job(job_id="j1", state=JobState.RUNNING, label="x",
                                 entries=[model.NormalizedJob(stage_plan=[StageType.TXT2IMG])]))
    job = read(Job, message)
    assert isinstance(job, model.Job)
    assert (job.job_id, job.state, job.entries[0].stage_plan) == (
        "j1", JobState.RUNNING, [StageType.TXT2IMG])
    assert job.proto is message
    with pytest.raises(FrozenInstanceError):
        job.label = "y"
    with pytest.raises(FrozenInstanceError):
        del job.label


def test_a_draft_is_frozen_with_its_message() -> None:
    message = bundle_service_pb2.Draft(draft_id="d1", revision=3)
    message.parts.add(part_id="p1", prompt_source=pipeline_pb2.PROMPT_SOURCE_PACK)
    draft = read(Draft, message)
    assert (draft.revision, draft.parts[0].prompt_source) == (3, model.PromptSource.PACK)
    assert draft.create_time is None
    with pytest.raises(FrozenInstanceError):
        draft.revision = 4  # type: ignore[misc]
    assert draft.proto is message


def test_an_event_reads_only_its_payload() -> None:
    message = job_pb2.JobEvent(sequence=7, job_id="j1")
    message.state_changed.to_state = job_pb2.JOB_STATE_COMPLETED
    message.time.FromDatetime(datetime(2024, 1, 2, tzinfo=UTC))
    event = read_event(message)
    assert (event.kind, event.sequence, event.time) == (
        EventKind.STATE_CHANGED, 7, datetime(2024, 1, 2, tzinfo=UTC))
    assert event.state_changed is not None
    assert event.state_changed.to_state == JobState.COMPLETED
    assert (event.submitted, event.progress, event.moved) == (None, None, None)
    paused = read_event(job_pb2.JobEvent(sequence=8, queue_paused=job_pb2.QueuePausedEvent()))
    assert (paused.kind, paused.job_id) == (EventKind.QUEUE_PAUSED, "")


def test_queue_state_counts_by_state() -> None:
    message = queue_service_pb2.QueueState(paused=True, last_sequence=9, unrunnable_job_count=1)
    message.counts.add(state=job_pb2.JOB_STATE_QUEUED, count=2)
    state = read_queue_state(message)
    assert isinstance(state, QueueState)
    assert (state.counts, state.estimated_time_left) == ({JobState.QUEUED: 2}, None)
    assert state.unrunnable_job_count == 1


@pytest.mark.parametrize("value", [RunMode.DIRECT, "direct", "DIRECT", "RUN_MODE_DIRECT", 1])
def test_an_enum_argument_by_member_name_or_number(value: object) -> None:
    assert enum_value(RunMode, value, "run_mode") is RunMode.DIRECT  # type: ignore[arg-type]


def test_a_bad_enum_argument_is_refused_naming_it() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        enum_values(JobState, ["queued", "asleep"], "state")
    assert [v.field for v in caught.value.violations] == ["state[1]"]
    with pytest.raises(InvalidArgumentError):
        enum_value(RunMode, 9, "run_mode")


def test_config_arguments_in_every_form() -> None:
    expected = pipeline_pb2.PipelineConfig(
        stages=pipeline_pb2.StageFlags(txt2img_enabled=True),
        txt2img=pipeline_pb2.Txt2ImgConfig(steps=20, seed=-1))
    nested = {"stages": {"txt2img_enabled": True}, "txt2img": {"steps": 20, "seed": -1}}
    dotted = {"stages.txt2img_enabled": True, "txt2img.steps": 20, "txt2img": {"seed": -1}}
    twin = model.PipelineConfig(stages=model.StageFlags(txt2img_enabled=True),
                                txt2img=model.Txt2ImgConfig(steps=20, seed=-1))
    for value in (nested, dotted, twin, expected):
        assert pipeline_config(value, "config") == expected
    assert pipeline_config(None, "config") is None


def test_dotted_keys_sharing_a_group_at_any_depth_are_all_kept() -> None:
    # The hires fix's switch and its upscaler, as `--set` gives them, one key at a time.
    dotted = {"txt2img.hires_fix.enabled": True, "txt2img.hires_fix.upscaler": "Latent",
              "txt2img": {"hires_fix": {"scale": 1.5}}, "txt2img.steps": 20}
    expected = pipeline_pb2.PipelineConfig(txt2img=pipeline_pb2.Txt2ImgConfig(
        steps=20, hires_fix=pipeline_pb2.HiresFixConfig(enabled=True, upscaler="Latent",
                                                        scale=1.5)))
    assert pipeline_config(dotted, "config") == expected


@pytest.mark.parametrize("value", [{"txt2img.steps": "many"}, {"upscale.mode": "SIDEWAYS"},
                                   {"txt2img": 5, "txt2img.steps": 1}, ["not", "a", "config"]])
def test_a_config_that_cannot_be_sent(value: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        pipeline_config(value, "overrides")  # type: ignore[arg-type]
    assert [v.field for v in caught.value.violations] == ["overrides"]


def test_moments() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert timestamp(moment, "since").ToDatetime(tzinfo=UTC) == moment
    ago = timestamp(timedelta(days=1), "since").ToDatetime(tzinfo=UTC)
    assert ago < datetime.now(UTC) - timedelta(hours=23)
    with pytest.raises(InvalidArgumentError):
        timestamp("yesterday", "since")  # type: ignore[arg-type]

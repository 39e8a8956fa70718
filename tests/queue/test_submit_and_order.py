"""SubmitJob validation and idempotency; run order: priority classes, FIFO, DIRECT, moves."""

from __future__ import annotations

import random

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2, pipeline_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness, make_entry, origin
from tests.queue.protocol_runner import ProtocolRunner


def _error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_submit_returns_a_queued_job_with_its_summary(queue: QueueHarness) -> None:
    job = queue.submit(entries=3, label="castles")
    assert job.state == job_pb2.JOB_STATE_QUEUED
    assert job.entry_count == 3
    assert job.estimated_images == 3
    assert job.stage_count == 1
    assert len(job.config_hash) == 64
    assert job.payload_summary.startswith("3 entries, 3 images")
    assert queue.submit(entries=1).payload_summary.startswith("1 entry, 1 image:")
    assert job.queue_position == 0
    assert job.label == "castles"
    assert job.origin.run_mode == job_pb2.RUN_MODE_QUEUE
    assert job.HasField("create_time")


def test_repeated_request_id_returns_the_original_job(queue: QueueHarness) -> None:
    first = queue.submit(entries=2, request_id="req-1")
    again = queue.submit(entries=5, request_id="req-1")
    assert again.job_id == first.job_id
    assert again.entry_count == 2
    assert queue.active_ids() == [first.job_id]


def test_empty_job_is_refused_naming_the_field(queue: QueueHarness) -> None:
    error = _error(lambda: queue.stub.SubmitJob(pb.SubmitJobRequest(origin=origin())))
    details = details_of(error)
    assert details.code == Code.INVALID_ARGUMENT
    assert details.reason == "INVALID_FIELD"
    assert [v.field for v in details.violations] == ["entries"]


def test_config_hash_mismatch_is_refused_naming_the_entry(queue: QueueHarness) -> None:
    tampered = make_entry(1)
    tampered.prompt = "something else than was hashed"
    request = pb.SubmitJobRequest(entries=[make_entry(0), tampered], origin=origin())
    details = details_of(_error(lambda: queue.stub.SubmitJob(request)))
    assert details.code == Code.INVALID_ARGUMENT
    assert details.reason == "CONFIG_HASH_MISMATCH"
    assert [v.field for v in details.violations] == ["entries[1].config_hash"]
    assert queue.active_ids() == []


def test_missing_run_mode_and_empty_stage_plan_are_refused(queue: QueueHarness) -> None:
    request = pb.SubmitJobRequest(entries=[make_entry(0)], origin=job_pb2.JobOrigin())
    assert details_of(_error(lambda: queue.stub.SubmitJob(request))).violations[0].field == (
        "origin.run_mode")
    no_stages = make_entry(0, stages=())
    request = pb.SubmitJobRequest(entries=[no_stages], origin=origin())
    assert details_of(_error(lambda: queue.stub.SubmitJob(request))).violations[0].field == (
        "entries[0].stage_plan")


def test_a_stage_this_version_does_not_know_is_refused(queue: QueueHarness) -> None:
    future = make_entry(1)
    future.stage_plan.append(pipeline_pb2.StageType.ValueType(99))
    request = pb.SubmitJobRequest(entries=[make_entry(0), future], origin=origin())
    details = details_of(_error(lambda: queue.stub.SubmitJob(request)))
    assert (details.code, details.violations[0].field) == (
        Code.INVALID_ARGUMENT, "entries[1].stage_plan")
    assert queue.active_ids() == []


def test_priority_classes_then_fifo(queue: QueueHarness) -> None:
    low = queue.submit(priority=job_pb2.PRIORITY_LOW).job_id
    normal_1 = queue.submit().job_id
    high = queue.submit(priority=job_pb2.PRIORITY_HIGH).job_id
    normal_2 = queue.submit(priority=job_pb2.PRIORITY_UNSPECIFIED).job_id
    assert queue.active_ids() == [high, normal_1, normal_2, low]
    assert queue.get(normal_2).priority == job_pb2.PRIORITY_NORMAL


def test_direct_job_goes_to_the_front_ahead_of_earlier_direct_jobs(queue: QueueHarness) -> None:
    queued = queue.submit(priority=job_pb2.PRIORITY_HIGH).job_id
    direct_1 = queue.submit(run_mode=job_pb2.RUN_MODE_DIRECT).job_id
    direct_2 = queue.submit(run_mode=job_pb2.RUN_MODE_DIRECT).job_id
    assert queue.active_ids() == [direct_2, direct_1, queued]


@pytest.fixture
def five(queue: QueueHarness) -> list[str]:
    return [queue.submit(label=str(i)).job_id for i in range(5)]


def _move(queue: QueueHarness, job_id: str, position: pb.MovePosition.ValueType,
          before: str = "") -> job_pb2.Job:
    return queue.stub.MoveJob(pb.MoveJobRequest(job_id=job_id, position=position,
                                                before_job_id=before)).job


def test_move_front_back_up_down(queue: QueueHarness, five: list[str]) -> None:
    a, b, c, d, e = five
    assert _move(queue, d, pb.MOVE_POSITION_FRONT).queue_position == 0
    assert queue.active_ids() == [d, a, b, c, e]
    _move(queue, d, pb.MOVE_POSITION_BACK)
    assert queue.active_ids() == [a, b, c, e, d]
    _move(queue, c, pb.MOVE_POSITION_UP)
    assert queue.active_ids() == [a, c, b, e, d]
    _move(queue, a, pb.MOVE_POSITION_DOWN)
    assert queue.active_ids() == [c, a, b, e, d]
    _move(queue, c, pb.MOVE_POSITION_UP)  # already first: nothing changes
    _move(queue, d, pb.MOVE_POSITION_DOWN)  # already last
    assert queue.active_ids() == [c, a, b, e, d]


def test_move_before_another_job_many_times(queue: QueueHarness, five: list[str]) -> None:
    a, b, c, d, e = five
    _move(queue, e, pb.MOVE_POSITION_BEFORE, before=b)
    assert queue.active_ids() == [a, e, b, c, d]
    # Squeeze into the same gap until the float keys run out and the lane is renumbered.
    for _ in range(80):
        _move(queue, d, pb.MOVE_POSITION_BEFORE, before=b)
        _move(queue, d, pb.MOVE_POSITION_BEFORE, before=e)
    assert queue.active_ids() == [a, d, e, b, c]


def test_move_across_priority_classes(queue: QueueHarness) -> None:
    high = queue.submit(priority=job_pb2.PRIORITY_HIGH).job_id
    low = queue.submit(priority=job_pb2.PRIORITY_LOW).job_id
    _move(queue, low, pb.MOVE_POSITION_FRONT)
    assert queue.active_ids() == [low, high]
    assert queue.get(low).priority == job_pb2.PRIORITY_LOW  # the class itself is unchanged


def test_move_errors(queue: QueueHarness, five: list[str]) -> None:
    a, b, *_ = five
    details = details_of(_error(lambda: _move(queue, a, pb.MOVE_POSITION_UNSPECIFIED)))
    assert (details.code, details.violations[0].field) == (
        Code.INVALID_ARGUMENT, "position")
    details = details_of(_error(lambda: _move(queue, a, pb.MOVE_POSITION_BEFORE)))
    assert details.violations[0].field == "before_job_id"
    details = details_of(_error(lambda: _move(queue, "nope", pb.MOVE_POSITION_FRONT)))
    assert (details.code, details.reason) == (Code.NOT_FOUND, "JOB_NOT_FOUND")
    direct = queue.submit(run_mode=job_pb2.RUN_MODE_DIRECT).job_id
    details = details_of(_error(lambda: _move(queue, a, pb.MOVE_POSITION_BEFORE, before=direct)))
    assert details.code == Code.FAILED_PRECONDITION
    queue.stub.CancelJob(pb.CancelJobRequest(job_id=b))
    details = details_of(_error(lambda: _move(queue, b, pb.MOVE_POSITION_FRONT)))
    assert (details.code, details.reason) == (
        Code.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")


def test_list_jobs_pages_with_opaque_tokens(queue: QueueHarness) -> None:
    ids = [queue.submit().job_id for _ in range(7)]
    seen: list[str] = []
    positions: list[int] = []
    token = ""
    while True:
        reply = queue.stub.ListJobs(pb.ListJobsRequest(page_size=3, page_token=token))
        seen += [job.job_id for job in reply.jobs]
        positions += [job.queue_position for job in reply.jobs]
        assert all(not job.entries for job in reply.jobs)  # BASIC view by default
        token = reply.next_page_token
        if not token:
            break
    assert seen == ids
    assert positions == list(range(7))


def test_list_jobs_full_view_carries_what_get_job_does(queue: QueueHarness) -> None:
    running = queue.submit(entries=2).job_id
    queued = [queue.submit(entries=3).job_id for _ in range(2)]
    assert queue.channel is not None
    assert ProtocolRunner(queue.channel, "gpu-1").lease() is not None  # takes the first job
    basic = queue.stub.ListJobs(pb.ListJobsRequest(page_size=10)).jobs
    full = queue.stub.ListJobs(pb.ListJobsRequest(page_size=10, view=job_pb2.JOB_VIEW_FULL)).jobs
    assert [job.job_id for job in full] == [running, *queued]
    assert [len(job.entries) for job in full] == [2, 3, 3]
    for listed, brief in zip(full, basic, strict=True):
        assert listed.queue_position == brief.queue_position
        assert list(listed.entries) == list(queue.get(listed.job_id).entries)


def test_list_jobs_refuses_bad_paging(queue: QueueHarness) -> None:
    queue.submit()
    details = details_of(_error(lambda: queue.stub.ListJobs(pb.ListJobsRequest(page_size=-1))))
    assert details.violations[0].field == "page_size"
    details = details_of(_error(lambda: queue.stub.ListJobs(
        pb.ListJobsRequest(page_token="bm90IGEgdG9rZW4"))))
    assert (details.code, details.reason) == (
        Code.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


def test_get_job_full_and_basic_views(queue: QueueHarness) -> None:
    job_id = queue.submit(entries=2).job_id
    full = queue.stub.GetJob(pb.GetJobRequest(job_id=job_id)).job
    assert [entry.index for entry in full.entries] == [0, 1]
    basic = queue.stub.GetJob(pb.GetJobRequest(job_id=job_id, view=job_pb2.JOB_VIEW_BASIC)).job
    assert not basic.entries
    details = details_of(_error(lambda: queue.stub.GetJob(pb.GetJobRequest())))
    assert details.violations[0].field == "job_id"


def test_positions_stay_consistent_through_every_kind_of_change(queue: QueueHarness) -> None:
    assert queue.channel is not None
    runner = ProtocolRunner(queue.channel, "r1")
    chaos = random.Random(7)
    priorities = [job_pb2.PRIORITY_LOW, job_pb2.PRIORITY_NORMAL, job_pb2.PRIORITY_HIGH]
    for step in range(60):
        listed = queue.stub.ListJobs(pb.ListJobsRequest(page_size=1000)).jobs
        ids = [job.job_id for job in listed if job.state == job_pb2.JOB_STATE_QUEUED]
        action = chaos.choice(["submit", "submit", "direct", "move", "lease", "cancel"])
        if action == "submit" or not ids:
            queue.submit(priority=chaos.choice(priorities))
        elif action == "direct":
            queue.submit(run_mode=job_pb2.RUN_MODE_DIRECT)
        elif action == "move":
            _move(queue, chaos.choice(ids), chaos.choice([
                pb.MOVE_POSITION_FRONT, pb.MOVE_POSITION_BACK, pb.MOVE_POSITION_UP,
                pb.MOVE_POSITION_DOWN]))
        elif action == "lease":
            runner.lease(0)
        else:
            queue.stub.CancelJob(pb.CancelJobRequest(job_id=chaos.choice(ids)))
        listed = queue.stub.ListJobs(pb.ListJobsRequest(page_size=1000)).jobs
        assert [job.queue_position for job in listed] == list(range(len(listed))), step
        for index, job in enumerate(listed):
            assert queue.get(job.job_id).queue_position == index, (step, action)

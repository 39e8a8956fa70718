"""Bad input at the queue's request edge: every case here once answered INTERNAL (or OK where
it must not). Each is refused as INVALID_ARGUMENT naming the field, and changes nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc
import pytest

from stablenew.contract.config_hash import config_hash
from stablenew.contract.errors import Code, ErrorDetails
from stablenew.contract.model import NormalizedJob
from stablenew.contract.proto_mapping import from_proto, to_proto
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2, pipeline_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness, all_events, make_entry, origin
from tests.queue.protocol_runner import Leased, ProtocolRunner

HUGE_SECONDS = 2**62


def refused(call: Callable[[], object]) -> ErrorDetails:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return details_of(caught.value)


def assert_invalid(call: Callable[[], object], field: str) -> ErrorDetails:
    details = refused(call)
    assert details.code == Code.INVALID_ARGUMENT, details
    assert field in [violation.field for violation in details.violations], details
    return details


def submit_request(entry: pipeline_pb2.NormalizedJob | None = None,
                   **fields: object) -> pb.SubmitJobRequest:
    request = pb.SubmitJobRequest(entries=[entry or make_entry()], origin=origin())
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def rehashed(entry: pipeline_pb2.NormalizedJob) -> pipeline_pb2.NormalizedJob:
    """The entry with its config hash made right again: only the value is wrong."""
    job = from_proto(NormalizedJob, entry)
    job.config_hash = config_hash(job)
    message: pipeline_pb2.NormalizedJob = to_proto(job)
    return message


def runner_of(queue: QueueHarness) -> ProtocolRunner:
    assert queue.channel is not None
    return ProtocolRunner(queue.channel, "r1")


def leased_job(queue: QueueHarness) -> tuple[ProtocolRunner, Leased]:
    queue.submit()
    runner = runner_of(queue)
    leased = runner.lease(2.0)
    assert leased is not None
    return runner, leased


@pytest.mark.parametrize("field, value", [
    ("width", -1), ("height", 100), ("steps", 10_000), ("batch_size", 2**31 - 1),
    ("n_iter", 2**31 - 1), ("cfg_scale", math.nan), ("cfg_scale", math.inf),
    ("cfg_scale", -math.inf), ("subseed_strength", math.nan), ("seed", -2),
])
def test_an_entry_value_the_bundle_would_refuse_is_refused(
        queue: QueueHarness, field: str, value: float) -> None:
    entry = make_entry()
    setattr(entry, field, value)
    details = assert_invalid(lambda: queue.stub.SubmitJob(submit_request(rehashed(entry))),
                             f"entries[0].{field}")
    assert details.reason == "INVALID_FIELD"
    assert queue.active_ids() == []


def test_entries_of_one_group_are_each_checked_for_their_own_seeds_and_images(
        queue: QueueHarness) -> None:
    entries = [make_entry(index) for index in range(5)]
    entries[4].seed = -7
    entries[4] = rehashed(entries[4])
    request = pb.SubmitJobRequest(entries=entries, origin=origin())
    assert_invalid(lambda: queue.stub.SubmitJob(request), "entries[4].seed")


def test_an_input_image_outside_the_input_folder_is_refused(queue: QueueHarness) -> None:
    entry = make_entry()
    entry.stage_plan[:] = [pipeline_pb2.STAGE_TYPE_UPSCALE]
    entry.upscale.upscaler = "R-ESRGAN 4x+"
    entry.input_images.append("../outside.png")
    assert_invalid(lambda: queue.stub.SubmitJob(submit_request(rehashed(entry))),
                   "entries[0].input_images[0]")


@pytest.mark.parametrize("value", [99, -1])
def test_an_unknown_priority_is_refused(queue: QueueHarness, value: int) -> None:
    assert_invalid(lambda: queue.stub.SubmitJob(submit_request(priority=value)), "priority")


@pytest.mark.parametrize("field, value", [("run_mode", -1), ("source", 99),
                                          ("prompt_source", 7)])
def test_an_unknown_origin_enum_is_refused(queue: QueueHarness, field: str, value: int) -> None:
    request = submit_request()
    setattr(request.origin, field, value)
    assert_invalid(lambda: queue.stub.SubmitJob(request), "origin")


def test_labels_metadata_and_request_ids_have_limits(queue: QueueHarness) -> None:
    stub = queue.stub
    assert_invalid(lambda: stub.SubmitJob(submit_request(label="x" * 5000)), "label")
    assert_invalid(lambda: stub.SubmitJob(submit_request(request_id="r" * 300)), "request_id")
    many = submit_request()
    many.metadata.update({f"k{i}": "v" for i in range(101)})
    assert_invalid(lambda: stub.SubmitJob(many), "metadata")
    assert queue.active_ids() == []


def test_a_long_id_is_refused_before_it_is_echoed(queue: QueueHarness) -> None:
    details = assert_invalid(
        lambda: queue.stub.GetJob(pb.GetJobRequest(job_id="j" * 20_000)), "job_id")
    assert len(details.message) < 1000


def test_unknown_move_retry_and_view_numbers_are_refused(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    stub = queue.stub
    for number in (99, -1):
        move = pb.MoveJobRequest(job_id=job_id, position=pb.MovePosition.ValueType(number))
        assert_invalid(partial(stub.MoveJob, move), "position")
    scope = pb.RetryScope.ValueType(99)
    assert_invalid(lambda: stub.RetryJob(pb.RetryJobRequest(job_id=job_id, scope=scope)), "scope")
    view = job_pb2.JobView.ValueType(7)
    assert_invalid(lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id, view=view)), "view")
    assert_invalid(lambda: stub.ListJobs(pb.ListJobsRequest(view=view)), "view")


def test_a_huge_wait_timeout_is_capped_and_a_negative_one_refused(
        queue: QueueHarness) -> None:
    queue.submit()
    request = pb.LeaseJobRequest(runner=pb.RunnerInfo(runner_id="r1", models=["sd15"]))
    request.wait_timeout.seconds = HUGE_SECONDS
    assert queue.stub.LeaseJob(request, timeout=10).HasField("lease")
    request.wait_timeout.seconds = -HUGE_SECONDS
    assert_invalid(lambda: queue.stub.LeaseJob(request, timeout=10), "wait_timeout")


def test_a_runner_that_describes_itself_at_length_is_refused(queue: QueueHarness) -> None:
    request = pb.LeaseJobRequest(runner=pb.RunnerInfo(runner_id="r1", host="h" * 2000))
    assert_invalid(lambda: queue.stub.LeaseJob(request, timeout=10), "runner.host")
    request = pb.LeaseJobRequest(runner=pb.RunnerInfo(runner_id="r1", models=["m"] * 1001))
    assert_invalid(lambda: queue.stub.LeaseJob(request, timeout=10), "runner.models")


def test_a_heartbeat_with_an_unknown_stage_or_an_endless_eta_is_refused(
        queue: QueueHarness) -> None:
    runner, leased = leased_job(queue)
    request = pb.HeartbeatRequest(runner_id="r1", lease_id=leased.lease.lease_id,
                                  job_id=leased.job.job_id, attempt=leased.lease.attempt,
                                  progress=job_pb2.JobProgress(
                                      stage=pipeline_pb2.StageType.ValueType(-2**31)))
    assert_invalid(lambda: queue.stub.Heartbeat(request), "progress")
    request.progress.stage = pipeline_pb2.STAGE_TYPE_TXT2IMG
    request.progress.eta.seconds = HUGE_SECONDS
    assert_invalid(lambda: queue.stub.Heartbeat(request), "progress")
    runner.complete(leased)  # the lease is still the current one


def test_a_result_with_an_endless_duration_is_refused(queue: QueueHarness) -> None:
    runner, leased = leased_job(queue)
    results = runner.results(leased)
    results[0].duration.seconds = -HUGE_SECONDS
    assert_invalid(lambda: runner.complete(leased, results=results), "results[0]")
    assert runner.complete(leased).state == job_pb2.JOB_STATE_COMPLETED


def test_a_completion_with_the_right_lease_and_a_wrong_attempt_is_fenced(
        queue: QueueHarness) -> None:
    runner, leased = leased_job(queue)
    runner.complete(leased)
    wrong = Leased(pb.Lease(lease_id=leased.lease.lease_id, job_id=leased.job.job_id,
                            attempt=leased.lease.attempt + 1), leased.job)
    details = refused(lambda: runner.complete(wrong))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    details = refused(lambda: runner.fail(wrong, "late"))
    assert (details.code, details.reason) == (Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    assert runner.complete(leased).state == job_pb2.JOB_STATE_COMPLETED  # the true retry


def test_pages_of_running_jobs_lead_on_to_the_queued_ones(queue: QueueHarness) -> None:
    running = [queue.submit().job_id for _ in range(2)]
    for _ in running:
        assert runner_of(queue).lease(2.0) is not None
    queued = [queue.submit().job_id for _ in range(2)]
    listed: list[str] = []
    token = ""
    while True:
        page = queue.stub.ListJobs(pb.ListJobsRequest(page_size=1, page_token=token))
        listed += [job.job_id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert listed == running + queued
    assert [job.queue_position for job in queue.stub.ListJobs(pb.ListJobsRequest()).jobs] == [
        0, 1, 2, 3]


# The message limit of the queue below: a completed job of 12 entries with 60,000-character
# prompts (its results repeat them) does not fit, its submission (about 0.7 MiB) does.
SMALL_MESSAGE_BYTES = 1024 * 1024


def test_a_full_job_larger_than_a_message_is_read_in_parts(tmp_path: Path) -> None:
    queue = QueueHarness(tmp_path / "data",
                         {"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running():
        entries = [make_entry(i, prompt=f"prompt {i} " + "x" * 60_000) for i in range(12)]
        job_id = queue.stub.SubmitJob(pb.SubmitJobRequest(entries=entries, origin=origin()),
                                      timeout=10).job.job_id
        runner = runner_of(queue)
        leased = runner.lease(2.0)
        assert leased is not None
        runner.complete(leased)
        parts: list[pb.GetJobResponse] = []
        request = pb.GetJobRequest(job_id=job_id)
        while not parts or parts[-1].truncated:
            parts.append(queue.stub.GetJob(request, timeout=10))
            request.entry_offset = parts[-1].next_entry_offset
            request.result_offset = parts[-1].next_result_offset
        assert len(parts) > 1
        assert all(part.ByteSize() <= SMALL_MESSAGE_BYTES for part in parts)
        assert all(part.job.state == job_pb2.JOB_STATE_COMPLETED for part in parts)
        assert [e.index for part in parts for e in part.job.entries] == list(range(12))
        assert [r.entry_index for part in parts for r in part.job.results] == list(range(12))
        assert (parts[-1].next_entry_offset, parts[-1].next_result_offset) == (12, 12)
        # The basic view needs no parts.
        basic = queue.stub.GetJob(pb.GetJobRequest(job_id=job_id, view=job_pb2.JOB_VIEW_BASIC))
        assert not basic.truncated and not basic.job.entries


def test_a_full_view_page_holds_what_fits_in_a_message(tmp_path: Path) -> None:
    queue = QueueHarness(tmp_path / "data",
                         {"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running():
        submitted = [queue.stub.SubmitJob(pb.SubmitJobRequest(
            entries=[make_entry(i, prompt=f"job {n} prompt {i} " + "x" * 60_000)
                     for i in range(12)], origin=origin()), timeout=10).job.job_id
            for n in range(3)]  # about 0.7 MB each: two do not fit in one message
        pages: list[pb.ListJobsResponse] = []
        request = pb.ListJobsRequest(page_size=10, view=job_pb2.JOB_VIEW_FULL)
        while not pages or pages[-1].next_page_token:
            pages.append(queue.stub.ListJobs(request, timeout=10))
            request.page_token = pages[-1].next_page_token
        assert [len(page.jobs) for page in pages] == [1, 1, 1]
        assert [job.job_id for page in pages for job in page.jobs] == submitted
        assert all(len(job.entries) == 12 for page in pages for job in page.jobs)
        assert all(not page.truncated_job_ids for page in pages)
        assert [job.queue_position for page in pages for job in page.jobs] == [0, 1, 2]


def test_a_job_whose_event_could_not_be_sent_is_refused_and_the_log_goes_on(
        tmp_path: Path) -> None:
    # A request a few hundred bytes under the limit makes a `submitted` event over it: once
    # accepted, WatchJobs failed at that event for every watcher, on every attempt.
    queue = QueueHarness(tmp_path / "data",
                         {"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running():
        entries = [make_entry(i, prompt=f"prompt {i} " + "x" * 60_000) for i in range(17)]
        room = SMALL_MESSAGE_BYTES - pb.SubmitJobRequest(entries=entries,
                                                         origin=origin()).ByteSize()
        entries.append(make_entry(17, prompt="y" * (room - 200)))
        request = pb.SubmitJobRequest(entries=entries, origin=origin())
        assert SMALL_MESSAGE_BYTES - 400 < request.ByteSize() < SMALL_MESSAGE_BYTES
        details = refused(lambda: queue.stub.SubmitJob(request, timeout=10))
        assert details.code == Code.RESOURCE_EXHAUSTED and details.reason == "INVALID_FIELD"
        assert [v.field for v in details.violations] == ["entries"]
        assert "submit it as smaller jobs" in details.message
        assert queue.active_ids() == []
        del request.entries[-1]  # about 1 MiB less 60 KiB: accepted, and its event sent
        job_id = queue.stub.SubmitJob(request, timeout=10).job.job_id
        [event] = all_events(queue.stub)
        assert event.submitted.job.job_id == job_id and len(event.submitted.job.entries) == 17


def test_a_full_job_that_fits_is_one_part_and_a_negative_offset_is_refused(
        queue: QueueHarness) -> None:
    job_id = queue.submit(entries=3).job_id
    whole = queue.stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10)
    assert not whole.truncated and len(whole.job.entries) == 3
    assert (whole.next_entry_offset, whole.next_result_offset) == (3, 0)
    rest = queue.stub.GetJob(pb.GetJobRequest(job_id=job_id, entry_offset=2), timeout=10)
    assert [e.index for e in rest.job.entries] == [2] and not rest.truncated
    assert_invalid(lambda: queue.stub.GetJob(
        pb.GetJobRequest(job_id=job_id, entry_offset=-1), timeout=10), "entry_offset")
    assert_invalid(lambda: queue.stub.GetJob(
        pb.GetJobRequest(job_id=job_id, result_offset=-1), timeout=10), "result_offset")


def test_a_completion_whose_event_could_not_be_sent_is_refused_and_the_log_goes_on(
        tmp_path: Path) -> None:
    # A failed entry's error becomes the job's error too, so the `completed` event of a
    # CompleteJob of 0.6 MB carried it twice (1.2 MB): once accepted, WatchJobs failed at that
    # event for every watcher, the history's ingestion included, on every attempt.
    queue = QueueHarness(tmp_path / "data",
                         {"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running():
        job_id = queue.submit().job_id
        runner = runner_of(queue)
        leased = runner.lease(2.0)
        assert leased is not None
        [result] = runner.results(leased, failed=lambda _: True)
        result.error_message = "z" * 600_000
        details = refused(lambda: runner.complete(leased, results=[result]))
        assert details.code == Code.RESOURCE_EXHAUSTED and details.reason == "INVALID_FIELD"
        assert [v.field for v in details.violations] == ["results"]
        assert queue.stub.GetJob(pb.GetJobRequest(job_id=job_id)).job.state == (
            job_pb2.JOB_STATE_RUNNING)
        result.error_message = "z" * 1000  # the runner's report of what fits: accepted
        assert runner.complete(leased, results=[result]).state == job_pb2.JOB_STATE_FAILED
        events = all_events(queue.stub)
        assert events[-1].WhichOneof("payload") == "state_changed"
        assert events[-1].state_changed.to_state == job_pb2.JOB_STATE_FAILED


def test_a_failure_whose_event_could_not_be_sent_is_refused(tmp_path: Path) -> None:
    queue = QueueHarness(tmp_path / "data",
                         {"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running():
        queue.submit()
        runner = runner_of(queue)
        leased = runner.lease(2.0)
        assert leased is not None
        [result] = runner.results(leased, failed=lambda _: True)
        result.prompt = "p" * (SMALL_MESSAGE_BYTES - 4000)
        request = pb.FailJobRequest(
            runner_id=runner.runner_id, lease_id=leased.lease.lease_id,
            job_id=leased.job.job_id, attempt=leased.lease.attempt,
            error_message="e" * 3000, results=[result])
        assert request.ByteSize() < SMALL_MESSAGE_BYTES  # the error is in the event twice
        details = refused(lambda: runner.stub.FailJob(request, timeout=10))
        assert details.code == Code.RESOURCE_EXHAUSTED, details
        assert [v.field for v in details.violations] == ["results"]
        assert "fewer or smaller results" in details.message
        last = all_events(queue.stub)[-1]  # nothing logged after the lease: the job runs on
        assert last.state_changed.to_state == job_pb2.JOB_STATE_RUNNING

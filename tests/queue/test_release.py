"""ReleaseJob: a runner gives back a lease it holds but has not started, without consuming an
attempt; and the heartbeat tells a runner when a queued job it can run comes before the one it
holds (a higher priority, the DIRECT lane, MoveJob to the front)."""

from __future__ import annotations

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness, all_events
from tests.queue.protocol_runner import Leased, ProtocolRunner


def _runner(queue: QueueHarness, name: str = "r1",
            models: tuple[str, ...] = ("sd15",)) -> ProtocolRunner:
    assert queue.channel is not None
    return ProtocolRunner(queue.channel, name, models)


def _lease(runner: ProtocolRunner) -> Leased:
    leased = runner.lease()
    assert leased is not None
    return leased


def _refused(call: object) -> tuple[Code, str, list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    details = details_of(caught.value)
    return details.code, details.reason, [v.field for v in details.violations]


def test_a_released_job_is_queued_again_at_its_place_without_consuming_an_attempt(
        queue: QueueHarness) -> None:
    first = queue.submit().job_id
    later = queue.submit().job_id
    runner = _runner(queue)
    leased = _lease(runner)
    assert leased.job.job_id == first

    job = runner.release(leased, "the runner shut down")

    assert (job.state, job.attempt, job.runner_id) == (job_pb2.JOB_STATE_QUEUED, 0, "")
    assert not queue.get(first).HasField("start_time")
    assert queue.active_ids() == [first, later]
    reason = [e.state_changed.reason for e in all_events(queue.stub)
              if e.job_id == first and e.HasField("state_changed")][-1]
    assert reason == "released by r1 before it started: the runner shut down"
    again = _lease(_runner(queue, "r2"))
    assert (again.job.job_id, again.lease.attempt) == (first, 1)


def test_a_retried_release_answers_the_same_and_the_released_lease_is_fenced(
        queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    runner = _runner(queue)
    leased = _lease(runner)
    runner.release(leased)

    again = runner.release(leased)  # the first reply was "lost"

    assert (again.job_id, again.state, again.attempt) == (job_id, job_pb2.JOB_STATE_QUEUED, 0)
    assert _refused(lambda: runner.heartbeat(leased))[:2] == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    assert _refused(lambda: runner.complete(leased))[:2] == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")


def test_a_release_of_another_lease_or_attempt_is_refused(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    runner = _runner(queue)
    leased = _lease(runner)
    stale = Leased(pb.Lease(lease_id="stale", job_id=job_id, attempt=1), leased.job)
    wrong = Leased(pb.Lease(lease_id=leased.lease.lease_id, job_id=job_id, attempt=2),
                   leased.job)

    for lease in (stale, wrong):
        assert _refused(lambda: runner.release(lease))[:2] == (  # noqa: B023
            Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    assert queue.get(job_id).state == job_pb2.JOB_STATE_RUNNING


def test_bad_release_requests_name_the_field(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    leased = _lease(_runner(queue))
    lease = leased.lease
    stub = queue.stub

    def release(**fields: object) -> object:
        request = pb.ReleaseJobRequest(runner_id="r1", lease_id=lease.lease_id, job_id=job_id,
                                       attempt=lease.attempt, reason="why")
        for name, value in fields.items():
            setattr(request, name, value)
        return lambda: stub.ReleaseJob(request, timeout=10)

    invalid = (Code.INVALID_ARGUMENT, "INVALID_FIELD")
    assert _refused(release(lease_id="")) == (*invalid, ["lease_id"])
    assert _refused(release(job_id="")) == (*invalid, ["job_id"])
    assert _refused(release(reason="x" * 10_000)) == (*invalid, ["reason"])
    assert _refused(release(job_id="no-such-job"))[:2] == (Code.NOT_FOUND, "JOB_NOT_FOUND")
    assert queue.get(job_id).state == job_pb2.JOB_STATE_RUNNING


def test_a_later_attempt_released_keeps_the_earlier_results_and_start(
        queue: QueueHarness) -> None:
    job_id = queue.submit(entries=2).job_id
    runner = _runner(queue)
    runner.fail(_lease(runner), "the WebUI went away", retryable=True)
    started = queue.get(job_id).start_time
    second = _lease(runner)
    assert second.lease.attempt == 2

    job = runner.release(second)

    record = queue.get(job_id)
    assert (job.state, record.attempt, record.runner_id) == (job_pb2.JOB_STATE_QUEUED, 1, "r1")
    assert record.start_time == started
    assert [r.status for r in record.results] == [job_pb2.ENTRY_STATUS_FAILED] * 2


@pytest.mark.parametrize(("return_to_queue", "state"), [
    (False, job_pb2.JOB_STATE_CANCELLED), (True, job_pb2.JOB_STATE_QUEUED)])
def test_a_release_after_a_cancel_request_ends_as_the_cancel_asked(
        queue: QueueHarness, return_to_queue: bool, state: job_pb2.JobState.ValueType) -> None:
    job_id = queue.submit().job_id
    runner = _runner(queue)
    leased = _lease(runner)
    queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, return_to_queue=return_to_queue))

    assert runner.release(leased).state == state
    assert queue.get(job_id).cancel_requested != return_to_queue  # a queued job runs again


def test_the_heartbeat_tells_when_a_queued_job_comes_first(queue: QueueHarness) -> None:
    queue.submit()
    runner = _runner(queue)
    held = _lease(runner)
    normal = queue.submit().job_id
    assert not runner.heartbeat(held).outranked  # a later NORMAL job does not

    queue.stub.MoveJob(pb.MoveJobRequest(job_id=normal, position=pb.MOVE_POSITION_FRONT))
    assert runner.heartbeat(held).outranked

    runner.release(held)
    assert _lease(runner).job.job_id == normal  # the moved job runs first


def test_a_high_or_direct_job_outranks_unless_the_runner_cannot_run_it(
        queue: QueueHarness) -> None:
    queue.submit()
    runner = _runner(queue)
    held = _lease(runner)
    queue.submit(model="sdxl", priority=job_pb2.PRIORITY_HIGH)
    assert not runner.heartbeat(held).outranked  # it lacks sdxl

    queue.stub.PauseQueue(pb.PauseQueueRequest())
    queue.submit(priority=job_pb2.PRIORITY_HIGH)
    assert not runner.heartbeat(held).outranked  # paused: queued jobs are not leased

    queue.submit(run_mode=job_pb2.RUN_MODE_DIRECT)
    assert runner.heartbeat(held).outranked

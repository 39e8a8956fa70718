"""Leases, heartbeats, fenced completion, cancel, retry, lease expiry and capability matching."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.queue.core import QueueConfig, QueueCore
from stablenew.queue.domain import RunnerInfo
from stablenew.queue.leasing import Leasing
from stablenew.queue.store import QueueStore
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness
from tests.queue.protocol_runner import Leased, ProtocolRunner
from tests.service_harness import wait_for


def _runner(queue: QueueHarness, name: str = "r1", models: tuple[str, ...] = ("sd15",),
            loaded: str = "") -> ProtocolRunner:
    assert queue.channel is not None
    return ProtocolRunner(queue.channel, name, models, loaded)


def _lease(runner: ProtocolRunner, wait: float = 2.0) -> Leased:
    leased = runner.lease(wait)
    assert leased is not None
    return leased


def _refused(call: object) -> tuple[Code, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    details = details_of(caught.value)
    return details.code, details.reason


def test_queued_running_completed(queue: QueueHarness) -> None:
    job_id = queue.submit(entries=2).job_id
    runner = _runner(queue)
    leased = _lease(runner)
    assert leased.job.job_id == job_id
    assert leased.lease.attempt == 1
    assert len(leased.job.entries) == 2  # the runner gets the full job
    assert queue.get(job_id).state == job_pb2.JOB_STATE_RUNNING
    assert queue.get(job_id).runner_id == "r1"
    reply = runner.heartbeat(leased, entry_index=1, step=5)
    assert not reply.cancel_requested
    assert queue.get(job_id).progress.entry_index == 1
    done = runner.complete(leased)
    assert done.state == job_pb2.JOB_STATE_COMPLETED
    assert queue.active_ids() == []  # a finished job leaves ListJobs at once
    record = queue.get(job_id)
    assert [r.status for r in record.results] == [job_pb2.ENTRY_STATUS_COMPLETED] * 2
    assert record.queue_position == -1
    assert record.HasField("complete_time")


def test_a_failed_entry_makes_the_job_failed_with_every_result_kept(queue: QueueHarness) -> None:
    queue.submit(entries=3)
    runner = _runner(queue)
    leased = _lease(runner)
    job = runner.complete(leased, results=runner.results(leased, failed=lambda i: i == 1))
    assert job.state == job_pb2.JOB_STATE_FAILED
    record = queue.get(job.job_id)
    assert [r.status for r in record.results] == [
        job_pb2.ENTRY_STATUS_COMPLETED, job_pb2.ENTRY_STATUS_FAILED,
        job_pb2.ENTRY_STATUS_COMPLETED]
    assert record.error_message == "emulated failure"


def test_retried_completion_of_the_same_lease_answers_the_same(queue: QueueHarness) -> None:
    queue.submit()
    runner = _runner(queue)
    leased = _lease(runner)
    first = runner.complete(leased)
    again = runner.complete(leased)  # the first reply was "lost"
    assert (first.job_id, first.state) == (again.job_id, again.state)


def test_illegal_transitions_are_refused(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    runner = _runner(queue)
    leased = _lease(runner)
    runner.complete(leased)
    stub = queue.stub
    # Terminal jobs cannot be cancelled, moved, or completed by another lease.
    assert _refused(lambda: stub.CancelJob(pb.CancelJobRequest(job_id=job_id))) == (
        Code.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    assert _refused(lambda: stub.MoveJob(pb.MoveJobRequest(
        job_id=job_id, position=pb.MOVE_POSITION_FRONT))) == (
        Code.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    stale = Leased(pb.Lease(lease_id="stale", job_id=job_id, attempt=1), leased.job)
    assert _refused(lambda: runner.complete(stale)) == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    assert _refused(lambda: runner.heartbeat(leased)) == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    assert _refused(lambda: runner.fail(stale, "late")) == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")


def test_wrong_attempt_is_not_the_current_lease(queue: QueueHarness) -> None:
    queue.submit()
    runner = _runner(queue)
    leased = _lease(runner)
    wrong = Leased(pb.Lease(lease_id=leased.lease.lease_id, job_id=leased.job.job_id,
                            attempt=leased.lease.attempt + 1), leased.job)
    assert _refused(lambda: runner.complete(wrong)) == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")


def test_cancel_a_queued_job(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    job = queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, reason="changed my mind")).job
    assert job.state == job_pb2.JOB_STATE_CANCELLED
    assert queue.active_ids() == []
    assert _runner(queue).lease(0.2) is None


def test_return_to_queue_of_a_queued_job_changes_nothing(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    job = queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, return_to_queue=True)).job
    assert job.state == job_pb2.JOB_STATE_QUEUED


def test_cancel_a_running_job_reaches_the_runner_in_its_heartbeat(queue: QueueHarness) -> None:
    job_id = queue.submit(entries=2).job_id
    runner = _runner(queue)
    leased = _lease(runner)
    job = queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id)).job
    assert job.state == job_pb2.JOB_STATE_RUNNING
    assert job.cancel_requested
    reply = runner.heartbeat(leased)
    assert reply.cancel_requested and not reply.return_to_queue
    finished = runner.results(leased)[:1]
    done = runner.complete(leased, cancelled=True, results=finished)
    assert done.state == job_pb2.JOB_STATE_CANCELLED
    assert len(queue.get(job_id).results) == 1


def test_cancel_running_with_return_to_queue(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    runner = _runner(queue)
    leased = _lease(runner)
    queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, return_to_queue=True))
    reply = runner.heartbeat(leased)
    assert reply.cancel_requested and reply.return_to_queue
    assert runner.complete(leased, cancelled=True, results=[]).state == job_pb2.JOB_STATE_QUEUED
    again = _lease(runner)
    assert (again.job.job_id, again.lease.attempt) == (job_id, 2)
    assert not again.job.cancel_requested


def test_retryable_failure_requeues_until_the_attempt_limit(
        short_lease_queue: QueueHarness) -> None:
    queue = short_lease_queue  # max attempts 2
    job_id = queue.submit().job_id
    runner = _runner(queue)
    assert runner.fail(_lease(runner), "WebUI restarting", retryable=True).state == (
        job_pb2.JOB_STATE_QUEUED)
    second = _lease(runner)
    assert second.lease.attempt == 2
    failed = runner.fail(second, "WebUI restarting", retryable=True)
    assert failed.state == job_pb2.JOB_STATE_FAILED
    assert queue.get(job_id).error_message == "WebUI restarting"


def test_expired_lease_requeues_then_fails_as_runner_lost(
        short_lease_queue: QueueHarness) -> None:
    queue = short_lease_queue  # lease 0.5 s, max attempts 2
    job_id = queue.submit().job_id
    dead = _runner(queue, "dead")
    first = _lease(dead)
    replacement = _runner(queue, "alive")
    second = _lease(replacement, wait=10)  # granted once the first lease expires
    assert (second.job.job_id, second.lease.attempt) == (job_id, 2)
    assert _refused(lambda: dead.complete(first)) == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    deadline = time.monotonic() + 10
    while queue.get(job_id).state == job_pb2.JOB_STATE_RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    record = queue.get(job_id)
    assert record.state == job_pb2.JOB_STATE_FAILED
    assert "runner lost" in record.error_message


def test_heartbeats_keep_a_lease_alive(short_lease_queue: QueueHarness) -> None:
    queue = short_lease_queue
    queue.submit()
    runner = _runner(queue)
    leased = _lease(runner)
    for _ in range(8):  # 1.6 s, three lease lengths
        runner.heartbeat(leased)
        time.sleep(0.2)
    assert runner.complete(leased).state == job_pb2.JOB_STATE_COMPLETED


def test_retry_all_entries_or_failed_entries_only(queue: QueueHarness) -> None:
    queue.submit(entries=3)
    runner = _runner(queue)
    leased = _lease(runner)
    failed = runner.complete(leased, results=runner.results(leased, failed=lambda i: i != 0))
    retry = queue.stub.RetryJob(pb.RetryJobRequest(
        job_id=failed.job_id, scope=pb.RETRY_SCOPE_FAILED_ENTRIES, request_id="retry-1")).job
    full = queue.get(retry.job_id)
    assert full.origin.retry_of_job_id == failed.job_id
    assert [e.prompt for e in full.entries] == [e.prompt for e in leased.job.entries[1:]]
    assert [e.index for e in full.entries] == [0, 1]
    same = queue.stub.RetryJob(pb.RetryJobRequest(
        job_id=failed.job_id, scope=pb.RETRY_SCOPE_FAILED_ENTRIES, request_id="retry-1")).job
    assert same.job_id == retry.job_id
    everything = queue.stub.RetryJob(pb.RetryJobRequest(
        job_id=failed.job_id, scope=pb.RETRY_SCOPE_ALL_ENTRIES)).job
    assert everything.entry_count == 3


def test_retry_refuses_active_jobs_and_jobs_without_failures(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    assert _refused(lambda: queue.stub.RetryJob(pb.RetryJobRequest(job_id=job_id))) == (
        Code.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    runner = _runner(queue)
    runner.complete(_lease(runner))
    request = pb.RetryJobRequest(job_id=job_id, scope=pb.RETRY_SCOPE_FAILED_ENTRIES)
    assert _refused(lambda: queue.stub.RetryJob(request)) == (
        Code.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")


def test_jobs_go_only_to_runners_with_their_model(queue: QueueHarness) -> None:
    sdxl_job = queue.submit(model="sdxl").job_id
    sd15_job = queue.submit(model="sd15").job_id
    sd15_only = _runner(queue, "small", models=("sd15",))
    leased = _lease(sd15_only)
    assert leased.job.job_id == sd15_job  # skips the sdxl job it cannot run
    assert sd15_only.lease(0.2) is None
    both = _runner(queue, "big", models=("sd15", "sdxl"))
    assert _lease(both).job.job_id == sdxl_job


def test_a_runner_with_the_model_loaded_is_preferred(queue: QueueHarness) -> None:
    cold = _runner(queue, "cold", models=("sd15", "sdxl"), loaded="sd15")
    warm = _runner(queue, "warm", models=("sd15", "sdxl"), loaded="sdxl")
    granted: dict[str, str] = {}

    def wait_for_job(runner: ProtocolRunner) -> None:
        leased = runner.lease(wait_seconds=5)
        if leased is not None:
            granted[runner.runner_id] = leased.job.job_id

    threads = [threading.Thread(target=wait_for_job, args=(r,)) for r in (cold, warm)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while len(queue.stub.ListRunners(pb.ListRunnersRequest()).runners) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)  # both runners are now waiting in LeaseJob
    job_id = queue.submit(model="sdxl").job_id
    for thread in threads:
        thread.join()
    assert granted == {"warm": job_id}


def test_pause_holds_queued_jobs_but_direct_jobs_run(queue: QueueHarness) -> None:
    queued = queue.submit().job_id
    state = queue.stub.PauseQueue(pb.PauseQueueRequest()).state
    assert state.paused
    runner = _runner(queue)
    assert runner.lease(0.2) is None
    direct = queue.submit(run_mode=job_pb2.RUN_MODE_DIRECT).job_id
    assert _lease(runner).job.job_id == direct
    queue.stub.ResumeQueue(pb.ResumeQueueRequest())
    assert _lease(runner).job.job_id == queued


def test_resume_wakes_a_waiting_runner(queue: QueueHarness) -> None:
    queue.stub.PauseQueue(pb.PauseQueueRequest())
    job_id = queue.submit().job_id
    runner = _runner(queue)
    result: list[Leased | None] = []
    thread = threading.Thread(target=lambda: result.append(runner.lease(wait_seconds=10)))
    thread.start()
    time.sleep(0.2)
    queue.stub.ResumeQueue(pb.ResumeQueueRequest())
    thread.join()
    assert result[0] is not None and result[0].job.job_id == job_id


@pytest.mark.parametrize("hand_back", ["retryable failure", "cancel with return to queue"])
def test_a_job_handed_back_goes_to_a_runner_already_waiting(queue: QueueHarness,
                                                            hand_back: str) -> None:
    job_id = queue.submit().job_id
    first, second = _runner(queue, "first"), _runner(queue, "second")
    leased = _lease(first)
    result: list[Leased | None] = []
    waiting = threading.Thread(target=lambda: result.append(second.lease(wait_seconds=10)))
    waiting.start()
    time.sleep(0.2)  # the second runner is long-polling now
    if hand_back == "retryable failure":
        assert first.fail(leased, "WebUI restarting", retryable=True).state == (
            job_pb2.JOB_STATE_QUEUED)
    else:
        queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, return_to_queue=True))
        assert first.complete(leased, cancelled=True).state == job_pb2.JOB_STATE_QUEUED
    waiting.join()
    assert result[0] is not None and result[0].job.job_id == job_id
    assert result[0].lease.attempt == 2


@pytest.mark.parametrize("hand_back", ["retryable failure", "cancel with return to queue"])
def test_a_job_handed_back_keeps_no_progress_of_the_attempt_that_ended(
        queue: QueueHarness, hand_back: str) -> None:
    job_id = queue.submit(entries=2).job_id
    runner = _runner(queue)
    leased = _lease(runner)
    runner.heartbeat(leased, entry_index=1, step=7)
    assert queue.get(job_id).progress.step == 7
    if hand_back == "retryable failure":
        runner.fail(leased, "WebUI stopped answering", retryable=True)
    else:
        queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, return_to_queue=True))
        runner.complete(leased, cancelled=True, results=[])

    waiting = queue.get(job_id)
    assert waiting.state == job_pb2.JOB_STATE_QUEUED
    assert waiting.progress == job_pb2.JobProgress()
    (listed,) = queue.stub.ListJobs(pb.ListJobsRequest(), timeout=10).jobs
    assert listed.progress == job_pb2.JobProgress()


def test_queue_state_and_runners(queue: QueueHarness) -> None:
    queue.submit(entries=2)
    queue.submit()
    runner = _runner(queue, "r9")
    leased = _lease(runner)
    runner.heartbeat(leased, entry_index=1, step=3)
    state = queue.stub.GetQueueState(pb.GetQueueStateRequest()).state
    counts = {c.state: c.count for c in state.counts}
    assert counts == {job_pb2.JOB_STATE_QUEUED: 1, job_pb2.JOB_STATE_RUNNING: 1}
    assert state.runner_count == 1
    assert state.last_sequence >= 3
    runners = queue.stub.ListRunners(pb.ListRunnersRequest()).runners
    assert [(r.info.runner_id, r.current_job_id) for r in runners] == [
        ("r9", leased.job.job_id)]
    assert runners[0].progress.step == 3
    assert runners[0].info.models == ["sd15"]


def test_lease_requires_a_runner_id(queue: QueueHarness) -> None:
    assert _refused(lambda: queue.stub.LeaseJob(pb.LeaseJobRequest())) == (
        Code.INVALID_ARGUMENT, "INVALID_FIELD")


def test_list_runners_pages_with_signed_tokens(queue: QueueHarness) -> None:
    for name in ("a", "b", "c"):
        assert _runner(queue, name).lease(0) is None  # announces itself
    names: list[str] = []
    token = ""
    while True:
        reply = queue.stub.ListRunners(pb.ListRunnersRequest(page_size=2, page_token=token))
        names += [runner.info.runner_id for runner in reply.runners]
        token = reply.next_page_token
        if not token:
            break
    assert names == ["a", "b", "c"]
    assert _refused(lambda: queue.stub.ListRunners(pb.ListRunnersRequest(page_token="b"))) == (
        Code.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


def test_a_long_poll_whose_caller_is_gone_ends_at_the_next_dispatch(tmp_path: Path) -> None:
    # A dropped waiter's thread used to sleep out its whole wait: a runner that died mid-poll
    # held a server thread, and held up a queue's exit on SIGTERM, for up to 30 s.
    store = QueueStore(tmp_path / "queue.sqlite3", "NORMAL")
    leasing = Leasing(QueueCore(store, QueueConfig()))
    caller_alive = [True]
    registered = threading.Event()

    def active() -> bool:
        registered.set()  # asked first by the dispatch its registration runs
        return caller_alive[0]

    granted: list[object] = []
    poll = threading.Thread(target=lambda: granted.append(leasing.lease(
        RunnerInfo("gone"), wait_seconds=30, active=active)))
    try:
        poll.start()
        wait_for(registered.is_set, "the long-poll's registration")
        caller_alive[0] = False
        leasing.dispatch()
        poll.join(timeout=10)  # a bound far under the 30 s wait: a hang fails here
        assert not poll.is_alive() and granted == [None]
    finally:
        caller_alive[0] = False
        leasing.wake_waiters()
        poll.join()
        store.close()

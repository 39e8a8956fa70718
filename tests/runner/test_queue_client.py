"""The runner's adapter to the queue, against a real queue server on loopback port 0: domain
types in and out of LeaseJob, Heartbeat, CompleteJob, FailJob and ReleaseJob, and every
failure as the exception the core handles (unreachable, lease lost, any other refusal)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest

from stablenew.contract.errors import Code, ErrorDetails
from stablenew.contract.model import EntryResult, EntryStatus, JobProgress, JobState, StageType
from stablenew.runner.domain import (
    Beat,
    Lease,
    LeaseLostError,
    QueueCallError,
    QueueUnavailableError,
    RunnerInfo,
)
from stablenew.runner.queue_client import QueueClient, queue_error
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness
from tests.queue.processes import free_port
from tests.runner.harness import MODEL, get_job, make_job, submit
from tests.service_harness import open_test_channel

RUNNER = RunnerInfo(runner_id="runner-q", host="gpu-host", models=[MODEL], loaded_model=MODEL,
                    address="127.0.0.1:50053")


@pytest.fixture
def client(queue: QueueHarness) -> Iterator[QueueClient]:
    channel = open_test_channel(queue.address)
    yield QueueClient(channel)
    channel.close()


def completed(*indexes: int) -> list[EntryResult]:
    return [EntryResult(entry_index=index, prompt=f"entry {index}",
                        status=EntryStatus.COMPLETED) for index in indexes]


def test_a_job_is_leased_heartbeaten_and_completed(queue: QueueHarness,
                                                   client: QueueClient) -> None:
    assert client.lease(RUNNER, wait_seconds=0) is None
    entries = [make_job(0), make_job(1)]
    job_id = submit(queue.stub, entries).job_id

    leased = client.lease(RUNNER, wait_seconds=5)
    assert leased is not None
    assert leased.lease == Lease(runner_id="runner-q", job_id=job_id,
                                 lease_id=leased.lease.lease_id, attempt=1)
    assert leased.lease.lease_id
    assert leased.job.job_id == job_id and leased.job.entries == entries
    running = get_job(queue.stub, job_id)
    assert running.runner_id == "runner-q"

    progress = JobProgress(entry_index=1, entry_count=2, stage=StageType.TXT2IMG, step=3,
                           steps=4, fraction=0.875)
    assert client.heartbeat(leased.lease, MODEL, progress) == Beat(cancel_requested=False)
    assert get_job(queue.stub, job_id).progress.step == 3

    assert client.complete(leased.lease, completed(0, 1), cancelled=False) is JobState.COMPLETED
    # A retried report of the lease that finished the job answers the same.
    assert client.complete(leased.lease, completed(0, 1), cancelled=False) is JobState.COMPLETED
    assert [r.prompt for r in get_job(queue.stub, job_id).results] == ["entry 0", "entry 1"]


def test_a_cancel_request_comes_back_from_the_heartbeat(queue: QueueHarness,
                                                         client: QueueClient) -> None:
    job_id = submit(queue.stub, [make_job(0), make_job(1)]).job_id
    leased = client.lease(RUNNER, wait_seconds=5)
    assert leased is not None
    queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10)
    assert client.heartbeat(leased.lease, MODEL, None).cancel_requested
    assert client.complete(leased.lease, completed(0), cancelled=True) is JobState.CANCELLED


def test_a_handed_back_job_is_queued_and_its_old_lease_is_lost(queue: QueueHarness,
                                                               client: QueueClient) -> None:
    job_id = submit(queue.stub, [make_job(0)]).job_id
    leased = client.lease(RUNNER, wait_seconds=5)
    assert leased is not None
    state = client.fail(leased.lease, "shutting down", [], retryable=True)
    assert state is JobState.QUEUED
    assert get_job(queue.stub, job_id).error_message == "shutting down"

    with pytest.raises(LeaseLostError) as lost:
        client.heartbeat(leased.lease, MODEL, None)
    assert (lost.value.details.code, lost.value.details.reason) == (
        Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT")
    assert str(lost.value).startswith("queue Heartbeat: FAILED_PRECONDITION LEASE_NOT_CURRENT: ")

    again = client.lease(RUNNER, wait_seconds=5)
    assert again is not None and again.lease.attempt == 2
    with pytest.raises(LeaseLostError):
        client.complete(leased.lease, completed(0), cancelled=False)  # the first attempt's
    assert client.fail(again.lease, "broken", [], retryable=False) is JobState.FAILED


def test_a_held_job_outranked_is_released_without_an_attempt(queue: QueueHarness,
                                                             client: QueueClient) -> None:
    job_id = submit(queue.stub, [make_job(0)]).job_id
    leased = client.lease(RUNNER, wait_seconds=5)
    assert leased is not None
    later = submit(queue.stub, [make_job(1)]).job_id
    queue.stub.MoveJob(pb.MoveJobRequest(job_id=later, position=pb.MOVE_POSITION_FRONT))
    assert client.heartbeat(leased.lease, MODEL, None) == Beat(False, outranked=True)

    assert client.release(leased.lease, "a queued job comes first") is JobState.QUEUED
    assert client.release(leased.lease, "a queued job comes first") is JobState.QUEUED
    assert get_job(queue.stub, job_id).attempt == 0
    with pytest.raises(LeaseLostError):
        client.release(replace(leased.lease, lease_id="another"), "late")


def test_other_refusals_are_neither_retryable_nor_a_lost_lease(queue: QueueHarness,
                                                               client: QueueClient) -> None:
    unknown = Lease(runner_id="runner-q", job_id="0123456789abcdef", lease_id="nope", attempt=1)
    with pytest.raises(QueueCallError) as refused:
        client.complete(unknown, [], cancelled=False)
    assert type(refused.value) is QueueCallError
    assert (refused.value.details.code, refused.value.details.reason) == (
        Code.NOT_FOUND, "JOB_NOT_FOUND")
    assert refused.value.call == "CompleteJob"

    bad_runner = replace(RUNNER, runner_id="")
    with pytest.raises(QueueCallError) as invalid:
        client.lease(bad_runner, wait_seconds=0)
    assert type(invalid.value) is QueueCallError
    assert invalid.value.details.code is Code.INVALID_ARGUMENT


def test_a_queue_that_cannot_be_reached_is_unavailable() -> None:
    with grpc.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        client = QueueClient(channel)
        with pytest.raises(QueueUnavailableError) as caught:
            client.lease(RUNNER, wait_seconds=0)
        assert caught.value.details.code is Code.UNAVAILABLE
        lease = Lease(runner_id="runner-q", job_id="0123456789abcdef", lease_id="l", attempt=1)
        with pytest.raises(QueueUnavailableError):
            client.heartbeat(lease, MODEL, None)
        with pytest.raises(QueueUnavailableError):
            client.fail(lease, "x", [], retryable=True)


@pytest.mark.parametrize(("code", "reason", "kind"), [
    (Code.UNAVAILABLE, "", QueueUnavailableError),
    (Code.DEADLINE_EXCEEDED, "", QueueUnavailableError),
    (Code.FAILED_PRECONDITION, "LEASE_NOT_CURRENT", LeaseLostError),
    (Code.FAILED_PRECONDITION, "ILLEGAL_TRANSITION", QueueCallError),
    (Code.RESOURCE_EXHAUSTED, "", QueueCallError),
    (Code.UNAUTHENTICATED, "UNAUTHENTICATED", QueueCallError),
    (Code.INTERNAL, "", QueueCallError),
])
def test_queue_errors_are_classified_by_code_and_reason(code: Code, reason: str,
                                                        kind: type[QueueCallError]) -> None:
    error = queue_error("Heartbeat", ErrorDetails(code, "why", reason))
    assert type(error) is kind
    assert error.details.message == "why"

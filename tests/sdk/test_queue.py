"""The queue through the SDK, against the real queue service with a runner on the emulator:
list, get, cancel (and cancel-and-return), move, pause, resume, state, retry, runners."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stablenew.sdk import (
    Consumer,
    ConsumerAlreadyExistsError,
    ConsumerNotFoundError,
    EventKind,
    IllegalTransitionError,
    InvalidArgumentError,
    Job,
    JobNotFoundError,
    JobState,
    JobView,
    MovePosition,
    QueueState,
)
from stablenew.v1 import queue_service_pb2
from tests.queue.harness import QueueHarness, make_entry, origin
from tests.queue.protocol_runner import ProtocolRunner
from tests.sdk.harness import PACK_ID, Stack, connect, new_draft
from tests.service_harness import wait_for


def _queued_job(client: Any, rows: list[int] | None = None) -> Job:
    job: Job = client.drafts.enqueue(new_draft(client, rows).draft_id)
    return job


@pytest.fixture
def slow_generations(stack: Stack) -> Iterator[None]:
    """Each sampling step takes long enough for a job to be seen and cancelled running."""
    stack.admin.faults(step_seconds=0.2)
    yield
    stack.admin.faults(step_seconds=0.002)


def _running(client: Any, job_id: str, after: int) -> None:
    for event in client.watch(after_sequence=after, job_ids=[job_id]):
        if event.state_changed is not None and event.state_changed.to_state == JobState.RUNNING:
            return


def test_pause_resume_and_state(client: Any, paused: None) -> None:
    state = client.queue.state()
    assert isinstance(state, QueueState) and state.paused
    assert isinstance(state.proto, queue_service_pb2.QueueState)
    _queued_job(client)
    state = client.queue.state()
    assert state.counts[JobState.QUEUED] >= 1
    assert state.last_sequence >= 1
    assert client.queue.resume().paused is False
    assert client.queue.pause().paused is True


def test_list_and_get_with_views(client: Any, paused: None) -> None:
    # The queue ends a listing after a first page of running jobs only (reported), so this
    # pages through queued jobs alone.
    wait_for(lambda: not client.queue.state().counts.get(JobState.RUNNING), "no running job")
    first, second = _queued_job(client), _queued_job(client, rows=[0])
    listed = [job for job in client.queue.list(page_size=1)
              if job.job_id in (first.job_id, second.job_id)]
    assert [job.job_id for job in listed] == [first.job_id, second.job_id]
    assert all(job.entries == [] for job in listed)
    full = list(client.queue.list(view="full"))
    assert len(next(j for j in full if j.job_id == first.job_id).entries) == 3
    assert len(client.queue.get(first.job_id).entries) == 3
    assert client.queue.get(first.job_id, view=JobView.BASIC).entries == []


def test_move(client: Any, paused: None) -> None:
    first, second = _queued_job(client), _queued_job(client)
    moved = client.queue.move(second.job_id, MovePosition.FRONT)
    assert moved.queue_position < client.queue.get(first.job_id).queue_position
    moved = client.queue.move(second.job_id, "before", before_job_id=first.job_id)
    assert moved.queue_position == client.queue.get(first.job_id).queue_position - 1
    assert client.queue.move(second.job_id, "back").queue_position > moved.queue_position
    with pytest.raises(InvalidArgumentError) as caught:
        client.queue.move(second.job_id, MovePosition.BEFORE)
    assert [v.field for v in caught.value.violations] == ["before_job_id"]


def test_cancel_a_queued_job_and_again(client: Any, paused: None) -> None:
    job = _queued_job(client)
    assert client.queue.cancel(job.job_id, reason="not today").state == JobState.CANCELLED
    with pytest.raises(IllegalTransitionError) as caught:
        client.queue.cancel(job.job_id)
    assert caught.value.metadata["job_id"] == job.job_id


def test_cancel_and_return_a_running_job(client: Any, slow_generations: None) -> None:
    start = client.queue.state().last_sequence
    job = _queued_job(client, rows=[0])
    _running(client, job.job_id, start)
    client.queue.pause()  # the job returned to the queue stays there
    try:
        asked = client.queue.cancel(job.job_id, return_to_queue=True)
        assert (asked.state, asked.cancel_requested) == (JobState.RUNNING, True)
        kinds = []
        for event in client.watch(after_sequence=start, job_ids=[job.job_id]):
            kinds.append(event.kind)
            if event.state_changed and event.state_changed.from_state == JobState.RUNNING:
                assert event.state_changed.to_state == JobState.QUEUED
                break
        assert EventKind.CANCEL_REQUESTED in kinds
        assert client.queue.cancel(job.job_id).state == JobState.CANCELLED
    finally:
        client.queue.resume()


def test_retry_all_and_failed_entries(client: Any, stack: Stack) -> None:
    stack.admin.faults(fail_next=5, fail_match="an owl")  # more than the runner's retries
    try:
        failed = client.run_pack(PACK_ID, timeout=60)
    finally:
        stack.admin.faults(fail_next=0)
    assert failed.state == JobState.FAILED
    again = client.queue.retry(failed.job_id, failed_only=True)
    assert (again.state, again.entry_count, again.origin.retry_of_job_id) == (
        JobState.QUEUED, 1, failed.job_id)
    done = client.wait(again.job_id, timeout=60)
    assert done.state == JobState.COMPLETED
    with pytest.raises(IllegalTransitionError):
        client.queue.retry(done.job_id, failed_only=True)
    last = client.queue.retry(done.job_id)
    assert (last.entry_count, last.origin.retry_of_job_id) == (1, done.job_id)
    assert client.wait(last.job_id, timeout=60).state == JobState.COMPLETED


def test_runners(client: Any, stack: Stack) -> None:
    runners = client.queue.runners()
    runner = next(r for r in runners if r.info.runner_id == stack.runner.runner_id)
    assert runner.last_heartbeat_time is not None
    assert runner.proto.info.runner_id == runner.info.runner_id


def test_an_unknown_job_is_job_not_found(client: Any) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        client.queue.get("no-such-job")
    assert (caught.value.code.name, caught.value.reason) == ("NOT_FOUND", "JOB_NOT_FOUND")


def test_durable_consumers(client: Any, kind: str) -> None:
    name = f"sdk-{kind}"
    listed = {c.consumer_id: c for c in client.queue.consumers(page_size=1)}
    assert listed["history"].watching  # the stack's history registered itself
    consumer = client.queue.create_consumer(name, request_id=f"create-{kind}")
    assert isinstance(consumer, Consumer)
    assert (consumer.consumer_id, consumer.acknowledged_sequence) == (name, 0)
    assert consumer.expire_time is not None and not consumer.watching
    again = client.queue.create_consumer(name, request_id=f"create-{kind}")
    assert again.create_time == consumer.create_time
    with pytest.raises(ConsumerAlreadyExistsError):
        client.queue.create_consumer(name)
    client.queue.delete_consumer(name)
    with pytest.raises(ConsumerNotFoundError) as caught:
        client.queue.delete_consumer(name)
    assert caught.value.metadata["consumer_id"] == name


# The message limit of the queue below: a job of 12 entries with 60,000-character prompts
# comes in parts once completed (its results repeat the prompts).
SMALL_MESSAGE_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def large_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[QueueHarness, str]]:
    """A queue that may send at most SMALL_MESSAGE_BYTES a message, holding a completed job
    larger than that in the full view; and the job's id."""
    queue = QueueHarness(tmp_path_factory.mktemp("large-job") / "data",
                         {"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running():
        entries = [make_entry(i, prompt=f"prompt {i} " + "x" * 60_000) for i in range(12)]
        job_id = queue.stub.SubmitJob(queue_service_pb2.SubmitJobRequest(
            entries=entries, origin=origin()), timeout=10).job.job_id
        assert queue.channel is not None
        runner = ProtocolRunner(queue.channel, "sdk-large-job")
        leased = runner.lease(2.0)
        assert leased is not None
        runner.complete(leased)
        yield queue, job_id


def test_a_job_too_large_for_a_message_is_read_whole(
        kind: str, large_job: tuple[QueueHarness, str]) -> None:
    queue, job_id = large_job
    with connect(kind, queue_address=queue.address) as client:
        job = client.queue.get(job_id)
        waited = client.wait(job_id, timeout=30)  # ends by reading the finished job
    for read in (job, waited):
        assert read.state == JobState.COMPLETED
        assert [e.index for e in read.entries] == list(range(12))
        assert [r.entry_index for r in read.results] == list(range(12))

"""The event log: replay then live, exactly once across reconnects, filters, acknowledgement,
pruning; and what survives a restart (queue, order, pause, leases, sequence)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from stablenew.contract.errors import Code
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness
from tests.queue.protocol_runner import ProtocolRunner
from tests.service_harness import wait_for


def _collect(queue: QueueHarness, after: int, count: int,
             **fields: object) -> list[job_pb2.JobEvent]:
    """The first `count` events after `after`."""
    stream = queue.stub.WatchJobs(pb.WatchJobsRequest(after_sequence=after, **fields),  # type: ignore[arg-type]
                                  timeout=10)
    events = []
    for reply in stream:
        events.append(reply.event)
        if len(events) == count:
            stream.cancel()  # type: ignore[no-untyped-call]
            break
    return events


def _run_jobs(queue: QueueHarness, count: int) -> None:
    assert queue.channel is not None
    runner = ProtocolRunner(queue.channel, "r1")
    for _ in range(count):
        queue.submit(entries=2)
        assert runner.run_one() is not None


def test_replay_has_every_event_in_order_without_gaps(queue: QueueHarness) -> None:
    _run_jobs(queue, 3)
    last = queue.stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
    events = _collect(queue, 0, last)
    assert [e.sequence for e in events] == list(range(1, last + 1))
    kinds = [e.WhichOneof("payload") for e in events[:5]]
    assert kinds == ["submitted", "state_changed", "progress", "progress", "state_changed"]
    submitted = events[0].submitted.job
    assert len(submitted.entries) == 2  # the history gets the normalized jobs themselves
    final = events[4].state_changed
    assert (final.from_state, final.to_state) == (
        job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_COMPLETED)
    assert len(final.results) == 2


def test_live_events_follow_the_replay(queue: QueueHarness) -> None:
    _run_jobs(queue, 1)
    received: list[int] = []
    done = threading.Event()

    def watch() -> None:
        for event in _collect(queue, 0, 10):
            received.append(event.sequence)
        done.set()

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.2)
    _run_jobs(queue, 1)
    assert done.wait(10)
    thread.join()
    assert received == list(range(1, 11))


def test_reconnecting_with_the_last_sequence_misses_nothing(queue: QueueHarness) -> None:
    _run_jobs(queue, 4)
    last = queue.stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
    seen: list[int] = []
    cursor = 0
    while cursor < last:
        chunk = _collect(queue, cursor, min(3, last - cursor))
        seen += [e.sequence for e in chunk]
        cursor = chunk[-1].sequence
    assert seen == list(range(1, last + 1))


def test_filters_by_job_and_without_progress(queue: QueueHarness) -> None:
    _run_jobs(queue, 2)
    second = queue.stub.WatchJobs(pb.WatchJobsRequest(after_sequence=0), timeout=5)
    first_event = next(iter(second)).event
    second.cancel()  # type: ignore[no-untyped-call]
    job_id = first_event.job_id
    events = _collect(queue, 0, 3, job_ids=[job_id], exclude_progress=True)
    assert {e.job_id for e in events} == {job_id}
    assert [e.WhichOneof("payload") for e in events] == [
        "submitted", "state_changed", "state_changed"]


def test_pause_and_resume_are_queue_level_events(queue: QueueHarness) -> None:
    queue.stub.PauseQueue(pb.PauseQueueRequest())
    queue.stub.PauseQueue(pb.PauseQueueRequest())  # already paused: no second event
    queue.stub.ResumeQueue(pb.ResumeQueueRequest())
    events = _collect(queue, 0, 2)
    assert [(e.job_id, e.WhichOneof("payload")) for e in events] == [
        ("", "queue_paused"), ("", "queue_resumed")]


def test_acknowledge_validates_and_never_goes_back(queue: QueueHarness) -> None:
    _run_jobs(queue, 1)
    queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id="h"))
    ack = queue.stub.AcknowledgeEvents(pb.AcknowledgeEventsRequest(consumer_id="h", sequence=3))
    assert ack.acknowledged_sequence == 3
    ack = queue.stub.AcknowledgeEvents(pb.AcknowledgeEventsRequest(consumer_id="h", sequence=1))
    assert ack.acknowledged_sequence == 3
    for request in (pb.AcknowledgeEventsRequest(sequence=1),
                    pb.AcknowledgeEventsRequest(consumer_id="h", sequence=10_000)):
        with pytest.raises(grpc.RpcError) as caught:
            queue.stub.AcknowledgeEvents(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def pruning_queue(queue: QueueHarness) -> QueueHarness:
    queue.stop()
    queue.env.update({"STABLENEW_EVENT_RETENTION_SECONDS": "0.001",
                      "STABLENEW_PRUNE_INTERVAL_SECONDS": "0.05"})
    queue.start()
    return queue


def _oldest_after_pruning(queue: QueueHarness, past: int) -> int:
    """Wait for the maintenance thread to prune past `past`; the oldest sequence it kept."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _collect(queue, 0, 1)
        except grpc.RpcError as error:
            details = details_of(error)
            assert (details.code, details.reason) == (
                Code.OUT_OF_RANGE, "SEQUENCE_PRUNED")
            oldest = int(details.metadata["oldest_sequence"])
            if oldest > past:
                return oldest
        time.sleep(0.05)
    raise AssertionError("events were never pruned")


def test_pruned_sequences_answer_out_of_range_with_the_oldest(
        pruning_queue: QueueHarness) -> None:
    queue = pruning_queue
    _run_jobs(queue, 2)
    last = queue.stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
    assert _oldest_after_pruning(queue, past=1) == last + 1
    # Resuming from the last sequence seen is still fine: nothing after it was lost.
    queue.submit()
    assert [e.sequence for e in _collect(queue, last, 1)] == [last + 1]


def test_events_stay_until_the_durable_consumer_acknowledges(
        pruning_queue: QueueHarness) -> None:
    queue = pruning_queue
    queue.stub.CreateConsumer(pb.CreateConsumerRequest(consumer_id="history"))
    _run_jobs(queue, 2)
    queue.stub.AcknowledgeEvents(pb.AcknowledgeEventsRequest(consumer_id="history", sequence=4))
    assert _oldest_after_pruning(queue, past=1) == 5
    events = _collect(queue, 4, 3)
    assert [e.sequence for e in events] == [5, 6, 7]


def test_restart_keeps_jobs_order_pause_and_sequence(queue: QueueHarness) -> None:
    a = queue.submit().job_id
    b = queue.submit(priority=job_pb2.PRIORITY_HIGH).job_id
    c = queue.submit().job_id
    queue.stub.MoveJob(pb.MoveJobRequest(job_id=c, position=pb.MOVE_POSITION_FRONT))
    queue.stub.PauseQueue(pb.PauseQueueRequest())
    before = queue.stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
    queue.restart()
    assert queue.active_ids() == [c, b, a]
    state = queue.stub.GetQueueState(pb.GetQueueStateRequest()).state
    assert state.paused
    assert state.last_sequence == before
    queue.stub.ResumeQueue(pb.ResumeQueueRequest())
    assert queue.stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence == before + 1


def test_a_lease_survives_a_restart(queue: QueueHarness) -> None:
    job_id = queue.submit().job_id
    assert queue.channel is not None
    leased = ProtocolRunner(queue.channel, "r1").lease(1)
    assert leased is not None
    queue.restart()
    assert queue.channel is not None
    runner = ProtocolRunner(queue.channel, "r1")
    runner.heartbeat(leased)
    assert runner.complete(leased).state == job_pb2.JOB_STATE_COMPLETED
    assert queue.get(job_id).state == job_pb2.JOB_STATE_COMPLETED


def test_idempotency_survives_a_restart(queue: QueueHarness) -> None:
    first = queue.submit(request_id="same").job_id
    queue.restart()
    assert queue.submit(request_id="same").job_id == first


def test_watchers_gone_past_their_deadline_free_their_threads(tmp_path: Path) -> None:
    """More expired watches than the server has threads: the queue still answers afterwards
    (a watch waiting for an event used to keep its thread after the client's deadline)."""
    workers = 4
    harness = QueueHarness(tmp_path / "data", {"STABLENEW_MAX_WORKERS": str(workers)})
    with harness.running():
        for _ in range(workers * 3):
            with pytest.raises(grpc.RpcError) as caught:
                list(harness.stub.WatchJobs(pb.WatchJobsRequest(), timeout=0.2))
            assert caught.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                           grpc.StatusCode.RESOURCE_EXHAUSTED)

        def answers() -> bool:
            try:
                harness.stub.GetQueueState(pb.GetQueueStateRequest(), timeout=2)
            except grpc.RpcError:
                return False
            return True

        wait_for(answers, "the queue to answer again after the expired watches")

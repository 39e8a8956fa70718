"""The ingestion on its own, fed by an in-memory queue behind ingest.QueueConnection (no gRPC):
exactly once when the queue repeats events, the cursor, pruned events skipped and recorded as a
gap, jobs first seen mid-way, an unreachable or foreign queue, and what is acknowledged. The
history side is real: HistoryCore over a SQLite file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from stablenew.contract.errors import Code, ErrorDetails, ErrorReason
from stablenew.contract.model import Job, JobOrigin, JobState, Priority
from stablenew.contract.proto_mapping import to_proto
from stablenew.history import mapping
from stablenew.history.core import HistoryCore, IncomingEvent, UnreadableEvent
from stablenew.history.ingest import IngestConfig, Ingestor, QueueCallError
from stablenew.history.store import HistoryStore
from stablenew.history.store.reads import read_only
from stablenew.history.store.rows import PROVENANCE_BACKFILLED
from stablenew.v1 import job_pb2
from tests.history.records import T0, entry
from tests.service_harness import wait_for

FAST = IngestConfig(retry_initial_seconds=0.01, retry_max_seconds=0.05,
                    ack_interval_seconds=0.02)


def submitted(sequence: int, job_id: str) -> job_pb2.JobEvent:
    message = job_pb2.JobEvent(sequence=sequence, job_id=job_id)
    message.time.FromDatetime(T0 + timedelta(seconds=sequence))
    message.submitted.job.CopyFrom(to_proto(queued_job(job_id)))
    return message


def changed(sequence: int, job_id: str, before: JobState, after: JobState) -> job_pb2.JobEvent:
    message = job_pb2.JobEvent(sequence=sequence, job_id=job_id)
    message.time.FromDatetime(T0 + timedelta(seconds=sequence))
    message.state_changed.from_state = int(before)  # type: ignore[assignment]
    message.state_changed.to_state = int(after)  # type: ignore[assignment]
    message.state_changed.runner_id = "gpu-1"
    message.state_changed.attempt = 1
    return message


def queued_job(job_id: str) -> Job:
    return Job(job_id=job_id, state=JobState.QUEUED, origin=JobOrigin(),
               create_time=T0, update_time=T0, entries=[entry(f"prompt of {job_id}")],
               entry_count=1)


def call_error(code: Code, reason: ErrorReason = ErrorReason.UNSPECIFIED,
               **metadata: str) -> QueueCallError:
    return QueueCallError(ErrorDetails(code, f"{code.name} from the fake queue",
                                       reason.name if reason.value else "", metadata))


@dataclass
class FakeQueue:
    """The queue's log in memory. A watch replays what is logged after its position (and, with
    `overlap`, that many events before it again) and then waits for more, until it is cancelled
    or the queue ends every open stream (end_streams); the ingestion then reconnects."""

    log: list[job_pb2.JobEvent] = field(default_factory=list)
    records: dict[str, Job] = field(default_factory=dict)
    oldest: int = 1
    overlap: int = 0
    down: bool = False
    acknowledged: list[int] = field(default_factory=list)
    # The durable consumers it knows, with the sequence each was created after.
    consumers: dict[str, int] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    watched_from: list[int] = field(default_factory=list)
    # How many times the ingestion asked for the queue's last sequence.
    asked_last: int = 0
    # Bumped by end_streams: a stream opened before it ends.
    generation: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def connect(self) -> FakeConnection:
        return FakeConnection(self)

    def last(self) -> int:
        return max((event.sequence for event in self.log), default=self.oldest - 1)

    def append(self, *events: job_pb2.JobEvent) -> None:
        with self.changed:
            self.log += events
            self.changed.notify_all()

    def end_streams(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()


class FakeStream:
    def __init__(self, queue: FakeQueue, after: int) -> None:
        self._queue = queue
        self._after = after
        self._generation = queue.generation
        self._cancelled = False

    def _next_events(self) -> list[job_pb2.JobEvent] | None:
        """What was logged after the position, once there is some; None when ended."""
        queue = self._queue
        with queue.changed:
            while True:
                if self._cancelled:
                    raise call_error(Code.CANCELLED)
                if queue.generation != self._generation:
                    return None
                events = [e for e in queue.log if e.sequence > self._after]
                if events:
                    return events
                queue.changed.wait()

    def __iter__(self) -> Iterator[IncomingEvent | UnreadableEvent]:
        while (events := self._next_events()) is not None:
            for event in events:
                self._after = event.sequence
                yield mapping.read_incoming(event)  # as queue_client does

    def cancel(self) -> None:
        with self._queue.changed:
            self._cancelled = True
            self._queue.changed.notify_all()


class FakeConnection:
    def __init__(self, queue: FakeQueue) -> None:
        self.queue = queue

    def _reachable(self) -> None:
        if self.queue.down:
            raise call_error(Code.UNAVAILABLE)

    def last_sequence(self) -> int:
        self.queue.asked_last += 1
        self._reachable()
        return self.queue.last()

    def create_consumer(self, consumer_id: str, after_sequence: int) -> None:
        self._reachable()
        if consumer_id in self.queue.consumers:
            raise call_error(Code.ALREADY_EXISTS, ErrorReason.CONSUMER_ALREADY_EXISTS)
        self.queue.consumers[consumer_id] = after_sequence

    def watch(self, after_sequence: int, consumer_id: str) -> FakeStream:
        self._reachable()
        if consumer_id not in self.queue.consumers:
            raise call_error(Code.NOT_FOUND, ErrorReason.CONSUMER_NOT_FOUND)
        self.queue.watched_from.append(after_sequence)
        if after_sequence + 1 < self.queue.oldest:
            raise call_error(Code.OUT_OF_RANGE, ErrorReason.SEQUENCE_PRUNED,
                             oldest_sequence=str(self.queue.oldest))
        return FakeStream(self.queue, max(after_sequence - self.queue.overlap,
                                          self.queue.oldest - 1))

    def get_job(self, job_id: str) -> Job | None:
        self._reachable()
        self.queue.fetched.append(job_id)
        return self.queue.records.get(job_id)

    def acknowledge(self, consumer_id: str, sequence: int) -> None:
        self._reachable()
        if consumer_id not in self.queue.consumers:
            raise call_error(Code.NOT_FOUND, ErrorReason.CONSUMER_NOT_FOUND)
        self.queue.acknowledged.append(sequence)

    def close(self) -> None:
        pass


class Fed:
    """A real history core fed by a FakeQueue through the Ingestor."""

    def __init__(self, path: Path, queue: FakeQueue) -> None:
        self.path = path
        self.store = HistoryStore(path)
        self.core = HistoryCore(self.store)
        self.serving: list[bool] = []
        self.ingestor = Ingestor(self.core, queue.connect, FAST, self.serving.append)

    def cursor(self) -> int:
        with read_only(self.path) as reader:
            return reader.cursor()

    def wait_cursor(self, sequence: int) -> None:
        wait_for(lambda: self.cursor() == sequence, f"the cursor at {sequence}")

    def close(self) -> None:
        self.ingestor.stop()
        self.store.close()


@pytest.fixture
def fake() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def fed(tmp_path: Path, fake: FakeQueue) -> Iterator[Fed]:
    made = Fed(tmp_path / "history.sqlite3", fake)
    yield made
    made.close()


def test_each_event_is_recorded_once_when_the_queue_sends_it_again(
        fed: Fed, fake: FakeQueue) -> None:
    fake.overlap = 2  # every watch replays the two events before its position again
    fake.append(submitted(1, "j1"), changed(2, "j1", JobState.QUEUED, JobState.RUNNING),
                changed(3, "j1", JobState.RUNNING, JobState.COMPLETED))
    fed.ingestor.start()
    fed.wait_cursor(3)
    wait_for(lambda: fed.serving[-1], "SERVING")
    fake.end_streams()
    wait_for(lambda: len(fake.watched_from) == 2, "the reconnect")
    fake.append(submitted(4, "j2"))
    fed.wait_cursor(4)
    job, transitions = fed.core.get("j1")
    assert job.state == JobState.COMPLETED
    assert [(t.sequence, t.to_state) for t in transitions] == [
        (1, JobState.QUEUED), (2, JobState.RUNNING), (3, JobState.COMPLETED)]
    with read_only(fed.path) as reader:
        stored = [row[0] for row in reader.db.execute("SELECT sequence FROM events")]
    assert sorted(stored) == [1, 2, 3, 4]
    assert fake.watched_from == [0, 3]
    assert fed.serving == [False, True, False, True]  # NOT_SERVING until caught up again


def test_events_the_queue_pruned_are_skipped_and_recorded_as_a_gap(
        fed: Fed, fake: FakeQueue) -> None:
    fake.oldest = 5
    fake.append(submitted(5, "j5"))
    fed.ingestor.start()
    fed.wait_cursor(5)
    assert fake.watched_from[:2] == [0, 4]  # refused, then resumed at the oldest kept
    with read_only(fed.path) as reader:
        gaps = reader.db.execute("SELECT first_sequence, last_sequence FROM gaps").fetchall()
    assert [tuple(gap) for gap in gaps] == [(1, 4)]
    assert fed.core.get("j5")[0].state == JobState.QUEUED


@pytest.mark.parametrize("queue_has_it", [True, False])
def test_a_job_first_seen_midway_is_recorded_from_what_the_queue_has(
        fed: Fed, fake: FakeQueue, queue_has_it: bool) -> None:
    fake.oldest = 7
    fake.append(changed(7, "j7", JobState.RUNNING, JobState.COMPLETED))
    if queue_has_it:
        fake.records["j7"] = queued_job("j7")
    fed.ingestor.start()
    fed.wait_cursor(7)
    assert fake.fetched == ["j7"]
    job, transitions = fed.core.get("j7")
    assert job.state == JobState.COMPLETED
    assert [e.prompt for e in job.entries] == (["prompt of j7"] if queue_has_it else [])
    assert [(t.from_state, t.to_state) for t in transitions] == [
        (JobState.RUNNING, JobState.COMPLETED)]
    stored = fed.store.load("j7")
    assert stored is not None and stored.provenance == PROVENANCE_BACKFILLED


def test_an_unreachable_queue_is_retried_until_it_answers(fed: Fed, fake: FakeQueue) -> None:
    fake.down = True
    fake.append(submitted(1, "j1"))
    fed.ingestor.start()
    wait_for(lambda: fake.asked_last >= 3, "a few attempts")
    assert fed.serving == [False] and fed.cursor() == 0
    fake.down = False
    fed.wait_cursor(1)
    wait_for(lambda: fed.serving[-1], "SERVING")


def test_a_queue_whose_log_ends_before_the_cursor_is_not_followed(
        fed: Fed, fake: FakeQueue) -> None:
    fed.core.apply(mapping.incoming_from_proto(submitted(10, "j10")))
    fake.append(submitted(3, "other"))  # another queue: its log ends at 3
    fed.ingestor.start()
    wait_for(lambda: fake.asked_last >= 3, "a few attempts")
    assert fed.serving == [False] and fed.cursor() == 10
    assert fed.store.load("other") is None
    assert fake.watched_from == []


def test_only_a_committed_and_checkpointed_sequence_is_acknowledged(
        fed: Fed, fake: FakeQueue) -> None:
    fake.append(submitted(1, "j1"), submitted(2, "j2"))
    fed.ingestor.start()
    fed.wait_cursor(2)
    wait_for(lambda: fake.acknowledged and fake.acknowledged[-1] == 2, "the acknowledgement")
    assert fake.acknowledged == sorted(set(fake.acknowledged))  # never twice, never backwards
    assert all(sequence <= fed.cursor() for sequence in fake.acknowledged)


def test_the_history_registers_its_consumer_after_what_it_recorded(
        fed: Fed, fake: FakeQueue) -> None:
    fake.append(submitted(1, "j1"), submitted(2, "j2"))
    fed.ingestor.start()
    fed.wait_cursor(2)
    assert fake.consumers == {"history": 0}
    # The queue expired (or an operator deleted) the consumer, then the stream ended: the
    # history registers again, after what it recorded, and goes on.
    del fake.consumers["history"]
    fake.end_streams()
    fake.append(submitted(3, "j3"))
    fed.wait_cursor(3)
    assert fake.consumers["history"] >= 2


def test_a_consumer_gone_at_acknowledgement_is_registered_again(
        fed: Fed, fake: FakeQueue) -> None:
    fake.consumers["history"] = 0  # exists already: ALREADY_EXISTS is the history's own
    fake.append(submitted(1, "j1"))
    fed.ingestor.start()
    wait_for(lambda: fake.acknowledged == [1], "the acknowledgement")
    del fake.consumers["history"]
    fake.append(submitted(2, "j2"))
    wait_for(lambda: fake.consumers.get("history") == 2, "the consumer registered again")
    assert 2 not in fake.acknowledged  # registering after 2 stands for its acknowledgement


# --- poison events ------------------------------------------------------------------------------


def unknown_state(sequence: int, job_id: str) -> job_pb2.JobEvent:
    """A state change to a state this version does not know (proto3 keeps the number)."""
    message = changed(sequence, job_id, JobState.QUEUED, JobState.RUNNING)
    message.state_changed.to_state = 99  # type: ignore[assignment]
    return message


def unknown_stage(sequence: int, job_id: str) -> job_pb2.JobEvent:
    message = submitted(sequence, job_id)
    message.submitted.job.entries[0].stage_plan.append(77)  # type: ignore[arg-type]
    return message


def time_out_of_range(sequence: int, job_id: str) -> job_pb2.JobEvent:
    message = submitted(sequence, job_id)
    message.submitted.job.create_time.seconds = 2**62
    return message


def quarantined(fed: Fed) -> list[tuple[int, str, str, job_pb2.JobEvent]]:
    events, token = fed.core.quarantined(100, "")
    assert token == ""
    return [(e.sequence, e.job_id, e.error, job_pb2.JobEvent.FromString(e.event))
            for e in events]


@pytest.mark.parametrize("poison", [unknown_state, unknown_stage, time_out_of_range])
def test_an_event_this_version_cannot_read_is_quarantined_and_ingestion_goes_on(
        fed: Fed, fake: FakeQueue,
        poison: Callable[[int, str], job_pb2.JobEvent]) -> None:
    bad = poison(2, "j1" if poison is unknown_state else "bad")
    fake.append(submitted(1, "j1"), bad, submitted(3, "j3"),
                changed(4, "j1", JobState.QUEUED, JobState.RUNNING))
    fed.ingestor.start()
    fed.wait_cursor(4)
    assert fed.core.get("j3")[0].state == JobState.QUEUED
    assert fed.core.get("j1")[0].state == JobState.RUNNING
    [(sequence, job_id, error, event)] = quarantined(fed)
    assert (sequence, job_id, event) == (2, bad.job_id, bad)  # kept as the queue sent it
    assert error.startswith("cannot read the event: ")
    wait_for(lambda: fake.acknowledged and fake.acknowledged[-1] == 4, "the acknowledgement")
    wait_for(lambda: fed.serving[-1], "SERVING")
    status = fed.ingestor.status()
    assert status.quarantined_count == 1 and status.caught_up and status.lag_events == 0
    assert status.last_error.startswith("event 2 quarantined: cannot read the event")
    assert fake.watched_from == [0]  # never reconnected to try the bad event again


def test_an_event_the_database_cannot_hold_is_quarantined_and_nothing_of_it_stays(
        fed: Fed, fake: FakeQueue) -> None:
    # SQLite refuses a string past its length limit the same way on every try (DataError);
    # lowered here so that a job's search text (every prompt) passes it while each entry fits.
    fed.store.db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
    big = job_pb2.JobEvent(sequence=2, job_id="big")
    big.time.FromDatetime(T0)
    big.submitted.job.CopyFrom(to_proto(Job(
        job_id="big", state=JobState.QUEUED, create_time=T0,
        entries=[entry(letter * 40_000, index=n) for n, letter in enumerate("abc")])))
    fake.append(submitted(1, "j1"), big, submitted(3, "j3"))
    fed.ingestor.start()
    fed.wait_cursor(3)
    [(sequence, job_id, error, event)] = quarantined(fed)
    assert (sequence, job_id, event) == (2, "big", big)
    assert error == ("cannot record the event: the history database refused the write: "
                     "string or blob too big")
    assert fed.store.load("big") is None  # the failed transaction left nothing behind
    assert fed.core.get("j3")[0].state == JobState.QUEUED
    with read_only(fed.path) as reader:
        stored = [row[0] for row in reader.db.execute("SELECT sequence FROM events")]
    assert stored == [1, 3]
    wait_for(lambda: fake.acknowledged and fake.acknowledged[-1] == 3, "the acknowledgement")


def test_quarantined_events_are_paged_oldest_first(fed: Fed, fake: FakeQueue) -> None:
    fake.append(*(unknown_stage(n, f"bad{n}") for n in range(1, 6)))
    fed.ingestor.start()
    fed.wait_cursor(5)
    seen: list[int] = []
    token = ""
    while True:
        page, token = fed.core.quarantined(2, token)
        seen += [event.sequence for event in page]
        if not token:
            break
    assert seen == [1, 2, 3, 4, 5]


def test_an_update_without_a_priority_keeps_the_records_priority(
        fed: Fed, fake: FakeQueue) -> None:
    first = submitted(1, "j1")
    first.submitted.job.priority = job_pb2.PRIORITY_HIGH
    relabelled = job_pb2.JobEvent(sequence=2, job_id="j1")
    relabelled.time.FromDatetime(T0 + timedelta(seconds=2))
    relabelled.updated.label = "renamed"  # the queue leaves priority unset (0)
    fed.core.apply(mapping.incoming_from_proto(first))
    fed.core.apply(mapping.incoming_from_proto(relabelled))
    job = fed.core.get("j1")[0]
    assert (job.label, job.priority) == ("renamed", Priority.HIGH)

"""A queue database written by the first schema (times as REAL seconds) keeps working: the
migration to INTEGER microseconds reads back the same jobs, times to the microsecond, the same
leases, runners, consumers and event log, and never hands out a sequence again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stablenew.contract.model import EntryResult, EntryStatus
from stablenew.queue import codec
from stablenew.queue.store import MIGRATIONS
from stablenew.runtime.sqlite_db import open_database
from stablenew.v1 import job_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness, make_entry, origin
from tests.service_harness import wait_for

# Recent enough that the queue's retention keeps everything; each with its microseconds.
NOW = datetime.now(UTC).replace(microsecond=0)
CREATED = NOW - timedelta(minutes=5, microseconds=-123_457)
STARTED = CREATED + timedelta(seconds=1, microseconds=500_001)
FINISHED = STARTED + timedelta(seconds=7, microseconds=250_999)
HEARTBEAT = NOW - timedelta(seconds=2, microseconds=-654_321)
# The last sequence the old queue handed out: events 4..7 were pruned.
OLD_LAST_SEQUENCE = 7


def old_job(job_id: str, state: int, **changes: Any) -> dict[str, Any]:
    """A `jobs` row as the first schema held it: times as time.time()-style REAL seconds."""
    row: dict[str, Any] = {
        "job_id": job_id, "state": state, "run_mode": job_pb2.RUN_MODE_QUEUE,
        "source": job_pb2.JOB_SOURCE_ADD_TO_QUEUE, "prompt_source": 2,
        "prompt_pack_id": "pack-castles", "draft_id": "draft-7", "draft_revision": 4,
        "retry_of_job_id": "", "priority": job_pb2.PRIORITY_NORMAL, "label": f"old {job_id}",
        "stage_count": 1, "has_adetailer": 0, "has_upscale": 0, "config_hash": "ab" * 32,
        "create_time": CREATED.timestamp(), "start_time": None, "complete_time": None,
        "update_time": CREATED.timestamp(), "error_message": "", "payload_summary": "1 entry",
        "runner_id": "", "attempt": 0, "metadata": json.dumps({"client": "old", "n": "1"},
                                                              sort_keys=True),
        "entry_count": 1, "estimated_images": 1, "required_models": '["sd15"]',
        "preferred_model": "sd15", "entries": codec.encode_entries([make_entry(0)]),
        "results": b"", "lane": 1, "priority_rank": 0, "order_key": 1.0, "lease_id": "",
        "lease_deadline": 0.0, "finished_by_lease_id": "", "cancel_requested": 0,
        "return_to_queue": 0, "request_id": None,
    }
    row.update(changes)
    return row


def old_event(sequence: int, job_id: str) -> tuple[Any, ...]:
    event = job_pb2.JobEvent(sequence=sequence, job_id=job_id)
    event.time.FromDatetime(CREATED)
    event.moved.queue_position = sequence
    return (sequence, CREATED.timestamp(), job_id, 0, event.SerializeToString())


def write_first_schema_database(path: Path) -> None:
    """The database as the first schema's code left it (built with that schema's DDL)."""
    open_database(path, MIGRATIONS[:1]).close()
    results = codec.encode_results([EntryResult(entry_index=0, status=EntryStatus.COMPLETED,
                                                duration=timedelta(seconds=7))])
    jobs = [
        old_job("done", 3, start_time=STARTED.timestamp(), complete_time=FINISHED.timestamp(),
                update_time=FINISHED.timestamp(), runner_id="gpu-old", attempt=1,
                results=results, finished_by_lease_id="lease-done", request_id="req-done"),
        old_job("waiting", 1, order_key=2.0),
        # A lease an old runner still holds, and one that ran out while the queue was down.
        old_job("held", 2, start_time=STARTED.timestamp(), runner_id="gpu-old", attempt=1,
                lease_id="lease-held", lease_deadline=(NOW + timedelta(hours=1)).timestamp()),
        old_job("lost", 2, start_time=STARTED.timestamp(), runner_id="gpu-gone", attempt=1,
                lease_id="lease-lost", lease_deadline=STARTED.timestamp()),
    ]
    with sqlite3.connect(path) as db:
        columns = list(jobs[0])
        db.executemany(f"INSERT INTO jobs ({', '.join(columns)}) "
                       f"VALUES ({', '.join(':' + c for c in columns)})", jobs)
        db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                       [old_event(n, job_id) for n, job_id in enumerate(("done", "waiting",
                                                                          "held"), start=1)])
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'",
                   (OLD_LAST_SEQUENCE,))
        db.execute("INSERT INTO consumers VALUES ('history', 3, ?)", (HEARTBEAT.timestamp(),))
        db.execute("INSERT INTO runners VALUES ('gpu-old', 'host-a', '10.0.0.5:50053', "
                   "'[\"sd15\"]', 'sd15', ?, 'held')", (HEARTBEAT.timestamp(),))


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[QueueHarness]:
    write_first_schema_database(tmp_path / "data" / "queue.sqlite3")
    harness = QueueHarness(tmp_path / "data", {"STABLENEW_LEASE_SECONDS": "30"})
    with harness.running():
        yield harness


def when(stamp: Any) -> datetime:
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    return moment


def test_the_jobs_read_back_the_same(migrated: QueueHarness) -> None:
    done = migrated.stub.GetJob(pb.GetJobRequest(job_id="done", view=job_pb2.JOB_VIEW_FULL)).job
    assert (when(done.create_time), when(done.start_time), when(done.complete_time),
            when(done.update_time)) == (CREATED, STARTED, FINISHED, FINISHED)
    assert done.state == job_pb2.JOB_STATE_COMPLETED
    assert (done.origin.prompt_pack_id, done.origin.draft_id, done.origin.draft_revision) == (
        "pack-castles", "draft-7", 4)
    assert (done.label, done.runner_id, done.attempt) == ("old done", "gpu-old", 1)
    assert dict(done.metadata) == {"client": "old", "n": "1"}
    assert list(done.entries) == [make_entry(0)]
    assert [r.duration.ToTimedelta() for r in done.results] == [timedelta(seconds=7)]
    waiting = migrated.get("waiting")
    assert (waiting.state, when(waiting.create_time), waiting.HasField("start_time")) == (
        job_pb2.JOB_STATE_QUEUED, CREATED, False)
    # The request id still deduplicates.
    again = migrated.stub.SubmitJob(pb.SubmitJobRequest(
        entries=[make_entry(0)], origin=origin(), request_id="req-done"), timeout=10).job
    assert again.job_id == "done"


def test_leases_keep_their_deadlines(migrated: QueueHarness) -> None:
    # The held lease is still current (its deadline was read back as an hour from now)...
    reply = migrated.stub.Heartbeat(pb.HeartbeatRequest(
        runner_id="gpu-old", lease_id="lease-held", job_id="held", attempt=1), timeout=10)
    assert not reply.cancel_requested
    assert migrated.get("held").state == job_pb2.JOB_STATE_RUNNING
    # ...and the one that ran out while the queue was down sends its job back to the queue.
    wait_for(lambda: migrated.get("lost").state == job_pb2.JOB_STATE_QUEUED,
             "the expired lease to return its job")


def test_runners_consumers_and_the_event_log_carry_over(migrated: QueueHarness) -> None:
    (runner,) = migrated.stub.ListRunners(pb.ListRunnersRequest()).runners
    assert (runner.info.runner_id, runner.info.address, when(runner.last_heartbeat_time)) == (
        "gpu-old", "10.0.0.5:50053", HEARTBEAT)
    stream = migrated.stub.WatchJobs(pb.WatchJobsRequest(after_sequence=0), timeout=10)
    replayed = []
    for reply in stream:
        replayed.append(reply.event)
        if len(replayed) == 3:
            stream.cancel()  # type: ignore[no-untyped-call]
            break
    assert [(e.sequence, e.job_id, e.moved.queue_position) for e in replayed] == [
        (1, "done", 1), (2, "waiting", 2), (3, "held", 3)]
    # A consumer registered implicitly (by a watch) is listed, created at its last activity.
    (consumer,) = migrated.stub.ListConsumers(pb.ListConsumersRequest()).consumers
    assert (consumer.consumer_id, consumer.acknowledged_sequence) == ("history", 3)
    assert when(consumer.create_time) == when(consumer.last_active_time) == HEARTBEAT
    # Sequences go on after the last one handed out, not after the last one kept.
    migrated.submit()
    state = migrated.stub.GetQueueState(pb.GetQueueStateRequest()).state
    assert state.last_sequence == OLD_LAST_SEQUENCE + 1


def test_every_time_is_stored_as_integer_microseconds(migrated: QueueHarness) -> None:
    migrated.stop()
    with sqlite3.connect(migrated.data_dir / "queue.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        stored = db.execute("SELECT create_time, start_time, complete_time, update_time "
                            "FROM jobs WHERE job_id = 'done'").fetchone()
        assert stored == tuple(int((moment - datetime(1970, 1, 1, tzinfo=UTC))
                                   / timedelta(microseconds=1))
                               for moment in (CREATED, STARTED, FINISHED, FINISHED))
        for table, column in (("jobs", "create_time"), ("jobs", "update_time"),
                              ("jobs", "lease_deadline"), ("events", "time"),
                              ("consumers", "update_time"), ("runners", "last_heartbeat")):
            kinds = {row[0] for row in db.execute(f"SELECT typeof({column}) FROM {table}")}
            assert kinds == {"integer"}, (table, column)
        kinds = {row[0] for row in db.execute(
            "SELECT typeof(start_time) FROM jobs WHERE job_id <> 'waiting'")}
        assert kinds == {"integer"}
        assert db.execute("SELECT acked_sequence FROM consumers").fetchone()[0] == 3

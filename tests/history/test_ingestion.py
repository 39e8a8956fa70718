"""The history fed by a real queue: every kind of job and ending recorded with every transition
exactly once and the queue's own record, restarts, watchers, the user's changes, an unreachable
queue, failed writes, and events the queue pruned before the history read them."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest

from stablenew.contract.job_row import JOB_COLUMNS
from stablenew.contract.model import StageType
from stablenew.contract.proto_mapping import to_proto
from stablenew.history import app
from stablenew.history.store import HistoryStore
from stablenew.history.store.reads import read_only
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2, pipeline_pb2
from stablenew.v1 import queue_service_pb2 as queue_pb
from tests.history.harness import INGESTION, NOT_SERVING, SERVING, HistoryHarness
from tests.history.queue_helpers import (
    acknowledged,
    assert_same_record,
    expected_transitions,
    is_pruned,
    kept_events,
    submit,
)
from tests.history.records import entry
from tests.queue.harness import QueueHarness, all_events, make_entry, origin
from tests.queue.processes import free_port
from tests.queue.protocol_runner import ProtocolRunner
from tests.service_harness import wait_for

COMPLETED, FAILED, CANCELLED = (job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED,
                                job_pb2.JOB_STATE_CANCELLED)
QUEUED, RUNNING = job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING


def runner_for(queue: QueueHarness, name: str = "gpu-1") -> ProtocolRunner:
    assert queue.channel is not None
    return ProtocolRunner(queue.channel, name)


def caught_up(history: HistoryHarness, queue: QueueHarness) -> None:
    """Wait until the history has applied the queue's last event."""
    last = queue.stub.GetQueueState(queue_pb.GetQueueStateRequest()).state.last_sequence

    def applied() -> bool:
        with read_only(history.database) as reader:
            return reader.cursor() >= last
    wait_for(applied, f"the history to apply event {last}")


def assert_recorded_like_the_queue(history: HistoryHarness, queue: QueueHarness,
                                   job_ids: list[str]) -> None:
    caught_up(history, queue)
    events = all_events(queue.stub)
    for job_id in job_ids:
        recorded = history.get(job_id)
        assert_same_record(recorded.job, queue.get(job_id))
        assert list(recorded.transitions) == expected_transitions(events, job_id)
        listed = history.stub.ListJobEvents(pb.ListJobEventsRequest(job_id=job_id,
                                                                    page_size=1000))
        assert list(listed.events) == kept_events(events, job_id)


@pytest.mark.parametrize(("direct", "pack_id"), [
    (False, ""), (True, ""), (False, "pack-castles"), (True, "pack-castles")],
    ids=["queue-manual", "direct-manual", "queue-pack", "direct-pack"])
def test_the_record_of_a_finished_job(history: HistoryHarness, queue: QueueHarness,
                                      direct: bool, pack_id: str) -> None:
    prompts = ("castle in fog", "castle at night, adetailer")
    submitted = submit(queue.stub, direct=direct, pack_id=pack_id, prompts=prompts,
                       label="my batch", stages=(StageType.TXT2IMG, StageType.ADETAILER))
    leased = runner_for(queue).lease(wait_seconds=5)
    assert leased is not None and leased.job.job_id == submitted.job_id
    runner_for(queue).heartbeat(leased, 0)
    runner_for(queue).complete(leased)
    record = history.wait_state(submitted.job_id, COMPLETED).job

    origin = record.origin
    assert origin.run_mode == (job_pb2.RUN_MODE_DIRECT if direct else job_pb2.RUN_MODE_QUEUE)
    assert origin.source == (job_pb2.JOB_SOURCE_RUN_NOW if direct
                             else job_pb2.JOB_SOURCE_ADD_TO_QUEUE)
    assert origin.prompt_source == (pipeline_pb2.PROMPT_SOURCE_PACK if pack_id
                                    else pipeline_pb2.PROMPT_SOURCE_MANUAL)
    assert (origin.prompt_pack_id, origin.draft_id, origin.draft_revision) == (
        pack_id, "draft-1", 3)
    assert (record.label, record.priority, dict(record.metadata)) == (
        "my batch", job_pb2.PRIORITY_NORMAL, {"client": "test"})
    assert (record.entry_count, record.estimated_images, record.stage_count) == (2, 2, 2)
    assert record.has_adetailer and not record.has_upscale
    assert record.config_hash == submitted.config_hash
    assert record.payload_summary == submitted.payload_summary
    assert (record.runner_id, record.attempt, record.queue_position) == ("gpu-1", 1, -1)
    assert record.create_time == submitted.create_time
    assert record.start_time.ToDatetime() <= record.complete_time.ToDatetime()
    # Exactly what was queued, entry by entry, with its pack row.
    assert list(record.entries) == list(leased.job.entries)
    assert [e.origin.prompt_pack_id for e in record.entries] == [pack_id, pack_id]
    assert [e.origin.row_index for e in record.entries] == [0, 1]
    assert [e.prompt for e in record.entries] == list(prompts)
    assert [list(e.stage_plan) for e in record.entries] == [
        [pipeline_pb2.STAGE_TYPE_TXT2IMG, pipeline_pb2.STAGE_TYPE_ADETAILER]] * 2
    # And what came out, per entry, with the hash the runner recomputed.
    assert [r.status for r in record.results] == [job_pb2.ENTRY_STATUS_COMPLETED] * 2
    assert [r.executed_config_hash for r in record.results] == [
        e.config_hash for e in record.entries]
    assert [t.to_state for t in history.get(submitted.job_id).transitions] == [
        QUEUED, RUNNING, COMPLETED]
    assert_recorded_like_the_queue(history, queue, [submitted.job_id])
    # The filters find it by what it is.
    assert history.list_ids(run_mode=origin.run_mode) == [submitted.job_id]
    assert history.list_ids(prompt_source=origin.prompt_source) == [submitted.job_id]
    assert history.list_ids(text="AT NIGHT") == [submitted.job_id]
    if pack_id:
        assert history.list_ids(prompt_pack_id=pack_id) == [submitted.job_id]


def test_a_job_that_mixes_packs_is_found_by_each_of_them(history: HistoryHarness,
                                                        queue: QueueHarness) -> None:
    entries = [to_proto(entry("castle in fog", "pack-castles", 0)),
               to_proto(entry("an old knight", "pack-portraits", 1))]
    job = queue.stub.SubmitJob(queue_pb.SubmitJobRequest(entries=entries, origin=job_pb2.JobOrigin(
        run_mode=job_pb2.RUN_MODE_QUEUE, source=job_pb2.JOB_SOURCE_ADD_TO_QUEUE,
        prompt_source=pipeline_pb2.PROMPT_SOURCE_PACK)), timeout=10).job
    assert runner_for(queue).run_one() is not None
    history.wait_state(job.job_id, COMPLETED)
    for pack in ("pack-castles", "pack-portraits"):
        assert history.list_ids(prompt_pack_id=pack) == [job.job_id]
    assert history.list_ids(prompt_pack_id="pack-other") == []


def test_the_queue_and_the_history_store_a_job_in_the_same_columns(
        history: HistoryHarness, queue: QueueHarness) -> None:
    """One job-row encoding (stablenew.contract.job_row): the columns both tables have hold the
    same values, times as INTEGER microseconds."""
    job_id = submit(queue.stub, pack_id="pack-a", label="same everywhere").job_id
    assert runner_for(queue).run_one() is not None
    history.wait_state(job_id, COMPLETED)
    caught_up(history, queue)
    select = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE job_id = ?"
    with sqlite3.connect(queue.data_dir / "queue.sqlite3") as db:
        in_queue = db.execute(select, (job_id,)).fetchone()
    with read_only(history.database) as reader:
        in_history = tuple(reader.db.execute(select, (job_id,)).fetchone())
    assert in_queue == in_history
    times = dict(zip(JOB_COLUMNS, in_queue, strict=True))
    assert all(isinstance(times[name], int) for name in
               ("create_time", "start_time", "complete_time", "update_time"))


def test_images_and_results_are_recorded_per_entry(history: HistoryHarness,
                                                   queue: QueueHarness) -> None:
    job = submit(queue.stub, prompts=("one", "two"), pack_id="pack-a")
    leased = runner_for(queue).lease(wait_seconds=5)
    assert leased is not None
    results = runner_for(queue).results(leased)
    for number, result in enumerate(results):
        result.prompt_pack_id, result.pack_name, result.row_index = "pack-a", "Pack A", number
        result.duration.FromMilliseconds(1500 + number)
        for image in range(2):
            result.images.add(path=f"out/{job.job_id}/{number}-{image}.png", sha256="ab" * 32,
                              width=512, height=512, seed=1000 + image,
                              stage=pipeline_pb2.STAGE_TYPE_TXT2IMG, size_bytes=1234,
                              runner_id="gpu-1")
    results[1].status = job_pb2.ENTRY_STATUS_FAILED
    results[1].error_message = "out of memory"
    runner_for(queue).complete(leased, results=results)
    record = history.wait_state(job.job_id, FAILED).job
    assert list(record.results) == results
    assert record.error_message == "out of memory"
    assert_recorded_like_the_queue(history, queue, [job.job_id])


def test_every_ending_and_every_transition_exactly_once(history: HistoryHarness,
                                                       queue: QueueHarness) -> None:
    runner = runner_for(queue)
    # Completed.
    done = submit(queue.stub, prompts=("done",))
    assert runner.run_one() is not None
    # Failed for good.
    failed = submit(queue.stub, prompts=("fails",))
    leased = runner.lease(wait_seconds=5)
    assert leased is not None
    runner.fail(leased, "the WebUI crashed")
    # Failed retryably, then completed on the second attempt.
    retried = submit(queue.stub, prompts=("retried",))
    leased = runner.lease(wait_seconds=5)
    assert leased is not None
    runner.fail(leased, "timeout", retryable=True)
    second = runner.lease(wait_seconds=5)
    assert second is not None and second.lease.attempt == 2
    runner.complete(second)
    # Cancelled while queued.
    cancelled_queued = submit(queue.stub, prompts=("never ran",))
    queue.stub.CancelJob(queue_pb.CancelJobRequest(job_id=cancelled_queued.job_id,
                                                   reason="changed my mind"))
    # Cancelled while running: the runner hears it in a heartbeat and stops.
    cancelled_running = submit(queue.stub, prompts=("stopped",))
    leased = runner.lease(wait_seconds=5)
    assert leased is not None
    queue.stub.CancelJob(queue_pb.CancelJobRequest(job_id=cancelled_running.job_id))
    assert runner.heartbeat(leased).cancel_requested
    runner.complete(leased, cancelled=True)
    # Returned to the queue by a cancel, then run.
    returned = submit(queue.stub, prompts=("returned",))
    leased = runner.lease(wait_seconds=5)
    assert leased is not None
    queue.stub.CancelJob(queue_pb.CancelJobRequest(job_id=returned.job_id,
                                                   return_to_queue=True))
    runner.complete(leased, cancelled=True)
    assert runner.run_one() is not None

    endings = {done.job_id: COMPLETED, failed.job_id: FAILED, retried.job_id: COMPLETED,
               cancelled_queued.job_id: CANCELLED, cancelled_running.job_id: CANCELLED,
               returned.job_id: COMPLETED}
    for job_id, state in endings.items():
        history.wait_state(job_id, state)
    assert_recorded_like_the_queue(history, queue, list(endings))
    states = {job_id: [t.to_state for t in history.get(job_id).transitions]
              for job_id in endings}
    assert states[retried.job_id] == [QUEUED, RUNNING, QUEUED, RUNNING, COMPLETED]
    assert states[cancelled_queued.job_id] == [QUEUED, CANCELLED]
    assert states[returned.job_id] == [QUEUED, RUNNING, QUEUED, RUNNING, COMPLETED]
    assert history.get(failed.job_id).job.error_message == "the WebUI crashed"
    assert history.get(cancelled_running.job_id).job.cancel_requested
    assert not history.get(returned.job_id).job.cancel_requested
    attempts = [t.attempt for t in history.get(retried.job_id).transitions]
    assert attempts == [0, 1, 1, 2, 2]


def test_an_active_job_is_recorded_as_it_is_now(history: HistoryHarness,
                                                queue: QueueHarness) -> None:
    queued = submit(queue.stub, prompts=("waiting",), direct=False)
    running = submit(queue.stub, prompts=("running",), direct=True)
    leased = runner_for(queue).lease(wait_seconds=5)
    assert leased is not None and leased.job.job_id == running.job_id  # DIRECT goes first
    runner_for(queue).heartbeat(leased, 0, step=7)
    record = history.wait_state(running.job_id, RUNNING).job
    caught_up(history, queue)
    assert history.get(running.job_id).job.progress.step == 7
    assert record.complete_time.seconds == 0
    assert history.get(queued.job_id).job.state == QUEUED
    assert history.list_ids(states=[QUEUED, RUNNING]) == [running.job_id, queued.job_id]


def test_entries_sent_in_a_non_standard_form_are_recorded_as_the_queue_sent_them(
        history: HistoryHarness, queue: QueueHarness) -> None:
    # Another client may set a submessage to its defaults or carry a field of a newer version;
    # neither changes the config hash, and the queue's event, its GetJob and the history's
    # record must still be the same entries.
    standard, odd = make_entry(0), make_entry(1)
    odd.hires_fix.SetInParent()
    odd.origin.SetInParent()
    odd.MergeFromString(b"\xf8\x07\x01")  # field 127, unknown to this version
    job = queue.stub.SubmitJob(queue_pb.SubmitJobRequest(entries=[standard, odd],
                                                         origin=origin()), timeout=10).job
    assert_recorded_like_the_queue(history, queue, [job.job_id])
    submitted = next(event for event in all_events(queue.stub)
                     if event.WhichOneof("payload") == "submitted")
    assert list(submitted.submitted.job.entries) == list(queue.get(job.job_id).entries)
    assert not submitted.submitted.job.entries[1].HasField("hires_fix")
    assert b"\xf8\x07\x01" not in submitted.submitted.job.entries[1].SerializeToString()


def test_a_restart_keeps_everything_and_records_nothing_twice(
        history: HistoryHarness, queue: QueueHarness) -> None:
    runner = runner_for(queue)
    first = [submit(queue.stub, prompts=(f"before {n}",)).job_id for n in range(3)]
    for _ in first:
        assert runner.run_one() is not None
    caught_up(history, queue)
    before = {job_id: history.get(job_id) for job_id in first}
    history.restart()
    history.wait_health(SERVING, INGESTION)
    assert {job_id: history.get(job_id) for job_id in first} == before
    later = submit(queue.stub, prompts=("after",)).job_id
    assert runner.run_one() is not None
    history.wait_state(later, COMPLETED)
    assert_recorded_like_the_queue(history, queue, [*first, later])
    # The queue was told everything the history committed.
    last = queue.stub.GetQueueState(queue_pb.GetQueueStateRequest()).state.last_sequence
    wait_for(lambda: acknowledged(queue.data_dir) == last, "the acknowledgement")


def test_watch_history_streams_records_as_they_change(history: HistoryHarness,
                                                      queue: QueueHarness) -> None:
    received: list[pb.WatchHistoryResponse] = []
    finished_only: list[pb.WatchHistoryResponse] = []
    streams = [
        (history.stub.WatchHistory(pb.WatchHistoryRequest(), timeout=30), received),
        (history.stub.WatchHistory(pb.WatchHistoryRequest(
            filter=pb.JobFilter(states=[COMPLETED])), timeout=30), finished_only),
    ]

    def read(stream: object, into: list[pb.WatchHistoryResponse]) -> None:
        try:
            for reply in stream:  # type: ignore[attr-defined]
                into.append(reply)
        except grpc.RpcError:
            pass

    threads = [threading.Thread(target=read, args=pair) for pair in streams]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # both subscribed
    job = submit(queue.stub, prompts=("watched",))
    assert runner_for(queue).run_one() is not None
    wait_for(lambda: any(r.job.state == COMPLETED for r in received), "the completed record")
    history.stub.DeleteJob(pb.DeleteJobRequest(job_id=job.job_id))
    wait_for(lambda: any(r.deleted for r in received), "the deletion")
    wait_for(lambda: any(r.deleted for r in finished_only), "the deletion (filtered)")
    for stream, _ in streams:
        stream.cancel()  # type: ignore[no-untyped-call]
    for thread in threads:
        thread.join(timeout=10)
    assert {r.job.job_id for r in received} == {job.job_id}
    assert received[-1].deleted and not received[0].deleted
    assert received[0].job.state in (QUEUED, RUNNING, COMPLETED)
    # The filtered watcher never saw the job before it matched.
    assert [(r.job.state, r.deleted) for r in finished_only] == [(COMPLETED, False),
                                                                 (job_pb2.JOB_STATE_UNSPECIFIED,
                                                                  True)]


def test_label_bookmark_and_delete(history: HistoryHarness, queue: QueueHarness) -> None:
    job_id = submit(queue.stub, prompts=("keep me",), label="from the queue").job_id
    assert runner_for(queue).run_one() is not None
    history.wait_state(job_id, COMPLETED)
    updated = history.stub.UpdateJob(pb.UpdateJobRequest(job_id=job_id, bookmarked=True)).job
    assert (updated.label, updated.bookmarked) == ("from the queue", True)
    updated = history.stub.UpdateJob(pb.UpdateJobRequest(job_id=job_id, label="")).job
    assert (updated.label, updated.bookmarked) == ("", True)
    assert history.get(job_id).job.bookmarked
    history.stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id))
    for call in (lambda: history.get(job_id),
                 lambda: history.stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id)),
                 lambda: history.stub.UpdateJob(pb.UpdateJobRequest(job_id=job_id, label="x"))):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert details_of(caught.value).reason == "JOB_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as caught:
        history.stub.UpdateJob(pb.UpdateJobRequest())
    assert [v.field for v in details_of(caught.value).violations] == ["job_id"]


def test_a_job_deleted_while_queued_stays_deleted(history: HistoryHarness,
                                                  queue: QueueHarness) -> None:
    job_id = submit(queue.stub, prompts=("unwanted",)).job_id
    history.wait_state(job_id, QUEUED)
    history.stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id))
    assert runner_for(queue).run_one() is not None
    later = submit(queue.stub, prompts=("wanted",)).job_id
    assert runner_for(queue).run_one() is not None
    history.wait_state(later, COMPLETED)
    caught_up(history, queue)
    assert history.find(job_id) is None


def test_serving_while_the_queue_is_unreachable_with_the_ingestion_reported_apart(
        tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    history = HistoryHarness(tmp_path / "history-data", address).start()
    queue = QueueHarness(tmp_path / "queue-data", {"STABLENEW_QUEUE_ADDR": address})
    try:
        # Started alone: the history serves (and says so); only its ingestion waits.
        history.wait_health(NOT_SERVING, INGESTION)
        wait_for(lambda: history.ingestion_status().last_error, "a failed attempt")
        assert history.health() == SERVING
        assert history.health(app.SERVICE.full_name) == SERVING
        status = history.ingestion_status()
        assert status.enabled and not status.caught_up and not status.queue_reachable
        assert "the queue is unreachable (UNAVAILABLE)" in status.last_error
        assert status.HasField("last_error_time")
        # Queries answer from the database meanwhile.
        assert history.list_ids() == []
        queue.start()
        history.wait_health(SERVING, INGESTION)
        job_id = submit(queue.stub, prompts=("after the outage",)).job_id
        assert runner_for(queue).run_one() is not None
        record = history.wait_state(job_id, COMPLETED)
        status = history.ingestion_status()
        assert status.caught_up and status.queue_reachable
        assert status.recorded_sequence == status.queue_last_sequence >= 3
        assert status.lag_events == 0
        queue.stop()
        history.wait_health(NOT_SERVING, INGESTION)
        # The queue is away: the records are still served and the service still SERVING.
        assert history.health() == SERVING
        assert history.get(job_id) == record
        assert not history.ingestion_status().caught_up
        queue.start()
        history.wait_health(SERVING, INGESTION)
        assert_recorded_like_the_queue(history, queue, [job_id])
    finally:
        history.stop()
        queue.stop()


def test_a_failed_write_is_retried_and_nothing_after_it_is_acknowledged(
        history: HistoryHarness, queue: QueueHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    caught_up(history, queue)
    failing = threading.Event()
    failing.set()
    attempts: list[int] = []
    real_add_event = HistoryStore.add_event

    def add_event(self: HistoryStore, sequence: int, ref: int, cut: int,
                  payload: bytes) -> None:
        if failing.is_set():
            attempts.append(sequence)
            raise sqlite3.OperationalError("database or disk is full")
        real_add_event(self, sequence, ref, cut, payload)

    monkeypatch.setattr(HistoryStore, "add_event", add_event)
    job_id = submit(queue.stub, prompts=("disk full",)).job_id
    wait_for(lambda: len(attempts) >= 3, "three attempts at the same event")
    assert set(attempts) == {attempts[0]}  # the same event, again and again
    assert history.health(INGESTION) == NOT_SERVING
    assert history.health() == SERVING  # the records are still served
    status = history.ingestion_status()
    assert status.last_error.startswith("recording an event failed (event ")
    assert status.last_error.endswith(": database or disk is full)")
    assert status.lag_events >= 1
    assert status.quarantined_count == 0  # a full disk passes: the event is not quarantined
    assert history.find(job_id) is None
    assert acknowledged(queue.data_dir) < attempts[0]
    failing.clear()
    assert runner_for(queue).run_one() is not None
    history.wait_state(job_id, COMPLETED)
    history.wait_health(SERVING, INGESTION)
    assert_recorded_like_the_queue(history, queue, [job_id])


def test_events_pruned_before_the_history_read_them(tmp_path: Path) -> None:
    queue = QueueHarness(tmp_path / "queue-data", {
        "STABLENEW_EVENT_RETENTION_SECONDS": "0.01", "STABLENEW_PRUNE_INTERVAL_SECONDS": "0.05"})
    queue.start()
    history = HistoryHarness(tmp_path / "history-data", queue.address)
    try:
        runner = runner_for(queue)
        gone = submit(queue.stub, prompts=("ran before the history existed",)).job_id
        assert runner.run_one() is not None
        midway = submit(queue.stub, prompts=("running when the history started",)).job_id
        leased = runner.lease(wait_seconds=5)
        assert leased is not None and leased.job.job_id == midway
        wait_for(lambda: is_pruned(queue.stub), "the queue to prune its log")
        history.start()
        history.wait_health(SERVING, INGESTION)
        runner.complete(leased)
        after = submit(queue.stub, prompts=("after",)).job_id
        assert runner.run_one() is not None
        history.wait_state(after, COMPLETED, transitions=3)
        record = history.wait_state(midway, COMPLETED)
        # Recorded from the queue's record (entries included) and the events it still had.
        assert [e.prompt for e in record.job.entries] == ["running when the history started"]
        assert [(t.from_state, t.to_state) for t in record.transitions] == [(RUNNING, COMPLETED)]
        assert_same_record(record.job, queue.get(midway))
        assert history.find(gone) is None
        with read_only(history.database) as reader:
            gaps = reader.db.execute("SELECT first_sequence, last_sequence FROM gaps").fetchall()
        assert len(gaps) == 1 and gaps[0][0] == 1
    finally:
        history.stop()
        queue.stop()


# The queue's message limit below: a job of 17 entries with 57,000-character prompts submits
# in about 0.95 MiB, and its results (which repeat the prompts) take as much.
SMALL_MESSAGE_BYTES = 1024 * 1024


def test_a_completion_too_large_to_send_is_refused_and_the_history_follows_on(
        tmp_path: Path) -> None:
    # A failed entry's error is the job's error too, so the `state_changed` event carried it
    # twice: a CompleteJob under the limit made an event over it, and once accepted every
    # watch of the log failed at it, the history's ingestion on every retry.
    queue = QueueHarness(tmp_path / "queue-data", {
        "STABLENEW_LEASE_SECONDS": "30", "STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    with queue.running(), HistoryHarness(tmp_path / "history-data",
                                         queue.address).running() as history:
        entries = [make_entry(i, prompt=f"prompt {i} " + "x" * 57_000) for i in range(17)]
        job_id = queue.stub.SubmitJob(queue_pb.SubmitJobRequest(entries=entries,
                                                                origin=origin())).job.job_id
        runner = runner_for(queue)
        leased = runner.lease(wait_seconds=5)
        assert leased is not None
        results = runner.results(leased, failed=lambda index: index == 0)
        request = queue_pb.CompleteJobRequest(
            runner_id=runner.runner_id, lease_id=leased.lease.lease_id, job_id=job_id,
            attempt=leased.lease.attempt, results=results)
        results[0].error_message = "e" * (SMALL_MESSAGE_BYTES - request.ByteSize() - 2000)
        request = queue_pb.CompleteJobRequest(
            runner_id=runner.runner_id, lease_id=leased.lease.lease_id, job_id=job_id,
            attempt=leased.lease.attempt, results=results)
        assert SMALL_MESSAGE_BYTES - 2100 < request.ByteSize() < SMALL_MESSAGE_BYTES
        with pytest.raises(grpc.RpcError) as refused:
            runner.stub.CompleteJob(request, timeout=10)
        details = details_of(refused.value)
        assert details.code.name == "RESOURCE_EXHAUSTED"
        assert [v.field for v in details.violations] == ["results"]
        # What the runner does then: the job fails with the reason, without its results.
        runner.stub.FailJob(queue_pb.FailJobRequest(
            runner_id=runner.runner_id, lease_id=leased.lease.lease_id, job_id=job_id,
            attempt=leased.lease.attempt, error_message="the results could not be reported"),
            timeout=10)
        after = submit(queue.stub, prompts=("after the large one",)).job_id
        assert runner.run_one() is not None
        assert len(all_events(queue.stub)) == 7  # the whole log reads from 0
        history.wait_state(after, COMPLETED, transitions=3)
        record = history.wait_state(job_id, FAILED, transitions=3)
        assert record.job.error_message == "the results could not be reported"
        assert len(record.job.entries) == 17

"""Units: how events build a record, the mapping's round trips, the stored event encoding, the
desktop file parser, the watchers' bounded buffers and the ingestion's backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from stablenew.contract.errors import ServiceError
from stablenew.contract.model import (
    EntryResult,
    EntryStatus,
    Job,
    JobOrigin,
    JobProgress,
    JobState,
    JobTransition,
    Priority,
    RunMode,
)
from stablenew.contract.proto_mapping import from_proto, job_to_proto, to_proto
from stablenew.history import codec, domain, mapping
from stablenew.history.domain import (
    CancelRequested,
    JobFilter,
    ProgressChanged,
    QueueEvent,
    StateChanged,
    Submitted,
)
from stablenew.history.ingest import Backoff
from stablenew.history.watchers import Broadcaster, Change
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2
from tests.history.records import entry

T = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def submitted_job() -> Job:
    return Job(job_id="j1", state=JobState.QUEUED, origin=JobOrigin(run_mode=RunMode.QUEUE),
               label="Night Run", create_time=at(0), update_time=at(0),
               entries=[entry("castle at night"), entry("Castle at NIGHT", index=1)],
               queue_position=4)


def event(sequence: int, seconds: float, payload: domain.Payload) -> QueueEvent:
    return QueueEvent(sequence, at(seconds), "j1", payload)


# --- the record from events -----------------------------------------------------------------


def test_a_record_through_a_retry_and_a_cancel() -> None:
    applied = domain.apply_event(None, event(1, 0, Submitted(submitted_job())))
    assert applied.created and applied.job.state == JobState.QUEUED
    assert applied.transition == JobTransition(1, JobState.UNSPECIFIED, JobState.QUEUED, at(0),
                                               "submitted", "", 0)
    job = applied.job
    steps: list[domain.Payload] = [
        StateChanged(JobState.QUEUED, JobState.RUNNING, "leased", "gpu-1", 1),
        ProgressChanged(JobProgress(step=5, steps=20)),
        CancelRequested(return_to_queue=True),
        StateChanged(JobState.RUNNING, JobState.QUEUED, "returned", "gpu-1", 1),
        StateChanged(JobState.QUEUED, JobState.RUNNING, "leased", "gpu-2", 2),
    ]
    transitions = []
    for number, payload in enumerate(steps, start=2):
        applied = domain.apply_event(job, event(number, number, payload))
        job = applied.job
        if applied.transition:
            transitions.append(applied.transition)
    assert job.start_time == at(2)  # the first lease, not the second
    assert not job.cancel_requested  # back in the queue, the cancel is forgotten
    assert (job.runner_id, job.attempt, job.state) == ("gpu-2", 2, JobState.RUNNING)
    assert job.progress.step == 5
    done = domain.apply_event(job, event(9, 30, StateChanged(
        JobState.RUNNING, JobState.COMPLETED, "completed", "gpu-2", 2, "",
        [EntryResult(entry_index=0, status=EntryStatus.COMPLETED)])))
    assert done.results_changed
    assert (done.job.complete_time, done.job.update_time) == (at(30), at(30))
    assert (done.job.queue_position, done.job.progress) == (-1, JobProgress())
    assert done.transition is not None
    assert [t.sequence for t in [*transitions, done.transition]] == [2, 5, 6, 9]


def test_applying_does_not_touch_the_record_passed_in() -> None:
    job = domain.apply_event(None, event(1, 0, Submitted(submitted_job()))).job
    domain.apply_event(job, event(2, 1, StateChanged(JobState.QUEUED, JobState.CANCELLED)))
    assert job.state == JobState.QUEUED


def test_an_event_for_an_unknown_job_is_an_error_until_backfilled() -> None:
    later = event(7, 5, StateChanged(JobState.RUNNING, JobState.COMPLETED, "done", "gpu", 1))
    with pytest.raises(domain.UnknownJobError):
        domain.apply_event(None, later)
    skeleton = domain.backfilled(None, later)
    assert (skeleton.state, skeleton.create_time, skeleton.queue_position) == (
        JobState.RUNNING, at(5), -1)
    fetched = submitted_job()
    fetched.state, fetched.complete_time = JobState.COMPLETED, at(9)
    fetched.results = [EntryResult()]
    base = domain.backfilled(fetched, later)
    assert (base.state, base.complete_time, base.results) == (JobState.RUNNING, None, [])
    assert len(base.entries) == 2 and fetched.state == JobState.COMPLETED
    assert domain.apply_event(base, later).job.state == JobState.COMPLETED


def test_search_text_and_matching() -> None:
    job = submitted_job()
    text = domain.search_text(job)
    assert text == "night run\ncastle at night"  # lowercased, each prompt once
    imported = Job(job_id="x", payload_summary="Misty Forest | sdxl")
    assert domain.search_text(imported) == "misty forest | sdxl"
    assert domain.matches(job, JobFilter(text=" NIGHT "), text)
    assert not domain.matches(job, JobFilter(text="day"), text)
    assert domain.matches(job, JobFilter(states=(JobState.QUEUED,), created_after=at(0),
                                         created_before=at(1)), text)
    assert not domain.matches(job, JobFilter(created_before=at(0)), text)
    assert not domain.matches(job, JobFilter(bookmarked=True), text)


# --- mapping and codec ------------------------------------------------------------------------


def queue_event_messages() -> list[job_pb2.JobEvent]:
    submitted = job_pb2.JobEvent(sequence=1, job_id="j1")
    submitted.time.FromDatetime(at(0))
    submitted.submitted.job.CopyFrom(to_proto(submitted_job()))
    finished = job_pb2.JobEvent(sequence=2, job_id="j1")
    finished.time.FromDatetime(at(3))
    finished.state_changed.from_state = job_pb2.JOB_STATE_RUNNING
    finished.state_changed.to_state = job_pb2.JOB_STATE_FAILED
    finished.state_changed.error_message = "boom"
    finished.state_changed.results.add(entry_index=1, status=job_pb2.ENTRY_STATUS_FAILED,
                                       error_message="boom")
    progress = job_pb2.JobEvent(sequence=3, job_id="j1")
    progress.progress.progress.step = 3
    paused = job_pb2.JobEvent(sequence=4)
    paused.queue_paused.SetInParent()
    return [submitted, finished, progress, paused]


def test_events_from_the_queue_and_what_is_kept_of_them() -> None:
    submitted, finished, progress, paused = queue_event_messages()
    incoming = mapping.incoming_from_proto(submitted)
    assert isinstance(incoming.event.payload, Submitted)
    assert incoming.event.payload.job == submitted_job()
    assert incoming.cut == codec.CUT_ENTRIES
    assert len(job_pb2.JobEvent.FromString(incoming.payload).submitted.job.entries) == 0
    restored = codec.restore_event(incoming.payload, incoming.cut, submitted_job().entries, [])
    assert restored == submitted
    changed = mapping.incoming_from_proto(finished)
    assert changed.cut == codec.CUT_RESULTS
    results = [EntryResult(entry_index=1, status=EntryStatus.FAILED, error_message="boom")]
    assert codec.restore_event(changed.payload, changed.cut, [], results) == finished
    for not_kept in (progress, paused):
        assert not mapping.incoming_from_proto(not_kept).event.kept
    assert isinstance(mapping.event_from_proto(paused).payload, domain.QueueLevel)


def _updated(label: str, priority: int) -> job_pb2.JobEvent:
    message = job_pb2.JobEvent(sequence=2, job_id="j1")
    message.time.FromDatetime(at(1))
    message.updated.label = label
    message.updated.priority = job_pb2.Priority.ValueType(priority)
    return message


def test_an_updated_event_sets_label_and_priority_but_not_a_priority_it_does_not_know() -> None:
    job = domain.apply_event(None, event(1, 0, Submitted(submitted_job()))).job
    high = mapping.event_from_proto(_updated("renamed", job_pb2.PRIORITY_HIGH))
    job = domain.apply_event(job, high).job
    assert (job.label, job.priority, job.update_time) == ("renamed", Priority.HIGH, at(1))
    # A value from a newer queue: the label still applies, the priority stays HIGH.
    future = mapping.event_from_proto(_updated("again", 9))
    assert future.payload == domain.Updated("again", None)
    job = domain.apply_event(job, future).job
    assert (job.label, job.priority) == ("again", Priority.HIGH)


def test_job_and_transition_round_trips() -> None:
    job = submitted_job()
    job.results = [EntryResult(entry_index=0, status=EntryStatus.COMPLETED,
                               duration=timedelta(seconds=2))]
    full = job_to_proto(job, job_pb2.JOB_VIEW_FULL)
    assert mapping.job_from_proto(full) == job
    basic = job_to_proto(job, job_pb2.JOB_VIEW_BASIC)
    assert not basic.entries and not basic.results
    transition = JobTransition(3, JobState.QUEUED, JobState.RUNNING, at(1), "leased", "g", 1)
    assert from_proto(JobTransition, mapping.transition_to_proto(transition)) == transition


def imported(record: domain.ImportedJob) -> pb.ImportedJob:
    """A record as the ImportHistory request carries it."""
    return pb.ImportedJob(job=to_proto(record.job),
                          transitions=[to_proto(t) for t in record.transitions])


def test_imported_jobs_round_trip_and_are_checked() -> None:
    record = domain.ImportedJob(
        Job(job_id="old", state=JobState.COMPLETED, create_time=at(0), queue_position=-1),
        [JobTransition(0, JobState.UNSPECIFIED, JobState.COMPLETED, at(0), "imported")])
    request = pb.ImportHistoryRequest(jobs=[imported(record)])
    assert mapping.imported_from_proto(request) == [record]
    bad = pb.ImportHistoryRequest()
    bad.jobs.add().CopyFrom(imported(record))
    bad.jobs[0].transitions[0].sequence = 12
    with pytest.raises(Exception, match="sequence"):
        mapping.imported_from_proto(bad)
    twice = pb.ImportHistoryRequest(jobs=[imported(record)] * 2)
    with pytest.raises(Exception, match="appears twice"):
        mapping.imported_from_proto(twice)


def test_an_invalid_time_names_its_field() -> None:
    bad = Timestamp(seconds=2**62)
    for parse, field_path in (
            (lambda: mapping.filter_from_proto(pb.JobFilter(created_after=bad)),
             "filter.created_after"),
            (lambda: mapping.filter_from_proto(pb.JobFilter(created_before=bad)),
             "filter.created_before"),
            (lambda: mapping.prune_from_proto(pb.PruneHistoryRequest(older_than=bad)),
             "older_than")):
        with pytest.raises(ServiceError) as caught:
            parse()
        assert caught.value.message == f"{field_path}: not a valid time"
        assert [v.field for v in caught.value.violations] == [field_path]
    assert mapping.prune_from_proto(pb.PruneHistoryRequest()).older_than is None


# --- watchers and backoff -----------------------------------------------------------------------


def test_a_slow_watcher_gets_each_job_once_and_is_cut_when_too_far_behind() -> None:
    cut: list[bool] = []
    broadcaster = Broadcaster(max_pending=3)
    subscriber = broadcaster.subscribe(JobFilter(), lambda: cut.append(True))
    job = Job(job_id="a", state=JobState.QUEUED)
    running = Job(job_id="a", state=JobState.RUNNING)
    broadcaster.publish([Change("a", None, job), Change("a", job, running)])
    updates = subscriber.take(timeout=0)
    assert [(u.job_id, u.job) for u in updates] == [("a", running)]
    broadcaster.publish([Change(name, None, Job(job_id=name)) for name in "bcde"])
    assert cut == [True]
    assert subscriber.take(timeout=0) == []


def test_a_filtered_watcher_sees_a_job_leave_its_view() -> None:
    broadcaster = Broadcaster()
    subscriber = broadcaster.subscribe(JobFilter(states=(JobState.RUNNING,)), lambda: None)
    queued, running, done = (Job(job_id="a", state=s) for s in (
        JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED))
    broadcaster.publish([Change("a", None, queued)])
    assert subscriber.take(timeout=0) == []
    broadcaster.publish([Change("a", queued, running)])
    assert [u.job for u in subscriber.take(timeout=0)] == [running]
    broadcaster.publish([Change("a", running, done)])
    assert [u.job for u in subscriber.take(timeout=0)] == [done]
    broadcaster.publish([Change("a", done, None)])
    assert [u.deleted for u in subscriber.take(timeout=0)] == [True]


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.075 <= delays[0] <= 0.125
    assert all(delay <= 1.0 for delay in delays) and delays[-1] >= 0.75
    backoff.reset()
    assert backoff.next_delay() <= 0.125

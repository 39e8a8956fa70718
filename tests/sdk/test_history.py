"""The history through the SDK, against a real history service following the real queue: list
with every filter, get with transitions, latest, events, update, delete, prune, export, import,
watch."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stablenew.sdk import (
    Client,
    EventKind,
    HistoryChange,
    IngestionStatus,
    InvalidArgumentError,
    Job,
    JobNotFoundError,
    JobSource,
    JobState,
    PromptSource,
    RunMode,
)
from stablenew.v1 import history_service_pb2
from tests.bundle_service.harness import unique
from tests.history.harness import HistoryHarness
from tests.history.records import Records
from tests.sdk.harness import PACK_ID, Stack, connect
from tests.service_harness import wait_for


def _recorded(client: Any, job: Job) -> Job:
    """The job once the history recorded it finished."""
    def probe() -> Job | None:
        try:
            found: Job = client.history.get(job.job_id).job
        except JobNotFoundError:
            return None
        return found if found.state == job.state else None
    return wait_for(probe, f"the history to record {job.job_id}")


@pytest.fixture(scope="module")
def finished(stack: Stack) -> Job:
    """A completed run of the test pack with a label of its own, recorded by the history."""
    with Client(env={}, bundle_address=stack.bundle.address, queue_address=stack.queue.address,
                history_address=stack.history.address) as client:
        job = client.run_pack(PACK_ID, label=unique("history-"), timeout=60)
        return _recorded(client, job)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[HistoryHarness]:
    """A history that follows no queue: where imports land as new records."""
    harness = HistoryHarness(tmp_path / "archive", env={"STABLENEW_HISTORY_INGEST": "off"})
    with harness.running():
        yield harness


def _ids(jobs: Iterator[Job]) -> list[str]:
    return [job.job_id for job in jobs]


def test_every_filter_narrows_the_list(client: Any, finished: Job) -> None:
    job_id = finished.job_id
    matching: list[dict[str, Any]] = [
        {"state": "completed"}, {"state": [JobState.FAILED, JobState.COMPLETED]},
        {"run_mode": RunMode.QUEUE}, {"source": JobSource.ADD_TO_QUEUE},
        {"prompt_source": PromptSource.PACK}, {"pack": PACK_ID}, {"text": "OWL AT"},
        {"since": timedelta(hours=1)}, {"until": datetime.now(UTC) + timedelta(minutes=5)},
        {"bookmarked": False}, {"label": finished.label}]
    for filters in matching:
        assert job_id in _ids(client.history.list(**filters)), filters
    excluding: list[dict[str, Any]] = [
        {"state": "failed"}, {"run_mode": "direct"}, {"source": "run_now"},
        {"prompt_source": "manual"}, {"pack": "other"}, {"text": "no such words"},
        {"since": datetime.now(UTC) + timedelta(minutes=5)}, {"until": timedelta(hours=1)},
        {"bookmarked": True}, {"label": finished.label[:-1]}]
    for filters in excluding:
        assert job_id not in _ids(client.history.list(**filters)), filters


def test_list_pages_and_views(client: Any, finished: Job) -> None:
    basic = next(job for job in client.history.list(page_size=1) if job.job_id ==
                 finished.job_id)
    assert basic.entries == [] and basic.results == []
    full = next(job for job in client.history.list(view="full", label=finished.label))
    assert len(full.entries) == 3 and len(full.results) == 3


def test_get_has_the_full_job_and_its_transitions(client: Any, finished: Job) -> None:
    record = client.history.get(finished.job_id)
    assert record.job.config_hash == finished.config_hash
    assert [r.executed_config_hash for r in record.job.results] == [
        e.config_hash for e in record.job.entries]
    assert [(t.from_state, t.to_state) for t in record.transitions] == [
        (JobState.UNSPECIFIED, JobState.QUEUED), (JobState.QUEUED, JobState.RUNNING),
        (JobState.RUNNING, JobState.COMPLETED)]
    assert isinstance(record.proto, history_service_pb2.ExportHistoryResponse)
    assert record.job.proto.job_id == finished.job_id


def test_latest_and_events(client: Any, finished: Job) -> None:
    assert client.history.latest(label=None, text=finished.label).job_id == finished.job_id
    with pytest.raises(JobNotFoundError):
        client.history.latest(text="no such words at all")
    events = list(client.history.events(finished.job_id, page_size=2))
    assert events[0].kind == EventKind.SUBMITTED
    assert events[0].submitted is not None and len(events[0].submitted.entries) == 3
    assert events[-1].state_changed is not None
    assert events[-1].state_changed.to_state == JobState.COMPLETED
    sequences = [event.sequence for event in events]
    assert sequences == sorted(set(sequences))
    assert not any(event.trimmed for event in events)


# The message limit of the trimming history below: a 40-entry job's submission (about 800 kB)
# and its completion do not fit, its RUNNING change does.
SMALL_MESSAGE_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def trimming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Records, str]]:
    """A history that may send at most SMALL_MESSAGE_BYTES a message, holding a completed job
    whose submission and completion are each larger than that; and the job's id."""
    records = Records(tmp_path_factory.mktemp("trimming") / "data",
                      env={"STABLENEW_MAX_MESSAGE_BYTES": str(SMALL_MESSAGE_BYTES)})
    job_id = records.add(prompts=tuple(f"prompt {n} " + "x" * 20_000 for n in range(40)))
    yield records, job_id
    records.close()


def test_events_too_large_for_a_message_come_trimmed(kind: str,
                                                     trimming: tuple[Records, str]) -> None:
    records, job_id = trimming
    client = connect(kind, history_address=records.address)
    try:
        events = list(client.history.events(job_id))
    finally:
        client.close()
    assert [(e.kind, e.trimmed) for e in events] == [
        (EventKind.SUBMITTED, True), (EventKind.STATE_CHANGED, False),
        (EventKind.STATE_CHANGED, True)]
    submitted, running, completed = events
    assert submitted.submitted is not None and submitted.submitted.entry_count == 40
    assert 0 < len(submitted.submitted.entries) < 40
    assert running.state_changed is not None and running.state_changed.results == []
    assert completed.state_changed is not None
    assert completed.state_changed.to_state == JobState.COMPLETED
    assert 0 < len(completed.state_changed.results) < 40


def test_records_too_large_for_a_message_are_read_whole(kind: str, tmp_path: Path,
                                                        trimming: tuple[Records, str]) -> None:
    records, job_id = trimming
    client = connect(kind, history_address=records.address)
    try:
        record = client.history.get(job_id)
        exported = list(client.history.export_records())
        written = client.history.export(tmp_path / "export.jsonl")
    finally:
        client.close()
    assert [e.index for e in record.job.entries] == list(range(40))
    assert [r.entry_index for r in record.job.results] == list(range(40))
    assert [r.job.job_id for r in exported] == [job_id]
    assert exported[0].proto == record.proto
    line = json.loads((tmp_path / "export.jsonl").read_text(encoding="utf-8"))
    assert written == 1
    assert (len(line["job"]["entries"]), len(line["job"]["results"])) == (40, 40)


def test_update_bookmark_and_label(client: Any, stack: Stack) -> None:
    job = _recorded(client, client.run_pack(PACK_ID, rows=[0], timeout=60))
    updated = client.history.update(job.job_id, bookmarked=True)
    assert (updated.bookmarked, updated.label) == (True, "")
    updated = client.history.update(job.job_id, label="keeper")
    assert (updated.bookmarked, updated.label) == (True, "keeper")
    assert job.job_id in _ids(client.history.list(bookmarked=True, label="keeper"))
    assert client.history.update(job.job_id, label="").label == ""


def test_delete_and_prune(client: Any) -> None:
    job = _recorded(client, client.run_pack(PACK_ID, rows=[1], timeout=60))
    assert client.history.prune(states="completed", dry_run=True) >= 1
    client.history.delete(job.job_id)
    with pytest.raises(JobNotFoundError):
        client.history.get(job.job_id)
    with pytest.raises(JobNotFoundError):
        client.history.delete(job.job_id)
    future = datetime.now(UTC) + timedelta(days=1)
    assert client.history.prune(older_than=future, states=["failed", "cancelled"],
                                keep_bookmarked=True, dry_run=True) >= 0
    assert client.history.prune(older_than=timedelta(days=3650)) == 0


def test_export_then_import_elsewhere(kind: str, client: Any, finished: Job,
                                      archive: HistoryHarness, tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    assert client.history.export(path, label=None, text=finished.label) == 1
    line = json.loads(path.read_text(encoding="utf-8"))
    assert line["job"]["job_id"] == finished.job_id
    assert [r.job.job_id for r in client.history.export_records(text=finished.label)] == [
        finished.job_id]
    # The history that recorded the job from the queue keeps its own record.
    assert client.history.import_(path).skipped_job_ids == [finished.job_id]
    with connect(kind, history_address=archive.address) as other:
        first = other.history.import_(path)
        assert (first.added_count, first.unchanged_count) == (1, 0)
        again = other.history.import_(io.StringIO(path.read_text(encoding="utf-8")))
        assert (again.added_count, again.unchanged_count) == (0, 1)
        assert other.history.get(finished.job_id).job.config_hash == finished.config_hash


def test_an_import_line_that_is_not_a_record_names_its_line(client: Any,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"job": {"job_id": "x"}}\n{"job": {"no_such_field": 1}}\n',
                    encoding="utf-8")
    with pytest.raises(InvalidArgumentError) as caught:
        client.history.import_(path)
    assert [v.field for v in caught.value.violations] == ["line 2"]


def test_bad_filters_are_invalid_arguments(client: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.history.list(since=datetime.now(UTC), until=timedelta(days=1)))
    assert caught.value.violations
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.history.list(page_size=-1))
    assert [v.field for v in caught.value.violations] == ["page_size"]
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.history.list(state="sleeping"))
    assert [v.field for v in caught.value.violations] == ["state"]


def test_watch_sees_a_change(client: Any, finished: Job) -> None:
    changes = client.history.watch(text=finished.label)
    seen: list[HistoryChange] = []
    reader = threading.Thread(target=lambda: seen.append(next(changes)), daemon=True)
    reader.start()

    def changed() -> bool:
        # Until the stream is open a change is not sent: change the label until one arrives.
        client.history.update(finished.job_id, label=finished.label)
        reader.join(timeout=0.2)
        return bool(seen)
    wait_for(changed, "a history change")
    assert (seen[0].job.job_id, seen[0].deleted) == (finished.job_id, False)
    changes.close()


def test_ingestion_status_and_the_quarantine(client: Any, finished: Job) -> None:
    wait_for(lambda: client.history.ingestion().caught_up, "the history to catch up")
    status = client.history.ingestion()
    assert isinstance(status, IngestionStatus)
    assert status.enabled and status.queue_reachable and status.lag_events == 0
    assert status.recorded_sequence >= 1 and status.quarantined_count == 0
    assert list(client.history.quarantined()) == []


def test_a_watch_says_when_it_is_subscribed(client: Any, finished: Job, stack: Stack) -> None:
    writer = Client(env={}, history_address=stack.history.address)

    def subscribed() -> None:
        # The history has registered the watch: a change written now must reach it.
        writer.history.update(finished.job_id, label=finished.label)
    try:
        changes = client.history.watch(on_subscribed=subscribed, text=finished.label)
        change = next(changes)
        changes.close()
    finally:
        writer.close()
    assert (change.job.job_id, change.deleted) == (finished.job_id, False)
    assert change.job.image_count == finished.image_count


def test_the_list_carries_the_image_count(client: Any, finished: Job) -> None:
    made = sum(len(result.images) for result in finished.results)
    assert made and finished.image_count == made
    listed = next(iter(client.history.list(text=finished.label)))
    assert (listed.job_id, listed.image_count, listed.results) == (finished.job_id, made, [])

"""watch(), wait() and run_pack() against the real system: events in order and once, progress
callbacks, timeouts, pruned events; and a watch that lives through a queue killed and restarted
in its own process without missing or repeating an event."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from stablenew.sdk import (
    EventKind,
    JobEvent,
    JobNotFoundError,
    JobProgress,
    JobState,
    SequencePrunedError,
    StableNewError,
    UnavailableError,
    WaitTimeoutError,
)
from tests.queue.harness import QueueHarness
from tests.queue.processes import QueueProcess
from tests.sdk.harness import PACK_ID, Stack, connect, new_draft
from tests.service_harness import wait_for


def test_watch_follows_a_job_in_order(client: Any) -> None:
    start = client.queue.state().last_sequence
    job = client.drafts.enqueue(new_draft(client, rows=[0]).draft_id)
    events = []
    for event in client.watch(after_sequence=start, job_ids=[job.job_id],
                              exclude_progress=True):
        events.append(event)
        if event.state_changed is not None and event.state_changed.to_state.is_terminal:
            break
    assert events[0].kind == EventKind.SUBMITTED and events[0].submitted is not None
    assert events[0].submitted.job_id == job.job_id
    assert [e.state_changed.to_state for e in events if e.state_changed] == [
        JobState.RUNNING, JobState.COMPLETED]
    assert all(e.kind != EventKind.PROGRESS and e.job_id == job.job_id for e in events)
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences)) and sequences[0] > start
    assert events[-1].proto.sequence == events[-1].sequence


def test_watch_sees_queue_level_events(client: Any) -> None:
    start = client.queue.state().last_sequence
    client.queue.pause()
    client.queue.resume()
    kinds = []
    for event in client.watch(after_sequence=start):
        kinds.append((event.kind, event.job_id))
        if event.kind == EventKind.QUEUE_RESUMED:
            break
    assert (EventKind.QUEUE_PAUSED, "") in kinds


def test_wait_reports_progress_and_returns_the_full_job(client: Any, stack: Stack) -> None:
    stack.admin.faults(step_seconds=0.25)  # four steps: longer than a heartbeat interval
    progress: list[JobProgress] = []
    events: list[JobEvent] = []
    try:
        draft = new_draft(client, rows=[0])
        job = client.drafts.enqueue(draft.draft_id)
        done = client.wait(job.job_id, on_progress=progress.append, on_event=events.append,
                           timeout=60)
    finally:
        stack.admin.faults(step_seconds=0.002)
    assert done.state == JobState.COMPLETED and len(done.results) == 1
    assert progress and all(isinstance(p, JobProgress) for p in progress)
    assert events[-1].state_changed is not None
    assert client.wait(job.job_id).job_id == job.job_id  # finished: answers at once


def test_run_pack(client: Any) -> None:
    job = client.run_pack(PACK_ID, rows=[2], prepend="ink,", overrides={"txt2img.steps": 3},
                          label="sdk-run", priority="high", timeout=60)
    assert (job.state, job.label, job.entry_count) == (JobState.COMPLETED, "sdk-run", 1)
    assert job.entries[0].prompt.startswith("ink,")
    assert job.entries[0].steps == 3


def test_wait_gives_up_after_its_timeout(client: Any, paused: None) -> None:
    job = client.drafts.enqueue(new_draft(client, rows=[0]).draft_id)
    with pytest.raises(WaitTimeoutError) as caught:
        client.wait(job.job_id, timeout=0.2)
    assert caught.value.metadata["job_id"] == job.job_id
    assert isinstance(caught.value, TimeoutError)
    assert client.queue.get(job.job_id).state == JobState.QUEUED


def test_wait_for_an_unknown_job(client: Any) -> None:
    with pytest.raises(JobNotFoundError):
        client.wait("no-such-job")


@pytest.fixture
def pruning_queue(tmp_path: Path) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path / "queue", {"STABLENEW_EVENT_RETENTION_SECONDS": "0.001",
                                                "STABLENEW_PRUNE_INTERVAL_SECONDS": "0.05"})
    with harness.running():
        yield harness


def test_a_watch_of_pruned_events_says_where_the_log_starts(
        kind: str, pruning_queue: QueueHarness) -> None:
    pruning_queue.submit()
    pruning_queue.submit()

    def pruned() -> SequencePrunedError | None:
        try:
            next(client.watch(after_sequence=0))
        except SequencePrunedError as error:
            return error if error.oldest_sequence > 1 else None
        return None

    with connect(kind, queue_address=pruning_queue.address) as client:
        error = wait_for(pruned, "the first events to be pruned")
        assert error.code.name == "OUT_OF_RANGE"
        last = client.queue.state().last_sequence
        pruning_queue.submit()
        resumed = next(client.watch(after_sequence=last))
    assert resumed.sequence == last + 1


def test_a_watch_gives_up_when_the_queue_stays_away(kind: str) -> None:
    with (connect(kind, queue_address="127.0.0.1:1") as client,
          pytest.raises(UnavailableError)):
        next(client.watch(reconnect_for=0.5))


def test_a_watch_survives_a_killed_and_restarted_queue(kind: str, tmp_path: Path) -> None:
    queue = QueueProcess(tmp_path / "queue")
    queue.start()
    try:
        with connect(kind, queue_address=queue.address) as client:
            _watch_across_restarts(client, queue)
    finally:
        if queue.process is not None and queue.process.poll() is None:
            queue.stop()


def _any_of(sequences: list[int], failure: list[StableNewError], count: int) -> bool:
    """The watcher received `count` events, or failed."""
    return len(sequences) >= count or bool(failure)


def _resumed(client: Any) -> bool:
    """Resume the queue; False while this client's channel has not reconnected yet."""
    try:
        client.queue.resume()
    except UnavailableError:
        return False
    return True


def _watch_across_restarts(client: Any, queue: QueueProcess) -> None:
    sequences: list[int] = []
    failure: list[StableNewError] = []
    wanted = 9  # three pause/resume rounds of the queue: three events per round below

    def collect() -> None:
        try:
            for event in client.watch(after_sequence=0, reconnect_for=60):
                sequences.append(event.sequence)
                if len(sequences) == wanted:
                    return
        except StableNewError as error:
            failure.append(error)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    for round_ in range(3):
        # Each round: events the watcher is following live, then a SIGKILL and a restart.
        client.queue.pause()
        client.queue.resume()
        client.queue.pause()
        wait_for(partial(_any_of, sequences, failure, 3 * round_ + 1), "live events")
        queue.kill()
        queue.start()
        wait_for(lambda: _resumed(client), "the client to reach the restarted queue")
    reader.join(timeout=60)
    assert not failure, failure
    # Every event once, in order: 1..9 with neither a gap nor a repeat.
    assert sequences == list(range(1, wanted + 1))

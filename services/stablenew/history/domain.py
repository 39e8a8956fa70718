"""The history's domain: how a job record is built from the queue's events, what a filter
matches, and the retention policy. Plain dataclasses and functions: no gRPC, no SQL.

A record starts with the queue's `submitted` event (the job exactly as queued, entries included)
and changes with every later event of that job. Each state change becomes one transition; the
submission is the first one (UNSPECIFIED -> QUEUED), so a job's transitions tell its whole life.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stablenew.contract.model import (
    EntryResult,
    Job,
    JobProgress,
    JobSource,
    JobState,
    JobTransition,
    Priority,
    PromptSource,
    RunMode,
)

# --- events, as the history reads the queue's log --------------------------------------------


@dataclass
class Submitted:
    job: Job


@dataclass
class StateChanged:
    from_state: JobState
    to_state: JobState
    reason: str = ""
    runner_id: str = ""
    attempt: int = 0
    error_message: str = ""
    # Set when the job reaches a terminal state.
    results: list[EntryResult] = field(default_factory=list)


@dataclass
class ProgressChanged:
    progress: JobProgress


@dataclass
class CancelRequested:
    return_to_queue: bool = False
    reason: str = ""


@dataclass
class Moved:
    queue_position: int = 0


@dataclass
class Updated:
    label: str = ""
    # None: a priority this version does not know, which leaves the record's as it was.
    priority: Priority | None = None


@dataclass
class QueueLevel:
    """Pause and resume: no job changes, only the cursor moves."""


Payload = (Submitted | StateChanged | ProgressChanged | CancelRequested | Moved | Updated
           | QueueLevel)


@dataclass
class QueueEvent:
    sequence: int
    time: datetime
    job_id: str
    payload: Payload

    @property
    def kept(self) -> bool:
        """Stored for ListJobEvents: every job event but progress (transient, and many)."""
        return bool(self.job_id) and not isinstance(self.payload, ProgressChanged | QueueLevel)


@dataclass
class Applied:
    """What one event did to a record."""

    job: Job
    transition: JobTransition | None = None
    # The record is new (a submission, or a job first seen mid-way).
    created: bool = False
    # The terminal results arrived with this event.
    results_changed: bool = False


class UnknownJobError(Exception):
    """An event for a job the history has no record of (its submission was never seen)."""


def apply_event(record: Job | None, event: QueueEvent) -> Applied:
    """The record after `event`. `record` is not modified; the returned job is a new object."""
    payload = event.payload
    if isinstance(payload, Submitted):
        return _submitted(event, payload)
    if record is None:
        raise UnknownJobError(event.job_id)
    job = copy.copy(record)
    if isinstance(payload, StateChanged):
        return _state_changed(job, event, payload)
    if isinstance(payload, ProgressChanged):
        job.progress = payload.progress
    elif isinstance(payload, CancelRequested):
        job.cancel_requested = True
    elif isinstance(payload, Moved):
        job.queue_position = payload.queue_position
    elif isinstance(payload, Updated):
        job.label = payload.label
        if payload.priority is not None:
            job.priority = payload.priority
        job.update_time = event.time
    return Applied(job)


def _submitted(event: QueueEvent, payload: Submitted) -> Applied:
    job = copy.copy(payload.job)
    job.job_id = event.job_id or job.job_id
    job.state = job.state or JobState.QUEUED
    job.create_time = job.create_time or event.time
    job.update_time = job.update_time or event.time
    job.bookmarked = False
    transition = JobTransition(sequence=event.sequence, from_state=JobState.UNSPECIFIED,
                               to_state=job.state, time=event.time, reason="submitted",
                               runner_id=job.runner_id, attempt=job.attempt)
    return Applied(job, transition, created=True)


def _state_changed(job: Job, event: QueueEvent, change: StateChanged) -> Applied:
    job.state = change.to_state
    job.runner_id = change.runner_id
    job.attempt = change.attempt
    job.error_message = change.error_message
    job.update_time = event.time
    results_changed = False
    if change.to_state == JobState.RUNNING and job.start_time is None:
        job.start_time = event.time
    if change.to_state == JobState.QUEUED:
        # Back in the queue (lease expired, retryable failure, cancel with return): the queue
        # forgets the cancel request, so does the record.
        job.cancel_requested = False
    if change.to_state.is_terminal:
        job.complete_time = event.time
        job.results = list(change.results)
        job.image_count = image_count(job.results)
        job.progress = JobProgress()
        job.queue_position = -1
        results_changed = True
    transition = JobTransition(sequence=event.sequence, from_state=change.from_state,
                               to_state=change.to_state, time=event.time, reason=change.reason,
                               runner_id=change.runner_id, attempt=change.attempt)
    return Applied(job, transition, results_changed=results_changed)


def backfilled(fetched: Job | None, event: QueueEvent) -> Job:
    """A record for a job whose submission the history never saw (the queue pruned it first):
    the queue's current record when it still has one, set back to the state the event starts
    from, so that applying this event and the ones after it ends where the queue is."""
    job = copy.copy(fetched) if fetched is not None else Job(job_id=event.job_id)
    job.job_id = event.job_id
    job.metadata = dict(job.metadata)
    if fetched is None:
        job.create_time = event.time
        job.update_time = event.time
        job.queue_position = -1
    if isinstance(event.payload, StateChanged):
        job.state = event.payload.from_state
        job.complete_time = None
        job.results = []
    job.image_count = image_count(job.results)
    return job


def image_count(results: Iterable[EntryResult]) -> int:
    """The images the results hold: Job.image_count, which the history works out from the
    results it records and never takes from a sender."""
    return sum(len(result.images) for result in results)


# --- what the filters look at beyond the basic record -----------------------------------------


def pack_ids(job: Job) -> frozenset[str]:
    """Every prompt pack the job's prompts came from: the origin names one only when the whole
    job came from a single pack, so the entries (and the results, for a record that has no
    entries) are asked too. A job that mixes packs is found by each of them."""
    packs = {job.origin.prompt_pack_id}
    packs.update(entry.origin.prompt_pack_id for entry in job.entries)
    packs.update(result.prompt_pack_id for result in job.results)
    packs.discard("")
    return frozenset(packs)


# --- search text ------------------------------------------------------------------------------


def search_text(job: Job) -> str:
    """What the text filter looks in, lowercased: the label and every distinct prompt of the
    entries and results. A record without entries (imported from the desktop app) has only its
    payload summary to stand in for the prompts."""
    return search_text_of(job.label,
                          [*(entry.prompt for entry in job.entries),
                           *(result.prompt for result in job.results)],
                          bool(job.entries), job.payload_summary)


def search_text_of(label: str, prompts: Iterable[str], has_entries: bool,
                   payload_summary: str) -> str:
    """search_text from its parts: the label, the prompts of the entries then of the results,
    whether the record has entries, and its payload summary."""
    texts = [label, *prompts]
    if not has_entries:
        texts.append(payload_summary)
    parts: list[str] = []
    seen: set[str] = set()
    for text in texts:
        lowered = text.strip().lower()
        if lowered and lowered not in seen:
            seen.add(lowered)
            parts.append(lowered)
    return "\n".join(parts)


# --- filters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """Every field set narrows the result; unset fields do not filter.

    The time range is half-open: created_after <= create_time < created_before.
    """

    states: tuple[JobState, ...] = ()
    run_mode: RunMode = RunMode.UNSPECIFIED
    source: JobSource = JobSource.UNSPECIFIED
    prompt_source: PromptSource = PromptSource.UNSPECIFIED
    # Any pack the job's prompts came from (see pack_ids).
    prompt_pack_id: str = ""
    # Case-insensitive substring of a prompt or the label.
    text: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    bookmarked: bool | None = None

    @property
    def needle(self) -> str:
        return self.text.strip().lower()


def matches(job: Job, job_filter: JobFilter, text: str,
            packs: frozenset[str] | None = None) -> bool:
    """Whether a record is in the filtered set; `text` is the record's search text and `packs`
    its pack ids (pack_ids of the full record: the default reads them from `job`, which lacks
    them when it is a basic record)."""
    f = job_filter
    checks = (
        not f.states or job.state in f.states,
        not f.run_mode or job.origin.run_mode == f.run_mode,
        not f.source or job.origin.source == f.source,
        not f.prompt_source or job.origin.prompt_source == f.prompt_source,
        not f.prompt_pack_id or f.prompt_pack_id in (pack_ids(job) if packs is None else packs),
        not f.needle or f.needle in text,
        f.created_after is None or (job.create_time is not None
                                    and job.create_time >= f.created_after),
        f.created_before is None or (job.create_time is not None
                                     and job.create_time < f.created_before),
        f.bookmarked is None or job.bookmarked == f.bookmarked,
    )
    return all(checks)


# --- retention --------------------------------------------------------------------------------

TERMINAL = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class PruneRequest:
    """Which records PruneHistory removes."""

    older_than: datetime | None = None
    # Empty means the terminal states.
    states: tuple[JobState, ...] = ()
    keep_bookmarked: bool = False

    @property
    def effective_states(self) -> tuple[JobState, ...]:
        return self.states or TERMINAL


@dataclass(frozen=True)
class RetentionPolicy:
    """The automatic policy: finished jobs older than max_age, and the oldest finished jobs beyond
    max_rows, are removed; bookmarked jobs and jobs still in the queue are always kept."""

    max_age: timedelta | None = None
    max_rows: int | None = None
    interval_seconds: float = 300.0

    @property
    def enabled(self) -> bool:
        return self.max_age is not None or self.max_rows is not None


@dataclass(frozen=True)
class ImportedJob:
    """A record from another history, with its transitions (sequence 0)."""

    job: Job
    transitions: list[JobTransition]


@dataclass(frozen=True)
class QuarantinedEvent:
    """An event of the queue's log the history could not record: skipped (and acknowledged)
    so the ingestion goes on, and kept here as the queue sent it, with the error."""

    sequence: int
    job_id: str
    time: datetime | None
    error: str
    # The serialized JobEvent.
    event: bytes


@dataclass(frozen=True)
class IngestionStatus:
    """How the ingestion of the queue's log stands (GetIngestionStatus)."""

    enabled: bool
    caught_up: bool = False
    queue_reachable: bool = False
    recorded_sequence: int = 0
    queue_last_sequence: int = 0
    acknowledged_sequence: int = 0
    last_error: str = ""
    last_error_time: datetime | None = None
    quarantined_count: int = 0

    @property
    def lag_events(self) -> int:
        return max(0, self.queue_last_sequence - self.recorded_sequence)


@dataclass
class ImportOutcome:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_job_ids: list[str] = field(default_factory=list)

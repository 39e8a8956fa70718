"""Generated history and queue messages <-> the history's domain objects (the shared twins go
through stablenew.contract.proto_mapping). Bad input becomes INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, TypeVar

from stablenew.contract.errors import invalid_argument, required
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
from stablenew.contract.proto_mapping import from_proto, from_request, job_to_proto, to_proto
from stablenew.history import codec
from stablenew.history.core import IncomingEvent, JobEvents, UnreadableEvent
from stablenew.history.domain import (
    CancelRequested,
    ImportedJob,
    IngestionStatus,
    JobFilter,
    Moved,
    Payload,
    ProgressChanged,
    PruneRequest,
    QuarantinedEvent,
    QueueEvent,
    QueueLevel,
    StateChanged,
    Submitted,
    Updated,
)
from stablenew.runtime.message_budget import (
    ELEMENT_OVERHEAD,
    BudgetPage,
    FullPage,
    JobParts,
    add_parts_within,
    fill,
)
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2

E = TypeVar("E", bound=IntEnum)
MAX_IMPORT_JOBS = 1000
# Request limits (history_service.proto states them). The text filter's bound also bounds the
# cost of a search: the trigram index is asked for every trigram of the needle, and SQLite's
# LIKE refuses patterns past 50,000 bytes.
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 256
MAX_FILTER_STATES = 16
MAX_LABEL_LENGTH = 1000
MAX_PAGE_TOKEN_LENGTH = 1024


# --- events from the queue ------------------------------------------------------------------


def _payload(event: job_pb2.JobEvent) -> Payload:
    kind = event.WhichOneof("payload")
    if kind == "submitted":
        return Submitted(from_proto(Job, event.submitted.job))
    if kind == "state_changed":
        change = event.state_changed
        return StateChanged(
            from_state=JobState(change.from_state), to_state=JobState(change.to_state),
            reason=change.reason, runner_id=change.runner_id, attempt=change.attempt,
            error_message=change.error_message,
            results=[from_proto(EntryResult, result) for result in change.results])
    if kind == "progress":
        return ProgressChanged(from_proto(JobProgress, event.progress.progress))
    if kind == "cancel_requested":
        return CancelRequested(event.cancel_requested.return_to_queue,
                               event.cancel_requested.reason)
    if kind == "moved":
        return Moved(event.moved.queue_position)
    if kind == "updated":
        # PRIORITY_UNSPECIFIED is proto3's "not set" (the queue sends it when only the label
        # changed), and a number this version does not know means nothing here: both leave
        # the record's priority as it is.
        priority = event.updated.priority
        known = priority != 0 and priority in Priority._value2member_map_
        return Updated(event.updated.label, Priority(priority) if known else None)
    # Pause, resume, and kinds this version does not know: nothing to record.
    return QueueLevel()


def event_from_proto(event: job_pb2.JobEvent) -> QueueEvent:
    return QueueEvent(sequence=event.sequence,
                      time=event.time.ToDatetime(tzinfo=UTC), job_id=event.job_id,
                      payload=_payload(event))


def incoming_from_proto(event: job_pb2.JobEvent) -> IncomingEvent:
    """The domain event, the bytes to keep of it, and the event as sent (for the quarantine).
    An event this version cannot convert raises ValueError or OverflowError."""
    domain_event = event_from_proto(event)
    payload, cut = codec.cut_event(event) if domain_event.kept else (b"", 0)
    return IncomingEvent(domain_event, payload, cut, event.SerializeToString())


def read_incoming(event: job_pb2.JobEvent) -> IncomingEvent | UnreadableEvent:
    """incoming_from_proto, or what the ingestion quarantines when the event cannot be
    converted (proto3 keeps enum numbers this version does not know; a time can be out of
    Python's range)."""
    try:
        return incoming_from_proto(event)
    except (ValueError, OverflowError) as error:
        return UnreadableEvent(event.sequence, event.job_id, event.SerializeToString(),
                               f"cannot read the event: {type(error).__name__}: {error}")


def job_from_proto(message: job_pb2.Job) -> Job:
    return from_proto(Job, message)


# --- requests ---------------------------------------------------------------------------------


def _enum(cls: type[E], value: int, field_path: str) -> E:
    try:
        return cls(value)
    except ValueError:
        raise invalid_argument(field_path, f"unknown value {value}") from None


def _time(message: pb.JobFilter | pb.PruneHistoryRequest, name: str,
          field_path: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    stamp = getattr(message, name)
    try:
        moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid_argument(field_path, "not a valid time") from None
    return moment


def bounded(value: str, field_path: str, limit: int) -> str:
    """`value`, or INVALID_ARGUMENT naming the field when it is longer than `limit` characters
    (the value itself is never echoed: it may be megabytes)."""
    if len(value) > limit:
        raise invalid_argument(field_path, f"at most {limit} characters (got {len(value)})")
    return value


def job_id(value: str, field_path: str = "job_id") -> str:
    """A required job id of a sensible length."""
    return required(bounded(value, field_path, MAX_ID_LENGTH), field_path)


def page_token(value: str) -> str:
    return bounded(value, "page_token", MAX_PAGE_TOKEN_LENGTH)


def label(value: str) -> str:
    return bounded(value, "label", MAX_LABEL_LENGTH)


def _states(values: Sequence[int], field_path: str) -> tuple[JobState, ...]:
    if len(values) > MAX_FILTER_STATES:
        raise invalid_argument(field_path, f"at most {MAX_FILTER_STATES} values "
                                           f"(got {len(values)})")
    states = []
    for index, value in enumerate(values):
        state = _enum(JobState, value, f"{field_path}[{index}]")
        if state == JobState.UNSPECIFIED:
            raise invalid_argument(f"{field_path}[{index}]", "JOB_STATE_UNSPECIFIED is no state")
        states.append(state)
    return tuple(dict.fromkeys(states))


def filter_from_proto(message: pb.JobFilter) -> JobFilter:
    job_filter = JobFilter(
        states=_states(message.states, "filter.states"),
        run_mode=_enum(RunMode, message.run_mode, "filter.run_mode"),
        source=_enum(JobSource, message.source, "filter.source"),
        prompt_source=_enum(PromptSource, message.prompt_source, "filter.prompt_source"),
        prompt_pack_id=bounded(message.prompt_pack_id, "filter.prompt_pack_id", MAX_ID_LENGTH),
        text=bounded(message.text, "filter.text", MAX_TEXT_LENGTH),
        created_after=_time(message, "created_after", "filter.created_after"),
        created_before=_time(message, "created_before", "filter.created_before"),
        bookmarked=message.bookmarked if message.HasField("bookmarked") else None,
    )
    if (job_filter.created_after is not None and job_filter.created_before is not None
            and job_filter.created_after > job_filter.created_before):
        raise invalid_argument("filter.created_after", "is after filter.created_before")
    return job_filter


def prune_from_proto(message: pb.PruneHistoryRequest) -> PruneRequest:
    return PruneRequest(older_than=_time(message, "older_than", "older_than"),
                        states=_states(message.states, "states"),
                        keep_bookmarked=message.keep_bookmarked)


def imported_from_proto(message: pb.ImportHistoryRequest) -> list[ImportedJob]:
    if len(message.jobs) > MAX_IMPORT_JOBS:
        raise invalid_argument("jobs", f"at most {MAX_IMPORT_JOBS} per request "
                                       f"(got {len(message.jobs)})")
    records = []
    seen: set[str] = set()
    for index, item in enumerate(message.jobs):
        path = f"jobs[{index}]"
        # Checked before the conversion, which refuses an unknown enum value with a ValueError.
        _enum(JobState, item.job.state, f"{path}.job.state")
        job_id(item.job.job_id, f"{path}.job.job_id")
        job = from_request(Job, item.job, f"{path}.job")
        if job.job_id in seen:
            raise invalid_argument(f"{path}.job.job_id", f"{job.job_id!r} appears twice")
        seen.add(job.job_id)
        if job.state == JobState.UNSPECIFIED:
            raise invalid_argument(f"{path}.job.state", "required")
        if job.create_time is None:
            raise invalid_argument(f"{path}.job.create_time", "required")
        transitions = [from_request(JobTransition, t, f"{path}.transitions[{number}]")
                       for number, t in enumerate(item.transitions)]
        for number, transition in enumerate(transitions):
            if transition.sequence != 0:
                raise invalid_argument(f"{path}.transitions[{number}].sequence",
                                       "must be 0: only the queue's events carry sequences")
        job.bookmarked = False
        job.queue_position = -1
        records.append(ImportedJob(job, transitions))
    return records


# --- responses --------------------------------------------------------------------------------


def transition_to_proto(transition: JobTransition) -> job_pb2.JobTransition:
    message: job_pb2.JobTransition = to_proto(transition)
    return message


def events_to_proto(events: JobEvents) -> Iterator[job_pb2.JobEvent]:
    """The page's events as the queue logged them, each restored only when asked for."""
    return (codec.restore_event(row.payload, row.cut, events.entries, events.results)
            for row in events.rows)


def quarantined_to_proto(event: QuarantinedEvent) -> pb.QuarantinedEvent:
    message = pb.QuarantinedEvent(sequence=event.sequence, job_id=event.job_id,
                                  error=event.error, event=job_pb2.JobEvent.FromString(event.event))
    if event.time is not None:
        message.quarantine_time.FromDatetime(event.time)
    return message


def ingestion_status_to_proto(status: IngestionStatus) -> pb.GetIngestionStatusResponse:
    message = pb.GetIngestionStatusResponse(
        enabled=status.enabled, caught_up=status.caught_up,
        queue_reachable=status.queue_reachable, recorded_sequence=status.recorded_sequence,
        queue_last_sequence=status.queue_last_sequence, lag_events=status.lag_events,
        acknowledged_sequence=status.acknowledged_sequence, last_error=status.last_error,
        quarantined_count=status.quarantined_count)
    if status.last_error_time is not None:
        message.last_error_time.FromDatetime(status.last_error_time)
    return message


@dataclass(frozen=True)
class FullJob:
    """A job in the full view, within a message budget: its entries and results from the
    requested offsets on, as many as fit."""

    job: job_pb2.Job
    transitions: list[job_pb2.JobTransition]
    parts: JobParts


def full_job_within(job: Job, transitions: list[JobTransition], entry_offset: int,
                    result_offset: int, budget: int) -> FullJob:
    """The record as GetJob and ExportHistory send it: the basic record and its transitions,
    then entries and results from the offsets on until `budget` bytes are used, so a record of
    any size is sent in parts instead of failing the server's send limit. At least one entry
    or result past the offsets is always included, so a client following the offsets gets on."""
    message = job_to_proto(job, job_pb2.JOB_VIEW_BASIC)
    changes = [transition_to_proto(t) for t in transitions]
    room = budget - message.ByteSize() - sum(t.ByteSize() + ELEMENT_OVERHEAD for t in changes)
    parts = add_parts_within(message, (to_proto(e) for e in job.entries[entry_offset:]),
                             (to_proto(r) for r in job.results[result_offset:]), entry_offset,
                             result_offset, room)
    return FullJob(message, changes, parts)


def full_page(budget: int) -> FullPage[Job]:
    """A ListJobs page of records in the full view within a message budget."""
    return FullPage(budget, lambda job: job_to_proto(job, job_pb2.JOB_VIEW_FULL),
                    lambda job, room: full_job_within(job, [], 0, 0, room).job)


class EventPage:
    """A ListJobEvents page within a message budget (a BudgetPage): a first event larger than
    the budget keeps the entries or results that fit, and is named in truncated_sequences."""

    def __init__(self, budget: int) -> None:
        self._page: BudgetPage[job_pb2.JobEvent] = BudgetPage(budget)

    @property
    def events(self) -> list[job_pb2.JobEvent]:
        return self._page.messages

    @property
    def truncated_sequences(self) -> list[int]:
        return [event.sequence for event in self._page.trimmed]

    def take(self, event: job_pb2.JobEvent) -> bool:
        return self._page.add(event, lambda room: _trimmed_event(event, room))


def _trimmed_event(event: job_pb2.JobEvent, budget: int) -> job_pb2.JobEvent:
    """The event keeping only its entries (a submission) or results (a state change) that fit
    in `budget` bytes with the rest of it."""
    parts: Any = (event.submitted.job.entries if event.WhichOneof("payload") == "submitted"
                  else event.state_changed.results)
    elements = list(parts)
    del parts[:]
    fill(parts, elements, budget - event.ByteSize(), False)
    return event

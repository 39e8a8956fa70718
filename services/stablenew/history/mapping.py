"""Generated history and queue messages <-> the history's domain objects (the shared twins go
through stablenew.contract.proto_mapping). Bad input becomes INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import IntEnum
from typing import TypeVar

from stablenew.contract.errors import invalid_argument
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
from stablenew.contract.proto_mapping import from_proto, from_request, to_proto
from stablenew.history import codec
from stablenew.history.core import IncomingEvent, JobEvents
from stablenew.history.domain import (
    CancelRequested,
    ImportedJob,
    JobFilter,
    Moved,
    Payload,
    ProgressChanged,
    PruneRequest,
    QueueEvent,
    QueueLevel,
    StateChanged,
    Submitted,
    Updated,
)
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import job_pb2

E = TypeVar("E", bound=IntEnum)
MAX_IMPORT_JOBS = 1000


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
        priority = event.updated.priority
        known = priority in Priority._value2member_map_
        return Updated(event.updated.label, Priority(priority) if known else None)
    # Pause, resume, and kinds this version does not know: nothing to record.
    return QueueLevel()


def event_from_proto(event: job_pb2.JobEvent) -> QueueEvent:
    return QueueEvent(sequence=event.sequence,
                      time=event.time.ToDatetime(tzinfo=UTC), job_id=event.job_id,
                      payload=_payload(event))


def incoming_from_proto(event: job_pb2.JobEvent) -> IncomingEvent:
    """The domain event and the bytes to keep of it."""
    domain_event = event_from_proto(event)
    payload, cut = codec.cut_event(event) if domain_event.kept else (b"", 0)
    return IncomingEvent(domain_event, payload, cut)


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


def _states(values: Iterable[int], field_path: str) -> tuple[JobState, ...]:
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
        prompt_pack_id=message.prompt_pack_id,
        text=message.text,
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
        job = from_request(Job, item.job, f"{path}.job")
        if not job.job_id:
            raise invalid_argument(f"{path}.job.job_id", "required")
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


def events_to_proto(events: JobEvents) -> list[job_pb2.JobEvent]:
    return [codec.restore_event(row.payload, row.cut, events.entries, events.results)
            for row in events.rows]


def imported_to_proto(record: ImportedJob) -> pb.ImportedJob:
    """A parsed record as the ImportHistory request carries it (for the CLI)."""
    return pb.ImportedJob(job=to_proto(record.job),
                          transitions=[to_proto(t) for t in record.transitions])

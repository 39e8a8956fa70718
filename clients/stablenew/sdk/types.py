"""The typed results of the SDK: read-only dataclasses with enum members, each keeping the raw
message it was read from in `.proto`.

Jobs, normalized jobs and everything inside them are the contract's own twins
(`stablenew.contract.model`): `Job` and `NormalizedJob` here are those classes made read-only
with a `.proto`, so `isinstance(job, stablenew.contract.model.Job)` holds and every field is
the one the services work with. The other results mirror their proto messages field for field
and are read by the contract's converter (`stablenew.contract.proto_mapping.from_proto`).
Nested values are read-only at the top level only (as any frozen dataclass): their lists and
nested twins are plain values, and the `.proto` of the top-level result is the wire truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, ClassVar, Generic, TypeVar, cast

from google.protobuf.message import Message

from stablenew.contract import model
from stablenew.contract.model import (
    EntryResult,
    EntryStatus,
    ImageRef,
    JobOrigin,
    JobProgress,
    JobSource,
    JobState,
    JobTransition,
    PipelineConfig,
    Priority,
    PromptSource,
    PromptTag,
    RunMode,
    StageType,
    WebuiState,
)
from stablenew.contract.proto_mapping import from_proto
from stablenew.v1 import (
    bundle_service_pb2,
    history_service_pb2,
    job_pb2,
    pipeline_pb2,
    queue_service_pb2,
    runner_service_pb2,
)

__all__ = [
    "AsyncPreview",
    "BundleSummary",
    "CancelRequest",
    "Capabilities",
    "Consumer",
    "Draft",
    "EntryResult",
    "EntryStatus",
    "EventKind",
    "HistoryChange",
    "HistoryRecord",
    "ImageRef",
    "ImportResult",
    "IngestionStatus",
    "InterruptResult",
    "Job",
    "JobEvent",
    "JobOrigin",
    "JobPart",
    "JobProgress",
    "JobSource",
    "JobState",
    "JobTransition",
    "JobUpdate",
    "JobView",
    "MatrixMode",
    "MatrixSlot",
    "ModelInfo",
    "MovePosition",
    "NameCheck",
    "NormalizedJob",
    "Pack",
    "PackFormat",
    "PackMatrix",
    "PackRow",
    "PackSummary",
    "PipelineConfig",
    "Preview",
    "Priority",
    "PromptSource",
    "PromptTag",
    "QuarantinedEvent",
    "QueueState",
    "RowError",
    "RowErrorReason",
    "RunMode",
    "Runner",
    "RunnerInfo",
    "RunnerStatus",
    "StageType",
    "StateChange",
    "WebuiState",
]

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound="Result[Any]")


class Result(Generic[M]):
    """Base of every SDK result: read-only, with the raw message in `proto`.

    The SDK builds results with `read`; a result refuses every attribute change, as a frozen
    dataclass does (the contract twins `Job` and `NormalizedJob` are plain dataclasses, so this
    base is what makes their SDK classes read-only).
    """

    proto: M

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


class TwinResult(Result[M]):
    """A contract twin made read-only: `twin` names the `stablenew.contract.model` class."""

    twin: ClassVar[type[Any]]


def read(cls: type[R], message: Message) -> R:
    """The result `cls` read from `message`, keeping `message` as its `.proto`."""
    if issubclass(cls, TwinResult):
        # Read as the contract twin (its fast converter), then copied into this read-only
        # class without going through the refusing __setattr__.
        result: Any = object.__new__(cls)
        result.__dict__.update(vars(from_proto(cls.twin, message)))
    else:
        result = from_proto(cls, message)
    object.__setattr__(result, "proto", message)
    return cast(R, result)


# --- enums the contract does not have -------------------------------------------------------


class JobView(IntEnum):
    """How much of a job a read returns: BASIC leaves out the entries and results."""

    UNSPECIFIED = job_pb2.JOB_VIEW_UNSPECIFIED
    BASIC = job_pb2.JOB_VIEW_BASIC
    FULL = job_pb2.JOB_VIEW_FULL


class MovePosition(IntEnum):
    """Where `queue.move` puts a queued job (BEFORE needs `before_job_id`)."""

    UNSPECIFIED = queue_service_pb2.MOVE_POSITION_UNSPECIFIED
    FRONT = queue_service_pb2.MOVE_POSITION_FRONT
    BACK = queue_service_pb2.MOVE_POSITION_BACK
    UP = queue_service_pb2.MOVE_POSITION_UP
    DOWN = queue_service_pb2.MOVE_POSITION_DOWN
    BEFORE = queue_service_pb2.MOVE_POSITION_BEFORE


class PackFormat(IntEnum):
    """The file format of a prompt pack."""

    UNSPECIFIED = bundle_service_pb2.PACK_FORMAT_UNSPECIFIED
    TXT = bundle_service_pb2.PACK_FORMAT_TXT
    TSV = bundle_service_pb2.PACK_FORMAT_TSV
    JSON = bundle_service_pb2.PACK_FORMAT_JSON


class MatrixMode(IntEnum):
    """How a pack's matrix (or its wildcards) picks values."""

    UNSPECIFIED = bundle_service_pb2.MATRIX_MODE_UNSPECIFIED
    FANOUT = bundle_service_pb2.MATRIX_MODE_FANOUT
    SEQUENTIAL = bundle_service_pb2.MATRIX_MODE_SEQUENTIAL
    ROTATE = bundle_service_pb2.MATRIX_MODE_ROTATE
    RANDOM = bundle_service_pb2.MATRIX_MODE_RANDOM


class EventKind(IntEnum):
    """Which payload a `JobEvent` carries (UNSPECIFIED: one this SDK does not know)."""

    UNSPECIFIED = 0
    SUBMITTED = 10
    STATE_CHANGED = 11
    PROGRESS = 12
    CANCEL_REQUESTED = 13
    MOVED = 14
    UPDATED = 15
    QUEUE_PAUSED = 16
    QUEUE_RESUMED = 17


# --- jobs -----------------------------------------------------------------------------------


class Job(TwinResult[job_pb2.Job], model.Job):
    """A job as the queue or the history holds it (`stablenew.contract.model.Job`), read-only.

    Entries and results are present when the job was read with `JobView.FULL` (single reads);
    lists return the basic view.
    """

    twin = model.Job


class NormalizedJob(TwinResult[pipeline_pb2.NormalizedJob], model.NormalizedJob):
    """One fully resolved unit of work (`stablenew.contract.model.NormalizedJob`), read-only."""

    twin = model.NormalizedJob


@dataclass(frozen=True)
class HistoryRecord(Result[history_service_pb2.ExportHistoryResponse]):
    """A job in the history with its state changes, oldest first. `proto` is an
    ExportHistoryResponse (the same fields as GetJob's response and ImportedJob).

    Attributes:
        job: The full job: entries and per-entry results.
        transitions: Every state change the history recorded.
    """

    job: Job
    transitions: list[JobTransition]


def read_record(message: Any) -> HistoryRecord:
    """A HistoryRecord from any message with `job` and `transitions` (GetJob's response, an
    export message, an ImportedJob)."""
    proto = history_service_pb2.ExportHistoryResponse(job=message.job,
                                                      transitions=message.transitions)
    record = HistoryRecord(job=read(Job, proto.job),
                           transitions=[from_proto(JobTransition, t) for t in proto.transitions])
    object.__setattr__(record, "proto", proto)
    return record


@dataclass(frozen=True)
class HistoryChange(Result[history_service_pb2.WatchHistoryResponse]):
    """A history record that was written or changed (`deleted`: removed) while watching."""

    job: Job
    deleted: bool


def read_change(message: history_service_pb2.WatchHistoryResponse) -> HistoryChange:
    """A HistoryChange with its job as an SDK Job."""
    change = HistoryChange(job=read(Job, message.job), deleted=message.deleted)
    object.__setattr__(change, "proto", message)
    return change


@dataclass(frozen=True)
class ImportResult(Result[history_service_pb2.ImportHistoryResponse]):
    """What an import did, summed over its requests.

    Attributes:
        added_count: Jobs the history did not have.
        updated_count: Jobs imported before whose record changed.
        unchanged_count: Jobs imported before with the same record.
        skipped_job_ids: Jobs the history recorded from the queue, left as they are.
    """

    added_count: int
    updated_count: int
    unchanged_count: int
    skipped_job_ids: list[str]


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestionStatus(Result[history_service_pb2.GetIngestionStatusResponse]):
    """How the history's ingestion of the queue's log stands.

    Attributes:
        enabled: False when the history follows no queue (the sequences but recorded_sequence
            and the quarantined count are then 0).
        caught_up: Every event up to the queue's last known sequence is recorded.
        queue_reachable: The last call to the queue succeeded.
        recorded_sequence: The last event recorded (or quarantined).
        queue_last_sequence: The queue's last sequence as last known.
        lag_events: Events the history is behind.
        acknowledged_sequence: The last sequence acknowledged to the queue.
        last_error: The last failure since the start; empty if none.
        last_error_time: When it happened; None if none.
        quarantined_count: Events the history could not record (`history.quarantined`).
    """

    enabled: bool
    caught_up: bool
    queue_reachable: bool
    recorded_sequence: int
    queue_last_sequence: int
    lag_events: int
    acknowledged_sequence: int
    last_error: str
    last_error_time: datetime | None
    quarantined_count: int


@dataclass(frozen=True)
class QuarantinedEvent(Result[history_service_pb2.QuarantinedEvent]):
    """An event of the queue's log the history could not record, with why; the event itself,
    as the queue sent it, is `proto.event`."""

    sequence: int
    job_id: str
    quarantine_time: datetime | None
    error: str


@dataclass(frozen=True)
class StateChange:
    """A job's state change; `results` are set when it reached a terminal state."""

    from_state: JobState
    to_state: JobState
    reason: str
    runner_id: str
    attempt: int
    error_message: str
    results: list[EntryResult]


@dataclass(frozen=True)
class CancelRequest:
    """A cancel was asked for a running job."""

    return_to_queue: bool
    reason: str


@dataclass(frozen=True)
class JobUpdate:
    """A job's label or priority changed."""

    label: str
    priority: Priority


@dataclass(frozen=True)
class JobEvent(Result[job_pb2.JobEvent]):
    """One entry of the queue's event log. Exactly one payload field is set, as `kind` says
    (none for the queue-level QUEUE_PAUSED and QUEUE_RESUMED, whose `job_id` is empty).

    Attributes:
        sequence: Global, gap-free and increasing: where to resume watching.
        time: When the event was logged.
        job_id: The job it is about; empty for queue-level events.
        kind: Which payload is set.
        submitted: The job as submitted, with its entries.
        state_changed: The state change.
        progress: Live progress of the running job.
        cancel_requested: The cancel request.
        moved: The job's new queue position.
        updated: The new label and priority.
        trimmed: Read from the history (`history.events`) without some of its entries
            (`submitted.entries`) or results (`state_changed.results`): the whole event is
            larger than the history may send in one message. Never set on a queue watch.
    """

    sequence: int
    time: datetime | None
    job_id: str
    kind: EventKind
    submitted: Job | None = None
    state_changed: StateChange | None = None
    progress: JobProgress | None = None
    cancel_requested: CancelRequest | None = None
    moved: int | None = None
    updated: JobUpdate | None = None
    trimmed: bool = False


def read_event(message: job_pb2.JobEvent, trimmed: bool = False) -> JobEvent:
    """A JobEvent with only its set payload read (`trimmed`: the sender left part of it out)."""
    which = message.WhichOneof("payload")
    payload: dict[str, Any] = {}
    if which == "submitted":
        payload["submitted"] = read(Job, message.submitted.job)
    elif which == "state_changed":
        payload["state_changed"] = from_proto(StateChange, message.state_changed)
    elif which == "progress":
        payload["progress"] = from_proto(JobProgress, message.progress.progress)
    elif which == "cancel_requested":
        payload["cancel_requested"] = from_proto(CancelRequest, message.cancel_requested)
    elif which == "moved":
        payload["moved"] = message.moved.queue_position
    elif which == "updated":
        payload["updated"] = from_proto(JobUpdate, message.updated)
    kind = (EventKind(message.DESCRIPTOR.fields_by_name[which].number) if which
            else EventKind.UNSPECIFIED)
    event = JobEvent(sequence=message.sequence,
                     time=message.time.ToDatetime(tzinfo=UTC) if message.HasField("time") else None,
                     job_id=message.job_id, kind=kind, trimmed=trimmed, **payload)
    object.__setattr__(event, "proto", message)
    return event


# --- queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueState(Result[queue_service_pb2.QueueState]):
    """The queue as a whole.

    Attributes:
        paused: Whether queued (not direct) jobs are held back.
        counts: Jobs per state; a state without jobs may be missing (read with `.get`).
        runner_count: Runners seen recently.
        estimated_time_left: From recent seconds per image; None when unknown. Jobs no
            connected runner can run are left out of it.
        last_sequence: The newest event's sequence: watch from here to follow changes.
        unrunnable_job_count: Queued jobs no connected runner can run (no runner, none with
            their models, or none whose WebUI is ready); each one's `Job.waiting_reason` says
            why.
    """

    paused: bool
    counts: dict[JobState, int]
    runner_count: int
    estimated_time_left: timedelta | None
    last_sequence: int
    unrunnable_job_count: int


def read_queue_state(message: queue_service_pb2.QueueState) -> QueueState:
    """QueueState with its counts as a mapping by state."""
    state = QueueState(
        paused=message.paused,
        counts={JobState(count.state): count.count for count in message.counts},
        runner_count=message.runner_count,
        estimated_time_left=(message.estimated_time_left.ToTimedelta()
                             if message.HasField("estimated_time_left") else None),
        last_sequence=message.last_sequence,
        unrunnable_job_count=message.unrunnable_job_count)
    object.__setattr__(state, "proto", message)
    return state


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner announces about itself: its id, host, the models it can load and its
    RunnerService address (where its images are read), and the state of its WebUI as it last
    announced it (BUSY while it runs a job; DISCONNECTED: its WebUI does not answer, and it is
    given no job); `stopped`: it shut down cleanly and is not connected since."""

    runner_id: str
    host: str
    models: list[str]
    loaded_model: str
    address: str
    webui_state: WebuiState
    stopped: bool


@dataclass(frozen=True)
class Runner(Result[queue_service_pb2.Runner]):
    """A runner as the queue sees it: the job it runs (`current_job_id`, with its `progress`)
    and the one it leased ahead and holds, not started (`held_job_id`); `connected`: heard from
    within two lease lengths and not stopped."""

    info: RunnerInfo
    last_heartbeat_time: datetime | None
    current_job_id: str
    progress: JobProgress
    connected: bool
    held_job_id: str


@dataclass(frozen=True)
class Consumer(Result[queue_service_pb2.Consumer]):
    """A durable consumer of the queue's event log: the events after `acknowledged_sequence`
    are kept for it until it acknowledges them or expires (`expire_time`; None while it
    watches)."""

    consumer_id: str
    acknowledged_sequence: int
    create_time: datetime | None
    last_active_time: datetime | None
    expire_time: datetime | None
    watching: bool


# --- bundle ---------------------------------------------------------------------------------


class RowErrorReason(IntEnum):
    """Why a row makes no job; named as the ErrorReason of the same meaning."""

    UNSPECIFIED = bundle_service_pb2.ROW_ERROR_REASON_UNSPECIFIED
    INVALID_FIELD = bundle_service_pb2.ROW_ERROR_REASON_INVALID_FIELD
    INVALID_STAGE_PLAN = bundle_service_pb2.ROW_ERROR_REASON_INVALID_STAGE_PLAN
    UNRESOLVED_TOKEN = bundle_service_pb2.ROW_ERROR_REASON_UNRESOLVED_TOKEN
    TOO_MANY_VARIANTS = bundle_service_pb2.ROW_ERROR_REASON_TOO_MANY_VARIANTS
    PACK_INVALID = bundle_service_pb2.ROW_ERROR_REASON_PACK_INVALID
    PACK_NOT_FOUND = bundle_service_pb2.ROW_ERROR_REASON_PACK_NOT_FOUND


@dataclass(frozen=True)
class RowError:
    """A pack row (or, with `row_index` -1, a pack's presets) that makes no job, and why."""

    part_id: str
    prompt_pack_id: str
    row_index: int
    line: int
    reason: RowErrorReason
    message: str
    # The config field at fault ("txt2img.sampler_name"); "" when it is not one field.
    config_field: str
    # For a name no connected runner offers: the closest names they do offer, closest first.
    suggestions: list[str]


@dataclass(frozen=True)
class NameCheck:
    """Whether the model, VAE, sampler, scheduler, upscaler and ADetailer model names of a
    draft's jobs were checked against what the connected runners offer. Checked: each name none
    of them offers is a row error with suggestions. Unchecked (no runner connected, one that
    does not say what it offers, a queue that could not be asked): the jobs carry the names as
    written, and a runner finds a wrong one only when it runs it; `unchecked_reason` says why."""

    checked: bool
    runner_count: int
    unchecked_reason: str


@dataclass(frozen=True)
class BundleSummary:
    """What a draft's preview holds: counts, the first prompts, stages, batches, row errors,
    and whether its names were checked."""

    part_count: int
    job_count: int
    estimated_images: int
    positive_preview: str
    negative_preview: str
    stage_summary: str
    batch_summary: str
    errors: list[RowError]
    name_check: NameCheck


@dataclass(frozen=True)
class JobPart:
    """One part of a draft: a manual prompt or one pack row, with the config it runs with."""

    part_id: str
    prompt_source: PromptSource
    prompt: str
    negative_prompt: str
    prompt_pack_id: str
    pack_name: str
    row_index: int
    prepend_text: str
    config: PipelineConfig
    input_images: list[str]
    estimated_images: int


@dataclass(frozen=True)
class Draft(Result[bundle_service_pb2.Draft]):
    """A draft bundle: its parts and the summary of what it expands to.

    Attributes:
        revision: Increases with every change (and when a pack it uses changes on disk).
    """

    draft_id: str
    display_name: str
    revision: int
    parts: list[JobPart]
    summary: BundleSummary
    create_time: datetime | None
    update_time: datetime | None


@dataclass(frozen=True)
class PackSummary(Result[bundle_service_pb2.PackSummary]):
    """A prompt pack in the library; `error_message` says why a pack cannot be parsed."""

    pack_id: str
    name: str
    format: PackFormat
    row_count: int
    modify_time: datetime | None
    error_message: str


@dataclass(frozen=True)
class MatrixSlot:
    """A named list of values (a matrix slot or a wildcard list)."""

    name: str
    values: list[str]


@dataclass(frozen=True)
class PackMatrix:
    """A pack's prompt matrix."""

    enabled: bool
    mode: MatrixMode
    limit: int
    slots: list[MatrixSlot]


@dataclass(frozen=True)
class PackRow:
    """One row of a pack; `line` is its line in the file (0 for JSON packs)."""

    index: int
    positive: str
    negative: str
    tags: list[PromptTag]
    line: int


@dataclass(frozen=True)
class Pack(Result[bundle_service_pb2.Pack]):
    """A prompt pack: rows, matrix, wildcards, default config and problems."""

    pack_id: str
    name: str
    format: PackFormat
    rows: list[PackRow]
    matrix: PackMatrix
    defaults: PipelineConfig
    modify_time: datetime | None
    errors: list[RowError]
    wildcards: list[MatrixSlot]
    wildcard_mode: MatrixMode


# --- runner ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerStatus(Result[runner_service_pb2.RunnerStatus]):
    """A runner and its WebUI; an unreachable WebUI is a state with a `reason`."""

    runner_id: str
    webui_state: WebuiState
    reason: str
    webui_url: str
    loaded_model: str
    current_job_id: str
    progress: JobProgress
    owns_webui_process: bool


@dataclass(frozen=True)
class ModelInfo:
    """A checkpoint the WebUI offers."""

    title: str
    model_name: str
    hash: str


@dataclass(frozen=True)
class Capabilities(Result[runner_service_pb2.Capabilities]):
    """What a runner's WebUI offers."""

    models: list[ModelInfo]
    vaes: list[str]
    samplers: list[str]
    schedulers: list[str]
    upscalers: list[str]
    adetailer_models: list[str]
    fetch_time: datetime | None


@dataclass(frozen=True)
class InterruptResult(Result[runner_service_pb2.InterruptCurrentResponse]):
    """Whether a generation was interrupted (False: nothing was running), and its job."""

    interrupted: bool
    job_id: str


@dataclass(frozen=True)
class _PreviewHead:
    summary: BundleSummary
    draft_revision: int

    @property
    def errors(self) -> list[RowError]:
        """The rows that make no job (the same as `summary.errors`)."""
        return self.summary.errors


@dataclass(frozen=True)
class Preview(_PreviewHead):
    """A draft's preview: exactly the normalized jobs an enqueue of `draft_revision` submits.

    Attributes:
        summary: Counts, first prompts and the row errors (rows that make no job).
        draft_revision: The revision previewed: pass it to `enqueue(expected_revision=...)`.
        jobs: Every normalized job in bundle order; later pages are read as it is iterated
            (once: it is an iterator).
    """

    jobs: Iterator[NormalizedJob]


@dataclass(frozen=True)
class AsyncPreview(_PreviewHead):
    """`Preview` of the asyncio client: `jobs` is iterated with `async for`."""

    jobs: AsyncIterator[NormalizedJob]

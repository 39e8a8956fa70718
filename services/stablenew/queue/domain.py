"""The queue's domain: the job state machine, run order, leases, runner matching and why a
queued job waits.

Plain dataclasses and functions: no gRPC, no SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum

from stablenew.contract.config_hash import bundle_hash
from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.model import Job, JobState, Priority, RunMode, StageType, WebuiState
from stablenew.sdwebui.model_matching import has_checkpoint

LEGAL_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    # RUNNING -> QUEUED: the lease expired, the runner failed retryably, or a cancel asked to
    # return the job to the queue.
    JobState.RUNNING: frozenset(
        {JobState.QUEUED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

class MovePosition(IntEnum):
    UNSPECIFIED = 0
    FRONT = 1
    BACK = 2
    UP = 3
    DOWN = 4
    BEFORE = 5


class RetryScope(IntEnum):
    UNSPECIFIED = 0
    ALL_ENTRIES = 1
    FAILED_ENTRIES = 2


# Run order lanes: DIRECT ("Run now") jobs come before every queued job and ignore the pause.
LANE_DIRECT = 0
LANE_QUEUE = 1


def check_transition(job_id: str, current: JobState, target: JobState) -> None:
    if target not in LEGAL_TRANSITIONS.get(current, frozenset()):
        raise ServiceError(Code.FAILED_PRECONDITION, ErrorReason.ILLEGAL_TRANSITION,
            f"job {job_id} is {current.name}; it cannot become {target.name}",
            metadata={"job_id": job_id, "state": current.name, "target": target.name},
        )


def lane_of(run_mode: RunMode) -> int:
    return LANE_DIRECT if run_mode == RunMode.DIRECT else LANE_QUEUE


def effective_priority(priority: Priority) -> Priority:
    return Priority.NORMAL if priority == Priority.UNSPECIFIED else priority


def priority_rank(priority: Priority) -> int:
    return -int(effective_priority(priority))


@dataclass
class RunOrder:
    """Where a queued job stands, compared in this order, smaller first: lane, priority rank
    (minus the priority, so HIGH comes first), then order key (FIFO within a rank).

    MoveJob changes priority_rank and order_key; the submitted priority stays as it was.
    """

    lane: int
    priority_rank: int
    order_key: float


@dataclass
class LeaseState:
    lease_id: str = ""
    deadline: float = 0.0
    # The lease that finished (or released) the job, so a retried CompleteJob (or
    # ReleaseJob) answers the same.
    finished_by_lease_id: str = ""


@dataclass
class QueuedJob:
    """A job as the queue keeps it: the shared record plus the queue's bookkeeping."""

    job: Job
    order: RunOrder
    lease: LeaseState = field(default_factory=LeaseState)
    return_to_queue: bool = False
    request_id: str = ""
    required_models: tuple[str, ...] = ()
    preferred_model: str = ""
    # A full read's entries as stored: a serialized Job holding only them. They are sent as
    # they are (JobRead) and decoded only for a retry, so a 10,000-entry job's LeaseJob and
    # GetJob cost no conversion per entry.
    stored_entries: bytes = b""


@dataclass(frozen=True)
class JobRead:
    """A job as a read returns it: the client's view (without entries) and, for a full read,
    its entries in their stored form, which the edge merges into the message unchanged."""

    job: Job
    stored_entries: bytes = b""


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner announces with every lease request."""

    runner_id: str
    host: str = ""
    models: tuple[str, ...] = ()
    loaded_model: str = ""
    address: str = ""
    # What its WebUI offers, in wire form (a stablenew.v1.Capabilities; b"" when the runner
    # does not announce it): kept as announced and listed (ListRunners) for the bundle, which
    # checks names against it. The queue itself reads only the checkpoints, into
    # `checkpoint_names` (sdwebui.model_matching.checkpoint_names).
    capabilities: bytes = b""
    checkpoint_names: frozenset[str] = frozenset()
    # The state of its WebUI as announced; UNSPECIFIED (a runner that does not say) counts as
    # ready.
    webui_state: WebuiState = WebuiState.UNSPECIFIED
    # Its last announcement as it shut down cleanly: not connected from then on.
    stopped: bool = False

    def can_take_jobs(self) -> bool:
        """Whether its WebUI can run a job: a runner whose WebUI is down, starting or failing
        announces itself but is given nothing, as is one that shut down."""
        return not self.stopped and self.webui_state in (
            WebuiState.UNSPECIFIED, WebuiState.READY, WebuiState.BUSY)

    def offers_model(self, model: str) -> bool:
        """Whether the runner can load `model`: a name it announced in `models`, or one its
        WebUI resolves to one of its checkpoints (title, file name, name, hash)."""
        return model in self.models or has_checkpoint(self.checkpoint_names, model)


@dataclass
class RunnerRecord:
    info: RunnerInfo
    last_heartbeat_time: datetime | None = None
    # The job it runs, and the one it leased ahead and holds, not started.
    current_job_id: str = ""
    held_job_id: str = ""

    def connected(self, heard_after: datetime) -> bool:
        """Heard from after `heard_after`, and not shut down since."""
        return (not self.info.stopped and self.last_heartbeat_time is not None
                and self.last_heartbeat_time > heard_after)


@dataclass(frozen=True)
class Lease:
    lease_id: str
    job_id: str
    attempt: int
    deadline: datetime


def can_run(runner: RunnerInfo, required_models: tuple[str, ...]) -> bool:
    """A runner may take a job only if it offers every model the job needs."""
    return all(runner.offers_model(model) for model in required_models)


NO_RUNNER = "no runner is connected"
NO_WEBUI = "no connected runner that can run it has its WebUI ready"
PAUSED = "the queue is paused"


class RunnerPool:
    """The connected runners, as one read sees them: why a queued job waits, worked out once
    per distinct set of models (the jobs of a page mostly share a few), not once per job."""

    def __init__(self, connected: list[RunnerInfo], paused: bool) -> None:
        self.connected = connected
        self.paused = paused
        self._reasons: dict[tuple[str, ...], str] = {}

    def unrunnable_reason(self, required_models: tuple[str, ...]) -> str:
        """Why no connected runner can run a job needing `required_models`; "" when one can."""
        reason = self._reasons.get(required_models)
        if reason is None:
            reason = self._reasons[required_models] = self._reason(required_models)
        return reason

    def waiting_reason(self, queued: QueuedJob) -> str:
        """Why the queued job is not leased now, beyond waiting for its turn; "" if it is not."""
        reason = self.unrunnable_reason(queued.required_models)
        if not reason and self.paused and queued.order.lane == LANE_QUEUE:
            return PAUSED
        return reason

    def _reason(self, required_models: tuple[str, ...]) -> str:
        if not self.connected:
            return NO_RUNNER
        able = [runner for runner in self.connected if can_run(runner, required_models)]
        if any(runner.can_take_jobs() for runner in able):
            return ""
        if able:  # their WebUIs are down, starting or failing: they lease nothing meanwhile
            return NO_WEBUI
        missing = [model for model in required_models
                   if not any(runner.offers_model(model) for runner in self.connected)]
        if missing:
            return f"no connected runner offers model {_names(missing)}"
        return f"no connected runner offers all of its models {_names(list(required_models))}"


def _names(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


@dataclass(frozen=True)
class EntryBatch:
    """A submitted job's entries as the queue handles them: checked and encoded once at the edge
    (queue/entries.py) with the few facts the queue schedules and summarises by. Until a runner
    leases the job the queue only stores and forwards its entries, so it keeps their wire form
    rather than thousands of objects."""

    encoded: bytes  # what the jobs row stores and the submitted event carries
    count: int
    estimated_images: int
    longest_stage_plan: tuple[StageType, ...]
    has_adetailer: bool
    has_upscale: bool
    config_hashes: tuple[str, ...]
    first_prompt: str
    required_models: tuple[str, ...]  # every model named, sorted
    preferred_model: str  # the first entry's model: a runner with it loaded goes first


def summarize(job: Job, entries: EntryBatch) -> None:
    """Fill the job's derived fields from its entries."""
    job.entry_count = entries.count
    job.estimated_images = entries.estimated_images
    job.stage_count = len(entries.longest_stage_plan)
    job.has_adetailer = entries.has_adetailer
    job.has_upscale = entries.has_upscale
    job.config_hash = bundle_hash(list(entries.config_hashes))
    first_prompt = entries.first_prompt
    if len(first_prompt) > 60:
        first_prompt = first_prompt[:57] + "..."
    entries_noun = "entry" if job.entry_count == 1 else "entries"
    images_noun = "image" if job.estimated_images == 1 else "images"
    stage_names = "+".join(stage.name.lower() for stage in entries.longest_stage_plan)
    job.payload_summary = (
        f"{job.entry_count} {entries_noun}, {job.estimated_images} {images_noun}: {first_prompt} "
        f"({stage_names})"
    )


@dataclass(frozen=True)
class Consumer:
    """A durable consumer of the event log: the events after `acknowledged_sequence` are kept
    for it until it acknowledges them, or until it has been idle (neither watching nor
    acknowledging) longer than the queue's idle limit."""

    consumer_id: str
    acknowledged_sequence: int
    create_time: datetime
    last_active_time: datetime
    request_id: str = ""
    watching: bool = False

    def expire_time(self, idle_seconds: float) -> datetime | None:
        """When it expires unless active again; None while it watches."""
        return None if self.watching else self.last_active_time + timedelta(seconds=idle_seconds)

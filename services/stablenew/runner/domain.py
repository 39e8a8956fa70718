"""The runner's own types: its WebUI's state and capabilities, its lease on a job, what it
announces to the queue, the state its worker and its servicer share, the queue it works for
(a port its adapter implements) and the errors its use cases report. No grpc, no HTTP.

The shared job shapes (Job, EntryResult, JobProgress, ...) are the contract's twins
(stablenew.contract.model).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from stablenew.contract.errors import Code, ErrorDetails, ErrorReason, ServiceError
from stablenew.contract.model import EntryResult, Job, JobProgress, JobState, WebuiState
from stablenew.sdwebui.model_matching import ModelEntry, queue_model_name
from stablenew.sdwebui.names import SchedulerEntry

log = logging.getLogger("stablenew.runner")


@dataclass
class Capabilities:
    """What the WebUI offers, as the runner last fetched it (at start-up and before each job)."""

    models: list[ModelEntry] = field(default_factory=list)
    vaes: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    schedulers: list[str] = field(default_factory=list)
    upscalers: list[str] = field(default_factory=list)
    adetailer_models: list[str] = field(default_factory=list)
    fetch_time: datetime | None = None
    # The schedulers with their labels and aliases, as requests and infotexts spell them.
    scheduler_entries: list[SchedulerEntry] = field(default_factory=list)
    # The hires fix also takes these ("Latent", ...), which the upscaler list leaves out.
    latent_upscale_modes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunnerStatus:
    """One consistent snapshot of the runner, as GetRunnerStatus reports it."""

    runner_id: str
    webui_state: WebuiState
    reason: str
    webui_url: str
    loaded_model: str
    current_job_id: str
    owns_process: bool
    progress: JobProgress | None


@dataclass(frozen=True)
class RunnerInfo:
    """What the runner announces when it asks the queue for work."""

    runner_id: str
    host: str
    models: list[str]
    loaded_model: str
    address: str
    # What its WebUI offers; None until the runner has read it.
    capabilities: Capabilities | None = None
    # Its WebUI's state: the queue gives no job to a runner whose WebUI cannot run one.
    webui_state: WebuiState = WebuiState.UNSPECIFIED
    # Its last announcement as it shuts down: the queue lists it as gone at once.
    stopped: bool = False


@dataclass(frozen=True)
class Lease:
    """The runner's hold on a job. Only the current (lease_id, attempt) may heartbeat, complete
    or fail it: the attempt is the fencing token."""

    runner_id: str
    job_id: str
    lease_id: str
    attempt: int


@dataclass(frozen=True)
class LeasedJob:
    lease: Lease
    job: Job


@dataclass(frozen=True)
class Beat:
    """The queue's answer to a heartbeat."""

    cancel_requested: bool
    # A queued job this runner can run comes before the leased one: a job held ahead, not
    # started, goes back (release) so that the other runs first.
    outranked: bool = False


@dataclass(frozen=True)
class ImageChunk:
    """A piece of an image file: ReadImage streams these."""

    data: bytes
    offset: int
    total_size: int


# --- the queue -------------------------------------------------------------------------------


class QueueCallError(Exception):
    """A call to the queue failed and retrying it would fail the same way; `details` is what
    the queue (or gRPC) answered."""

    def __init__(self, call: str, details: ErrorDetails) -> None:
        super().__init__(details.message)
        self.call = call
        self.details = details

    def __str__(self) -> str:
        reason = f" {self.details.reason}" if self.details.reason else ""
        return f"queue {self.call}: {self.details.code.name}{reason}: {self.details.message}"


class QueueUnavailableError(QueueCallError):
    """The queue could not be reached or did not answer in time (a restart, a network
    outage): the same call may succeed later."""


class LeaseLostError(QueueCallError):
    """The queue no longer recognises the lease: it expired and the job went back to the queue
    or on to another runner. The runner stops the job without reporting it."""


class JobQueue(Protocol):
    """The queue as the runner's use cases need it. Every method raises QueueCallError (or
    one of its subclasses) when the call fails."""

    def lease(self, runner: RunnerInfo, wait_seconds: float) -> LeasedJob | None:
        """The next job for this runner, or None when none came within `wait_seconds`."""
        ...

    def heartbeat(self, lease: Lease, loaded_model: str, progress: JobProgress | None) -> Beat:
        """Extend the lease and report progress; whether a cancel was requested, and whether
        a queued job comes first."""
        ...

    def complete(self, lease: Lease, results: list[EntryResult], cancelled: bool) -> JobState:
        """Report every entry's result (`cancelled`: stopped early on a cancel request); the
        state the job ended in."""
        ...

    def fail(self, lease: Lease, message: str, results: list[EntryResult],
             retryable: bool) -> JobState:
        """Report the job failed (`retryable`: another attempt may succeed); its new state."""
        ...

    def release(self, lease: Lease, reason: str) -> JobState:
        """Give back a lease not started: the job is queued again without consuming an
        attempt (CANCELLED when a cancel was requested meanwhile); its new state."""
        ...


# --- errors the runner's own API reports ----------------------------------------------------


def webui_unavailable(cause: Exception) -> ServiceError:
    return ServiceError(Code.UNAVAILABLE, ErrorReason.WEBUI_UNAVAILABLE,
                        f"the WebUI did not answer: {cause}")


def path_outside_root(cause: Exception) -> ServiceError:
    return ServiceError(Code.PERMISSION_DENIED, ErrorReason.PATH_OUTSIDE_ROOT, str(cause))


def image_not_found(relative: str) -> ServiceError:
    return ServiceError(Code.NOT_FOUND, ErrorReason.IMAGE_NOT_FOUND,
                        f"no image {relative!r} under the output root")


# --- the state the worker and the servicer share ---------------------------------------------


class RunnerState:
    """Written by the worker (and the WebUI supervisor), read by the servicer; every access
    takes the lock."""

    def __init__(self, runner_id: str, host: str, webui_url: str, owns_process: bool) -> None:
        self.runner_id = runner_id
        self.host = host
        self.webui_url = webui_url
        self.owns_process = owns_process
        self._lock = threading.Lock()
        self._webui_state = WebuiState.DISCONNECTED
        self._reason = "not checked yet"
        self._capabilities: Capabilities | None = None
        self._loaded_title = ""
        self._current_job_id = ""
        self._progress: JobProgress | None = None

    # --- the WebUI -----------------------------------------------------------------------

    def set_webui(self, state: WebuiState, reason: str) -> None:
        with self._lock:
            if (state, reason) != (self._webui_state, self._reason):
                log.info("WebUI %s %s", state.name, reason)
            self._webui_state, self._reason = state, reason

    def webui_answered(self, loaded_title: str) -> None:
        """The WebUI is up with `loaded_title` loaded: READY, or BUSY while a job runs."""
        with self._lock:
            self._loaded_title = loaded_title
            busy = bool(self._current_job_id)
        self.set_webui(WebuiState.BUSY if busy else WebuiState.READY, "")

    def set_capabilities(self, capabilities: Capabilities) -> None:
        with self._lock:
            self._capabilities = capabilities

    @property
    def capabilities(self) -> Capabilities | None:
        with self._lock:
            return self._capabilities

    @property
    def webui(self) -> tuple[WebuiState, str]:
        with self._lock:
            return self._webui_state, self._reason

    @property
    def loaded_model_name(self) -> str:
        """The loaded checkpoint as the queue names models."""
        with self._lock:
            return self._loaded_model_name()

    def _loaded_model_name(self) -> str:
        models = self._capabilities.models if self._capabilities else []
        return queue_model_name(self._loaded_title, models)

    def status(self) -> RunnerStatus:
        with self._lock:
            return RunnerStatus(
                runner_id=self.runner_id, webui_state=self._webui_state, reason=self._reason,
                webui_url=self.webui_url, loaded_model=self._loaded_model_name(),
                current_job_id=self._current_job_id, owns_process=self.owns_process,
                progress=self._progress)

    # --- the current job -----------------------------------------------------------------

    def job_started(self, job_id: str) -> None:
        with self._lock:
            self._current_job_id, self._progress = job_id, None
            if self._webui_state == WebuiState.READY:
                self._webui_state = WebuiState.BUSY

    def job_finished(self) -> None:
        with self._lock:
            self._current_job_id, self._progress = "", None
            if self._webui_state == WebuiState.BUSY:
                self._webui_state = WebuiState.READY

    def set_progress(self, progress: JobProgress) -> None:
        with self._lock:
            self._progress = progress

    @property
    def progress(self) -> JobProgress | None:
        with self._lock:
            return self._progress

    @property
    def current_job_id(self) -> str:
        with self._lock:
            return self._current_job_id

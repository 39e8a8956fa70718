"""The runner's use cases, with no transport in them.

RunnerCore serves the runner's own API: its status, the WebUI's capabilities, interrupting the
WebUI, and image files in chunks. JobRunner works for the queue: it checks the WebUI, takes a
job (prefetch.py holds the next one while the current one runs), runs its entries
(executor.py) while heartbeats extend the lease, carry progress and bring cancel requests back,
and reports the outcome. The WebUI goes straight to the next job: the files, the manifest and
the report of a job are finished on a thread of their own beside the next generation, and the
WebUI's capabilities are cached (read again when an entry names something they lack).

A lease the queue no longer recognises (it expired during an outage and the job went to another
runner) stops the job without reporting it. A runner that shuts down hands its running job back
with a retryable failure instead of letting the lease run out; a job it leased but never
started goes back with ReleaseJob, which costs it no attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

from stablenew.contract.errors import Code, invalid_argument
from stablenew.contract.model import EntryResult, JobState, WebuiState
from stablenew.runner import outputs
from stablenew.runner.domain import (
    Capabilities,
    ImageChunk,
    JobQueue,
    Lease,
    LeasedJob,
    LeaseLostError,
    QueueCallError,
    QueueUnavailableError,
    RunnerInfo,
    RunnerState,
    RunnerStatus,
    image_not_found,
    path_outside_root,
    webui_unavailable,
)
from stablenew.runner.executor import Executor, JobOutcome
from stablenew.runner.prefetch import Prefetch
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError, WebuiErrorKind

log = logging.getLogger("stablenew.runner")
T = TypeVar("T")

DEFAULT_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
# A report waits out a queue restart: 29 waits from 0.1 s doubling to 2 s, about 50 s in all.
REPORT_ATTEMPTS = 30
# Cached capabilities older than this are read again, off the generation's path (an idle
# check, or the finisher): a model added to the WebUI is announced to the queue within it.
CAPABILITIES_MAX_AGE = timedelta(seconds=10)


class RunnerCore:
    """The use cases behind RunnerService."""

    def __init__(self, state: RunnerState, client: WebuiClient, output_root: Path) -> None:
        self.state = state
        self.client = client
        self.output_root = output_root

    def status(self) -> RunnerStatus:
        return self.state.status()

    def capabilities(self, refresh: bool) -> Capabilities:
        """The cached capabilities; fetched from the WebUI when asked to or never fetched."""
        capabilities = self.state.capabilities
        if refresh or capabilities is None:
            try:
                capabilities = self.client.capabilities()
            except WebuiError as error:
                raise webui_unavailable(error) from None
            self.state.set_capabilities(capabilities)
        return capabilities

    def interrupt_current(self) -> str:
        """Interrupt whatever the WebUI generates; the id of the job that was running ("" when
        none). Not a cancel: the WebUI returns what it made and the job goes on."""
        job_id = self.state.current_job_id
        try:
            self.client.interrupt()
        except WebuiError as error:
            raise webui_unavailable(error) from None
        return job_id

    def read_image(self, relative: str, chunk_size: int) -> Iterator[ImageChunk]:
        """The file `relative` names under the output root, in chunks of `chunk_size` bytes
        (0: the default). The request is checked before this returns."""
        if chunk_size < 0 or chunk_size > MAX_CHUNK:
            raise invalid_argument("chunk_size", f"0 (default {DEFAULT_CHUNK}) to {MAX_CHUNK}")
        return _chunks(self._image_path(relative), chunk_size or DEFAULT_CHUNK)

    def _image_path(self, relative: str) -> Path:
        if not relative:
            raise invalid_argument("path", "required")
        if len(relative) > MAX_PATH_CHARS or any(
                len(name.encode()) > MAX_NAME_BYTES for name in relative.split("/")):
            raise invalid_argument("path", f"at most {MAX_PATH_CHARS} characters, and "
                                           f"{MAX_NAME_BYTES} bytes per name")
        try:
            path = outputs.resolve_inside(self.output_root, relative)
            is_file = path.is_file()
        except outputs.UnsafePathError as error:
            raise path_outside_root(error) from None
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            is_file = False
        if not is_file:
            raise image_not_found(relative)
        return path


def fresh_capabilities(client: WebuiClient, state: RunnerState) -> Capabilities:
    """What the WebUI offers now, kept as the runner's capabilities."""
    capabilities = client.capabilities()
    state.set_capabilities(capabilities)
    return capabilities


# What a file system takes: longer paths and names fail in the kernel (ENAMETOOLONG).
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255


def _chunks(path: Path, chunk_size: int) -> Iterator[ImageChunk]:
    total = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while data := handle.read(chunk_size):
            yield ImageChunk(data=data, offset=offset, total_size=total)
            offset += len(data)


class JobRunner:
    """Leases jobs from the queue and runs them on the WebUI, one at a time, holding the next
    one ahead. `start` it before `work_once`, `close` it at the end."""

    def __init__(self, queue: JobQueue, client: WebuiClient, executor: Executor,
                 state: RunnerState, address: str, lease_wait_seconds: float = 10.0,
                 heartbeat_seconds: float = 0.5) -> None:
        self.queue = queue
        self.client = client
        self.executor = executor
        self.state = state
        self.address = address
        self.lease_wait_seconds = lease_wait_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stopping = threading.Event()
        self._job_cancel = threading.Event()
        # The running job the heartbeat thread keeps alive; set and cleared under the
        # condition, which a beat holds, so that no beat goes out for a job that ended.
        self._beating: _Beating | None = None
        self._beat_turn = threading.Condition()
        self._beats = threading.Thread(target=self._heartbeats, name="runner-heartbeat",
                                       daemon=True)
        self.prefetch = Prefetch(queue, self._runner_info, self._may_lease_ahead, self.stopping,
                                 heartbeat_seconds)
        # Finishes each job (files, manifest, report) in order, beside the next generation.
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runner-finish")
        # The last job's requests all had the WebUI's answers: its state is known.
        self._webui_just_answered = False

    def start(self) -> None:
        self.prefetch.start()
        self._beats.start()

    def close(self, timeout: float) -> None:
        """Stop; hand the held job back, finish the reports of the jobs that ran, and tell
        the queue this runner is gone."""
        self.shut_down()
        self.prefetch.close(timeout)
        with self._beat_turn:
            self._beat_turn.notify_all()  # the heartbeat thread ends once no job runs
        self._finisher.shutdown(wait=True)
        self._announce_stopped()

    def _announce_stopped(self) -> None:
        """The last announcement: the queue lists this runner as gone at once rather than
        after two lease lengths of silence (which is what happens when this fails)."""
        try:
            self.queue.lease(replace(self._runner_info(), stopped=True), 0.0)
        except QueueCallError as error:
            log.warning("telling the queue this runner stopped failed: %s", error)

    def work_once(self) -> bool:
        """Run the held job, or check the WebUI and, when it is ready, lease a job and run it.
        False when the WebUI is not ready (the caller waits before trying again)."""
        leased = self.prefetch.take()
        if leased is None:
            if not (self._webui_known_ready() or self._check_webui()):
                self.prefetch.hand_back("the WebUI is not ready")
                self._announce()
                return False
            leased = self.queue.lease(self._runner_info(), self.lease_wait_seconds)
            if leased is None:
                return True
        self.run(leased)
        return True

    def _may_lease_ahead(self) -> bool:
        """Lease ahead only while a job runs on a WebUI that answers, and not when stopping."""
        return (not self.stopping.is_set() and bool(self.state.current_job_id)
                and self.state.webui[0] in (WebuiState.READY, WebuiState.BUSY))

    def _webui_known_ready(self) -> bool:
        """The job that just ended had the WebUI's answers and the client remembers the loaded
        model: no probe (three requests) before the long-poll, where it would take CPU from the
        finisher writing that job's files. Once only: after a long-poll the WebUI is probed."""
        known, self._webui_just_answered = self._webui_just_answered, False
        title = self.client.remembered_model_title
        if not known or title is None:
            return False
        self.state.webui_answered(title)
        return True

    def _check_webui(self) -> bool:
        """Probe the WebUI and record what was found; fetch its capabilities the first time
        it answers. True when it is ready for a job."""
        if not self.client.is_ready():
            if self.state.webui[0] != WebuiState.STARTING:  # an owned WebUI still booting
                self.state.set_webui(WebuiState.DISCONNECTED,
                                     f"no answer from {self.state.webui_url}")
            return False
        try:
            if self._capabilities_stale():
                self.state.set_capabilities(self.client.capabilities())
            title = self.client.loaded_model_title()
        except WebuiError as error:
            self.state.set_webui(WebuiState.ERROR, str(error))
            return False
        self.state.webui_answered(title)
        return True

    def _announce(self) -> None:
        """Tell the queue the WebUI's state: a lease request that waits for nothing, which the
        queue answers without a job for a runner whose WebUI cannot run one (RunnerInfo)."""
        self.queue.lease(self._runner_info(), 0.0)

    def _capabilities_stale(self) -> bool:
        capabilities = self.state.capabilities
        if capabilities is None or capabilities.fetch_time is None:
            return True
        return datetime.now(UTC) - capabilities.fetch_time > CAPABILITIES_MAX_AGE

    def _runner_info(self) -> RunnerInfo:
        capabilities = self.state.capabilities
        models = [model.model_name for model in capabilities.models] if capabilities else []
        return RunnerInfo(runner_id=self.state.runner_id, host=self.state.host, models=models,
                          loaded_model=self.state.loaded_model_name, address=self.address,
                          capabilities=capabilities, webui_state=self.state.webui[0])

    def shut_down(self) -> None:
        """Stop leasing, and hand the held job and a running one back to the queue at once
        rather than let their leases run out."""
        self.stopping.set()
        self.prefetch.hand_back("the runner shut down before it started the job")
        if self.state.current_job_id:
            self._stop_job(self._job_cancel, "the runner is shutting down")

    def run(self, leased: LeasedJob) -> None:
        """Run a leased job with heartbeats; its files and report are finished beside the
        next job (`close` waits for them)."""
        lease, job = leased.lease, leased.job
        log.info("running job %s attempt %d (%d entries)", job.job_id, lease.attempt,
                 len(job.entries))
        try:
            # Cached: a name an entry uses that they lack makes the executor read them again.
            capabilities = self.state.capabilities or fresh_capabilities(self.client,
                                                                         self.state)
        except WebuiError as error:
            self._webui_lost(error)
            self._finisher.submit(self._release_unstarted, lease, error)
            return
        cancel = self._job_cancel = threading.Event()
        beating = _Beating(lease, cancel)
        self.state.job_started(job.job_id)
        self.prefetch.wake()  # the next job is leased while this one runs
        self._beat_for(beating)
        try:
            outcome = self.executor.run_entries(job, capabilities, cancel,
                                                self.state.set_progress)
        finally:
            self.state.job_finished()
            self._beat_for(None)  # waits for a beat in flight
        if outcome.cut_off:
            self._webui_lost(outcome.cut_off)  # at once: nothing more is leased or held
        self._webui_just_answered = bool(outcome.writes) and not outcome.cut_off
        self._finisher.submit(self._finish, leased, outcome, beating.lost.is_set())

    def _finish(self, leased: LeasedJob, outcome: JobOutcome, lost: bool) -> None:
        """Write the job's files and manifest and report how it ended (the finisher thread:
        a failure is logged, and the lease expiry hands the job on)."""
        try:
            self._report_outcome(leased.lease, self.executor.finish(leased.job, outcome), lost)
        except Exception:
            log.exception("finishing job %s failed", leased.job.job_id)
        if self._capabilities_stale() and not self.stopping.is_set():
            try:
                fresh_capabilities(self.client, self.state)
            except WebuiError as error:
                log.debug("reading the capabilities failed: %s", error)  # the next job tells

    def _report_outcome(self, lease: Lease, outcome: JobOutcome, lost: bool) -> None:
        job_id = lease.job_id
        if lost:
            log.warning("lease of job %s was lost; not reporting it", job_id)
        elif outcome.cut_off:
            self._hand_back(lease, outcome.results, outcome.cut_off)
        elif outcome.cancelled and self.stopping.is_set():
            self.queue.fail(lease, "the runner shut down while running the job",
                            outcome.results, retryable=True)
            log.info("job %s handed back to the queue", job_id)
        else:
            self._report(lease, outcome.results, outcome.cancelled)

    def _webui_lost(self, cause: WebuiError | str) -> None:
        """The WebUI stopped answering: record it, which stops leasing ahead, and give the held
        job back."""
        answered = isinstance(cause, WebuiError) and cause.kind is not WebuiErrorKind.UNAVAILABLE
        self.state.set_webui(WebuiState.ERROR if answered else WebuiState.DISCONNECTED,
                             _stopped_answering(cause))
        self.prefetch.hand_back(_stopped_answering(cause))

    def _hand_back(self, lease: Lease, results: list[EntryResult],
                   cause: WebuiError | str) -> None:
        """Give a job the WebUI stopped answering for back for another attempt, with the
        entries that completed (the next attempt does not run them again)."""
        reason = _stopped_answering(cause)
        state = _retrying(lambda: self.queue.fail(lease, reason, results, retryable=True),
                          self.stopping)
        log.warning("job %s handed back to the queue (%s): %s", lease.job_id, state.name,
                    reason)

    def _release_unstarted(self, lease: Lease, cause: WebuiError) -> None:
        """Give back a job the WebUI stopped answering for before it started: the queue runs it
        again without counting an attempt."""
        reason = _stopped_answering(cause)
        state = _retrying(lambda: self.queue.release(lease, reason), self.stopping)
        log.warning("job %s released (%s): %s", lease.job_id, state.name, reason)

    def _beat_for(self, beating: _Beating | None) -> None:
        """The job the heartbeat thread keeps alive from now on (None: none)."""
        with self._beat_turn:
            self._beating = beating
            self._beat_turn.notify_all()

    def _heartbeats(self) -> None:
        """The heartbeat thread, for the runner's life (one started per job cost a start and a
        join between two generations): beats the running job every interval, and ends when the
        runner closes with no job running."""
        with self._beat_turn:
            while self._beating is not None or not self.stopping.is_set():
                beating = self._beating
                if beating is None:
                    self._beat_turn.wait(self.heartbeat_seconds)
                # The lease is fresh (just granted, or kept by the held job's beats): the first
                # beat waits one interval, so a short job sends none. The wait ends with the job.
                elif not self._beat_turn.wait_for(partial(self._ended, beating),
                                                  self.heartbeat_seconds):
                    self._beat(beating)

    def _ended(self, beating: _Beating) -> bool:
        return self._beating is not beating

    def _beat(self, beating: _Beating) -> None:
        """One heartbeat of the running job: a cancel request or a lost lease stops it."""
        try:
            cancel_requested = self.queue.heartbeat(beating.lease, self.state.loaded_model_name,
                                                    self.state.progress).cancel_requested
            if cancel_requested and not beating.cancel.is_set():
                self._stop_job(beating.cancel, "cancel requested")
        except LeaseLostError:
            beating.lost.set()
            self._stop_job(beating.cancel, "lease lost")
        except QueueCallError as error:
            # The next beat tries again; the lease outlasts many missed beats.
            log.debug("heartbeat failed: %s", error)
        except Exception:
            log.exception("heartbeat failed")  # the thread must go on for the next jobs

    def _stop_job(self, cancel: threading.Event, why: str) -> None:
        log.info("stopping the current job: %s", why)
        cancel.set()
        try:
            self.client.interrupt()
        except WebuiError as error:
            log.warning("interrupt failed: %s", error)

    def _report(self, lease: Lease, results: list[EntryResult], cancelled: bool) -> None:
        try:
            state = _retrying(lambda: self.queue.complete(lease, results, cancelled),
                              self.stopping)
        except QueueCallError as error:
            if error.details.code != Code.RESOURCE_EXHAUSTED:
                raise
            state = self._report_too_large(lease, error)
        log.info("job %s reported: %s", lease.job_id, state.name)

    def _report_too_large(self, lease: Lease, error: QueueCallError) -> JobState:
        """Results the queue cannot take in one message (or log as one event): the job fails
        with the reason, not retried (it would make the same results), instead of being left
        to its lease expiry and run again, up to the attempt limit, for nothing."""
        log.warning("the results of job %s are too large to report: %s", lease.job_id, error)
        message = (f"the results could not be reported, too large for one message: "
                   f"{error.details.message}; the images and the manifest are in the runner's "
                   f"output folder")
        return _retrying(lambda: self.queue.fail(lease, message, [], retryable=False),
                         self.stopping)


@dataclass(frozen=True)
class _Beating:
    """The running job the heartbeat thread keeps alive: its lease, the cancel that stops it,
    and whether the queue said its lease was lost (then it is not reported)."""

    lease: Lease
    cancel: threading.Event
    lost: threading.Event = field(default_factory=threading.Event)


def _stopped_answering(cause: WebuiError | str) -> str:
    return f"the WebUI stopped answering: {cause}"


def _retrying(call: Callable[[], T], stopping: threading.Event,
              attempts: int = REPORT_ATTEMPTS) -> T:
    """Retry while the queue is unreachable (a restart); a retried report answers the same."""
    for attempt in range(attempts - 1):
        try:
            return call()
        except QueueUnavailableError:
            if stopping.is_set():
                raise
        time.sleep(min(0.1 * 2 ** attempt, 2.0))
    return call()  # the last attempt: whatever it raises is raised

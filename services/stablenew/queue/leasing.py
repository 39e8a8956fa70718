"""Runner leases: long-poll LeaseJob, heartbeats, fenced completion, and lease expiry.

Waiting runners are matched to jobs in one place (`_dispatch`), in run order: a job goes only to
a runner that announced every model it needs, preferring one that has its model loaded already.
A lease is (lease id, attempt); only the current one may heartbeat, complete or fail the job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stablenew.contract.errors import Code, ErrorReason, ServiceError, invalid_argument
from stablenew.contract.model import EntryResult, EntryStatus, Job, JobProgress, JobState
from stablenew.queue.core import QueueCore, _Pending
from stablenew.queue.domain import (
    LANE_DIRECT,
    LANE_QUEUE,
    JobRead,
    Lease,
    QueuedJob,
    RunnerInfo,
    RunnerRecord,
    can_run,
)
from stablenew.queue.store import run_order_key

# How far down the queue to look for a job some waiting runner can run.
DISPATCH_SCAN_LIMIT = 5000
# Small first: the first queued job usually fits a waiting runner.
DISPATCH_BATCHES = (8, 200)


@dataclass
class _Waiter:
    runner: RunnerInfo
    # False once the caller gave up (its call was cancelled: a runner that died mid-poll).
    active: Callable[[], bool]
    granted: threading.Event = field(default_factory=threading.Event)
    result: tuple[Lease, JobRead] | None = None


@dataclass(frozen=True)
class HeartbeatReply:
    lease_deadline: datetime
    cancel_requested: bool
    return_to_queue: bool
    outranked: bool


def _lease_not_current(job_id: str, detail: str) -> ServiceError:
    return ServiceError(Code.FAILED_PRECONDITION, ErrorReason.LEASE_NOT_CURRENT,
        f"job {job_id}: {detail}", metadata={"job_id": job_id})


class Leasing:
    def __init__(self, core: QueueCore) -> None:
        self.core = core
        self._waiters: list[_Waiter] = []
        core.on_job_available = self.dispatch

    # --- lease ----------------------------------------------------------------------------

    def lease(self, runner: RunnerInfo, wait_seconds: float,
              active: Callable[[], bool] = lambda: True) -> tuple[Lease, JobRead] | None:
        """The next job `runner` can run, waiting up to `wait_seconds`; `active` turns False
        when the caller is gone, so that no job is granted to a runner that died waiting."""
        if not runner.runner_id:
            raise invalid_argument("runner.runner_id", "required")
        wait = min(max(wait_seconds, 0.0), self.core.config.max_lease_wait_seconds)
        waiter = _Waiter(runner, active)
        with self.core.write():
            self.core.runners.announced(runner)
        if runner.stopped:
            self._forget_waiters(runner.runner_id)
        if not runner.can_take_jobs():
            return None  # only an announcement: its WebUI cannot run a job now, or it stopped
        with self.core.lock:
            if self.core.closing.is_set():
                return None  # shutting down: no new long-poll may hold the exit up
            self._waiters.append(waiter)
            self.dispatch()
        waiter.granted.wait(wait)
        with self.core.lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return waiter.result

    def _forget_waiters(self, runner_id: str) -> None:
        """A runner that stopped is given nothing its earlier long-polls still wait for."""
        with self.core.lock:
            self._end_waits(lambda waiter: waiter.runner.runner_id == runner_id)

    def dispatch(self) -> None:
        """Hand queued jobs to waiting runners, in run order."""
        with self.core.lock:
            self._drop_inactive_waiters()
            if not self._waiters or self.core.closing.is_set():
                return
            lanes = self._lanes()
            after = None
            scanned = 0
            while self._waiters and scanned < DISPATCH_SCAN_LIMIT:
                size = DISPATCH_BATCHES[0] if scanned == 0 else DISPATCH_BATCHES[1]
                batch = self.core.store.queued_in_order(after, size, lanes)
                for queued in batch:
                    self._offer(queued)
                    if not self._waiters:
                        return
                if len(batch) < size:
                    return
                scanned += len(batch)
                after = run_order_key(batch[-1])

    def _drop_inactive_waiters(self) -> None:
        """Forget the long-polls whose callers are gone, and end their waits: a thread left
        waiting for its full wait would also hold up the server's exit for that long."""
        self._end_waits(lambda waiter: not waiter.active())

    def _end_waits(self, ending: Callable[[_Waiter], bool]) -> None:
        """Forget the waiting long-polls `ending` picks and wake them with no lease (under the
        core's lock)."""
        for waiter in [waiter for waiter in self._waiters if ending(waiter)]:
            self._waiters.remove(waiter)
            waiter.granted.set()

    def _offer(self, queued: QueuedJob) -> None:
        able = [w for w in self._waiters if can_run(w.runner, queued.required_models)]
        if not able:
            return
        loaded = [w for w in able if w.runner.loaded_model == queued.preferred_model]
        waiter = (loaded or able)[0]
        self._waiters.remove(waiter)
        waiter.result = self._grant(queued, waiter.runner)
        waiter.granted.set()

    def _grant(self, queued: QueuedJob, runner: RunnerInfo) -> tuple[Lease, JobRead]:
        config = self.core.config
        with self.core.write() as pending:
            queued = self.core.load(queued.job.job_id, full=True)
            job = queued.job
            now = datetime.now(UTC)
            deadline = now + timedelta(seconds=config.lease_seconds)
            job.attempt += 1
            job.runner_id = runner.runner_id
            job.start_time = job.start_time or now
            job.error_message = ""
            queued.lease.lease_id = uuid.uuid4().hex
            queued.lease.deadline = deadline.timestamp()
            self.core.transition(pending, queued, JobState.RUNNING,
                                 f"leased by {runner.runner_id} (attempt {job.attempt})", now=now)
            self.core.runners.granted(runner, job.job_id, now)
        lease = Lease(queued.lease.lease_id, job.job_id, job.attempt, deadline)
        return lease, self.core.read(queued)

    # --- while running --------------------------------------------------------------------

    def _current(self, job_id: str, lease_id: str, attempt: int,
                 queued: QueuedJob | None = None) -> QueuedJob:
        """The job, if this lease is its current one (`queued`: the job already loaded)."""
        queued = queued or self.core.load(job_id)
        if queued.job.state != JobState.RUNNING:
            raise _lease_not_current(job_id, f"the job is {queued.job.state.name}")
        if queued.lease.lease_id != lease_id or queued.job.attempt != attempt:
            raise _lease_not_current(
                job_id, f"lease {lease_id} attempt {attempt} is not the current lease "
                f"(attempt {queued.job.attempt})")
        return queued

    def heartbeat(self, runner_id: str, lease_id: str, job_id: str, attempt: int,
                  progress: JobProgress | None, loaded_model: str) -> HeartbeatReply:
        with self.core.write() as pending:
            queued = self._current(job_id, lease_id, attempt)
            deadline = datetime.now(UTC) + timedelta(seconds=self.core.config.lease_seconds)
            queued.lease.deadline = deadline.timestamp()
            self.core.store.update_job(queued)
            if progress is not None:
                self.core.record_progress(pending, job_id, progress)
            self.core.runners.beat(runner_id, job_id, progress is not None, loaded_model)
            outranked = self._outranked(queued, runner_id)
        return HeartbeatReply(deadline, queued.job.cancel_requested, queued.return_to_queue,
                              outranked)

    def _outranked(self, queued: QueuedJob, runner_id: str) -> bool:
        """A queued job the runner can run comes before `queued` in the run order. Looks at
        the first few queued jobs only (one indexed read per heartbeat): a runner that can run
        none of them is not told."""
        runner = self.core.runners.info(runner_id)
        key = run_order_key(queued)
        for ahead, required_models in self.core.store.queued_heads(DISPATCH_BATCHES[0],
                                                                   self._lanes()):
            if ahead >= key:
                return False
            if runner is not None and can_run(runner, required_models):
                return True
        return False

    def _lanes(self) -> tuple[int, ...]:
        """The lanes a runner may lease from now: while paused, only direct jobs."""
        return (LANE_DIRECT,) if self.core.paused() else (LANE_DIRECT, LANE_QUEUE)

    # --- finishing ------------------------------------------------------------------------

    def complete(self, runner_id: str, lease_id: str, job_id: str, attempt: int,
                 results: list[EntryResult], cancelled: bool) -> Job:
        with self.core.write() as pending:
            queued = self.core.load(job_id)  # the entries are not needed, the results replaced
            if self._finished_by(queued, lease_id, attempt):
                return self.core.view(queued)
            self._current(job_id, lease_id, attempt, queued)
            job = queued.job
            job.results = results
            failed = [r for r in results if r.status == EntryStatus.FAILED]
            if cancelled:
                target = JobState.QUEUED if queued.return_to_queue else JobState.CANCELLED
                reason = "cancelled by request"
            elif failed:
                target, reason = JobState.FAILED, f"{len(failed)} of {len(results)} entries failed"
                job.error_message = failed[0].error_message or reason
            else:
                target, reason = JobState.COMPLETED, "completed"
            self._finish(pending, queued, target, reason, runner_id)
        return self.core.view(queued)

    def fail(self, runner_id: str, lease_id: str, job_id: str, attempt: int, error: str,
             results: list[EntryResult], retryable: bool) -> Job:
        with self.core.write() as pending:
            queued = self.core.load(job_id)  # the entries are not needed, the results replaced
            if self._finished_by(queued, lease_id, attempt):
                return self.core.view(queued)
            self._current(job_id, lease_id, attempt, queued)
            queued.job.results = results
            queued.job.error_message = error
            again = retryable and queued.job.attempt < self.core.config.max_attempts
            target = JobState.QUEUED if again else JobState.FAILED
            self._finish(pending, queued, target, f"runner reported: {error}", runner_id)
        return self.core.view(queued)

    def release(self, runner_id: str, lease_id: str, job_id: str, attempt: int,
                reason: str) -> Job:
        """Give back a lease the runner has not started: the job is queued again at its place,
        and the attempt the lease counted is not consumed."""
        with self.core.write() as pending:
            queued = self.core.load(job_id, full=True)  # the results are kept as they are
            if queued.lease.finished_by_lease_id == lease_id:
                return self.core.view(queued)  # released already: a retry answers the same
            self._current(job_id, lease_id, attempt, queued)
            job = queued.job
            job.attempt -= 1
            if job.attempt == 0:  # what the lease set, as before it
                job.runner_id = ""
                job.start_time = None
            queued.lease.finished_by_lease_id = lease_id
            cancelled = job.cancel_requested and not queued.return_to_queue
            target = JobState.CANCELLED if cancelled else JobState.QUEUED
            self._finish(pending, queued, target,
                         f"released by {runner_id or 'its runner'} before it started: {reason}",
                         runner_id)
        return self.core.view(queued)

    @staticmethod
    def _finished_by(queued: QueuedJob, lease_id: str, attempt: int) -> bool:
        """A retried CompleteJob/FailJob of the lease that finished the job answers the same
        (fencing: the lease id and the attempt both name it)."""
        return (queued.job.state.is_terminal and queued.lease.finished_by_lease_id == lease_id
                and queued.job.attempt == attempt)

    def _finish(self, pending: _Pending, queued: QueuedJob, target: JobState, reason: str,
                runner_id: str) -> None:
        job = queued.job
        if target == JobState.QUEUED:
            job.cancel_requested = False
            queued.return_to_queue = False
        else:
            queued.lease.finished_by_lease_id = queued.lease.lease_id
        queued.lease.lease_id = ""
        queued.lease.deadline = 0.0
        self.core.transition(pending, queued, target, reason, with_results=True)
        self.core.runners.job_ended(runner_id, queued.job.job_id, heard=True)
        if target == JobState.QUEUED:
            pending.job_available = True

    # --- expiry ---------------------------------------------------------------------------

    def expire_leases(self) -> int:
        """Jobs whose runner stopped heartbeating go back to the queue, or fail at the limit."""
        with self.core.write() as pending:
            expired = self.core.store.expired_leases(time.time())
            for queued in expired:
                self._expire(pending, queued)
        return len(expired)

    def _expire(self, pending: _Pending, queued: QueuedJob) -> None:
        job = queued.job
        if job.cancel_requested:
            target = JobState.QUEUED if queued.return_to_queue else JobState.CANCELLED
            reason = "lease expired after a cancel request"
        elif job.attempt >= self.core.config.max_attempts:
            target, reason = JobState.FAILED, "runner lost: lease expired"
            job.error_message = f"runner lost: lease expired on attempt {job.attempt}"
        else:
            target, reason = JobState.QUEUED, f"lease of {job.runner_id} expired (runner lost)"
        queued.lease.lease_id = ""
        queued.lease.deadline = 0.0
        if target == JobState.QUEUED:
            job.cancel_requested = False
            queued.return_to_queue = False
            pending.job_available = True
        self.core.transition(pending, queued, target, reason)
        self.core.runners.job_ended(job.runner_id, job.job_id, heard=False)

    def runners(self) -> list[tuple[RunnerRecord, bool]]:
        """Every runner seen, by runner id, and whether it is connected."""
        with self.core.lock:
            connected = {record.info.runner_id for record in self.core.runners.connected()}
            return [(record, record.info.runner_id in connected)
                    for record in self.core.runners.records()]

    def current_progress(self, job_id: str) -> JobProgress | None:
        return self.core.progress.get(job_id)

    def wake_waiters(self) -> None:
        with self.core.lock:
            for waiter in self._waiters:
                waiter.granted.set()

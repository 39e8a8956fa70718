"""The one lease a runner holds ahead of the job it runs, so that the WebUI goes from one job
to the next without waiting for the queue.

While a job runs, a thread of its own asks the queue for the next one every heartbeat (a lease
that answers at once: no long-poll is left waiting at the queue, where a job handed back by
this runner, or queued while it died, would be granted to it) and heartbeats the job it holds.
It never holds more than one, and leases only while the WebUI answers and the runner is not
stopping; an idle runner long-polls from its worker, as before. A cancel requested meanwhile is
reported at once (the job ends CANCELLED, or goes back to the queue when the cancel asks for
that); a lost lease is dropped; on shutdown or a WebUI outage the job is released (ReleaseJob:
back to the queue without consuming an attempt, since it never started).

The held job's heartbeat tells when a queued job this runner can run comes before it (a higher
priority, the DIRECT lane, a MoveJob to the front): the held job is released at once and the
thread leases again, which grants the job that comes first. The worker takes the held job with
no call to the queue, so nothing stands between two generations; a job that must run first and
appears less than one heartbeat before the worker takes the held job runs right after it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from stablenew.runner.domain import (
    JobQueue,
    LeasedJob,
    LeaseLostError,
    QueueCallError,
    RunnerInfo,
)

log = logging.getLogger("stablenew.runner")

# How long the thread waits after a failed lease call before it asks again.
RETRY_SECONDS = 1.0
# How long the worker waits for a lease call in flight (one that answers at once).
LEASE_WAIT_SECONDS = 1.0


class Prefetch:
    """Holds at most one leased job for the worker; `start` it, `take` from it, `close` it."""

    def __init__(self, queue: JobQueue, runner_info: Callable[[], RunnerInfo],
                 may_lease: Callable[[], bool], stopping: threading.Event,
                 heartbeat_seconds: float) -> None:
        self.queue = queue
        self.runner_info = runner_info
        self.may_lease = may_lease  # a job runs, the WebUI answers, the runner is not stopping
        self.stopping = stopping
        self.heartbeat_seconds = heartbeat_seconds
        self._changed = threading.Condition()
        self._held: LeasedJob | None = None
        self._leasing = False  # a lease call is in flight
        self._thread = threading.Thread(target=self._run, name="runner-prefetch", daemon=True)

    @property
    def held(self) -> LeasedJob | None:
        with self._changed:
            return self._held

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Something the thread waits for may have changed (a job started, the runner
        stops)."""
        with self._changed:
            self._changed.notify_all()

    def close(self, timeout: float) -> None:
        """Stop leasing (the runner's `stopping` is set) and hand the held job back."""
        self.wake()
        self._thread.join(timeout)
        self.hand_back("the runner shut down before it started the job")

    def take(self) -> LeasedJob | None:
        """The held job, to run next (the heartbeats gave back one that a queued job
        outranked); None when none is held. A lease call in flight is waited for: it answers
        at once, sooner than the worker's own check of the WebUI and long-poll."""
        with self._changed:
            self._changed.wait_for(lambda: not self._leasing, LEASE_WAIT_SECONDS)
            held = self._held
            if self.stopping.is_set():
                return None  # close() hands a held job back
            self._held = None
            self._changed.notify_all()
        return held

    def hand_back(self, reason: str) -> None:
        """Give the held job back to the queue, without consuming an attempt; nothing when
        none is held."""
        with self._changed:
            held, self._held = self._held, None
            self._changed.notify_all()
        if held is not None:
            self._give_back(held, reason)

    def _give_back(self, held: LeasedJob, reason: str) -> None:
        try:
            self.queue.release(held.lease, reason)
            log.info("held job %s handed back: %s", held.job.job_id, reason)
        except QueueCallError as error:
            # Its lease runs out and the queue requeues it: nothing is lost.
            log.warning("handing back held job %s failed: %s", held.job.job_id, error)

    # --- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self._changed:
                held = self._held
                ready = held is None and self.may_lease()
            if held is not None:
                self._beat(held)
                self._wait_while_held(held)
                continue
            if not (ready and self._lease()):
                with self._changed:
                    self._changed.wait(self.heartbeat_seconds)

    def _wait_while_held(self, held: LeasedJob) -> None:
        """Until the next beat is due, or the worker took `held`, or the runner stops."""
        with self._changed:
            self._changed.wait_for(lambda: self._held is not held or self.stopping.is_set(),
                                   self.heartbeat_seconds)

    def _lease(self) -> bool:
        """Lease the next job if one is waiting; True when one is held."""
        with self._changed:
            self._leasing = True
        try:
            leased = self.queue.lease(self.runner_info(), 0.0)
        except QueueCallError as error:
            log.debug("prefetch lease failed: %s", error)
            self._leased(None)
            self.stopping.wait(RETRY_SECONDS)
            return False
        self._leased(leased)
        if leased is None:
            return False
        if self.stopping.is_set():
            self.hand_back("the runner shut down before it started the job")
        return True

    def _leased(self, leased: LeasedJob | None) -> None:
        """The lease call ended: hold what it granted."""
        with self._changed:
            self._leasing = False
            if leased is not None:
                self._held = leased
            self._changed.notify_all()

    def _beat(self, held: LeasedJob) -> None:
        """Keep the held lease alive; a cancel ends the job at once, a lost lease drops it, a
        job that comes first makes it go back."""
        try:
            beat = self.queue.heartbeat(held.lease, self.runner_info().loaded_model, None)
        except LeaseLostError:
            self._drop(held, "its lease was lost")
            return
        except QueueCallError as error:
            log.debug("heartbeat of the held job failed: %s", error)  # the next beat retries
            return
        why = ("cancel requested" if beat.cancel_requested
               else "a queued job comes first" if beat.outranked else "")
        if why and self._drop(held, why):
            self._give_back(held, why)  # a cancel ends it as the cancel asked

    def _drop(self, held: LeasedJob, why: str) -> bool:
        """Stop holding `held` (False when the worker took it meanwhile: it deals with it)."""
        with self._changed:
            if self._held is not held:
                return False
            self._held = None
            self._changed.notify_all()
        log.info("dropping held job %s: %s", held.job.job_id, why)
        return True


"""The runner's worker thread: JobRunner.work_once() over and over until the runner stops.

A failure never ends the loop: a queue that cannot be reached or a WebUI that is not ready is
waited for, and one bad job is logged and left to the queue's lease expiry.
"""

from __future__ import annotations

import logging
import threading

from stablenew.runner.core import JobRunner
from stablenew.runner.domain import QueueCallError

log = logging.getLogger("stablenew.runner")

# How long the loop waits after a failure or while the WebUI is not ready.
RETRY_SECONDS = 1.0


class Worker:
    """Runs `jobs` on a thread of its own."""

    def __init__(self, jobs: JobRunner) -> None:
        self.jobs = jobs
        self._thread = threading.Thread(target=self._run, name="runner-worker", daemon=True)

    def start(self) -> None:
        self.jobs.start()
        self._thread.start()

    def shut_down(self) -> None:
        """Stop leasing and hand the running job back (JobRunner.shut_down)."""
        self.jobs.shut_down()

    def stop(self, timeout: float) -> None:
        """Stop, then hand the held job back and finish the reports (JobRunner.close)."""
        self.shut_down()
        self._thread.join(timeout)
        self.jobs.close(timeout)

    def _run(self) -> None:
        stopping = self.jobs.stopping
        while not stopping.is_set():
            try:
                if not self.jobs.work_once():
                    stopping.wait(RETRY_SECONDS)
            except QueueCallError as error:
                log.warning("queue call failed: %s", error)
                stopping.wait(RETRY_SECONDS)
            except Exception:
                # One bad job must not stop the runner; the lease expiry hands it on.
                log.exception("runner loop error")
                stopping.wait(RETRY_SECONDS)

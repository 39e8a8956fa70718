"""The generation queue lock and the shared progress state (the WebUI's shared.state)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from PIL import Image

from stablenew.emulator.images import encode_png


class ServerStoppingError(Exception):
    """The server is shutting down; queued requests give up."""


class FifoLock:
    """A lock granted in arrival order.

    threading.Lock wakes an arbitrary waiter; the WebUI's queue runs requests in the order they
    arrived and a runner's tests depend on it. Each caller takes a ticket and waits on a
    Condition until its number is served.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._now_serving = 0
        self._closed = False

    def acquire(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._condition.wait_for(lambda: self._now_serving == ticket or self._closed)
            if self._closed:
                self._now_serving = max(self._now_serving, ticket + 1)
                self._condition.notify_all()
                raise ServerStoppingError("the emulator is stopping")

    def release(self) -> None:
        with self._condition:
            self._now_serving += 1
            self._condition.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def depth(self) -> int:
        """Requests holding or waiting for the lock."""
        with self._condition:
            return self._next_ticket - self._now_serving

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


PreviewSource = Callable[[float], Image.Image]


class Progress:
    """What /sdapi/v1/progress reports, and the interrupt/skip flags the sampler loop obeys."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._stopping = False
        self._reset("")

    def _reset(self, job: str) -> None:
        self.job = job
        self.job_count = 0
        self.job_no = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.skipped = False
        self.interrupted = False
        self.job_timestamp = "0"
        self.time_start = time.time()
        self._preview: PreviewSource | None = None

    def begin(self, job: str, job_count: int) -> str:
        """A generation starts (under the queue lock); returns its job timestamp."""
        with self._condition:
            self._reset(job)
            self.job_count = job_count
            self.job_timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
            return self.job_timestamp

    def end(self) -> None:
        with self._condition:
            self.job = ""
            self.job_count = 0
            self.sampling_step = 0
            self.sampling_steps = 0
            self._preview = None

    def add_jobs(self, count: int) -> None:
        with self._condition:
            self.job_count += count

    def start_sampling(self, steps: int, preview: PreviewSource | None) -> None:
        with self._condition:
            self.sampling_step = 0
            self.sampling_steps = steps
            self._preview = preview

    def next_job(self) -> None:
        with self._condition:
            self.job_no += 1
            self.sampling_step = 0

    def clear_skip(self) -> None:
        with self._condition:
            self.skipped = False

    def interrupt(self) -> None:
        with self._condition:
            self.interrupted = True
            self._condition.notify_all()

    def skip(self) -> None:
        with self._condition:
            self.skipped = True
            self._condition.notify_all()

    def stop_all(self) -> None:
        """Shutdown: every running generation ends at its next step, like an interrupt."""
        with self._condition:
            self._stopping = True
            self.interrupted = True
            self._condition.notify_all()

    def should_stop(self) -> bool:
        with self._condition:
            return self.interrupted or self.skipped or self._stopping

    def step(self, seconds: float) -> bool:
        """Sleep one sampling step; False when interrupted or skipped (the step is not done)."""
        with self._condition:
            stopped = self._condition.wait_for(
                lambda: self.interrupted or self.skipped or self._stopping, max(seconds, 0.0))
            if stopped:
                return False
            self.sampling_step += 1
            return True

    def wait(self, seconds: float) -> None:
        """Sleep unless the server stops (model loads are not interruptible in the WebUI)."""
        with self._condition:
            self._condition.wait_for(lambda: self._stopping, max(seconds, 0.0))

    def snapshot(self, skip_current_image: bool) -> dict[str, Any]:
        """The /sdapi/v1/progress body, computed like the WebUI's progressapi."""
        with self._condition:
            state = self._state()
            if self.job_count == 0:
                # No current_task: the WebUI passes one, but its response model drops it.
                return {"progress": 0, "eta_relative": 0, "state": state, "current_image": None,
                        "textinfo": None}
            progress = 0.01 + self.job_no / self.job_count
            if self.sampling_steps > 0:
                progress += self.sampling_step / self.sampling_steps / self.job_count
            elapsed = time.time() - self.time_start
            preview = self._preview
            fraction = self.sampling_step / self.sampling_steps if self.sampling_steps else 0.0
            show = preview is not None and self.sampling_step > 0 and not skip_current_image
        image = encode_png(preview(fraction)) if show and preview is not None else None
        progress = min(progress, 1.0)  # as the WebUI: capped before the ETA, never negative
        return {"progress": progress, "eta_relative": elapsed / progress - elapsed,
                "state": state, "current_image": image, "textinfo": None}

    def _state(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "interrupted": self.interrupted,
                "stopping_generation": False, "job": self.job, "job_count": self.job_count,
                "job_timestamp": self.job_timestamp, "job_no": self.job_no,
                "sampling_step": self.sampling_step, "sampling_steps": self.sampling_steps}

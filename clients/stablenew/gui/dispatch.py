"""The one way work reaches the UI thread: callbacks posted from any thread into a queue that
the UI thread drains (the Tk window from `after()`, a test from its own thread).

Widgets are only touched from the thread that drains; no other thread ever calls Tk.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

# How much of the UI thread's time one drain may take before it yields to Tk's own events.
DRAIN_BUDGET_SECONDS = 0.02


class UiQueue:
    """Callbacks for the UI thread, run in the order they were posted."""

    def __init__(self) -> None:
        self._callbacks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._ui_thread = threading.get_ident()

    def adopt_current_thread(self) -> None:
        """Make the calling thread the UI thread (the one that drains)."""
        self._ui_thread = threading.get_ident()

    def on_ui_thread(self) -> bool:
        """Whether the caller is the UI thread."""
        return threading.get_ident() == self._ui_thread

    def post(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the UI thread soon; safe from any thread."""
        self._callbacks.put(callback)

    def drain(self, budget: float | None = DRAIN_BUDGET_SECONDS) -> int:
        """Run posted callbacks until none is left or `budget` seconds of this thread's CPU
        time are spent (None: no limit); how many ran. What is left waits for the next drain,
        so that Tk redraws and answers input in between."""
        start = time.thread_time()
        count = 0
        while budget is None or time.thread_time() - start < budget:
            try:
                callback = self._callbacks.get_nowait()
            except queue.Empty:
                break
            callback()
            count += 1
        return count

    def pending(self) -> bool:
        """Whether callbacks wait to run."""
        return not self._callbacks.empty()

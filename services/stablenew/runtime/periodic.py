"""A task a service runs in the background every few seconds (lease expiry, retention)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("stablenew.periodic")


class PeriodicTask:
    """Runs `tick` every `interval` seconds on a daemon thread until stopped (first at once
    with `run_first`; never when its settings switched it off: `enabled`). A failing tick (a
    full disk, say) is logged and tried again on the next one: the task never dies."""

    def __init__(self, name: str, interval: float, tick: Callable[[], object],
                 run_first: bool = False, enabled: bool = True) -> None:
        self._enabled = enabled
        self._interval = interval
        self._tick = tick
        self._run_first = run_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        if self._enabled:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        if self._run_first:
            self._safe_tick()
        while not self._stop.wait(self._interval):
            self._safe_tick()

    def _safe_tick(self) -> None:
        try:
            self._tick()
        except Exception:
            log.exception("%s failed", self._thread.name)

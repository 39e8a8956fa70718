"""Live fan-out of committed events to WatchJobs streams, each with a bounded buffer.

A watcher whose buffer fills up loses its buffered events (it catches up from the event log when
it reads again, so it misses nothing); one that has not read for `stall_seconds` after that is
disconnected, so a client that stops reading can never grow the server's memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stablenew.runtime.fanout import Fanout


@dataclass(frozen=True)
class StoredEvent:
    sequence: int
    job_id: str
    is_progress: bool
    payload: bytes


@dataclass(frozen=True)
class WatchFilter:
    job_ids: frozenset[str] = frozenset()
    exclude_progress: bool = False

    def accepts(self, event: StoredEvent) -> bool:
        if self.exclude_progress and event.is_progress:
            return False
        return not self.job_ids or event.job_id in self.job_ids


class Subscriber:
    def __init__(self, watch_filter: WatchFilter, max_bytes: int, disconnect: Callable[[], None]):
        self.filter = watch_filter
        self._max_bytes = max_bytes
        self._disconnect = disconnect
        self._events: deque[StoredEvent] = deque()
        self._bytes = 0
        self._condition = threading.Condition()
        self.overflowed = False
        self.last_take = time.monotonic()

    def offer(self, event: StoredEvent) -> None:
        if not self.filter.accepts(event):
            return
        with self._condition:
            if self.overflowed:
                return
            if self._bytes + len(event.payload) > self._max_bytes:
                # Drop the buffer: the watcher re-reads from the log when it comes back.
                self.overflowed = True
                self._events.clear()
                self._bytes = 0
            else:
                self._events.append(event)
                self._bytes += len(event.payload)
            self._condition.notify()

    def take(self, timeout: float) -> tuple[list[StoredEvent], bool]:
        """(buffered events, overflowed since the last take); waits up to timeout for one."""
        with self._condition:
            if not self._events and not self.overflowed:
                self._condition.wait(timeout)
            events = list(self._events)
            self._events.clear()
            self._bytes = 0
            overflowed, self.overflowed = self.overflowed, False
            self.last_take = time.monotonic()
        return events, overflowed

    def wake(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def stalled_for(self) -> float:
        with self._condition:
            return time.monotonic() - self.last_take if self.overflowed else 0.0

    def disconnect(self) -> None:
        self._disconnect()


class Broadcaster(Fanout[Subscriber, StoredEvent]):
    def __init__(self, max_bytes_per_watcher: int, stall_seconds: float) -> None:
        super().__init__()
        self.max_bytes_per_watcher = max_bytes_per_watcher
        self.stall_seconds = stall_seconds

    def subscribe(self, watch_filter: WatchFilter, disconnect: Callable[[], None]) -> Subscriber:
        return self.add(Subscriber(watch_filter, self.max_bytes_per_watcher, disconnect))

    def disconnect_stalled(self) -> int:
        """Cut watchers that overflowed and have not read for stall_seconds."""
        stalled = [s for s in self.snapshot() if s.stalled_for() > self.stall_seconds]
        for subscriber in stalled:
            subscriber.disconnect()
        return len(stalled)

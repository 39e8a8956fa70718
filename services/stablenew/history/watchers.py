"""Live fan-out of committed record changes to WatchHistory streams.

Each watcher keeps the changes it has not sent yet, one per job (a job that changes ten times
while the watcher is busy is sent once, as it is now), at most `max_pending` jobs. A watcher that
falls further behind than that (a huge prune, a client that stopped reading) is disconnected:
after reconnecting it reloads the list, as after any reconnect.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from stablenew.contract.model import Job
from stablenew.history.domain import JobFilter, matches
from stablenew.runtime.fanout import Fanout

DEFAULT_MAX_PENDING = 10_000


@dataclass(frozen=True)
class Change:
    """A record before and after a committed change (None: it did not exist / was removed)."""

    job_id: str
    before: Job | None
    after: Job | None
    # The record's search text (label and prompts, lowercased), for the text filter.
    text: str = ""
    # The packs the record is found by (domain.pack_ids of the full record), for the pack
    # filter; None: those the jobs carry.
    packs: frozenset[str] | None = None


@dataclass(frozen=True)
class Update:
    """What a watcher sends: the record as it is now, or that it was removed."""

    job_id: str
    job: Job | None

    @property
    def deleted(self) -> bool:
        return self.job is None


class Subscriber:
    def __init__(self, job_filter: JobFilter, max_pending: int,
                 disconnect: Callable[[], None]) -> None:
        self.filter = job_filter
        self._max_pending = max_pending
        self._disconnect = disconnect
        self._pending: OrderedDict[str, Change] = OrderedDict()
        self._condition = threading.Condition()
        self.overflowed = False

    def wanted(self, change: Change) -> bool:
        """Removals always go out (the watcher may show the job); a change goes out if the job
        matches the filter now or did before (so a GUI sees it leave its filtered view)."""
        if change.after is None:
            return True
        if matches(change.after, self.filter, change.text, change.packs):
            return True
        return change.before is not None and matches(change.before, self.filter, change.text,
                                                     change.packs)

    def offer(self, change: Change) -> None:
        if not self.wanted(change):
            return
        disconnect = False
        with self._condition:
            if self.overflowed:
                return
            previous = self._pending.pop(change.job_id, None)
            if previous is not None:
                change = Change(change.job_id, previous.before, change.after, change.text,
                                change.packs)
            self._pending[change.job_id] = change
            if len(self._pending) > self._max_pending:
                self.overflowed = disconnect = True
                self._pending.clear()
            self._condition.notify()
        if disconnect:
            self._disconnect()

    def take(self, timeout: float) -> list[Update]:
        """Pending updates (waits up to `timeout` for one)."""
        with self._condition:
            if not self._pending and not self.overflowed:
                self._condition.wait(timeout)
            changes = list(self._pending.values())
            self._pending.clear()
        return [Update(change.job_id, change.after) for change in changes]

    def wake(self) -> None:
        with self._condition:
            self._condition.notify_all()


class Broadcaster(Fanout[Subscriber, Change]):
    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        super().__init__()
        self.max_pending = max_pending

    def subscribe(self, job_filter: JobFilter, disconnect: Callable[[], None]) -> Subscriber:
        return self.add(Subscriber(job_filter, self.max_pending, disconnect))

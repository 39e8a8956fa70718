"""Queue positions without counting the whole table.

Counting every queued job ahead of one costs milliseconds at 100,000 jobs, so the core keeps the
number of queued jobs per run-order group (lane, priority rank) and of running jobs, updates them
with every write, and counts rows only inside one group. After a rolled-back transaction the
counts are reloaded from the database, which stays the source of truth.
"""

from __future__ import annotations

from collections import Counter

from stablenew.contract.model import JobState
from stablenew.queue.domain import QueuedJob, RunOrder
from stablenew.queue.store import QueueStore

Group = tuple[int, int]


def _group(order: RunOrder) -> Group:
    return order.lane, order.priority_rank


class Positions:
    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self._queued: Counter[Group] = Counter()
        self._running = 0
        self.reload()

    def reload(self) -> None:
        """Recount from the database (at start, and after a rolled-back transaction)."""
        self._queued = Counter(self.store.queued_group_counts())
        self._running = self.store.running_count()

    def _groups(self) -> Counter[Group]:
        return self._queued

    def changed_state(self, order: RunOrder, before: JobState, after: JobState) -> None:
        groups = self._groups()
        if before == JobState.QUEUED:
            groups[_group(order)] -= 1
        if after == JobState.QUEUED:
            groups[_group(order)] += 1
        self._running += (after == JobState.RUNNING) - (before == JobState.RUNNING)

    def added(self, order: RunOrder) -> None:
        self._groups()[_group(order)] += 1

    def moved(self, before: RunOrder, after: RunOrder) -> None:
        groups = self._groups()
        groups[_group(before)] -= 1
        groups[_group(after)] += 1

    def _ahead_of_group(self, group: Group) -> int:
        groups = self._groups()
        return self._running + sum(count for key, count in groups.items() if key < group)

    def of(self, queued: QueuedJob) -> int:
        """Position of a queued job: running jobs, earlier groups, then its place in its group."""
        ahead = self._ahead_of_group(_group(queued.order))
        return ahead + self.store.count_ahead_in_group(queued)

    def of_last_in_group(self, order: RunOrder) -> int:
        """Position of a job known to be the last of its group (a new submission)."""
        return self._ahead_of_group(_group(order)) + self._groups()[_group(order)] - 1

    def of_first_in_group(self, order: RunOrder) -> int:
        return self._ahead_of_group(_group(order))

"""The runners the queue has heard from, kept in memory with every write (the store keeps them
across restarts), so the reads that need them cost no query: which runners are connected, why a
queued job waits (every GetJob and ListJobs page), ListRunners.

Used under the core's lock, like the store; `reload` after a rolled-back transaction.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from stablenew.queue.domain import RunnerInfo, RunnerPool, RunnerRecord
from stablenew.queue.store import QueueStore


class RunnerRegistry:
    """Every runner seen; connected = heard from within `connected_seconds`."""

    def __init__(self, store: QueueStore, connected_seconds: float) -> None:
        self.store = store
        self.connected_seconds = connected_seconds
        self._records: dict[str, RunnerRecord] = {}
        self.reload()

    def reload(self) -> None:
        """Read them again from the store: at start, and after a rolled-back transaction."""
        self._records = {record.info.runner_id: record for record in self.store.runners()}

    def save(self, record: RunnerRecord) -> None:
        """A runner announced itself (inside a transaction)."""
        self.store.save_runner(record)
        self._records[record.info.runner_id] = record

    def touch(self, runner_id: str, loaded_model: str, current_job_id: str) -> None:
        """A sign of life of a known runner: now, its job, and its loaded model when it names
        one (inside a transaction)."""
        now = datetime.now(UTC)
        self.store.touch_runner(runner_id, now, loaded_model, current_job_id)
        record = self._records.get(runner_id)
        if record is not None:
            info = replace(record.info, loaded_model=loaded_model) if loaded_model else (
                record.info)
            self._records[runner_id] = RunnerRecord(info, now, current_job_id)

    def info(self, runner_id: str) -> RunnerInfo | None:
        """What the runner last announced; None for a runner never seen."""
        record = self._records.get(runner_id)
        return record.info if record else None

    def records(self) -> list[RunnerRecord]:
        """Every runner seen, by runner id."""
        return [self._records[runner_id] for runner_id in sorted(self._records)]

    def connected(self) -> list[RunnerRecord]:
        """The runners heard from within `connected_seconds`, by runner id."""
        heard_after = datetime.now(UTC) - timedelta(seconds=self.connected_seconds)
        return [record for record in self.records() if record.connected(heard_after)]

    def pool(self, paused: bool) -> RunnerPool:
        """The connected runners as one read sees them (why queued jobs wait)."""
        return RunnerPool([record.info for record in self.connected()], paused)

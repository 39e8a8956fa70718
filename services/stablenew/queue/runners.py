"""The runners the queue has heard from, kept in memory with every write (the store keeps them
across restarts), so the reads that need them cost no query: which runners are connected, why a
queued job waits (every GetJob and ListJobs page), ListRunners.

Used under the core's lock, like the store; `reload` after a rolled-back transaction.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from stablenew.contract.model import WebuiState
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

    def announced(self, runner: RunnerInfo) -> None:
        """A runner announced itself with a lease request (inside a transaction): what it
        says replaces what it said before; the jobs it runs and holds stay as they were."""
        known = self._records.get(runner.runner_id)
        self._save(RunnerRecord(runner, datetime.now(UTC), known.current_job_id if known else "",
                                known.held_job_id if known else ""))

    def granted(self, runner: RunnerInfo, job_id: str, now: datetime) -> None:
        """`runner` leased `job_id` (inside a transaction). A runner that announces BUSY asked
        while a job runs: it holds the new one ahead, and one it held before (a runner holds
        at most one) is the job it runs now. Otherwise it runs the new job."""
        known = self._records.get(runner.runner_id)
        if runner.webui_state == WebuiState.BUSY and known is not None:
            running = known.held_job_id or known.current_job_id
            self._save(RunnerRecord(runner, now, running, job_id))
        else:
            self._save(RunnerRecord(runner, now, job_id))

    def beat(self, runner_id: str, job_id: str, started: bool, loaded_model: str) -> None:
        """A heartbeat of `job_id` (inside a transaction): a sign of life, and its loaded
        model when it names one. The held job's beats leave it held until one carries progress
        (`started`); any other job beating is the one the runner runs."""
        record = self._records.get(runner_id)
        if record is None:
            return
        if job_id != record.held_job_id:
            record = replace(record, current_job_id=job_id)
        elif started:
            record = replace(record, current_job_id=job_id, held_job_id="")
        self._touch(replace(record, last_heartbeat_time=datetime.now(UTC)), loaded_model)

    def job_ended(self, runner_id: str, job_id: str, heard: bool) -> None:
        """`job_id` of `runner_id` ended or went back (inside a transaction); `heard`: the
        runner said so itself (a sign of life), rather than its lease running out. The job
        it held ahead is the one it runs next."""
        record = self._records.get(runner_id)
        if record is None:
            return
        if record.current_job_id == job_id:
            record = replace(record, current_job_id=record.held_job_id, held_job_id="")
        elif record.held_job_id == job_id:
            record = replace(record, held_job_id="")
        if heard:
            record = replace(record, last_heartbeat_time=datetime.now(UTC))
        self._touch(record, "")

    def _save(self, record: RunnerRecord) -> None:
        self.store.save_runner(record)
        self._records[record.info.runner_id] = record

    def _touch(self, record: RunnerRecord, loaded_model: str) -> None:
        if loaded_model:
            record = replace(record, info=replace(record.info, loaded_model=loaded_model))
        self.store.touch_runner(record)
        self._records[record.info.runner_id] = record

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

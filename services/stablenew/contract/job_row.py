"""A job record as SQLite column values, encoded one way for the queue's and the history's `jobs`
tables: pure functions between the shared `Job` and a dict of column values (the stores run the
SQL and add the columns only they keep).

- Times are INTEGER microseconds since the Unix epoch, UTC; an unset time is NULL, except
  `create_time`, the key every list is ordered by, which is never NULL (0 stands for unset).
- Enums are their numbers, booleans 0 or 1, the metadata compact JSON with sorted keys.

docs/ARCHITECTURE.md ("Stored times") says why microseconds rather than REAL seconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, overload

from stablenew.contract.model import (
    Job,
    JobOrigin,
    JobSource,
    JobState,
    Priority,
    PromptSource,
    RunMode,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_EMPTY_METADATA = "{}"


class ColumnValues(Protocol):
    """A row read back by column name (sqlite3.Row, or a plain dict)."""

    def __getitem__(self, name: str, /) -> Any: ...


def to_micros(moment: datetime | None) -> int | None:
    """Microseconds since the epoch (exact: no float in between); None stays None."""
    return None if moment is None else (moment - EPOCH) // _MICROSECOND


@overload
def from_micros(micros: int) -> datetime: ...


@overload
def from_micros(micros: int | None) -> datetime | None: ...


def from_micros(micros: int | None) -> datetime | None:
    """The UTC time of a stored microsecond count; None stays None."""
    return None if micros is None else EPOCH + timedelta(microseconds=micros)


def origin_columns(origin: JobOrigin) -> dict[str, Any]:
    """Where a job came from, as columns."""
    return {
        "run_mode": int(origin.run_mode),
        "source": int(origin.source),
        "prompt_source": int(origin.prompt_source),
        "prompt_pack_id": origin.prompt_pack_id,
        "draft_id": origin.draft_id,
        "draft_revision": origin.draft_revision,
        "retry_of_job_id": origin.retry_of_job_id,
    }


def origin_from_columns(row: ColumnValues) -> JobOrigin:
    """The origin held by a row's origin columns."""
    return JobOrigin(
        run_mode=RunMode(row["run_mode"]),
        source=JobSource(row["source"]),
        prompt_source=PromptSource(row["prompt_source"]),
        prompt_pack_id=row["prompt_pack_id"],
        draft_id=row["draft_id"],
        draft_revision=row["draft_revision"],
        retry_of_job_id=row["retry_of_job_id"],
    )


def job_columns(job: Job) -> dict[str, Any]:
    """The columns both stores keep of a job (not its entries, results, progress or anything
    only one store has)."""
    return {
        "job_id": job.job_id,
        "state": int(job.state),
        **origin_columns(job.origin),
        "priority": int(job.priority),
        "label": job.label,
        "stage_count": job.stage_count,
        "has_adetailer": int(job.has_adetailer),
        "has_upscale": int(job.has_upscale),
        "config_hash": job.config_hash,
        "create_time": to_micros(job.create_time) or 0,
        "start_time": to_micros(job.start_time),
        "complete_time": to_micros(job.complete_time),
        "update_time": to_micros(job.update_time),
        "error_message": job.error_message,
        "payload_summary": job.payload_summary,
        "runner_id": job.runner_id,
        "attempt": job.attempt,
        "metadata": json.dumps(job.metadata, sort_keys=True, separators=(",", ":")),
        "entry_count": job.entry_count,
        "estimated_images": job.estimated_images,
        "cancel_requested": int(job.cancel_requested),
    }


# The shared columns, in the order job_columns writes them.
JOB_COLUMNS = tuple(job_columns(Job()))


def job_from_columns(row: ColumnValues) -> Job:
    """The Job held by the shared columns of a row (the store fills in the rest)."""
    metadata = row["metadata"]
    return Job(
        job_id=row["job_id"],
        state=JobState(row["state"]),
        origin=origin_from_columns(row),
        priority=Priority(row["priority"]),
        label=row["label"],
        stage_count=row["stage_count"],
        has_adetailer=bool(row["has_adetailer"]),
        has_upscale=bool(row["has_upscale"]),
        config_hash=row["config_hash"],
        create_time=from_micros(row["create_time"]),
        start_time=from_micros(row["start_time"]),
        complete_time=from_micros(row["complete_time"]),
        update_time=from_micros(row["update_time"]),
        error_message=row["error_message"],
        payload_summary=row["payload_summary"],
        runner_id=row["runner_id"],
        attempt=row["attempt"],
        metadata=json.loads(metadata) if metadata != _EMPTY_METADATA else {},
        entry_count=row["entry_count"],
        estimated_images=row["estimated_images"],
        cancel_requested=bool(row["cancel_requested"]),
    )

"""A job's origin as SQLite columns: the queue and the history store it the same way."""

from __future__ import annotations

import sqlite3
from typing import Any

from stablenew.contract.model import JobOrigin, JobSource, PromptSource, RunMode


def origin_columns(origin: JobOrigin) -> dict[str, Any]:
    return {
        "run_mode": int(origin.run_mode),
        "source": int(origin.source),
        "prompt_source": int(origin.prompt_source),
        "prompt_pack_id": origin.prompt_pack_id,
        "draft_id": origin.draft_id,
        "draft_revision": origin.draft_revision,
        "retry_of_job_id": origin.retry_of_job_id,
    }


def origin_from_columns(row: sqlite3.Row) -> JobOrigin:
    return JobOrigin(
        run_mode=RunMode(row["run_mode"]),
        source=JobSource(row["source"]),
        prompt_source=PromptSource(row["prompt_source"]),
        prompt_pack_id=row["prompt_pack_id"],
        draft_id=row["draft_id"],
        draft_revision=row["draft_revision"],
        retry_of_job_id=row["retry_of_job_id"],
    )

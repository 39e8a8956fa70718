"""The job row encoding both stores share (stablenew.contract.job_row): exact microsecond times,
and a job through its columns and back, as a dict and as a row of a real SQLite table."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stablenew.contract.job_row import (
    JOB_COLUMNS,
    from_micros,
    job_columns,
    job_from_columns,
    to_micros,
)
from stablenew.contract.model import (
    Job,
    JobOrigin,
    JobSource,
    JobState,
    Priority,
    PromptSource,
    RunMode,
)

T = datetime(2026, 3, 1, 12, 0, 0, 123_457, tzinfo=UTC)


def full_job() -> Job:
    """Every shared field set to something other than its default."""
    return Job(
        job_id="j-1", state=JobState.FAILED,
        origin=JobOrigin(run_mode=RunMode.DIRECT, source=JobSource.RUN_NOW,
                         prompt_source=PromptSource.PACK, prompt_pack_id="pack-a",
                         draft_id="d-1", draft_revision=9, retry_of_job_id="j-0"),
        priority=Priority.HIGH, label="Night run", stage_count=3, has_adetailer=True,
        has_upscale=True, config_hash="cd" * 32, create_time=T,
        start_time=T + timedelta(microseconds=1), complete_time=T + timedelta(seconds=61),
        update_time=T + timedelta(seconds=62), error_message="out of memory",
        payload_summary="2 entries", runner_id="gpu-2", attempt=2,
        metadata={"b": "2", "a": "é"}, entry_count=2, estimated_images=8,
        cancel_requested=True)


@pytest.mark.parametrize("moment", [
    T,
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
])
def test_times_are_exact_microseconds(moment: datetime) -> None:
    micros = to_micros(moment)
    assert isinstance(micros, int)
    assert from_micros(micros) == moment


def test_a_time_in_another_zone_is_the_same_instant_and_none_stays_none() -> None:
    elsewhere = T.astimezone(timezone(timedelta(hours=2)))
    assert to_micros(elsewhere) == to_micros(T)
    assert from_micros(to_micros(elsewhere)) == T
    assert to_micros(None) is None and from_micros(None) is None
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1_000_000


def test_a_job_round_trips_through_its_columns() -> None:
    job = full_job()
    columns = job_columns(job)
    assert tuple(columns) == JOB_COLUMNS
    assert columns["create_time"] == to_micros(T)
    assert columns["metadata"] == '{"a":"\\u00e9","b":"2"}'  # compact, sorted
    assert job_from_columns(columns) == job


def test_unset_values_have_one_encoding() -> None:
    columns = job_columns(Job(job_id="bare"))
    assert (columns["create_time"], columns["start_time"], columns["metadata"]) == (0, None, "{}")
    back = job_from_columns(columns)
    assert (back.create_time, back.start_time, back.metadata) == (from_micros(0), None, {})


def test_a_job_round_trips_through_a_sqlite_row() -> None:
    """Stored in INTEGER and TEXT columns and read back by name, as both stores do."""
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute(f"CREATE TABLE jobs ({', '.join(JOB_COLUMNS)})")
    for job in (full_job(), Job(job_id="bare")):
        db.execute(f"INSERT INTO jobs VALUES ({', '.join('?' * len(JOB_COLUMNS))})",
                   list(job_columns(job).values()))
    rows = db.execute("SELECT * FROM jobs ORDER BY job_id").fetchall()
    assert [job_from_columns(row) for row in rows] == [
        Job(job_id="bare", create_time=from_micros(0)), full_job()]
    assert {type(row["create_time"]) for row in rows} == {int}
    db.close()

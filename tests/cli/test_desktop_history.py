"""The desktop app's history file (JSONL), as `stablenew history import` reads it: malformed
lines named by number, times and statuses as the app wrote them, the latest line per job."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stablenew.cli import desktop_history
from stablenew.v1 import job_pb2


@pytest.mark.parametrize(("line", "problem"), [
    ('{"job_id": "a", "created_at": "2025-01-01", "status": "queued"', "not JSON"),
    ("42", "not a JSON object but int"),
    ('{"job_id": "", "created_at": "2025-01-01", "status": "queued"}', "job_id"),
    ('{"job_id": "a", "status": "queued"}', "created_at is missing"),
    ('{"job_id": "a", "created_at": true, "status": "queued"}', "not a time"),
    ('{"job_id": "a", "created_at": "2025-01-01", "status": "paused"}', "status"),
    ('{"job_id": "a", "created_at": "2025-01-01", "status": "queued", "run_mode": 3}',
     "run_mode"),
    ('{"job_id": "a", "created_at": "2025-01-01", "status": "queued", "result": [1]}',
     "result"),
    ('{"job_id": "a", "created_at": "2025-01-01", "status": "queued", "worker_id": {}}',
     "worker_id"),
    ('{"job_id": "a", "created_at": 1e300, "status": "queued"}', "out of range"),
])
def test_malformed_lines(line: str, problem: str) -> None:
    with pytest.raises(desktop_history.MalformedLineError, match=problem):
        desktop_history.parse_line(1, line)


def test_times_statuses_and_the_latest_line() -> None:
    parsed = desktop_history.parse_lines([
        '{"job_id": "a", "created_at": 1767225600, "status": "QUEUED"}',
        b'{"job_id": "a", "created_at": 1767225600, "status": "Done", "completed_at": '
        b'"2026-01-01T00:01:00Z", "worker_id": 7}',
        b"\xff\xfe not utf-8",
        "   ",
    ])
    assert [(p.line, p.message) for p in parsed.problems] == [(3, "not UTF-8 text")]
    (record,) = parsed.records
    assert record.job.state == job_pb2.JOB_STATE_COMPLETED
    assert record.job.create_time.ToDatetime(UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert record.job.complete_time.ToDatetime(UTC) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert record.job.runner_id == "7"
    assert list(t.to_state for t in record.transitions) == [job_pb2.JOB_STATE_QUEUED,
                                                           job_pb2.JOB_STATE_COMPLETED]

"""The desktop app's history file (JSONL) as history records, for `stablenew history import`.

The desktop app appended one JSON object per status change of a job:

    {"job_id": "...", "created_at": "2025-06-01T09:30:00.123456", "status": "running",
     "payload_summary": "...", "started_at": ..., "completed_at": ..., "error_message": ...,
     "worker_id": ..., "run_mode": "queue", "result": {...}, "prompt_source": "pack",
     "prompt_pack_id": "...", "duration_ms": 1234}

Older files have only the first eight fields. The latest valid line of a job (in file order) gives
its record; the statuses of all its valid lines, in order, give its transitions. Times without a
zone are UTC (the app wrote datetime.utcnow()); numbers are Unix seconds. A line that is not a
JSON object, lacks job_id, created_at or a known status, or has a field of the wrong kind is
reported with its line number and skipped; blank lines are ignored. What the record has no field
for (result, duration_ms) is kept in its metadata under `desktop.`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stablenew.contract.model import Job, JobOrigin, JobState, JobTransition, PromptSource, RunMode
from stablenew.contract.proto_mapping import to_proto
from stablenew.v1.history_service_pb2 import ImportedJob

STATUSES = {
    "queued": JobState.QUEUED, "pending": JobState.QUEUED, "running": JobState.RUNNING,
    "completed": JobState.COMPLETED, "done": JobState.COMPLETED, "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED, "canceled": JobState.CANCELLED,
}
RUN_MODES = {"direct": RunMode.DIRECT, "queue": RunMode.QUEUE}
PROMPT_SOURCES = {"manual": PromptSource.MANUAL, "pack": PromptSource.PACK}
IMPORTED_FROM = "desktop-jsonl"


class MalformedLineError(ValueError):
    """Why a line cannot be imported."""


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


@dataclass(frozen=True)
class Line:
    number: int
    job_id: str
    state: JobState
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    payload_summary: str
    error_message: str
    worker_id: str
    run_mode: RunMode
    prompt_source: PromptSource
    prompt_pack_id: str
    duration_ms: int | None
    result: dict[str, Any] | None


@dataclass
class ParsedFile:
    records: list[ImportedJob] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    lines: int = 0


def _required_time(raw: dict[str, Any], name: str) -> datetime:
    moment = _time(raw, name)
    if moment is None:
        raise MalformedLineError(f"{name} is missing")
    return moment


def _time(raw: dict[str, Any], name: str) -> datetime | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedLineError(f"{name}: {value!r} is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise MalformedLineError(f"{name}: {value!r} is not a time")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise MalformedLineError(f"{name}: {value!r} is out of range") from None
    if not isinstance(value, str):
        raise MalformedLineError(f"{name}: {value!r} is not a time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise MalformedLineError(f"{name}: {value!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedLineError(f"{name}: {value!r} is not text")
    return str(value)


def _choice(raw: dict[str, Any], name: str, choices: dict[str, Any], default: Any) -> Any:
    value = raw.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise MalformedLineError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return choices[value.strip().lower()]


def parse_line(number: int, text: str) -> Line:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedLineError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(raw, dict):
        raise MalformedLineError(f"not a JSON object but {type(raw).__name__}")
    job_id = raw.get("job_id")
    if not isinstance(job_id, str) or not job_id.strip():
        raise MalformedLineError("job_id is missing or not text")
    status = raw.get("status")
    if not isinstance(status, str) or status.strip().lower() not in STATUSES:
        raise MalformedLineError(f"status: {status!r} is not one of "
                                 "queued, running, completed, failed, cancelled")
    duration = raw.get("duration_ms")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)
                                 or not math.isfinite(duration) or duration < 0):
        raise MalformedLineError(f"duration_ms: {duration!r} is not a number of milliseconds")
    result = raw.get("result")
    if result is not None and not isinstance(result, dict):
        raise MalformedLineError(f"result: not a JSON object but {type(result).__name__}")
    created_at = _required_time(raw, "created_at")
    return Line(
        number=number, job_id=job_id.strip(), state=STATUSES[status.strip().lower()],
        created_at=created_at, started_at=_time(raw, "started_at"),
        completed_at=_time(raw, "completed_at"),
        payload_summary=_text(raw, "payload_summary"), error_message=_text(raw, "error_message"),
        worker_id=_text(raw, "worker_id"),
        run_mode=_choice(raw, "run_mode", RUN_MODES, RunMode.UNSPECIFIED),
        prompt_source=_choice(raw, "prompt_source", PROMPT_SOURCES, PromptSource.UNSPECIFIED),
        prompt_pack_id=_text(raw, "prompt_pack_id"),
        duration_ms=None if duration is None else int(duration), result=result)


def _moment(line: Line, state: JobState) -> datetime:
    """When a line's status began, as well as the line tells."""
    if state.is_terminal:
        return line.completed_at or line.started_at or line.created_at
    if state == JobState.RUNNING:
        return line.started_at or line.created_at
    return line.created_at


def record_of(lines: list[Line]) -> ImportedJob:
    """A job's record from its valid lines, in file order."""
    latest = lines[-1]
    metadata = {"imported_from": IMPORTED_FROM}
    if latest.duration_ms is not None:
        metadata["desktop.duration_ms"] = str(latest.duration_ms)
    if latest.result is not None:
        metadata["desktop.result"] = json.dumps(latest.result, sort_keys=True,
                                                separators=(",", ":"), ensure_ascii=False)
    moments = [m for m in (latest.created_at, latest.started_at, latest.completed_at) if m]
    job = Job(
        job_id=latest.job_id, state=latest.state,
        origin=JobOrigin(run_mode=latest.run_mode, prompt_source=latest.prompt_source,
                         prompt_pack_id=latest.prompt_pack_id),
        create_time=latest.created_at, start_time=latest.started_at,
        complete_time=latest.completed_at if latest.state.is_terminal else None,
        update_time=max(moments), error_message=latest.error_message,
        payload_summary=latest.payload_summary, runner_id=latest.worker_id,
        metadata=metadata, queue_position=-1)
    transitions: list[JobTransition] = []
    previous = JobState.UNSPECIFIED
    for line in lines:
        if line.state == previous:
            continue
        transitions.append(JobTransition(
            sequence=0, from_state=previous, to_state=line.state,
            time=_moment(line, line.state), reason="imported from the desktop app's history",
            runner_id=line.worker_id))
        previous = line.state
    return ImportedJob(job=to_proto(job), transitions=[to_proto(t) for t in transitions])


def parse_lines(lines: Iterable[str | bytes]) -> ParsedFile:
    parsed = ParsedFile()
    by_job: dict[str, list[Line]] = {}
    for number, item in enumerate(lines, start=1):
        parsed.lines = number
        try:
            text = item.decode("utf-8-sig") if isinstance(item, bytes) else item
            if not text.strip():
                continue
            line = parse_line(number, text)
        except UnicodeDecodeError:
            parsed.problems.append(Problem(number, "not UTF-8 text"))
            continue
        except MalformedLineError as error:
            parsed.problems.append(Problem(number, str(error)))
            continue
        by_job.setdefault(line.job_id, []).append(line)
    parsed.records = [record_of(job_lines) for job_lines in by_job.values()]
    return parsed


def parse_file(path: Path) -> ParsedFile:
    """Read and parse a file (bytes that are not UTF-8 make their line malformed)."""
    with path.open("rb") as handle:
        return parse_lines(handle)

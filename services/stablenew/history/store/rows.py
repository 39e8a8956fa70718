"""The history's rows: domain objects <-> column values of its tables. The columns its `jobs`
table shares with the queue's are encoded by stablenew.contract.job_row; this module adds the
history's own (bookmark, queue position, provenance, live progress, image count) and the other
tables, each row builder next to the statement that writes its row. No SQL runs here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stablenew.contract.job_row import (
    JOB_COLUMNS,
    ColumnValues,
    from_micros,
    job_columns,
    job_from_columns,
    to_micros,
)
from stablenew.contract.model import (
    AdetailerOutcome,
    AdetailerOutcomeKind,
    EntryResult,
    EntryStatus,
    ImageRef,
    Job,
    JobState,
    JobTransition,
    NormalizedJob,
    StageType,
)
from stablenew.history import codec
from stablenew.history.domain import image_count, pack_ids

# Where a record came from (the `provenance` column).
PROVENANCE_QUEUE = 0
# From the queue, but its submission had been pruned before the history read it.
PROVENANCE_BACKFILLED = 1
PROVENANCE_IMPORTED = 2

# Every column of `jobs` but its rowid, in the order job_to_row writes them.
JOB_ROW_COLUMNS = (*JOB_COLUMNS, "bookmarked", "queue_position", "provenance", "progress",
                   "image_count")
# What an event or the user may change in a record (create_time never changes: it is the key).
MUTABLE_COLUMNS = ("state", "label", "bookmarked", "priority", "start_time", "complete_time",
                   "update_time", "error_message", "runner_id", "attempt", "queue_position",
                   "cancel_requested", "progress")
_MICROSECOND = timedelta(microseconds=1)

INSERT_JOB = (f"INSERT INTO jobs ({', '.join(JOB_ROW_COLUMNS)}) "
              f"VALUES ({', '.join(':' + name for name in JOB_ROW_COLUMNS)})")
INSERT_JOB_WITH_ID = (f"INSERT INTO jobs (id, {', '.join(JOB_ROW_COLUMNS)}) "
                      f"VALUES (:id, {', '.join(':' + name for name in JOB_ROW_COLUMNS)})")
UPDATE_JOB = (f"UPDATE jobs SET {', '.join(f'{name} = :{name}' for name in MUTABLE_COLUMNS)} "
              "WHERE id = :id")
INSERT_ENTRY = "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_RESULT = "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_IMAGE = "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_TRANSITION = ("INSERT INTO transitions (job_ref, sequence, from_state, to_state, time, "
                     "reason, runner_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_PACK = "INSERT OR IGNORE INTO job_packs VALUES (?, ?, ?, ?)"
INSERT_SEARCH = "INSERT INTO search VALUES (?, ?)"
INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?)"


@dataclass
class StoredJob:
    """A record as stored: its rowid (`ref`, what the other tables point at), the job, and
    where it came from."""

    ref: int
    job: Job
    provenance: int


def job_to_row(job: Job, provenance: int = PROVENANCE_QUEUE) -> dict[str, Any]:
    """The `jobs` row of a record (without its rowid)."""
    return {
        **job_columns(job),
        "bookmarked": int(job.bookmarked),
        "queue_position": job.queue_position,
        "provenance": provenance,
        "progress": codec.encode_progress(job.progress),
        # Counted from the results written with the row (replace_results counts again).
        "image_count": image_count(job.results),
    }


def job_from_row(row: ColumnValues) -> Job:
    """The basic record (no entries or results) of a `jobs` row."""
    job = job_from_columns(row)
    job.bookmarked = bool(row["bookmarked"])
    job.queue_position = row["queue_position"]
    job.progress = codec.decode_progress(row["progress"])
    job.image_count = row["image_count"]
    return job


def stored_from_row(row: ColumnValues) -> StoredJob:
    return StoredJob(row["id"], job_from_row(row), row["provenance"])


def _stages(plan: Sequence[StageType]) -> str:
    return ",".join(str(int(stage)) for stage in plan)


def _stage_list(text: str) -> list[StageType]:
    return [StageType(int(part)) for part in text.split(",") if part]


def entry_row(ref: int, entry: NormalizedJob, blob: bytes | None = None) -> tuple[Any, ...]:
    """An `entries` row: the columns a history row shows, and the entry as queued (`blob`, its
    encoding when the caller has it already)."""
    origin = entry.origin
    return (ref, entry.index, origin.prompt_pack_id, origin.pack_name, origin.row_index,
            entry.prompt, _stages(entry.stage_plan), entry.config_hash,
            codec.encode_entry(entry) if blob is None else blob)


def result_rows(ref: int, results: list[EntryResult]
                ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The `results` rows of a record's results, in the order reported, and their `images`."""
    results_out, images_out = [], []
    for ordinal, result in enumerate(results):
        duration = result.duration
        micros = None if duration is None else duration // _MICROSECOND
        results_out.append((ref, ordinal, result.entry_index, result.prompt_pack_id,
                            result.pack_name, result.row_index, result.prompt,
                            _stages(result.stage_plan), int(result.status),
                            result.error_message, result.executed_config_hash, micros,
                            _outcomes_text(result.adetailer_outcomes)))
        for number, image in enumerate(result.images):
            images_out.append((ref, ordinal, number, image.path, image.sha256, image.width,
                               image.height, image.seed, int(image.stage), image.size_bytes,
                               image.runner_id))
    return results_out, images_out


def _outcomes_text(outcomes: list[AdetailerOutcome]) -> str:
    """The `adetailer_outcomes` column: [[pass_index, model, image_index, outcome], ...]."""
    return json.dumps([[o.pass_index, o.model, o.image_index, int(o.outcome)] for o in outcomes],
                      separators=(",", ":"), ensure_ascii=False)


def _outcomes(text: str) -> list[AdetailerOutcome]:
    return [AdetailerOutcome(pass_index=pass_index, model=model, image_index=image_index,
                             outcome=AdetailerOutcomeKind(outcome))
            for pass_index, model, image_index, outcome in json.loads(text)]


# The columns results_from_rows reads, in its order.
RESULT_COLUMNS = ("ordinal, entry_index, prompt_pack_id, pack_name, row_index, prompt, "
                  "stage_plan, status, error_message, executed_config_hash, duration_us, "
                  "adetailer_outcomes")
IMAGE_COLUMNS = "result_ordinal, path, sha256, width, height, seed, stage, size_bytes, runner_id"


def results_from_rows(rows: Iterable[Sequence[Any]],
                      image_rows: Iterable[Sequence[Any]]) -> list[EntryResult]:
    """A record's results from its RESULT_COLUMNS rows and IMAGE_COLUMNS rows, both in order."""
    images: dict[int, list[ImageRef]] = {}
    for image in image_rows:
        images.setdefault(image[0], []).append(ImageRef(
            path=image[1], sha256=image[2], width=image[3], height=image[4], seed=image[5],
            stage=StageType(image[6]), size_bytes=image[7], runner_id=image[8]))
    return [EntryResult(
        entry_index=row[1], prompt_pack_id=row[2], pack_name=row[3], row_index=row[4],
        prompt=row[5], stage_plan=_stage_list(row[6]), status=EntryStatus(row[7]),
        error_message=row[8], executed_config_hash=row[9],
        duration=None if row[10] is None else timedelta(microseconds=row[10]),
        images=images.get(row[0], []), adetailer_outcomes=_outcomes(row[11])) for row in rows]


def transition_row(ref: int, transition: JobTransition) -> tuple[Any, ...]:
    return (ref, transition.sequence, int(transition.from_state), int(transition.to_state),
            to_micros(transition.time) or 0, transition.reason, transition.runner_id,
            transition.attempt)


def transition_from_row(row: Sequence[Any]) -> JobTransition:
    """A transition from its row without the job_ref."""
    return JobTransition(sequence=row[0], from_state=JobState(row[1]), to_state=JobState(row[2]),
                         time=from_micros(row[3]), reason=row[4], runner_id=row[5],
                         attempt=row[6])


def pack_rows(ref: int, job: Job) -> list[tuple[str, int, str, int]]:
    """The `job_packs` rows of a record: one per pack its prompts came from, with the list
    order's key (create_time, job_id)."""
    create_time = to_micros(job.create_time) or 0
    return [(pack, create_time, job.job_id, ref) for pack in sorted(pack_ids(job))]

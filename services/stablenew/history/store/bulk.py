"""Loading many finished records at once (benchmarks, seeding): one executemany per table
instead of the ingestion's statements per event."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stablenew.contract.model import Job, JobTransition
from stablenew.history import codec
from stablenew.history.store.rows import (
    INSERT_ENTRY,
    INSERT_EVENT,
    INSERT_IMAGE,
    INSERT_JOB_WITH_ID,
    INSERT_PACK,
    INSERT_RESULT,
    INSERT_SEARCH,
    INSERT_TRANSITION,
    entry_row,
    job_to_row,
    pack_rows,
    result_rows,
    transition_row,
)


@dataclass
class BulkRecord:
    """One record for bulk_insert: the job (entries and results included), its transitions,
    its search text and its stored events (sequence, cut, payload)."""

    job: Job
    transitions: list[JobTransition]
    text: str = ""
    events: list[tuple[int, int, bytes]] = field(default_factory=list)


@dataclass
class _Rows:
    """The rows of every table, collected before they are written."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    results: list[tuple[Any, ...]] = field(default_factory=list)
    images: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    packs: list[tuple[Any, ...]] = field(default_factory=list)
    search: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)


def insert_records(db: sqlite3.Connection, records: Sequence[BulkRecord]) -> None:
    """Insert the records after every existing one, inside the caller's transaction (an entry
    object shared by several jobs is encoded once)."""
    first = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]) + 1
    rows = _Rows()
    blobs: dict[int, bytes] = {}
    for ref, record in enumerate(records, start=first):
        job = record.job
        rows.jobs.append({"id": ref, **job_to_row(job)})
        for entry in job.entries:
            blob = blobs.get(id(entry))
            if blob is None:
                blob = blobs[id(entry)] = codec.encode_entry(entry)
            rows.entries.append(entry_row(ref, entry, blob))
        results, images = result_rows(ref, job.results)
        rows.results += results
        rows.images += images
        rows.transitions += [transition_row(ref, t) for t in record.transitions]
        rows.packs += pack_rows(ref, job)
        if record.text:
            rows.search.append((ref, record.text))
        rows.events += [(sequence, ref, cut, payload) for sequence, cut, payload in record.events]
    db.executemany(INSERT_JOB_WITH_ID, rows.jobs)
    db.executemany(INSERT_ENTRY, rows.entries)
    db.executemany(INSERT_RESULT, rows.results)
    db.executemany(INSERT_IMAGE, rows.images)
    db.executemany(INSERT_TRANSITION, rows.transitions)
    db.executemany(INSERT_PACK, rows.packs)
    db.executemany(INSERT_SEARCH, rows.search)
    db.executemany(INSERT_EVENT, rows.events)

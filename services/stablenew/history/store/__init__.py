"""The history's SQLite store: job records, their entries, results and image references, the
packs they are found by, the append-only transitions, the queue's events as logged, and the
ingestion cursor. Rows in, domain objects out; the only place the history runs SQL:

- `schema` — the migrations;
- `rows` — domain objects <-> rows, and the statements that write them;
- `queries` — the SQL of filtered, keyset-paged lists (and why it is shaped so);
- `reads` — `Reader` (every read) and the read pool;
- `bulk` — many records at once;
- this module — `HistoryStore`: the writer connection, its one transaction helper, the writes.

Durability: WAL with synchronous=NORMAL (STABLENEW_SQLITE_SYNCHRONOUS=FULL is accepted too). A
commit survives a SIGKILL of the process; an OS crash or power cut can take back the last commits.
That is safe here because the history acknowledges events to the queue only after a checkpoint,
and a checkpoint fsyncs the WAL first (ingest.py): whatever the queue may drop is on disk.
NORMAL keeps ingestion at thousands of events per second instead of one fsync per event.

One writer connection, used under the core's lock; reads use a small pool of their own
connections (WAL readers never block the writer, nor the writer them).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.job_row import to_micros
from stablenew.contract.model import Job, JobState, JobTransition
from stablenew.history.domain import image_count
from stablenew.history.store import queries
from stablenew.history.store.bulk import BulkRecord, insert_records
from stablenew.history.store.reads import Reader, ReadPool
from stablenew.history.store.rows import (
    INSERT_ENTRY,
    INSERT_EVENT,
    INSERT_IMAGE,
    INSERT_JOB,
    INSERT_PACK,
    INSERT_RESULT,
    INSERT_SEARCH,
    INSERT_TRANSITION,
    MUTABLE_COLUMNS,
    PROVENANCE_IMPORTED,
    PROVENANCE_QUEUE,
    UPDATE_JOB,
    entry_row,
    job_to_row,
    pack_rows,
    result_rows,
    transition_row,
)
from stablenew.history.store.schema import MIGRATIONS
from stablenew.runtime.paging import stored_secret
from stablenew.runtime.sqlite_db import Transaction, open_database

AUTO_VACUUM_INCREMENTAL = 2
# Every table whose rows belong to one record (by job_ref).
_RECORD_TABLES = ("entries", "results", "images", "transitions", "events", "search", "job_packs")


def storage_failure(error: sqlite3.Error) -> ServiceError:
    """What a write that SQLite refused (disk full, read-only file, ...) answers."""
    return ServiceError(Code.INTERNAL, ErrorReason.STORAGE_FAILURE,
                        f"the history database refused the write: {error}")


def is_outage(error: BaseException) -> bool:
    """Whether a failed write is the database's state rather than the data's: SQLite's
    operational errors (disk full, file locked, read-only or unreadable) pass when the file
    recovers, so the same write is worth trying again; anything else (a value SQLite cannot
    hold, a string past its length limit, an event this version cannot convert) fails the same
    way every time."""
    return (isinstance(error, ServiceError) and error.reason == ErrorReason.STORAGE_FAILURE
            and isinstance(error.__cause__, sqlite3.OperationalError))


class HistoryStore(Reader):
    """The writer connection (every write goes through here, under the core's lock) and the
    read pool."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        super().__init__(open_database(path, MIGRATIONS, synchronous))
        self.db.row_factory = sqlite3.Row
        try:
            self._prepare()
        except (sqlite3.DatabaseError, ServiceError):
            self.db.close()
            raise
        self.pool = ReadPool(path)

    def _prepare(self) -> None:
        """Incremental auto-vacuum (it only takes effect on a database created with it, or
        after a VACUUM), and a write, so an unwritable file fails now rather than on the first
        event."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.db.execute("VACUUM")
        with self.transaction():
            self.db.execute("INSERT INTO meta VALUES ('opened', datetime('now')) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value")

    def close(self) -> None:
        self.pool.close()
        self.db.close()

    # --- transactions -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction on the writer connection: BEGIN IMMEDIATE, COMMIT, or ROLLBACK
        when the block raises. An error of SQLite itself becomes INTERNAL STORAGE_FAILURE."""
        try:
            with Transaction(self.db):
                yield
        except sqlite3.Error as error:
            raise storage_failure(error) from error

    def reading(self) -> AbstractContextManager[Reader]:
        """A pooled reader inside one read transaction (a consistent snapshot)."""
        return self.pool.snapshot()

    def page_token_secret(self) -> bytes:
        """The database's secret that signs page tokens (made on first use)."""
        return stored_secret(self.db, self.meta, self.set_meta)

    # --- meta -----------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                        "value = excluded.value", (key, value))

    def set_cursor(self, sequence: int) -> None:
        self.set_meta("cursor", str(sequence))

    def record_gap(self, first: int, last: int, now: datetime) -> None:
        self.db.execute("INSERT INTO gaps VALUES (?, ?, ?)", (first, last, to_micros(now)))

    def quarantine(self, sequence: int, job_id: str, now: datetime, error: str,
                   event: bytes) -> None:
        """Keep an event the history could not record, as the queue sent it (compressed: it
        may be a submission of thousands of entries, the very kind that fails to record)."""
        self.db.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?)",
                        (sequence, job_id, to_micros(now), error, zlib.compress(event)))

    # --- writes ---------------------------------------------------------------------------

    def insert_job(self, job: Job, provenance: int = PROVENANCE_QUEUE,
                   text: str = "") -> int:
        """A new record with its entries, results, packs and search text; returns its ref."""
        cursor = self.db.execute(INSERT_JOB, job_to_row(job, provenance))
        ref = int(cursor.lastrowid or 0)
        if job.entries:
            self.db.executemany(INSERT_ENTRY, [entry_row(ref, entry) for entry in job.entries])
        self._add_results_and_packs(ref, job)
        if text:
            self.db.execute(INSERT_SEARCH, (ref, text))
        return ref

    def update_job(self, ref: int, job: Job) -> None:
        """Write what may change in a record (MUTABLE_COLUMNS)."""
        row = job_to_row(job)
        self.db.execute(UPDATE_JOB, {"id": ref, **{name: row[name] for name in MUTABLE_COLUMNS}})

    def set_search_text(self, ref: int, text: str) -> None:
        if text:
            self.db.execute("INSERT INTO search VALUES (?, ?) ON CONFLICT (job_ref) DO UPDATE "
                            "SET text = excluded.text WHERE text <> excluded.text", (ref, text))
        else:
            self.db.execute("DELETE FROM search WHERE job_ref = ?", (ref,))

    def replace_results(self, ref: int, job: Job) -> None:
        """Store the job's results (and images) in place of the record's, and index every pack
        the job names (its results name the packs of a record recorded without entries)."""
        self.db.execute("DELETE FROM results WHERE job_ref = ?", (ref,))
        self.db.execute("DELETE FROM images WHERE job_ref = ?", (ref,))
        self._add_results_and_packs(ref, job)
        self.db.execute("UPDATE jobs SET image_count = ? WHERE id = ?",
                        (image_count(job.results), ref))

    def _add_results_and_packs(self, ref: int, job: Job) -> None:
        results, images = result_rows(ref, job.results)
        self.db.executemany(INSERT_RESULT, results)
        self.db.executemany(INSERT_IMAGE, images)
        self.db.executemany(INSERT_PACK, pack_rows(ref, job))

    def add_transitions(self, ref: int, transitions: Iterable[JobTransition]) -> None:
        self.db.executemany(INSERT_TRANSITION, [transition_row(ref, t) for t in transitions])

    def add_event(self, sequence: int, ref: int, cut: int, payload: bytes) -> None:
        self.db.execute(INSERT_EVENT, (sequence, ref, cut, payload))

    def set_label_and_bookmark(self, ref: int, label: str, bookmarked: bool,
                               now: datetime) -> None:
        self.db.execute("UPDATE jobs SET label = ?, bookmarked = ?, update_time = ? WHERE id = ?",
                        (label, int(bookmarked), to_micros(now), ref))

    def bulk_insert(self, records: Sequence[BulkRecord]) -> None:
        """Many records at once, inside the caller's transaction (bulk.py)."""
        insert_records(self.db, records)

    # --- tombstones -------------------------------------------------------------------------

    def is_tombstoned(self, job_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM tombstones WHERE job_id = ?",
                               (job_id,)).fetchone() is not None

    def forget_tombstone(self, job_id: str) -> None:
        self.db.execute("DELETE FROM tombstones WHERE job_id = ?", (job_id,))

    # --- deletion ---------------------------------------------------------------------------

    def delete_jobs(self, refs: Sequence[int]) -> list[str]:
        """Delete records with everything that belongs to them; jobs still in the queue get a
        tombstone so their later events are not recorded (imported jobs never have any).
        Returns the deleted job ids."""
        if not refs:
            return []
        marks = ", ".join("?" * len(refs))
        rows = self.db.execute(
            f"SELECT job_id, state, provenance FROM jobs WHERE id IN ({marks})",
            list(refs)).fetchall()
        active = [(row[0],) for row in rows
                  if not JobState(row[1]).is_terminal and row[2] != PROVENANCE_IMPORTED]
        self.db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", active)
        for table in _RECORD_TABLES:
            self.db.execute(f"DELETE FROM {table} WHERE job_ref IN ({marks})", list(refs))
        self.db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", list(refs))
        return [str(row[0]) for row in rows]

    def prune_candidates(self, states: Sequence[JobState], older_than: datetime | None,
                         keep_bookmarked: bool, limit: int) -> list[int]:
        """Up to `limit` records to prune, oldest first (one index range scan per state)."""
        refs: list[tuple[int, str, int]] = []
        for state in sorted(set(states)):
            query = queries.prunable(state, "create_time, job_id, id", older_than,
                                     keep_bookmarked)
            rows = self.db.execute(query.sql + " ORDER BY create_time, job_id LIMIT ?",
                                   [*query.params, limit]).fetchall()
            refs += [(row[0], row[1], row[2]) for row in rows]
        refs.sort()
        return [ref for _, _, ref in refs[:limit]]

    def count_prunable(self, states: Sequence[JobState], older_than: datetime | None,
                       keep_bookmarked: bool) -> int:
        total = 0
        for state in sorted(set(states)):
            query = queries.prunable(state, "COUNT(*)", older_than, keep_bookmarked)
            total += int(self.db.execute(query.sql, query.params).fetchone()[0])
        return total

    def incremental_vacuum(self, pages: int) -> int:
        """Give up to `pages` free pages back to the file system; returns the free pages left."""
        self.db.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        return int(self.db.execute("PRAGMA freelist_count").fetchone()[0])

    def checkpoint(self) -> bool:
        """A passive WAL checkpoint. With synchronous=NORMAL it fsyncs the WAL first, so every
        commit before it is durable; False if another checkpoint was in the way."""
        busy = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        return int(busy) == 0

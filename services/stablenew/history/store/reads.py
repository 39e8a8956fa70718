"""Reading the history database: one record with what belongs to it, and filtered lists. A
`Reader` works over any connection (the writer's, or one of the read pool's); the service reads
through the pool, whose connections never wait for the writer (WAL readers and the writer do
not block each other)."""

from __future__ import annotations

import queue
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stablenew.contract.job_row import from_micros
from stablenew.contract.model import EntryResult, Job, JobTransition, NormalizedJob
from stablenew.history import codec
from stablenew.history.domain import JobFilter, QuarantinedEvent
from stablenew.history.store import queries
from stablenew.history.store.queries import JOB_SELECT, Query
from stablenew.history.store.rows import (
    IMAGE_COLUMNS,
    RESULT_COLUMNS,
    StoredJob,
    results_from_rows,
    stored_from_row,
    transition_from_row,
)

READ_CONNECTIONS = 6
READ_CACHE_KIB = 16 * 1024


class Reader:
    """Reads over one connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def meta(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def cursor(self) -> int:
        """The sequence of the last queue event applied."""
        return int(self.meta("cursor", "0"))

    # --- one job --------------------------------------------------------------------------

    def has_job(self, job_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone() is not None

    def load(self, job_id: str, full: bool = False) -> StoredJob | None:
        """A record by its job id; with `full`, its entries and results too."""
        row = self.db.execute(f"SELECT {JOB_SELECT} FROM jobs WHERE job_id = ?",
                              (job_id,)).fetchone()
        if row is None:
            return None
        stored = stored_from_row(row)
        if full:
            self.fill(stored.ref, stored.job)
        return stored

    def fill(self, ref: int, job: Job) -> None:
        """Add the entries and results (JOB_VIEW_FULL)."""
        job.entries = self.entries(ref)
        job.results = self.results(ref)

    def record_bytes(self, ref: int) -> int:
        """The stored size of a record's entries and results (their text and encoded
        blobs): what filling it costs, read without decoding anything."""
        row = self.db.execute(
            "SELECT (SELECT TOTAL(LENGTH(entry)) FROM entries WHERE job_ref = ?) + "
            "(SELECT TOTAL(LENGTH(prompt) + LENGTH(stage_plan) + LENGTH(error_message) + "
            "LENGTH(executed_config_hash)) FROM results WHERE job_ref = ?) + "
            "(SELECT TOTAL(LENGTH(path) + LENGTH(sha256) + LENGTH(runner_id)) FROM images "
            "WHERE job_ref = ?)", (ref, ref, ref)).fetchone()
        return int(row[0])

    def entries(self, ref: int) -> list[NormalizedJob]:
        rows = self.db.execute("SELECT entry FROM entries WHERE job_ref = ? ORDER BY entry_index",
                               (ref,)).fetchall()
        return [codec.decode_entry(row[0]) for row in rows]

    def results(self, ref: int) -> list[EntryResult]:
        rows = self.db.execute(f"SELECT {RESULT_COLUMNS} FROM results WHERE job_ref = ? "
                               "ORDER BY ordinal", (ref,)).fetchall()
        if not rows:
            return []
        images = self.db.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE job_ref = ? "
                                 "ORDER BY result_ordinal, ordinal", (ref,))
        return results_from_rows(rows, images)

    def prompts(self, ref: int) -> tuple[list[str], list[str]]:
        """The prompts of a record's entries and of its results, in order, from their plain
        columns (no blob decoded)."""
        entries = self.db.execute(
            "SELECT prompt FROM entries WHERE job_ref = ? ORDER BY entry_index",
            (ref,)).fetchall()
        results = self.db.execute(
            "SELECT prompt FROM results WHERE job_ref = ? ORDER BY ordinal", (ref,)).fetchall()
        return [str(row[0]) for row in entries], [str(row[0]) for row in results]

    def pack_ids(self, ref: int) -> frozenset[str]:
        """The packs a record is found by (domain.pack_ids of the full record)."""
        rows = self.db.execute("SELECT pack_id FROM job_packs WHERE job_ref = ?", (ref,))
        return frozenset(str(row[0]) for row in rows)

    def transitions(self, ref: int) -> list[JobTransition]:
        rows = self.db.execute(
            "SELECT sequence, from_state, to_state, time, reason, runner_id, attempt "
            "FROM transitions WHERE job_ref = ? ORDER BY id", (ref,)).fetchall()
        return [transition_from_row(row) for row in rows]

    def search_text(self, ref: int) -> str:
        row = self.db.execute("SELECT text FROM search WHERE job_ref = ?", (ref,)).fetchone()
        return "" if row is None else str(row[0])

    def events(self, ref: int, after: int, limit: int) -> list[tuple[int, int, bytes]]:
        """(sequence, cut, payload) of a job's stored events after a sequence."""
        rows = self.db.execute(
            "SELECT sequence, cut, payload FROM events WHERE job_ref = ? AND sequence > ? "
            "ORDER BY sequence LIMIT ?", (ref, after, limit)).fetchall()
        return [(row[0], row[1], row[2]) for row in rows]

    # --- lists ----------------------------------------------------------------------------

    def list_jobs(self, job_filter: JobFilter, after: tuple[int, str] | None,
                  limit: int) -> list[StoredJob]:
        """Newest first after a keyset position (create_time micros, job_id)."""
        query = self.list_query(job_filter, after, limit)
        return [stored_from_row(row) for row in self.db.execute(query.sql, query.params)]

    def list_query(self, job_filter: JobFilter, after: tuple[int, str] | None,
                   limit: int) -> Query:
        """The statement list_jobs runs (the text's candidates looked up first)."""
        return queries.list_query(job_filter, after, limit,
                                  self._text_candidates(job_filter.needle))

    def _text_candidates(self, needle: str) -> list[int] | None:
        """The records holding a word found TEXT_INDEX_LIMIT times at most, or None (no word,
        a common word, or one the trigram index cannot look up)."""
        lookup = queries.trigram_lookup(needle)
        if lookup is None:
            return None
        rows = self.db.execute(lookup.sql, lookup.params).fetchall()
        if len(rows) > queries.TEXT_INDEX_LIMIT:
            return None
        return [row[0] for row in rows]

    def quarantined(self, after: int, limit: int) -> list[QuarantinedEvent]:
        """Up to `limit` quarantined events after a sequence, oldest first."""
        rows = self.db.execute("SELECT sequence, job_id, time, error, event FROM quarantine "
                               "WHERE sequence > ? ORDER BY sequence LIMIT ?",
                               (after, limit)).fetchall()
        return [QuarantinedEvent(int(row[0]), str(row[1]), from_micros(row[2]), str(row[3]),
                                 zlib.decompress(row[4])) for row in rows]

    def quarantined_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


@contextmanager
def read_only(path: Path) -> Iterator[Reader]:
    """A reader on a database file, for tools and tests (the service uses its pool)."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        yield Reader(connection)
    finally:
        connection.close()


class ReadPool:
    """A few read connections, handed out one per call."""

    def __init__(self, path: Path, size: int = READ_CONNECTIONS) -> None:
        self._path = path
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None,
                                     timeout=10.0)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA query_only = 1")
        # A larger page cache per reader than SQLite's 2 MB default: the upper levels of the
        # indexes stay in it.
        connection.execute(f"PRAGMA cache_size = -{READ_CACHE_KIB}")
        with self._lock:
            self._all.append(connection)
        return connection

    @contextmanager
    def snapshot(self) -> Iterator[Reader]:
        """A reader inside one read transaction: every read it makes sees the database as of
        the same commit (a record and its transitions, a page of records and their entries)."""
        with self._slots:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = self._open()
            try:
                connection.execute("BEGIN")
                yield Reader(connection)
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                self._idle.put(connection)

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()
            self._all.clear()

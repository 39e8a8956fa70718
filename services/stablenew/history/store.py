"""The history's SQLite store: job records, their entries, results and image references, the
append-only transitions, the queue's events as logged, and the ingestion cursor. Rows in, domain
objects out.

Durability: WAL with synchronous=NORMAL (STABLENEW_SQLITE_SYNCHRONOUS=FULL is accepted too). A
commit survives a SIGKILL of the process; an OS crash or power cut can take back the last commits.
That is safe here because the history acknowledges events to the queue only after a checkpoint,
and a checkpoint fsyncs the WAL first (ingest.py): whatever the queue may drop is on disk.
NORMAL keeps ingestion at thousands of events per second instead of one fsync per event.

One writer connection, used under the core's lock; reads use a small pool of their own
connections (WAL readers never block the writer, nor the writer them).

Paging is keyset on (create_time DESC, job_id DESC). Every filter has an index whose leading
column is the filter and whose next columns are (create_time, job_id), so a filtered page is a
range scan of one index that stops after page_size rows, whatever the page number. Several
states are read as one such scan per state, merged.

Text search (a case-insensitive substring of a prompt or the label) uses two ways, chosen per
query, because measurements on 1,000,000 records showed each failing where the other shines:
an FTS5 trigram index finds a rare word in about 2 ms but a common one in about 1 s (every match
is sorted by time); scanning the records newest first and testing a lowercase copy of the text
with instr() fills a page of a common word in about 4 ms but needs the whole table (about 300 ms)
for a rare one. So the trigram index is asked first for at most TEXT_INDEX_LIMIT matches: if there
are no more, those are the candidates (a few rowid lookups and a small sort); otherwise the word is
common and the ordered scan fills a page quickly. Words shorter than a trigram, or with LIKE
wildcards in them, always scan. The remaining slow case is a phrase made of very common words that
matches a few hundred records: the trigram lists of its common trigrams are long (about 120 ms at
1,000,000 records). The trigram index (detail=none) costs about 90 bytes per job.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stablenew.contract.job_row import origin_columns, origin_from_columns
from stablenew.contract.model import (
    EntryResult,
    EntryStatus,
    ImageRef,
    Job,
    JobState,
    JobTransition,
    NormalizedJob,
    Priority,
    StageType,
)
from stablenew.history import codec
from stablenew.history.domain import JobFilter
from stablenew.runtime.server import StartupError
from stablenew.runtime.sqlite_db import open_database

AUTO_VACUUM_INCREMENTAL = 2

MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        state INTEGER NOT NULL,
        run_mode INTEGER NOT NULL,
        source INTEGER NOT NULL,
        prompt_source INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        bookmarked INTEGER NOT NULL,
        label TEXT NOT NULL,
        draft_id TEXT NOT NULL,
        draft_revision INTEGER NOT NULL,
        retry_of_job_id TEXT NOT NULL,
        priority INTEGER NOT NULL,
        stage_count INTEGER NOT NULL,
        has_adetailer INTEGER NOT NULL,
        has_upscale INTEGER NOT NULL,
        config_hash TEXT NOT NULL,
        start_time INTEGER,
        complete_time INTEGER,
        update_time INTEGER,
        error_message TEXT NOT NULL,
        payload_summary TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        entry_count INTEGER NOT NULL,
        estimated_images INTEGER NOT NULL,
        queue_position INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL,
        -- 0 recorded from the queue, 1 from the queue without its submission, 2 imported.
        provenance INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        progress BLOB
    );
    CREATE INDEX jobs_created ON jobs (create_time, job_id);
    CREATE INDEX jobs_state ON jobs (state, create_time, job_id);
    CREATE INDEX jobs_run_mode ON jobs (run_mode, create_time, job_id);
    CREATE INDEX jobs_source ON jobs (source, create_time, job_id);
    CREATE INDEX jobs_prompt_source ON jobs (prompt_source, create_time, job_id);
    CREATE INDEX jobs_pack ON jobs (prompt_pack_id, create_time, job_id)
        WHERE prompt_pack_id <> '';
    CREATE INDEX jobs_bookmarked ON jobs (create_time, job_id) WHERE bookmarked = 1;

    -- The normalized jobs exactly as queued, with the columns a history row shows.
    CREATE TABLE entries (
        job_ref INTEGER NOT NULL,
        entry_index INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        pack_name TEXT NOT NULL,
        row_index INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        stage_plan TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        entry BLOB NOT NULL,
        PRIMARY KEY (job_ref, entry_index)
    );
    -- What the runner reported per entry, in the order it reported them.
    CREATE TABLE results (
        job_ref INTEGER NOT NULL,
        ordinal INTEGER NOT NULL,
        entry_index INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        pack_name TEXT NOT NULL,
        row_index INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        stage_plan TEXT NOT NULL,
        status INTEGER NOT NULL,
        error_message TEXT NOT NULL,
        executed_config_hash TEXT NOT NULL,
        duration_us INTEGER,
        PRIMARY KEY (job_ref, ordinal)
    ) WITHOUT ROWID;
    CREATE TABLE images (
        job_ref INTEGER NOT NULL,
        result_ordinal INTEGER NOT NULL,
        ordinal INTEGER NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        stage INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        runner_id TEXT NOT NULL,
        PRIMARY KEY (job_ref, result_ordinal, ordinal)
    ) WITHOUT ROWID;
    -- Append-only: one row per state change (the submission first). sequence is the queue
    -- event's; 0 for imported jobs.
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        job_ref INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        from_state INTEGER NOT NULL,
        to_state INTEGER NOT NULL,
        time INTEGER NOT NULL,
        reason TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        attempt INTEGER NOT NULL
    );
    CREATE INDEX transitions_job ON transitions (job_ref, id);
    -- The queue's events of each job (progress aside). The primary key on the sequence makes
    -- applying an event twice impossible, whatever happens above.
    CREATE TABLE events (
        sequence INTEGER PRIMARY KEY,
        job_ref INTEGER NOT NULL,
        cut INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX events_job ON events (job_ref, sequence);
    -- Lowercase label and prompts, and a trigram index over them.
    CREATE TABLE search (job_ref INTEGER PRIMARY KEY, text TEXT NOT NULL);
    CREATE VIRTUAL TABLE search_index USING fts5(
        text, content='search', content_rowid='job_ref', tokenize='trigram', detail='none');
    CREATE TRIGGER search_inserted AFTER INSERT ON search BEGIN
        INSERT INTO search_index (rowid, text) VALUES (new.job_ref, new.text);
    END;
    CREATE TRIGGER search_deleted AFTER DELETE ON search BEGIN
        INSERT INTO search_index (search_index, rowid, text)
            VALUES ('delete', old.job_ref, old.text);
    END;
    CREATE TRIGGER search_updated AFTER UPDATE ON search BEGIN
        INSERT INTO search_index (search_index, rowid, text)
            VALUES ('delete', old.job_ref, old.text);
        INSERT INTO search_index (rowid, text) VALUES (new.job_ref, new.text);
    END;
    -- Jobs deleted while still in the queue: their later events are not recorded.
    CREATE TABLE tombstones (job_id TEXT PRIMARY KEY);
    -- Event ranges the queue had pruned before the history read them.
    CREATE TABLE gaps (
        first_sequence INTEGER NOT NULL,
        last_sequence INTEGER NOT NULL,
        time INTEGER NOT NULL
    );
    """,
]

PROVENANCE_QUEUE = 0
PROVENANCE_BACKFILLED = 1
PROVENANCE_IMPORTED = 2

# The trigram index is used when a word has at most this many matches (see the docstring).
TEXT_INDEX_LIMIT = 2000
MIN_TRIGRAM_LENGTH = 3
READ_CONNECTIONS = 6
READ_CACHE_KIB = 16 * 1024

_BASIC_COLUMNS = """id, job_id, state, run_mode, source, prompt_source, prompt_pack_id,
    create_time, bookmarked, label, draft_id, draft_revision, retry_of_job_id, priority,
    stage_count, has_adetailer, has_upscale, config_hash, start_time, complete_time, update_time,
    error_message, payload_summary, runner_id, attempt, entry_count, estimated_images,
    queue_position, cancel_requested, provenance, metadata, progress"""
_MUTABLE = ("state", "label", "bookmarked", "priority", "start_time", "complete_time",
            "update_time", "error_message", "runner_id", "attempt", "queue_position",
            "cancel_requested", "progress")
_NEWEST_FIRST = "ORDER BY create_time DESC, job_id DESC"


def to_micros(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int | None) -> datetime | None:
    if micros is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _stages(plan: Sequence[StageType]) -> str:
    return ",".join(str(int(stage)) for stage in plan)


def _stage_list(text: str) -> list[StageType]:
    return [StageType(int(part)) for part in text.split(",") if part]


@dataclass
class StoredJob:
    ref: int
    job: Job
    provenance: int


def job_from_row(row: sqlite3.Row) -> Job:
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
        metadata=json.loads(metadata) if metadata != "{}" else {},
        entry_count=row["entry_count"],
        estimated_images=row["estimated_images"],
        progress=codec.decode_progress(row["progress"]),
        queue_position=row["queue_position"],
        cancel_requested=bool(row["cancel_requested"]),
        bookmarked=bool(row["bookmarked"]),
    )


def job_to_row(job: Job, provenance: int = PROVENANCE_QUEUE) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "state": int(job.state),
        **origin_columns(job.origin),
        "create_time": to_micros(job.create_time) or 0,
        "bookmarked": int(job.bookmarked),
        "label": job.label,
        "priority": int(job.priority),
        "stage_count": job.stage_count,
        "has_adetailer": int(job.has_adetailer),
        "has_upscale": int(job.has_upscale),
        "config_hash": job.config_hash,
        "start_time": to_micros(job.start_time),
        "complete_time": to_micros(job.complete_time),
        "update_time": to_micros(job.update_time),
        "error_message": job.error_message,
        "payload_summary": job.payload_summary,
        "runner_id": job.runner_id,
        "attempt": job.attempt,
        "entry_count": job.entry_count,
        "estimated_images": job.estimated_images,
        "queue_position": job.queue_position,
        "cancel_requested": int(job.cancel_requested),
        "provenance": provenance,
        "metadata": json.dumps(job.metadata, sort_keys=True, separators=(",", ":")),
        "progress": codec.encode_progress(job.progress),
    }


_JOB_COLUMNS = list(job_to_row(Job()))
_INSERT_JOB = (f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) "
               f"VALUES ({', '.join(':' + name for name in _JOB_COLUMNS)})")
_INSERT_JOB_WITH_ID = (f"INSERT INTO jobs (id, {', '.join(_JOB_COLUMNS)}) "
                       f"VALUES (:id, {', '.join(':' + name for name in _JOB_COLUMNS)})")
_UPDATE_JOB = (f"UPDATE jobs SET {', '.join(f'{name} = :{name}' for name in _MUTABLE)} "
               "WHERE id = :id")


def entry_row(ref: int, entry: NormalizedJob) -> tuple[Any, ...]:
    origin = entry.origin
    return (ref, entry.index, origin.prompt_pack_id, origin.pack_name, origin.row_index,
            entry.prompt, _stages(entry.stage_plan), entry.config_hash, codec.encode_entry(entry))


def result_rows(ref: int, results: list[EntryResult]
                ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    results_out, images_out = [], []
    for ordinal, result in enumerate(results):
        duration = result.duration
        micros = None if duration is None else duration // timedelta(microseconds=1)
        results_out.append((ref, ordinal, result.entry_index, result.prompt_pack_id,
                            result.pack_name, result.row_index, result.prompt,
                            _stages(result.stage_plan), int(result.status),
                            result.error_message, result.executed_config_hash, micros))
        for number, image in enumerate(result.images):
            images_out.append((ref, ordinal, number, image.path, image.sha256, image.width,
                               image.height, image.seed, int(image.stage), image.size_bytes,
                               image.runner_id))
    return results_out, images_out


def transition_row(ref: int, transition: JobTransition) -> tuple[Any, ...]:
    return (ref, transition.sequence, int(transition.from_state), int(transition.to_state),
            to_micros(transition.time) or 0, transition.reason, transition.runner_id,
            transition.attempt)


@dataclass(frozen=True)
class Query:
    sql: str
    params: list[Any]


class Reader:
    """Reads over one connection (the writer's, or one of the read pool)."""

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
        row = self.db.execute(f"SELECT {_BASIC_COLUMNS} FROM jobs WHERE job_id = ?",
                              (job_id,)).fetchone()
        if row is None:
            return None
        job = job_from_row(row)
        if full:
            self.fill(row["id"], job)
        return StoredJob(row["id"], job, row["provenance"])

    def fill(self, ref: int, job: Job) -> None:
        """Add the entries and results (JOB_VIEW_FULL)."""
        job.entries = self.entries(ref)
        job.results = self.results(ref)

    def entries(self, ref: int) -> list[NormalizedJob]:
        rows = self.db.execute("SELECT entry FROM entries WHERE job_ref = ? ORDER BY entry_index",
                               (ref,)).fetchall()
        return [codec.decode_entry(row[0]) for row in rows]

    def results(self, ref: int) -> list[EntryResult]:
        rows = self.db.execute(
            "SELECT ordinal, entry_index, prompt_pack_id, pack_name, row_index, prompt, "
            "stage_plan, status, error_message, executed_config_hash, duration_us "
            "FROM results WHERE job_ref = ? ORDER BY ordinal", (ref,)).fetchall()
        if not rows:
            return []
        images: dict[int, list[ImageRef]] = {}
        for image in self.db.execute(
                "SELECT result_ordinal, path, sha256, width, height, seed, stage, size_bytes, "
                "runner_id FROM images WHERE job_ref = ? ORDER BY result_ordinal, ordinal",
                (ref,)):
            images.setdefault(image[0], []).append(ImageRef(
                path=image[1], sha256=image[2], width=image[3], height=image[4], seed=image[5],
                stage=StageType(image[6]), size_bytes=image[7], runner_id=image[8]))
        return [EntryResult(
            entry_index=row[1], prompt_pack_id=row[2], pack_name=row[3], row_index=row[4],
            prompt=row[5], stage_plan=_stage_list(row[6]), status=EntryStatus(row[7]),
            error_message=row[8], executed_config_hash=row[9],
            duration=None if row[10] is None else timedelta(microseconds=row[10]),
            images=images.get(row[0], [])) for row in rows]

    def prompts(self, ref: int) -> tuple[list[str], list[str]]:
        """The prompts of a record's entries and of its results, in order, from their plain
        columns (no blob decoded)."""
        entries = self.db.execute(
            "SELECT prompt FROM entries WHERE job_ref = ? ORDER BY entry_index",
            (ref,)).fetchall()
        results = self.db.execute(
            "SELECT prompt FROM results WHERE job_ref = ? ORDER BY ordinal", (ref,)).fetchall()
        return [str(row[0]) for row in entries], [str(row[0]) for row in results]

    def transitions(self, ref: int) -> list[JobTransition]:
        rows = self.db.execute(
            "SELECT sequence, from_state, to_state, time, reason, runner_id, attempt "
            "FROM transitions WHERE job_ref = ? ORDER BY id", (ref,)).fetchall()
        return [JobTransition(sequence=row[0], from_state=JobState(row[1]),
                              to_state=JobState(row[2]), time=from_micros(row[3]),
                              reason=row[4], runner_id=row[5], attempt=row[6]) for row in rows]

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
        rows = self.db.execute(query.sql, query.params).fetchall()
        return [StoredJob(row["id"], job_from_row(row), row["provenance"]) for row in rows]

    def list_query(self, job_filter: JobFilter, after: tuple[int, str] | None,
                   limit: int) -> Query:
        candidates = self._text_candidates(job_filter.needle)
        index, driving, driving_params = _driving_index(job_filter)
        conditions, params = _conditions(
            job_filter, after, text=candidates is None,
            states=candidates is not None or index != "jobs_state")
        if candidates is not None:
            # A rare word: the few records that have it, sorted (rowid lookups only).
            sql = (f"SELECT {_BASIC_COLUMNS} FROM jobs NOT INDEXED WHERE id IN "
                   f"(SELECT value FROM json_each(?))")
            return Query(_where(sql, conditions, joined=True) + f" {_NEWEST_FIRST} LIMIT ?",
                         [json.dumps(candidates), *params, limit])
        if len(driving) > 1:
            # Several states: one ordered range scan per state, merged.
            parts = []
            merged_params: list[Any] = []
            for term, term_params in zip(driving, driving_params, strict=True):
                parts.append(_where(f"SELECT id FROM (SELECT id FROM jobs INDEXED BY {index}",
                                    [term, *conditions])
                             + f" {_NEWEST_FIRST} LIMIT ?)")
                merged_params += [*term_params, *params, limit]
            sql = (f"SELECT {_BASIC_COLUMNS} FROM jobs NOT INDEXED WHERE id IN ("
                   + " UNION ALL ".join(parts) + f") {_NEWEST_FIRST} LIMIT ?")
            return Query(sql, [*merged_params, limit])
        sql = _where(f"SELECT {_BASIC_COLUMNS} FROM jobs INDEXED BY {index}",
                     [*driving, *conditions])
        return Query(sql + f" {_NEWEST_FIRST} LIMIT ?",
                     [*(p for group in driving_params for p in group), *params, limit])

    def _text_candidates(self, needle: str) -> list[int] | None:
        """The records holding a word found TEXT_INDEX_LIMIT times at most, or None (no word,
        a common word, or one the trigram index cannot look up)."""
        if len(needle) < MIN_TRIGRAM_LENGTH or "%" in needle or "_" in needle:
            return None
        rows = self.db.execute(
            "SELECT rowid FROM search_index WHERE text LIKE ? LIMIT ?",
            (f"%{needle}%", TEXT_INDEX_LIMIT + 1)).fetchall()
        if len(rows) > TEXT_INDEX_LIMIT:
            return None
        return [row[0] for row in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def _where(select: str, conditions: list[str], joined: bool = False) -> str:
    if not conditions:
        return select
    keyword = " AND " if joined else " WHERE "
    return select + keyword + " AND ".join(conditions)


def _driving_index(f: JobFilter) -> tuple[str, list[str], list[list[Any]]]:
    """The index a filtered list scans, its equality terms (one per scan) and their values."""
    if f.prompt_pack_id:
        return "jobs_pack", ["prompt_pack_id = ? AND prompt_pack_id <> ''"], [[f.prompt_pack_id]]
    if f.states:
        states = sorted(set(f.states))
        return "jobs_state", ["state = ?"] * len(states), [[int(s)] for s in states]
    if f.bookmarked:
        return "jobs_bookmarked", ["bookmarked = 1"], [[]]
    if f.run_mode:
        return "jobs_run_mode", ["run_mode = ?"], [[int(f.run_mode)]]
    if f.prompt_source:
        return "jobs_prompt_source", ["prompt_source = ?"], [[int(f.prompt_source)]]
    if f.source:
        return "jobs_source", ["source = ?"], [[int(f.source)]]
    return "jobs_created", [], []


def _conditions(f: JobFilter, after: tuple[int, str] | None, text: bool,
                states: bool) -> tuple[list[str], list[Any]]:
    """The filters as row conditions: all but the states when the scan is per state, and the
    text when the trigram index chose the candidates."""
    conditions: list[str] = []
    params: list[Any] = []
    if states and f.states:
        unique = sorted({int(state) for state in f.states})
        conditions.append(f"state IN ({', '.join('?' * len(unique))})")
        params += unique
    for column, value in (("run_mode", f.run_mode), ("source", f.source),
                          ("prompt_source", f.prompt_source)):
        if value:
            conditions.append(f"{column} = ?")
            params.append(int(value))
    if f.prompt_pack_id:
        conditions.append("prompt_pack_id = ?")
        params.append(f.prompt_pack_id)
    if f.bookmarked is not None:
        conditions.append("bookmarked = ?")
        params.append(int(f.bookmarked))
    if f.created_after is not None:
        conditions.append("create_time >= ?")
        params.append(to_micros(f.created_after))
    if f.created_before is not None:
        conditions.append("create_time < ?")
        params.append(to_micros(f.created_before))
    if after is not None:
        conditions.append("(create_time, job_id) < (?, ?)")
        params += [after[0], after[1]]
    if text and f.needle:
        conditions.append("instr((SELECT text FROM search WHERE job_ref = jobs.id), ?) > 0")
        params.append(f.needle)
    return conditions, params


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
    def reader(self) -> Iterator[Reader]:
        with self._slots:
            try:
                connection = self._idle.get_nowait()
            except queue.Empty:
                connection = self._open()
            try:
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


class HistoryStore(Reader):
    """The writer connection (every write goes through here, under the core's lock) and the
    read pool."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.path = path
        if path.is_dir():
            raise StartupError(f"cannot open database {path}: it is a directory")
        super().__init__(open_database(path, MIGRATIONS, synchronous))
        self.db.row_factory = sqlite3.Row
        try:
            self._prepare()
        except sqlite3.DatabaseError as error:
            self.db.close()
            raise StartupError(f"cannot use database {path}: {error}") from None
        self.pool = ReadPool(path)

    def _prepare(self) -> None:
        """Incremental auto-vacuum (it only takes effect on a database created with it, or
        after a VACUUM), and a write, so an unwritable file fails now rather than on the first
        event."""
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
            self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.db.execute("VACUUM")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("INSERT INTO meta VALUES ('opened', datetime('now')) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.pool.close()
        self.db.close()

    # --- meta -----------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                        "value = excluded.value", (key, value))

    def set_cursor(self, sequence: int) -> None:
        self.set_meta("cursor", str(sequence))

    def record_gap(self, first: int, last: int, now: datetime) -> None:
        self.db.execute("INSERT INTO gaps VALUES (?, ?, ?)", (first, last, to_micros(now)))

    # --- writes ---------------------------------------------------------------------------

    def insert_job(self, job: Job, provenance: int = PROVENANCE_QUEUE,
                   text: str = "") -> int:
        cursor = self.db.execute(_INSERT_JOB, job_to_row(job, provenance))
        ref = int(cursor.lastrowid or 0)
        if job.entries:
            self.db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [entry_row(ref, entry) for entry in job.entries])
        if job.results:
            self.replace_results(ref, job.results)
        if text:
            self.db.execute("INSERT INTO search VALUES (?, ?)", (ref, text))
        return ref

    def update_job(self, ref: int, job: Job) -> None:
        row = job_to_row(job)
        self.db.execute(_UPDATE_JOB, {"id": ref, **{name: row[name] for name in _MUTABLE}})

    def set_search_text(self, ref: int, text: str) -> None:
        if text:
            self.db.execute("INSERT INTO search VALUES (?, ?) ON CONFLICT (job_ref) DO UPDATE "
                            "SET text = excluded.text WHERE text <> excluded.text", (ref, text))
        else:
            self.db.execute("DELETE FROM search WHERE job_ref = ?", (ref,))

    def replace_results(self, ref: int, results: list[EntryResult]) -> None:
        self.db.execute("DELETE FROM results WHERE job_ref = ?", (ref,))
        self.db.execute("DELETE FROM images WHERE job_ref = ?", (ref,))
        result_out, images_out = result_rows(ref, results)
        self.db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            result_out)
        self.db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            images_out)

    def add_transitions(self, ref: int, transitions: Iterable[JobTransition]) -> None:
        self.db.executemany(
            "INSERT INTO transitions (job_ref, sequence, from_state, to_state, time, reason, "
            "runner_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [transition_row(ref, transition) for transition in transitions])

    def add_event(self, sequence: int, ref: int, cut: int, payload: bytes) -> None:
        self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (sequence, ref, cut, payload))

    def set_label_and_bookmark(self, ref: int, label: str, bookmarked: bool,
                               now: datetime) -> None:
        self.db.execute("UPDATE jobs SET label = ?, bookmarked = ?, update_time = ? WHERE id = ?",
                        (label, int(bookmarked), to_micros(now), ref))

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
        for table in ("entries", "results", "images", "transitions", "events", "search"):
            self.db.execute(f"DELETE FROM {table} WHERE job_ref IN ({marks})", list(refs))
        self.db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", list(refs))
        return [str(row[0]) for row in rows]

    def prune_candidates(self, states: Sequence[JobState], older_than: datetime | None,
                         keep_bookmarked: bool, limit: int) -> list[int]:
        """Up to `limit` records to prune, oldest first (one index range scan per state)."""
        refs: list[tuple[int, str, int]] = []
        for state in sorted(set(states)):
            sql, params = _prunable(state, "create_time, job_id, id", older_than,
                                    keep_bookmarked)
            rows = self.db.execute(sql + " ORDER BY create_time, job_id LIMIT ?",
                                   [*params, limit]).fetchall()
            refs += [(row[0], row[1], row[2]) for row in rows]
        refs.sort()
        return [ref for _, _, ref in refs[:limit]]

    def count_prunable(self, states: Sequence[JobState], older_than: datetime | None,
                       keep_bookmarked: bool) -> int:
        total = 0
        for state in sorted(set(states)):
            sql, params = _prunable(state, "COUNT(*)", older_than, keep_bookmarked)
            total += int(self.db.execute(sql, params).fetchone()[0])
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

    # --- bulk load (benchmarks, seeding) ----------------------------------------------------

    def bulk_insert(self, records: Sequence[BulkRecord]) -> None:
        """Insert many records at once, inside the caller's transaction (executemany per
        table; an entry object shared by several jobs is encoded once)."""
        first = int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]) + 1
        rows, entry_rows, result_out, images_out, transition_out = [], [], [], [], []
        search_out, event_out = [], []
        blobs: dict[int, bytes] = {}
        for ref, record in enumerate(records, start=first):
            job = record.job
            row = job_to_row(job)
            row["id"] = ref
            rows.append(row)
            for entry in job.entries:
                blob = blobs.get(id(entry))
                if blob is None:
                    blob = blobs[id(entry)] = codec.encode_entry(entry)
                origin = entry.origin
                entry_rows.append((ref, entry.index, origin.prompt_pack_id, origin.pack_name,
                                   origin.row_index, entry.prompt, _stages(entry.stage_plan),
                                   entry.config_hash, blob))
            results, images = result_rows(ref, job.results)
            result_out += results
            images_out += images
            transition_out += [transition_row(ref, t) for t in record.transitions]
            if record.text:
                search_out.append((ref, record.text))
            event_out += [(sequence, ref, cut, payload)
                          for sequence, cut, payload in record.events]
        self.db.executemany(_INSERT_JOB_WITH_ID, rows)
        self.db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entry_rows)
        self.db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            result_out)
        self.db.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            images_out)
        self.db.executemany(
            "INSERT INTO transitions (job_ref, sequence, from_state, to_state, time, reason, "
            "runner_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", transition_out)
        self.db.executemany("INSERT INTO search VALUES (?, ?)", search_out)
        self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", event_out)


def _prunable(state: JobState, columns: str, older_than: datetime | None,
              keep_bookmarked: bool) -> tuple[str, list[Any]]:
    """The records of one state that pruning may remove (a range scan of jobs_state)."""
    sql = f"SELECT {columns} FROM jobs INDEXED BY jobs_state WHERE state = ?"
    params: list[Any] = [int(state)]
    if older_than is not None:
        sql += " AND create_time < ?"
        params.append(to_micros(older_than))
    if keep_bookmarked:
        sql += " AND bookmarked = 0"
    return sql, params


@dataclass
class BulkRecord:
    """One record for bulk_insert: the job (entries and results included), its transitions,
    its search text and its stored events (sequence, cut, payload)."""

    job: Job
    transitions: list[JobTransition]
    text: str = ""
    events: list[tuple[int, int, bytes]] = field(default_factory=list)

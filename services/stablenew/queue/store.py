"""The queue's SQLite store: jobs with their run order and leases, the event log, durable
consumers' acknowledgements, runners, and queue settings. Rows in, domain objects out.

One connection, used by one thread at a time (the core holds its lock around every call).
Every time is stored as INTEGER microseconds since the epoch, UTC (stablenew.contract.job_row,
which also encodes the columns a job shares with the history); the core's float seconds
(time.time(), lease deadlines) are converted here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stablenew.contract.job_row import from_micros, job_columns, job_from_columns, to_micros
from stablenew.contract.model import JobState, WebuiState
from stablenew.queue import codec
from stablenew.queue.domain import (
    Consumer,
    LeaseState,
    QueuedJob,
    RunnerInfo,
    RunnerRecord,
    RunOrder,
)
from stablenew.runtime.sqlite_db import open_database
from stablenew.v1 import job_pb2

MICROS_PER_SECOND = 1_000_000


def _micros_sql(column: str) -> str:
    """SQL turning a REAL seconds column into INTEGER microseconds (NULL stays NULL)."""
    return f"CAST(round({column} * {MICROS_PER_SECOND}) AS INTEGER)"


MIGRATIONS = [
    """
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        state INTEGER NOT NULL,
        run_mode INTEGER NOT NULL,
        source INTEGER NOT NULL,
        prompt_source INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        draft_id TEXT NOT NULL,
        draft_revision INTEGER NOT NULL,
        retry_of_job_id TEXT NOT NULL,
        priority INTEGER NOT NULL,
        label TEXT NOT NULL,
        stage_count INTEGER NOT NULL,
        has_adetailer INTEGER NOT NULL,
        has_upscale INTEGER NOT NULL,
        config_hash TEXT NOT NULL,
        create_time REAL NOT NULL,
        start_time REAL,
        complete_time REAL,
        update_time REAL NOT NULL,
        error_message TEXT NOT NULL,
        payload_summary TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        entry_count INTEGER NOT NULL,
        estimated_images INTEGER NOT NULL,
        required_models TEXT NOT NULL,
        preferred_model TEXT NOT NULL,
        entries BLOB NOT NULL,
        results BLOB NOT NULL,
        lane INTEGER NOT NULL,
        priority_rank INTEGER NOT NULL,
        order_key REAL NOT NULL,
        lease_id TEXT NOT NULL,
        lease_deadline REAL NOT NULL,
        finished_by_lease_id TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL,
        return_to_queue INTEGER NOT NULL,
        request_id TEXT UNIQUE
    );
    CREATE INDEX jobs_queued_order ON jobs (lane, priority_rank, order_key, job_id)
        WHERE state = 1;
    CREATE INDEX jobs_running ON jobs (lease_deadline) WHERE state = 2;
    CREATE INDEX jobs_finished ON jobs (complete_time) WHERE state >= 3;
    CREATE TABLE events (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        job_id TEXT NOT NULL,
        is_progress INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX events_time ON events (time);
    CREATE TABLE consumers (
        consumer_id TEXT PRIMARY KEY,
        acked_sequence INTEGER NOT NULL,
        update_time REAL NOT NULL
    );
    CREATE TABLE runners (
        runner_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        address TEXT NOT NULL,
        models TEXT NOT NULL,
        loaded_model TEXT NOT NULL,
        last_heartbeat REAL NOT NULL,
        current_job_id TEXT NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: every time as INTEGER microseconds since the epoch (was REAL seconds), the encoding the
    # history uses too. Each table is rebuilt (a REAL column would turn integers back into
    # floats); the event log keeps its AUTOINCREMENT position, so no sequence is ever reused.
    f"""
    CREATE TABLE jobs_v2 (
        job_id TEXT PRIMARY KEY,
        state INTEGER NOT NULL,
        run_mode INTEGER NOT NULL,
        source INTEGER NOT NULL,
        prompt_source INTEGER NOT NULL,
        prompt_pack_id TEXT NOT NULL,
        draft_id TEXT NOT NULL,
        draft_revision INTEGER NOT NULL,
        retry_of_job_id TEXT NOT NULL,
        priority INTEGER NOT NULL,
        label TEXT NOT NULL,
        stage_count INTEGER NOT NULL,
        has_adetailer INTEGER NOT NULL,
        has_upscale INTEGER NOT NULL,
        config_hash TEXT NOT NULL,
        create_time INTEGER NOT NULL,
        start_time INTEGER,
        complete_time INTEGER,
        update_time INTEGER NOT NULL,
        error_message TEXT NOT NULL,
        payload_summary TEXT NOT NULL,
        runner_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        entry_count INTEGER NOT NULL,
        estimated_images INTEGER NOT NULL,
        required_models TEXT NOT NULL,
        preferred_model TEXT NOT NULL,
        entries BLOB NOT NULL,
        results BLOB NOT NULL,
        lane INTEGER NOT NULL,
        priority_rank INTEGER NOT NULL,
        order_key REAL NOT NULL,
        lease_id TEXT NOT NULL,
        lease_deadline INTEGER NOT NULL,
        finished_by_lease_id TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL,
        return_to_queue INTEGER NOT NULL,
        request_id TEXT UNIQUE
    );
    INSERT INTO jobs_v2 SELECT job_id, state, run_mode, source, prompt_source, prompt_pack_id,
        draft_id, draft_revision, retry_of_job_id, priority, label, stage_count, has_adetailer,
        has_upscale, config_hash, {_micros_sql("create_time")}, {_micros_sql("start_time")},
        {_micros_sql("complete_time")}, {_micros_sql("update_time")}, error_message,
        payload_summary, runner_id, attempt, metadata, entry_count, estimated_images,
        required_models, preferred_model, entries, results, lane, priority_rank, order_key,
        lease_id, {_micros_sql("lease_deadline")}, finished_by_lease_id, cancel_requested,
        return_to_queue, request_id FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v2 RENAME TO jobs;
    CREATE INDEX jobs_queued_order ON jobs (lane, priority_rank, order_key, job_id)
        WHERE state = 1;
    CREATE INDEX jobs_running ON jobs (lease_deadline) WHERE state = 2;
    CREATE INDEX jobs_finished ON jobs (complete_time) WHERE state >= 3;

    CREATE TABLE events_v2 (
        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        is_progress INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    INSERT INTO events_v2 SELECT sequence, {_micros_sql("time")}, job_id, is_progress, payload
        FROM events;
    -- The last sequence handed out, which may be past every event left after pruning.
    DELETE FROM sqlite_sequence WHERE name = 'events_v2';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'events_v2', seq FROM sqlite_sequence WHERE name = 'events';
    DROP TABLE events;
    ALTER TABLE events_v2 RENAME TO events;
    CREATE INDEX events_time ON events (time);

    CREATE TABLE consumers_v2 (
        consumer_id TEXT PRIMARY KEY,
        acked_sequence INTEGER NOT NULL,
        update_time INTEGER NOT NULL
    );
    INSERT INTO consumers_v2 SELECT consumer_id, acked_sequence, {_micros_sql("update_time")}
        FROM consumers;
    DROP TABLE consumers;
    ALTER TABLE consumers_v2 RENAME TO consumers;

    CREATE TABLE runners_v2 (
        runner_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        address TEXT NOT NULL,
        models TEXT NOT NULL,
        loaded_model TEXT NOT NULL,
        last_heartbeat INTEGER NOT NULL,
        current_job_id TEXT NOT NULL
    );
    INSERT INTO runners_v2 SELECT runner_id, host, address, models, loaded_model,
        {_micros_sql("last_heartbeat")}, current_job_id FROM runners;
    DROP TABLE runners;
    ALTER TABLE runners_v2 RENAME TO runners;
    """,
    # 3: what a runner's WebUI offers, as announced (a serialized stablenew.v1.Capabilities).
    "ALTER TABLE runners ADD COLUMN capabilities BLOB NOT NULL DEFAULT x'';",
    # 4: consumers are created explicitly (CreateConsumer): when, and by which request id. A
    # consumer registered implicitly before counts as created at its last activity.
    """
    ALTER TABLE consumers ADD COLUMN create_time INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE consumers ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
    UPDATE consumers SET create_time = update_time;
    """,
    # 5: the state of a runner's WebUI, as announced (a stablenew.v1.WebuiState number).
    "ALTER TABLE runners ADD COLUMN webui_state INTEGER NOT NULL DEFAULT 0;",
    # 6: the job a runner holds ahead (not started), and whether it shut down cleanly.
    """
    ALTER TABLE runners ADD COLUMN held_job_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE runners ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
    """,
]

# Columns of a BASIC read: everything but the entries and results blobs.
_BASIC_COLUMNS = """job_id, state, run_mode, source, prompt_source, prompt_pack_id, draft_id,
    draft_revision, retry_of_job_id, priority, label, stage_count, has_adetailer, has_upscale,
    config_hash, create_time, start_time, complete_time, update_time, error_message,
    payload_summary, runner_id, attempt, metadata, entry_count, estimated_images,
    required_models, preferred_model, lane, priority_rank, order_key, lease_id, lease_deadline,
    finished_by_lease_id, cancel_requested, return_to_queue, request_id"""
_FULL_COLUMNS = _BASIC_COLUMNS + ", entries, results"
# Run order, all ascending so that the keyset comparison uses jobs_queued_order.
_RUN_ORDER_LIST = "lane, priority_rank, order_key, job_id"
_RUN_ORDER = f"({_RUN_ORDER_LIST})"
_RUN_ORDER_DESC = "lane DESC, priority_rank DESC, order_key DESC, job_id DESC"


_CONSUMER_COLUMNS = "consumer_id, acked_sequence, create_time, update_time, request_id"


def _consumer_from_row(row: sqlite3.Row) -> Consumer:
    return Consumer(consumer_id=row["consumer_id"], acknowledged_sequence=row["acked_sequence"],
                    create_time=from_micros(row["create_time"]),
                    last_active_time=from_micros(row["update_time"]),
                    request_id=row["request_id"])


def running_key(queued: QueuedJob) -> tuple[int, str]:
    """A running job's keyset position in start order (start time in microseconds, job id)."""
    return to_micros(queued.job.start_time) or 0, queued.job.job_id


def run_order_key(queued: QueuedJob) -> tuple[int, int, float, str]:
    order = queued.order
    return order.lane, order.priority_rank, order.order_key, queued.job.job_id


def _micros(seconds: float) -> int:
    """A time.time()-style float of seconds as stored."""
    return round(seconds * MICROS_PER_SECOND)


def _now_micros() -> int:
    return _micros(time.time())


def _job_from_row(row: sqlite3.Row) -> QueuedJob:
    job = job_from_columns(row)
    columns = row.keys()  # (`in row` would look at the values)
    stored_entries = b""
    if "entries" in columns:
        stored_entries = row["entries"]  # decoded only when needed (QueuedJob.stored_entries)
        job.results = codec.decode_results(row["results"])
    return QueuedJob(
        job=job,
        order=RunOrder(row["lane"], row["priority_rank"], row["order_key"]),
        lease=LeaseState(row["lease_id"], row["lease_deadline"] / MICROS_PER_SECOND,
                         row["finished_by_lease_id"]),
        return_to_queue=bool(row["return_to_queue"]),
        request_id=row["request_id"] or "",
        required_models=tuple(json.loads(row["required_models"])),
        preferred_model=row["preferred_model"],
        stored_entries=stored_entries,
    )


def _job_to_row(queued: QueuedJob) -> dict[str, Any]:
    return {
        **job_columns(queued.job),
        "required_models": json.dumps(list(queued.required_models)),
        "preferred_model": queued.preferred_model,
        "lane": queued.order.lane,
        "priority_rank": queued.order.priority_rank,
        "order_key": queued.order.order_key,
        "lease_id": queued.lease.lease_id,
        "lease_deadline": _micros(queued.lease.deadline),
        "finished_by_lease_id": queued.lease.finished_by_lease_id,
        "return_to_queue": int(queued.return_to_queue),
        "request_id": queued.request_id or None,
    }


class QueueStore:
    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.db = open_database(path, MIGRATIONS, synchronous)
        self.db.row_factory = sqlite3.Row
        self._last_order_key: float | None = None
        self.last_sequence = 0
        self.reload_last_sequence()

    def close(self) -> None:
        self.db.close()

    # --- jobs ---------------------------------------------------------------------------

    def insert_job(self, queued: QueuedJob, encoded_entries: bytes) -> None:
        row = _job_to_row(queued)
        row["entries"] = encoded_entries
        row["results"] = codec.encode_results(queued.job.results)
        columns = ", ".join(row)
        placeholders = ", ".join(f":{name}" for name in row)
        self.db.execute(f"INSERT INTO jobs ({columns}) VALUES ({placeholders})", row)

    def update_job(self, queued: QueuedJob, with_results: bool = False) -> None:
        """Write every mutable column (the entries never change after submit)."""
        row = _job_to_row(queued)
        if with_results:
            row["results"] = codec.encode_results(queued.job.results)
        assignments = ", ".join(f"{name} = :{name}" for name in row if name != "job_id")
        self.db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = :job_id", row)

    def get_job(self, job_id: str, full: bool) -> QueuedJob | None:
        columns = _FULL_COLUMNS if full else _BASIC_COLUMNS
        row = self.db.execute(f"SELECT {columns} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _job_from_row(row)

    def job_id_for_request(self, request_id: str) -> str | None:
        row = self.db.execute(
            "SELECT job_id FROM jobs WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else str(row["job_id"])

    def running_jobs(self, limit: int, full: bool = False,
                     after: tuple[int, str] | None = None) -> list[QueuedJob]:
        """Running jobs in start order, after a keyset position (running_key)."""
        columns = _FULL_COLUMNS if full else _BASIC_COLUMNS
        where, params = "state = 2", []
        if after is not None:
            where, params = "state = 2 AND (start_time, job_id) > (?, ?)", list(after)
        rows = self.db.execute(
            f"SELECT {columns} FROM jobs WHERE {where} ORDER BY start_time, job_id LIMIT ?",
            (*params, limit)).fetchall()
        return [_job_from_row(row) for row in rows]

    def running_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM jobs WHERE state = 2").fetchone()[0])

    def running_position(self, queued: QueuedJob) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE state = 2 AND (start_time, job_id) < (?, ?)",
            (to_micros(queued.job.start_time), queued.job.job_id)).fetchone()
        return int(row[0])

    def queued_group_counts(self) -> dict[tuple[int, int], int]:
        rows = self.db.execute(
            "SELECT lane, priority_rank, COUNT(*) FROM jobs WHERE state = 1 "
            "GROUP BY lane, priority_rank").fetchall()
        return {(int(row[0]), int(row[1])): int(row[2]) for row in rows}

    def count_ahead_in_group(self, queued: QueuedJob) -> int:
        """Queued jobs of the same lane and rank that run before `queued`."""
        order = queued.order
        row = self.db.execute(
            """SELECT COUNT(*) FROM jobs WHERE state = 1 AND lane = ? AND priority_rank = ?
               AND (order_key, job_id) < (?, ?)""",
            (order.lane, order.priority_rank, order.order_key, queued.job.job_id)).fetchone()
        return int(row[0])

    def expired_leases(self, now: float) -> list[QueuedJob]:
        rows = self.db.execute(
            f"SELECT {_BASIC_COLUMNS} FROM jobs WHERE state = 2 AND lease_deadline < ?",
            (_micros(now),)).fetchall()
        return [_job_from_row(row) for row in rows]

    def queued_in_order(
        self, after: tuple[int, int, float, str] | None, limit: int, lanes: tuple[int, ...],
        full: bool = False,
    ) -> list[QueuedJob]:
        """Queued jobs in run order, after a keyset position (lane, rank, order key, job id)."""
        lane_list = ", ".join(str(int(lane)) for lane in lanes)
        columns = _FULL_COLUMNS if full else _BASIC_COLUMNS
        sql = f"SELECT {columns} FROM jobs WHERE state = 1 AND lane IN ({lane_list})"
        params: list[Any] = []
        if after is not None:
            sql += f" AND {_RUN_ORDER} > (?, ?, ?, ?)"
            params = list(after)
        sql += f" ORDER BY {_RUN_ORDER_LIST} LIMIT ?"
        params.append(limit)
        return [_job_from_row(row) for row in self.db.execute(sql, params).fetchall()]

    def queued_heads(self, limit: int, lanes: tuple[int, ...],
                     ) -> list[tuple[tuple[int, int, float, str], tuple[str, ...]]]:
        """The run-order key and required models of the first `limit` queued jobs: all a
        heartbeat needs to tell whether one comes before the leased job (no job decoded)."""
        lane_list = ", ".join(str(int(lane)) for lane in lanes)
        rows = self.db.execute(
            f"""SELECT {_RUN_ORDER_LIST}, required_models FROM jobs
               WHERE state = 1 AND lane IN ({lane_list}) ORDER BY {_RUN_ORDER_LIST} LIMIT ?""",
            (limit,)).fetchall()
        return [((row[0], row[1], row[2], row[3]), tuple(json.loads(row[4]))) for row in rows]

    def queue_neighbours(self, queued: QueuedJob) -> tuple[QueuedJob | None, QueuedJob | None]:
        """The queued jobs right before and right after `queued` in its lane."""
        key = run_order_key(queued)
        before = self.db.execute(
            f"""SELECT {_BASIC_COLUMNS} FROM jobs WHERE state = 1 AND lane = ?
                AND {_RUN_ORDER} < (?, ?, ?, ?)
                ORDER BY {_RUN_ORDER_DESC} LIMIT 1""",
            (key[0], *key),
        ).fetchone()
        after = self.db.execute(
            f"""SELECT {_BASIC_COLUMNS} FROM jobs WHERE state = 1 AND lane = ?
                AND {_RUN_ORDER} > (?, ?, ?, ?) ORDER BY {_RUN_ORDER_LIST} LIMIT 1""",
            (key[0], *key),
        ).fetchone()
        return (None if before is None else _job_from_row(before),
                None if after is None else _job_from_row(after))

    def lane_bounds(self, lane: int) -> tuple[int, float, int, float] | None:
        """(first rank, smallest key in it, last rank, largest key in it) of a lane's queued
        jobs. The first counts leased jobs too: a runner may hold one ahead, not started, and
        a job put first (MoveJob FRONT, "Run now") goes before it (the heartbeat tells the
        runner, which gives the held job back)."""
        first = min((tuple(row) for state in (1, 2) for row in self.db.execute(
            f"""SELECT priority_rank, order_key FROM jobs WHERE state = ? AND lane = ?
               ORDER BY {_RUN_ORDER_LIST} LIMIT 1""", (state, lane))), default=None)
        last = self.db.execute(
            f"""SELECT priority_rank, order_key FROM jobs WHERE state = 1 AND lane = ?
               ORDER BY {_RUN_ORDER_DESC} LIMIT 1""",
            (lane,)).fetchone()
        if first is None or last is None:
            return None
        return first[0], first[1], last[0], last[1]

    def renumber_lane(self, lane: int) -> None:
        """Spread the order keys of a lane back out to whole numbers (after many moves)."""
        rows = self.db.execute(
            f"SELECT job_id FROM jobs WHERE state = 1 AND lane = ? ORDER BY {_RUN_ORDER_LIST}",
            (lane,)).fetchall()
        self.db.executemany(
            "UPDATE jobs SET order_key = ? WHERE job_id = ?",
            [(float(index), row["job_id"]) for index, row in enumerate(rows)],
        )

    def next_order_key(self) -> float:
        """A key after every job ever queued: FIFO for new submissions.

        Kept in memory (one writer) so a submit never scans the table for the maximum.
        """
        if self._last_order_key is None:
            row = self.db.execute("SELECT MAX(order_key) FROM jobs").fetchone()
            self._last_order_key = float(row[0]) if row[0] is not None else 0.0
        self._last_order_key = max(self._last_order_key, 0.0) + 1.0
        return self._last_order_key

    def state_counts(self) -> dict[JobState, int]:
        rows = self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {JobState(row[0]): int(row[1]) for row in rows}

    def queued_by_models(self) -> list[tuple[tuple[str, ...], int, int]]:
        """(required models, jobs, images) of the queued jobs, per distinct set of models."""
        # TOTAL: a float, where SUM raises on an integer overflow.
        rows = self.db.execute(
            "SELECT required_models, COUNT(*), TOTAL(estimated_images) FROM jobs "
            "WHERE state = 1 GROUP BY required_models").fetchall()
        return [(tuple(json.loads(row[0])), int(row[1]), int(row[2])) for row in rows]

    def recent_seconds_per_image(self, sample: int = 50) -> float | None:
        row = self.db.execute(
            """SELECT TOTAL(complete_time - start_time), TOTAL(estimated_images) FROM (
                 SELECT complete_time, start_time, estimated_images FROM jobs
                 WHERE state = 3 AND start_time IS NOT NULL
                 ORDER BY complete_time DESC LIMIT ?)""", (sample,)).fetchone()
        if not row[1]:
            return None
        return float(row[0]) / MICROS_PER_SECOND / float(row[1])

    def delete_finished_before(self, cutoff: float) -> int:
        cursor = self.db.execute("DELETE FROM jobs WHERE state >= 3 AND complete_time < ?",
                                 (_micros(cutoff),))
        return cursor.rowcount

    # --- events ---------------------------------------------------------------------------

    def append_event(self, event: job_pb2.JobEvent, is_progress: bool = False) -> bytes:
        """Give the event the next sequence and store it; call inside a transaction. Returns
        the stored payload (the event serialized)."""
        sequence = self.last_sequence + 1
        event.sequence = sequence
        payload = event.SerializeToString()
        self.db.execute(
            "INSERT INTO events (sequence, time, job_id, is_progress, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            (sequence, _now_micros(), event.job_id, int(is_progress), payload),
        )
        self.last_sequence = sequence
        return payload

    def reload_last_sequence(self) -> None:
        """At start and after a rolled-back transaction (which may have handed out sequences
        and order keys): the last sequence on disk."""
        self._last_order_key = None
        self.last_sequence = self.db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'"
        ).fetchone()[0]

    def events_after(self, sequence: int, limit: int) -> list[tuple[int, str, bool, bytes]]:
        rows = self.db.execute(
            "SELECT sequence, job_id, is_progress, payload FROM events WHERE sequence > ? "
            "ORDER BY sequence LIMIT ?", (sequence, limit)).fetchall()
        return [(row[0], row[1], bool(row[2]), row[3]) for row in rows]

    def oldest_sequence(self) -> int:
        row = self.db.execute("SELECT MIN(sequence) FROM events").fetchone()
        return int(row[0]) if row[0] is not None else self.last_sequence + 1

    def delete_events_through(self, sequence: int, older_than: float) -> int:
        cursor = self.db.execute(
            "DELETE FROM events WHERE sequence <= ? AND time < ?",
            (sequence, _micros(older_than)))
        return cursor.rowcount

    # --- consumers --------------------------------------------------------------------------

    def create_consumer(self, consumer: Consumer) -> None:
        self.db.execute(
            "INSERT INTO consumers (consumer_id, acked_sequence, update_time, create_time, "
            "request_id) VALUES (?, ?, ?, ?, ?)",
            (consumer.consumer_id, consumer.acknowledged_sequence,
             to_micros(consumer.last_active_time), to_micros(consumer.create_time),
             consumer.request_id))

    def consumer(self, consumer_id: str) -> Consumer | None:
        row = self.db.execute(f"SELECT {_CONSUMER_COLUMNS} FROM consumers WHERE consumer_id = ?",
                              (consumer_id,)).fetchone()
        return None if row is None else _consumer_from_row(row)

    def consumers_after(self, after_id: str, limit: int) -> list[Consumer]:
        """Consumers by id, after `after_id`."""
        rows = self.db.execute(
            f"SELECT {_CONSUMER_COLUMNS} FROM consumers WHERE consumer_id > ? "
            "ORDER BY consumer_id LIMIT ?", (after_id, limit)).fetchall()
        return [_consumer_from_row(row) for row in rows]

    def delete_consumer(self, consumer_id: str) -> bool:
        cursor = self.db.execute("DELETE FROM consumers WHERE consumer_id = ?", (consumer_id,))
        return cursor.rowcount > 0

    def acknowledge(self, consumer_id: str, sequence: int) -> int | None:
        """The consumer's acknowledged sequence after moving it forward to `sequence` (never
        back); None when there is no such consumer."""
        self.db.execute(
            "UPDATE consumers SET acked_sequence = MAX(acked_sequence, ?), update_time = ? "
            "WHERE consumer_id = ?", (sequence, _now_micros(), consumer_id))
        row = self.db.execute("SELECT acked_sequence FROM consumers WHERE consumer_id = ?",
                              (consumer_id,)).fetchone()
        return None if row is None else int(row[0])

    def touch_consumer(self, consumer_id: str) -> None:
        self.db.execute("UPDATE consumers SET update_time = ? WHERE consumer_id = ?",
                        (_now_micros(), consumer_id))

    def idle_consumers(self, idle_since: float) -> list[str]:
        """The consumers last active before `idle_since` (time.time() seconds)."""
        rows = self.db.execute("SELECT consumer_id FROM consumers WHERE update_time < ? "
                               "ORDER BY consumer_id", (_micros(idle_since),)).fetchall()
        return [str(row[0]) for row in rows]

    def slowest_consumer(self) -> int | None:
        row = self.db.execute("SELECT MIN(acked_sequence) FROM consumers").fetchone()
        return None if row[0] is None else int(row[0])

    # --- runners and settings -------------------------------------------------------------

    def save_runner(self, record: RunnerRecord) -> None:
        info = record.info
        beat = to_micros(record.last_heartbeat_time) or _now_micros()
        self.db.execute(
            """INSERT INTO runners (runner_id, host, address, models, loaded_model,
                 last_heartbeat, current_job_id, capabilities, webui_state, held_job_id,
                 stopped)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (runner_id) DO UPDATE SET host = excluded.host,
                 address = excluded.address, models = excluded.models,
                 loaded_model = excluded.loaded_model, last_heartbeat = excluded.last_heartbeat,
                 current_job_id = excluded.current_job_id,
                 capabilities = excluded.capabilities, webui_state = excluded.webui_state,
                 held_job_id = excluded.held_job_id, stopped = excluded.stopped""",
            (info.runner_id, info.host, info.address, json.dumps(list(info.models)),
             info.loaded_model, beat, record.current_job_id, info.capabilities,
             int(info.webui_state), record.held_job_id, int(info.stopped)),
        )

    def touch_runner(self, record: RunnerRecord) -> None:
        """A known runner's heartbeat time, jobs and loaded model, as `record` has them (not
        what it announces with a lease request: a heartbeat does not write those again)."""
        self.db.execute(
            "UPDATE runners SET last_heartbeat = ?, current_job_id = ?, held_job_id = ?, "
            "loaded_model = ? WHERE runner_id = ?",
            (to_micros(record.last_heartbeat_time), record.current_job_id, record.held_job_id,
             record.info.loaded_model, record.info.runner_id))

    def runners(self) -> Iterator[RunnerRecord]:
        for row in self.db.execute("SELECT * FROM runners ORDER BY runner_id"):
            capabilities = bytes(row["capabilities"])
            info = RunnerInfo(row["runner_id"], row["host"], tuple(json.loads(row["models"])),
                              row["loaded_model"], row["address"], capabilities,
                              codec.checkpoint_names(capabilities),
                              WebuiState(row["webui_state"]), bool(row["stopped"]))
            yield RunnerRecord(info, from_micros(row["last_heartbeat"]), row["current_job_id"],
                               row["held_job_id"])

    def setting(self, key: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                        "value = excluded.value", (key, value))

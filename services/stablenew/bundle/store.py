"""The bundle's SQLite store: drafts, their parts in order, and the enqueues already done
(so a retried EnqueueDraft never submits twice). Rows in, domain objects out."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from stablenew.bundle.domain import DraftPart, DraftRecord, ManualPart, PackRowPart
from stablenew.contract.model import PipelineConfig
from stablenew.contract.proto_mapping import from_proto, to_proto
from stablenew.runtime.paging import stored_secret
from stablenew.runtime.sqlite_db import Transaction, open_database
from stablenew.v1 import pipeline_pb2

MIGRATIONS = [
    """
    CREATE TABLE drafts (
        draft_id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        create_time REAL NOT NULL,
        update_time REAL NOT NULL,
        request_id TEXT UNIQUE
    );
    CREATE TABLE parts (
        draft_id TEXT NOT NULL REFERENCES drafts (draft_id) ON DELETE CASCADE,
        part_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        prompt TEXT NOT NULL,
        negative_prompt TEXT NOT NULL,
        pack_id TEXT NOT NULL,
        row_index INTEGER NOT NULL,
        prepend_text TEXT NOT NULL,
        config BLOB NOT NULL,
        input_images TEXT NOT NULL,
        PRIMARY KEY (draft_id, part_id)
    );
    CREATE INDEX parts_order ON parts (draft_id, position);
    CREATE TABLE enqueues (
        draft_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        request_id TEXT,
        job_id TEXT NOT NULL,
        PRIMARY KEY (draft_id, revision)
    );
    CREATE UNIQUE INDEX enqueues_request ON enqueues (request_id) WHERE request_id IS NOT NULL;
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE part_requests (
        draft_id TEXT NOT NULL REFERENCES drafts (draft_id) ON DELETE CASCADE,
        request_id TEXT NOT NULL,
        part_ids TEXT NOT NULL,
        PRIMARY KEY (draft_id, request_id)
    );
    """,
    # Which versions of its pack files a draft's revision read (see BundleCore.get_draft).
    "ALTER TABLE drafts ADD COLUMN pack_stamp TEXT NOT NULL DEFAULT '';",
]


def _config_blob(config: PipelineConfig) -> bytes:
    message: pipeline_pb2.PipelineConfig = to_proto(config)
    return message.SerializeToString()


def _config(blob: bytes) -> PipelineConfig:
    return from_proto(PipelineConfig, pipeline_pb2.PipelineConfig.FromString(blob))


def _part_row(part: DraftPart) -> dict[str, object]:
    if isinstance(part, ManualPart):
        return {"kind": "manual", "prompt": part.prompt, "negative_prompt": part.negative_prompt,
                "pack_id": "", "row_index": 0, "prepend_text": "",
                "config": _config_blob(part.config), "input_images": json.dumps(part.input_images)}
    return {"kind": "pack", "prompt": "", "negative_prompt": "", "pack_id": part.pack_id,
            "row_index": part.row_index, "prepend_text": part.prepend_text,
            "config": _config_blob(part.config_overrides),
            "input_images": json.dumps(part.input_images)}


def _part(row: sqlite3.Row) -> DraftPart:
    images = json.loads(row["input_images"])
    if row["kind"] == "manual":
        return ManualPart(row["part_id"], row["prompt"], row["negative_prompt"],
                          _config(row["config"]), images)
    return PackRowPart(row["part_id"], row["pack_id"], row["row_index"], row["prepend_text"],
                       _config(row["config"]), images)


class BundleStore:
    """Drafts, parts, enqueues and settings in one SQLite file; every method but `close`
    runs inside the caller's `transaction()` or as one statement of its own."""

    def __init__(self, path: Path, synchronous: str = "NORMAL") -> None:
        self.db = open_database(path, MIGRATIONS, synchronous)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        """Close the database (the last connection checkpoints the WAL)."""
        self.db.close()

    def transaction(self) -> Transaction:
        """One transaction: `with store.transaction(): ...` commits, or rolls back on error."""
        return Transaction(self.db)

    def page_token_secret(self) -> bytes:
        """The secret that signs this database's page tokens, made on first use and kept."""
        return stored_secret(self.db, self.setting, self.set_setting)

    def insert_draft(self, draft_id: str, display_name: str, request_id: str,
                     pack_stamp: str) -> None:
        """A new draft at revision 1."""
        now = time.time()
        self.db.execute("INSERT INTO drafts (draft_id, display_name, revision, create_time, "
                        "update_time, request_id, pack_stamp) VALUES (?, ?, 1, ?, ?, ?, ?)",
                        (draft_id, display_name, now, now, request_id or None, pack_stamp))

    def draft_for_request(self, request_id: str) -> str | None:
        """The draft an earlier CreateDraft with `request_id` made, if any."""
        row = self.db.execute("SELECT draft_id FROM drafts WHERE request_id = ?",
                              (request_id,)).fetchone()
        return None if row is None else str(row[0])

    def get_draft(self, draft_id: str) -> DraftRecord | None:
        """The draft with its parts in order, or None."""
        row = self.db.execute("SELECT * FROM drafts WHERE draft_id = ?", (draft_id,)).fetchone()
        if row is None:
            return None
        parts = [_part(part) for part in self.db.execute(
            "SELECT * FROM parts WHERE draft_id = ? ORDER BY position", (draft_id,))]
        return DraftRecord(row["draft_id"], row["display_name"], row["revision"],
                           row["create_time"], row["update_time"], parts, row["pack_stamp"])

    def draft_ids_after(self, after: str, limit: int) -> list[str]:
        """Up to `limit` draft ids after `after`, in id order."""
        rows = self.db.execute(
            "SELECT draft_id FROM drafts WHERE draft_id > ? ORDER BY draft_id LIMIT ?",
            (after, limit)).fetchall()
        return [str(row[0]) for row in rows]

    def add_parts(self, draft_id: str, parts: list[DraftPart]) -> None:
        """Append `parts` after the draft's last part."""
        row = self.db.execute("SELECT COALESCE(MAX(position), -1) FROM parts WHERE draft_id = ?",
                              (draft_id,)).fetchone()
        start = int(row[0]) + 1
        for offset, part in enumerate(parts):
            values = _part_row(part) | {"draft_id": draft_id, "part_id": part.part_id,
                                        "position": start + offset}
            columns = ", ".join(values)
            self.db.execute(f"INSERT INTO parts ({columns}) VALUES "
                            f"({', '.join(':' + name for name in values)})", values)

    def remove_part(self, draft_id: str, part_id: str) -> bool:
        """Remove one part; False when the draft has no such part."""
        cursor = self.db.execute("DELETE FROM parts WHERE draft_id = ? AND part_id = ?",
                                 (draft_id, part_id))
        return cursor.rowcount > 0

    def clear_parts(self, draft_id: str) -> None:
        """Remove every part of the draft."""
        self.db.execute("DELETE FROM parts WHERE draft_id = ?", (draft_id,))

    def bump_revision(self, draft_id: str, pack_stamp: str) -> None:
        """The next revision of the draft, making what `pack_stamp` says."""
        self.db.execute("UPDATE drafts SET revision = revision + 1, update_time = ?, "
                        "pack_stamp = ? WHERE draft_id = ?", (time.time(), pack_stamp, draft_id))

    def set_stamp(self, draft_id: str, pack_stamp: str) -> None:
        """Record what the draft's revision makes, the first time it is read."""
        self.db.execute("UPDATE drafts SET pack_stamp = ? WHERE draft_id = ?",
                        (pack_stamp, draft_id))

    def enqueued_job(self, draft_id: str, revision: int, request_id: str) -> str | None:
        """The job an earlier enqueue of this revision (or this request id) created."""
        row = self.db.execute(
            "SELECT job_id FROM enqueues WHERE (draft_id = ? AND revision = ?) "
            "OR (request_id IS NOT NULL AND request_id = ?)",
            (draft_id, revision, request_id or None)).fetchone()
        return None if row is None else str(row[0])

    def record_enqueue(self, draft_id: str, revision: int, request_id: str, job_id: str) -> None:
        """Remember that this revision (and request id) was queued as `job_id`."""
        self.db.execute("INSERT INTO enqueues VALUES (?, ?, ?, ?)",
                        (draft_id, revision, request_id or None, job_id))

    def parts_for_request(self, draft_id: str, request_id: str) -> list[str] | None:
        """The part ids an earlier AddPart/AddPackParts with `request_id` added, if any."""
        row = self.db.execute(
            "SELECT part_ids FROM part_requests WHERE draft_id = ? AND request_id = ?",
            (draft_id, request_id)).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def record_part_request(self, draft_id: str, request_id: str, part_ids: list[str]) -> None:
        """Remember the part ids a request with `request_id` added."""
        self.db.execute("INSERT INTO part_requests VALUES (?, ?, ?)",
                        (draft_id, request_id, json.dumps(part_ids)))

    def setting(self, key: str, default: str) -> str:
        """A stored setting, or `default`."""
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        """Store a setting."""
        self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

"""The stores' SQLite connection: WAL, migrations, a clear start-up error, and checkpoints taken
by a background thread instead of by the commit that fills the WAL."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from stablenew.runtime.server import StartupError
from stablenew.runtime.sqlite_db import Transaction, open_database
from tests.service_harness import wait_for

MIGRATIONS = ["CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);",
              "ALTER TABLE blobs ADD COLUMN note TEXT NOT NULL DEFAULT '';"]


def checkpoint_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("checkpoint ")]


def test_a_new_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(tmp_path / "new.sqlite3", MIGRATIONS)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        db.execute("INSERT INTO blobs (data, note) VALUES (x'00', 'migrated')")
    finally:
        db.close()


def test_commits_leave_the_checkpoint_to_the_background_thread(tmp_path: Path) -> None:
    path = tmp_path / "big.sqlite3"
    db = open_database(path, MIGRATIONS)
    try:
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        before = path.stat().st_size
        with Transaction(db):
            db.execute("INSERT INTO blobs (data) VALUES (?)", (os.urandom(2_000_000),))
        # The commit only appended to the WAL; the thread then copies it into the database.
        wait_for(lambda: path.stat().st_size > before + 2_000_000,
                 "the background checkpoint to reach the database file", timeout=10)
    finally:
        db.close()


def test_closing_stops_the_checkpoint_thread_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "closed.sqlite3"
    running_before = len(checkpoint_threads())
    db = open_database(path, MIGRATIONS)
    assert len(checkpoint_threads()) == running_before + 1
    with Transaction(db):
        db.executemany("INSERT INTO blobs (data) VALUES (?)", [(b"x",)] * 100)
    db.close()
    assert len(checkpoint_threads()) == running_before
    reopened = open_database(path, MIGRATIONS)
    try:
        assert reopened.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 100
    finally:
        reopened.close()


def test_a_file_that_is_not_a_database_is_a_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StartupError, match="cannot open database"):
        open_database(path, MIGRATIONS)
    assert not [thread for thread in checkpoint_threads() if "junk" in thread.name]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    open_database(path, MIGRATIONS).close()
    with pytest.raises(StartupError, match="newer than this program knows"):
        open_database(path, MIGRATIONS[:1])


def test_a_full_database_reports_itself_not_a_failed_rollback(tmp_path: Path) -> None:
    db = open_database(tmp_path / "full.sqlite3", MIGRATIONS)
    try:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(sqlite3.OperationalError, match="full"), Transaction(db):
            db.execute("INSERT INTO blobs (data) VALUES (zeroblob(1000000))")
        assert not db.in_transaction
        with Transaction(db):  # the connection is usable again
            db.execute("INSERT INTO blobs (data) VALUES (x'01')")
    finally:
        db.close()

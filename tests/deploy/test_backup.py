"""deploy/backup.py, run the way DEPLOY.md runs it: the script piped into `python -` with the
database as its argument, the copy on standard output."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.backup import backup
from tests.deploy.manifests import ROOT

SCRIPT = ROOT / "deploy" / "backup.py"


def run_backup(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-", *args], input=SCRIPT.read_bytes(),
                          capture_output=True, timeout=60, check=False)


def make_database(path: Path, rows: int) -> sqlite3.Connection:
    """A WAL database like the services', with `rows` committed rows; the writer stays open."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO jobs (name) VALUES (?)",
                           [(f"job {n}",) for n in range(rows)])
    connection.execute("COMMIT")
    return connection


def rows_in(copy: bytes, scratch: Path) -> int:
    path = scratch / "copy.sqlite3"
    path.write_bytes(copy)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        count: int = connection.execute("SELECT count(*) FROM jobs").fetchone()[0]
        return count


def test_a_backup_while_a_writer_is_mid_transaction_holds_what_was_committed(
        tmp_path: Path) -> None:
    database = tmp_path / "queue.sqlite3"
    writer = make_database(database, rows=500)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO jobs (name) VALUES ('not committed')")
        done = run_backup(str(database))
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert done.returncode == 0, done.stderr
    assert rows_in(done.stdout, tmp_path) == 500


def test_the_backup_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    database = tmp_path / "history.sqlite3"
    make_database(database, rows=3).close()
    before = database.read_bytes()
    assert run_backup(str(database)).returncode == 0
    assert database.read_bytes() == before


def test_a_missing_database_is_an_error_and_no_output(tmp_path: Path) -> None:
    done = run_backup(str(tmp_path / "nothing.sqlite3"))
    assert done.returncode == 1
    assert done.stdout == b""
    assert b"no database" in done.stderr
    assert not (tmp_path / "nothing.sqlite3").exists(), "a backup never creates the database"


def test_a_file_that_is_not_a_database_is_an_error_and_no_output(tmp_path: Path) -> None:
    database = tmp_path / "bundle.sqlite3"
    database.write_bytes(b"this is not SQLite" * 100)
    done = run_backup(str(database))
    assert done.returncode == 1
    assert done.stdout == b""
    assert b"backup:" in done.stderr


def test_a_corrupt_database_is_an_error_and_no_output(tmp_path: Path) -> None:
    database = tmp_path / "queue.sqlite3"
    make_database(database, rows=2000).close()
    damaged = bytearray(database.read_bytes())
    # Past the header: the table's pages, so the file opens and the copy fails its check.
    damaged[4096 * 2:4096 * 3] = b"\xff" * 4096
    database.write_bytes(bytes(damaged))
    done = run_backup(str(database))
    assert done.returncode == 1
    assert done.stdout == b""


def test_without_exactly_one_database_it_says_how_to_use_it() -> None:
    for args in ((), ("a.sqlite3", "b.sqlite3")):
        done = run_backup(*args)
        assert done.returncode == 2
        assert b"usage:" in done.stderr



def test_the_function_copies_into_a_new_file_and_never_creates_a_database(
        tmp_path: Path) -> None:
    database = tmp_path / "queue.sqlite3"
    make_database(database, rows=7).close()
    backup(database, tmp_path / "copy.sqlite3")
    assert rows_in((tmp_path / "copy.sqlite3").read_bytes(), tmp_path) == 7
    missing = tmp_path / "missing.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        backup(missing, tmp_path / "other.sqlite3")
    assert not missing.exists()

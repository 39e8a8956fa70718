"""SQLite as every store uses it: WAL mode, one writer connection, checkpoints in the
background, migrations keyed on PRAGMA user_version, and a clear start-up error for a corrupt or
unwritable file."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stablenew.runtime.server import StartupError
from stablenew.runtime.settings import SYNCHRONOUS_LEVELS

# WAL + NORMAL: a committed transaction survives a crash of the process (kill -9); only an OS
# crash or power loss can lose the last ones. FULL adds an fsync per commit for that too.
CHECKPOINT_INTERVAL_SECONDS = 0.5


class CheckpointedConnection(sqlite3.Connection):
    """A connection whose WAL is checkpointed by a thread of its own rather than by the commit
    that fills it: SQLite's automatic checkpoint copies the whole WAL into the database inside
    that commit, which costs a 10,000-entry SubmitJob about 20 ms and shows as p99 spikes on
    small writes. A PASSIVE checkpoint never blocks the writer or the readers, and SQLite runs
    it without holding Python's GIL."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checkpointer: _Checkpointer | None = None

    def checkpoint_in_background(self, path: Path) -> None:
        self.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = _Checkpointer(path)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        super().close()


class _Checkpointer:
    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(CHECKPOINT_INTERVAL_SECONDS):
            # Busy: the next round does it (and the last connection to close checkpoints).
            with contextlib.suppress(sqlite3.Error):
                self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._connection.close()


def open_database(
    path: Path, migrations: Sequence[str], synchronous: str = "NORMAL"
) -> CheckpointedConnection:
    """Open (creating) the database, migrate it, and return the connection.

    Each entry of `migrations` is a script; entry i brings user_version i to i + 1.
    """
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise StartupError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {synchronous!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10.0,
            factory=CheckpointedConnection,
        )
    except (sqlite3.DatabaseError, OSError) as error:
        raise StartupError(f"cannot open database {path}: {error}") from None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA foreign_keys=ON")
        _migrate(connection, migrations)
        connection.checkpoint_in_background(path)
    except (sqlite3.DatabaseError, OSError) as error:
        connection.close()
        raise StartupError(f"cannot open database {path}: {error}") from None
    except StartupError:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, migrations: Sequence[str]) -> None:
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise StartupError(
            f"database schema version {version} is newer than this program knows "
            f"({len(migrations)}); upgrade stablenew"
        )
    for target, script in enumerate(migrations[version:], start=version + 1):
        # executescript commits first, so the script carries its own BEGIN/COMMIT: a crash mid
        # migration leaves the previous version intact.
        connection.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={target};\nCOMMIT;")


class Transaction:
    """`with Transaction(conn):` — BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on error."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not exc_type:
            self.connection.execute("COMMIT")
        elif self.connection.in_transaction:
            # Some errors (SQLITE_FULL, SQLITE_IOERR) end the transaction themselves; a ROLLBACK
            # then fails and its error would hide the real one.
            self.connection.execute("ROLLBACK")

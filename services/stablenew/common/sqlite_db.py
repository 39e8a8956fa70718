"""SQLite as every store uses it: WAL mode, one writer connection, migrations keyed on
PRAGMA user_version, and a clear start-up error for a corrupt or unwritable file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from stablenew.common.server import StartupError

# WAL + NORMAL: a committed transaction survives a crash of the process (kill -9); only an OS
# crash or power loss can lose the last ones. FULL adds an fsync per commit for that too.
SYNCHRONOUS_LEVELS = ("NORMAL", "FULL")


def open_database(
    path: Path, migrations: Sequence[str], synchronous: str = "NORMAL"
) -> sqlite3.Connection:
    """Open (creating) the database, migrate it, and return the connection.

    Each entry of `migrations` is a script; entry i brings user_version i to i + 1.
    """
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise StartupError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, not {synchronous!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA foreign_keys=ON")
        _migrate(connection, migrations)
    except (sqlite3.DatabaseError, OSError) as error:
        raise StartupError(f"cannot open database {path}: {error}") from None
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
        self.connection.execute("ROLLBACK" if exc_type else "COMMIT")

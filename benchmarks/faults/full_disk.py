"""`python -m benchmarks.faults.full_disk serve history ...`: the stablenew command with every
connection to a history database limited to FAULTS_HISTORY_MAX_PAGES pages (SQLite's
max_page_count), so the history's disk is "full" once the file reaches that size. Used by the
disk-full scenario; no privileges, no special file system."""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Any

PAGES_VARIABLE = "FAULTS_HISTORY_MAX_PAGES"
HISTORY_FILE = "history.sqlite3"


def limit_history_pages(pages: int) -> None:
    """From now on, connections this process opens to a history database stop at `pages`."""
    original = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = original(database, *args, **kwargs)
        if str(database).endswith(HISTORY_FILE):
            connection.execute(f"PRAGMA max_page_count = {pages:d}")
        return connection
    setattr(sqlite3, "connect", connect)  # noqa: B010 (mypy refuses a plain assignment)


def main() -> int:
    limit_history_pages(int(os.environ[PAGES_VARIABLE]))
    from stablenew.cli.main import main as stablenew  # noqa: PLC0415 (after the patch)
    return stablenew(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

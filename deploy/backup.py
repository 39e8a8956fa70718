"""Back up one StableNew SQLite database while its service keeps serving.

Runs with the standard library alone, so it needs nothing installed in the container: pipe it
into the container's Python and the backup comes out on standard output.

    kubectl -n stablenew exec -i queue-0 -- python - /data/queue.sqlite3 \
        < deploy/backup.py > queue.sqlite3
    docker compose exec -T queue python - /data/queue.sqlite3 < deploy/backup.py > queue.sqlite3

SQLite's online backup copies a consistent snapshot (one read transaction; the service's
writers carry on in the WAL). The copy is checked with `PRAGMA integrity_check` before a byte
of it is written out, so a non-zero exit means there is no backup.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

USAGE = "usage: python - DATABASE < backup.py > COPY"


def backup(database: Path, copy: Path) -> None:
    """Copy `database` into the new file `copy`; ValueError when the copy is not sound."""
    # Read-only: the backup never creates or changes the service's database.
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
        verdict = target.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        target.close()
        source.close()
    if verdict != "ok":
        raise ValueError(f"the copy of {database} failed its integrity check: {verdict}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    database = Path(argv[0])
    if not database.is_file():
        print(f"backup: no database at {database}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / database.name
        try:
            backup(database, copy)
        except (sqlite3.Error, ValueError) as error:
            print(f"backup: {error}", file=sys.stderr)
            return 1
        with copy.open("rb") as finished:
            shutil.copyfileobj(finished, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

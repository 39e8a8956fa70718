"""What the CLI keeps on this machine: the data directory and, in it, the current draft.

The data directory is the services' (`STABLENEW_DATA_DIR`, default `.stablenew`, the same default
as the services'; a test keeps the two equal): `stablenew up` runs the services on it, and the
CLI remembers its current draft in `<data dir>/cli/current_draft`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

DEFAULT_DATA_DIR = ".stablenew"
DEFAULT_EMULATOR_ADDRESS = "127.0.0.1:7860"


def data_dir(env: Mapping[str, str] | None = None, flag: str | os.PathLike[str] | None = None
             ) -> Path:
    """The data directory, absolute: the flag, else STABLENEW_DATA_DIR, else `.stablenew`."""
    env = os.environ if env is None else env
    return Path(flag or env.get("STABLENEW_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CurrentDraft:
    """The draft the `draft` commands work on unless `--draft ID` names another."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "cli" / "current_draft"

    def get(self) -> str | None:
        """The remembered draft id, or None."""
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def set(self, draft_id: str) -> None:
        """Remember `draft_id` (written whole: a crash leaves the old id or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(draft_id + "\n", encoding="utf-8")
        temporary.replace(self.path)

    def forget(self) -> None:
        """No current draft any more."""
        self.path.unlink(missing_ok=True)

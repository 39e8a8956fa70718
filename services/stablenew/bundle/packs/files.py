"""Reading pack files safely: ids that cannot leave the library, symlinks that stay inside it,
a size cap checked before reading, and text that must be UTF-8 without binary junk.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from stablenew.bundle.domain import PackError

DEFAULT_MAX_PACK_BYTES = 5 * 1024 * 1024
# Precedence when one stem exists in several formats: earlier wins.
PACK_EXTENSIONS = (".json", ".txt", ".tsv")
MAX_PACK_ID_LENGTH = 200
# C0 controls other than tab, newline and carriage return (plus DEL) only appear in binary files.
_CONTROL_CHARACTER = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
# O_NOFOLLOW: the resolved path must not have become a symlink since we checked it;
# O_NONBLOCK: a FIFO swapped in must not hang the service (it is refused as not regular).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass(frozen=True)
class FileStamp:
    """Where a pack file really is and the version of it we saw: the reload cache key."""

    path: Path
    mtime_ns: int
    size: int


def check_pack_id(pack_id: str) -> None:
    """Refuse ids that could name a path outside the library or a hidden file."""
    problem = _pack_id_problem(pack_id)
    if problem:
        raise PackError(pack_id, "", f"invalid pack id {pack_id!r}: {problem}")


def _pack_id_problem(pack_id: str) -> str:
    if not pack_id:
        return "it is empty"
    if len(pack_id) > MAX_PACK_ID_LENGTH:
        return f"it is longer than {MAX_PACK_ID_LENGTH} characters"
    if "/" in pack_id or "\\" in pack_id or os.sep in pack_id:
        return "it contains a path separator"
    if ".." in pack_id:
        return "it contains '..'"
    if pack_id.startswith("."):
        return "it starts with '.'"
    if any(ord(char) < 32 for char in pack_id) or ":" in pack_id:
        return "it contains a control character or ':'"
    return ""


def locate(root: Path, pack_id: str, extension: str) -> FileStamp | None:
    """The stamp of `<root>/<pack_id><extension>`, None when there is no such file.

    `root` must already be resolved. A symlink is followed only when its target stays inside
    the library; anything but a regular file is refused (a FIFO would block a reader).
    """
    candidate = root / f"{pack_id}{extension}"
    file_name = candidate.name
    try:
        candidate.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise PackError(pack_id, file_name, f"cannot be read: {error.strerror}") from error
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root) or resolved == root:
        raise PackError(pack_id, file_name, "is a symlink pointing outside the pack library")
    try:
        info = resolved.stat()
    except OSError as error:
        raise PackError(pack_id, file_name, "is a symlink whose target does not exist") from error
    if not stat.S_ISREG(info.st_mode):
        raise PackError(pack_id, file_name, "is not a regular file")
    return FileStamp(resolved, info.st_mtime_ns, info.st_size)


def read_capped(stamp: FileStamp, pack_id: str, file_name: str, max_bytes: int) -> bytes:
    """The file's bytes, refusing files over `max_bytes` without reading them whole."""
    if stamp.size > max_bytes:
        raise PackError(pack_id, file_name, _too_big(stamp.size, max_bytes))
    try:
        descriptor = os.open(stamp.path, _OPEN_FLAGS)
    except OSError as error:
        raise PackError(pack_id, file_name, f"cannot be opened: {error.strerror}") from error
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise PackError(pack_id, file_name, "is not a regular file")
        # One byte more than allowed tells us the file grew past the cap since the stat.
        data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            size = max(os.fstat(handle.fileno()).st_size, len(data))
            raise PackError(pack_id, file_name, _too_big(size, max_bytes))
    return data


def _too_big(size: int, max_bytes: int) -> str:
    return (f"is {size:,} bytes, over the {max_bytes:,}-byte limit for a pack file;"
            " split it into several packs")


def decode_text(data: bytes, pack_id: str, file_name: str) -> str:
    """UTF-8 text (a BOM is dropped), refusing NUL bytes, control characters and bad UTF-8."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise PackError(pack_id, file_name,
                        f"contains binary data (a NUL byte at byte offset {nul});"
                        " a pack must be text",
                        line=data.count(b"\n", 0, nul) + 1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = data[error.start]
        raise PackError(pack_id, file_name,
                        f"is not valid UTF-8 text (byte 0x{bad:02x} at byte offset {error.start})",
                        line=data.count(b"\n", 0, error.start) + 1) from error
    control = _CONTROL_CHARACTER.search(text)
    if control:
        line_start = text.rfind("\n", 0, control.start()) + 1
        raise PackError(pack_id, file_name,
                        f"contains a control character U+{ord(control.group()):04X};"
                        " a pack must be plain text",
                        line=text.count("\n", 0, control.start()) + 1,
                        column=control.start() - line_start + 1)
    return text


def scan_stems(root: Path) -> dict[str, set[str]]:
    """Pack-looking files of the library directory: stem -> extensions present.

    Hidden files (editor swap files, `.DS_Store`) are not packs. A missing directory is empty.
    """
    stems: dict[str, set[str]] = {}
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return stems
    for entry in entries:
        # Extensions are matched exactly (lowercase), as `locate` opens them.
        stem, extension = os.path.splitext(entry.name)
        if entry.name.startswith(".") or extension not in PACK_EXTENSIONS:
            continue
        stems.setdefault(stem, set()).add(extension)
    return stems

"""The problems the bundle domain reports: a bad field, a bad row, a bad pack file.

Reason names are the `ErrorReason` names of errors.proto without their prefix, so a client
matches a row error and the error of a call alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Reason(IntEnum):
    """The reasons the bundle domain produces: the twin of bundle_service.proto `RowErrorReason`
    (same numbers), named as the errors.proto `ErrorReason` of the same meaning."""

    UNSPECIFIED = 0
    INVALID_FIELD = 1
    INVALID_STAGE_PLAN = 2
    UNRESOLVED_TOKEN = 3
    TOO_MANY_VARIANTS = 4
    PACK_INVALID = 5
    PACK_NOT_FOUND = 6


@dataclass(frozen=True)
class Problem:
    """Why a row or part produces no job; the caller adds where (pack, row, part)."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class FieldError:
    """One rejected field of a draft part, e.g. `config.txt2img.width`.

    `field` is the path a google.rpc.BadRequest field violation carries.
    """

    field: str
    reason: Reason
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def row_label(pack_id: str, row_index: int, line: int = 0) -> str:
    """How messages name a pack row: "castles row 2 (line 9)"."""
    label = f"{pack_id} row {row_index}"
    return f"{label} (line {line})" if line else label


@dataclass
class RowError:
    """A problem with one row of one pack or one part: the twin of the proto `RowError`.

    The row produces no job; the problem is shown instead of sending bad text to the WebUI.
    """

    part_id: str = ""
    prompt_pack_id: str = ""
    row_index: int = 0
    # Line number in the pack file, from 1; 0 when unknown (JSON packs, manual prompts).
    line: int = 0
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""


# eq=False keeps the exception hashable, as the traceback machinery expects.
@dataclass(eq=False)
class PackError(Exception):
    """A pack that cannot be read at all: names the file, the place in it and the reason.

    `line`/`column` count from 1 (0 when unknown); `field` is a JSON path such as
    `pack_data.slots[2].text` when the problem is a JSON value of the wrong type.
    """

    pack_id: str
    file: str
    message: str
    line: int = 0
    column: int = 0
    field: str = ""
    reason: Reason = Reason.PACK_INVALID

    def __str__(self) -> str:
        where = self.file or self.pack_id or "pack"
        if self.line:
            where += f" line {self.line}"
            if self.column:
                where += f" column {self.column}"
        if self.field:
            where += f" ({self.field})"
        return f"{where}: {self.message}"

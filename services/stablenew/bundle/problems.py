"""The problems the bundle domain reports: a bad field, a bad row, a bad pack file.

Reason codes are the `ErrorReason` names of errors.proto without their prefix, so the gRPC edge
can put them straight into an `ErrorInfo.reason` and a client can match on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """The subset of errors.proto `ErrorReason` names the bundle domain produces."""

    INVALID_FIELD = "INVALID_FIELD"
    INVALID_STAGE_PLAN = "INVALID_STAGE_PLAN"
    UNRESOLVED_TOKEN = "UNRESOLVED_TOKEN"
    TOO_MANY_VARIANTS = "TOO_MANY_VARIANTS"
    PACK_INVALID = "PACK_INVALID"
    PACK_NOT_FOUND = "PACK_NOT_FOUND"


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
    `reason` holds a `Reason` value (a plain string, as on the wire).
    """

    part_id: str = ""
    prompt_pack_id: str = ""
    row_index: int = 0
    # Line number in the pack file, from 1; 0 when unknown (JSON packs, manual prompts).
    line: int = 0
    reason: str = ""
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

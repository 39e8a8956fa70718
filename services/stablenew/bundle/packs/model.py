"""The prompt-pack domain types: twins of the `Pack*` messages of bundle_service.proto.

Field names and enum numbers equal the proto's, so the gRPC edge can convert them with the
generic mapping (stablenew.bundle.mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from stablenew.bundle.domain import RowError
from stablenew.contract.model import PipelineConfig, PromptTag


class PackFormat(IntEnum):
    """The file format a pack was read from."""

    UNSPECIFIED = 0
    TXT = 1
    TSV = 2
    JSON = 3


class MatrixMode(IntEnum):
    """How the matrix slots of a row combine (see expansion.py)."""

    UNSPECIFIED = 0
    FANOUT = 1
    SEQUENTIAL = 2
    ROTATE = 3
    RANDOM = 4


@dataclass
class MatrixSlot:
    """A named list of values: a matrix slot (`[[name]]`) or a wildcard list (`__name__`)."""

    name: str = ""
    values: list[str] = field(default_factory=list)


@dataclass
class PackMatrix:
    """The matrix of a pack: its slots, whether it is on, its mode and limit."""

    enabled: bool = False
    mode: MatrixMode = MatrixMode.FANOUT
    # 0 means no limit beyond the variant cap.
    limit: int = 0
    slots: list[MatrixSlot] = field(default_factory=list)


@dataclass
class PackRow:
    """One prompt row of a pack, with the tags it holds and the line it starts on."""

    index: int = 0
    positive: str = ""
    negative: str = ""
    tags: list[PromptTag] = field(default_factory=list)
    # Line number in the pack file, from 1 (0 for JSON packs).
    line: int = 0


@dataclass
class PackSummary:
    """A pack as ListPacks shows it."""

    pack_id: str = ""
    name: str = ""
    format: PackFormat = PackFormat.UNSPECIFIED
    row_count: int = 0
    modify_time: datetime | None = None
    # Set when the pack cannot be parsed; the pack is still listed so the user sees why.
    error_message: str = ""


@dataclass
class Pack:
    """A pack as read: rows, matrix, wildcards, default settings and the rows' problems."""

    pack_id: str = ""
    name: str = ""
    format: PackFormat = PackFormat.UNSPECIFIED
    rows: list[PackRow] = field(default_factory=list)
    matrix: PackMatrix = field(default_factory=PackMatrix)
    defaults: PipelineConfig = field(default_factory=PipelineConfig)
    modify_time: datetime | None = None
    # Rows that parse but cannot run (a bad tag weight, an undefined token...). They keep
    # their place in `rows` so row indices always match the file.
    errors: list[RowError] = field(default_factory=list)
    # Not in the proto yet (see the module docstring).
    wildcards: list[MatrixSlot] = field(default_factory=list)
    wildcard_mode: MatrixMode = MatrixMode.RANDOM

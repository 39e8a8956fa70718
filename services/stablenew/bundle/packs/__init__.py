"""The prompt-pack library: `.txt`, `.tsv` and `.json` packs of one directory."""

from stablenew.bundle.packs.library import PackLibrary
from stablenew.bundle.packs.model import (
    MatrixMode,
    MatrixSlot,
    Pack,
    PackFormat,
    PackMatrix,
    PackRow,
    PackSummary,
)

__all__ = [
    "MatrixMode",
    "MatrixSlot",
    "Pack",
    "PackFormat",
    "PackLibrary",
    "PackMatrix",
    "PackRow",
    "PackSummary",
]

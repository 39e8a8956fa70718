"""The `.txt` (blocks of lines) and `.tsv` (positive<TAB>negative) pack formats.

Decisions where the reference is silent:
- Lines are split on "\\n" only (a trailing "\\r" is dropped), so line numbers match editors.
- `#` starts a comment only as the first non-blank character of a line; a comment line does not
  end a block. `neg:` is matched case-insensitively after leading blanks.
- Each positive line is trimmed of surrounding blanks and commas before the lines of a block are
  joined with ", ", so "masterpiece," + "a castle" does not become "masterpiece,, a castle".
- Raw-text definitions. A line `name: a | b | c` defines the matrix slot `name` only when
  `[[name]]` appears somewhere in the pack; `__name__: a | b` likewise defines a wildcard only when
  `__name__` appears. Any other line with a colon stays prompt text ("style: watercolor" is a
  prompt unless the pack uses `[[style]]`). Definitions may stand anywhere (in their own block or
  inside a row's block), apply to the whole pack, and are removed from the row text; values are
  split on `|`, trimmed, and empty values dropped. Defining a name twice is a pack error.
  In a `.tsv` a definition is a line without a tab.
- `.tsv`: a first data line reading `positive<TAB>negative` (or `prompt`) is a header and
  skipped; a line with more than two columns is a row error, not silently cut.
- A row keeps the line number of its first non-comment line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stablenew.bundle.domain import PackError, Reason, RowError, row_label
from stablenew.bundle.packs.model import MatrixSlot, PackRow
from stablenew.bundle.prompt_text import SLOT, WILDCARD, iter_tokens, join_prompt

_WILDCARD_DEFINITION = re.compile(r"__(?P<name>[A-Za-z0-9][\w./-]*?)__\s*:(?P<values>.*)")
_SLOT_DEFINITION = re.compile(r"(?P<name>[^:\[\]<>(),#\s][^:\[\]<>(),]*?)\s*:(?P<values>.*)")
_TSV_HEADER_POSITIVE = {"positive", "prompt", "positive_prompt"}
_TSV_HEADER_NEGATIVE = {"negative", "negative_prompt"}


@dataclass
class Definition:
    """A raw-text `name: a | b` definition of a matrix slot or wildcard, and its line."""

    kind: str  # SLOT or WILDCARD
    slot: MatrixSlot
    line: int


@dataclass
class TextPackContent:
    """What a `.txt`/`.tsv` file holds: rows, definitions and row errors."""

    rows: list[PackRow] = field(default_factory=list)
    definitions: list[Definition] = field(default_factory=list)
    row_errors: list[RowError] = field(default_factory=list)

    def slots_of(self, kind: str) -> list[MatrixSlot]:
        """The lists defined for `kind` (SLOT or WILDCARD), in file order."""
        return [definition.slot for definition in self.definitions if definition.kind == kind]


@dataclass(frozen=True)
class _Line:
    number: int
    text: str  # trimmed
    raw: str  # as written, without the line break (a .tsv's leading tab matters)


def split_lines(text: str) -> list[_Line]:
    """The file's lines, numbered from 1, trimmed and as written."""
    lines = []
    for number, line in enumerate(text.split("\n"), start=1):
        raw = line.rstrip("\r")
        lines.append(_Line(number, raw.strip(), raw))
    return lines


def _is_negative(line: str) -> bool:
    return line[:4].lower() == "neg:"


def _clean(line: str) -> str:
    return line.strip().strip(",").strip()


def parse_txt(text: str, pack_id: str, file_name: str) -> TextPackContent:
    """The rows and definitions of a `.txt` pack (raises PackError)."""
    lines = split_lines(text)
    content_lines = [line for line in lines if line.text and not line.text.startswith("#")]
    definitions = find_definitions(content_lines, content_lines, pack_id, file_name)
    defined_at = {definition.line for definition in definitions}
    content = TextPackContent(definitions=definitions)
    for block in _blocks(lines):
        row = _row_of_block([line for line in block if line.number not in defined_at],
                            len(content.rows))
        if row is not None:
            content.rows.append(row)
    return content


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    """Non-blank lines grouped by blank separators, comments dropped."""
    blocks: list[list[_Line]] = [[]]
    for line in lines:
        if not line.text:
            blocks.append([])
        elif not line.text.startswith("#"):
            blocks[-1].append(line)
    return [block for block in blocks if block]


def _row_of_block(block: list[_Line], index: int) -> PackRow | None:
    if not block:
        return None
    positive = [_clean(line.text) for line in block if not _is_negative(line.text)]
    negative = [_clean(line.text[4:]) for line in block if _is_negative(line.text)]
    return PackRow(index=index, positive=join_prompt(*positive), negative=join_prompt(*negative),
                   line=block[0].number)


def find_definitions(candidates: list[_Line], all_lines: list[_Line], pack_id: str,
                     file_name: str) -> list[Definition]:
    """The `candidates` that are raw-text `name: a | b` definitions of a name used as a token
    somewhere in `all_lines` (see the module docstring)."""
    used = _used_names(all_lines)
    definitions: list[Definition] = []
    seen: dict[tuple[str, str], int] = {}
    for line in candidates:
        definition = _definition_of(line, used, pack_id, file_name)
        if definition is None:
            continue
        key = (definition.kind, definition.slot.name)
        if key in seen:
            raise PackError(pack_id, file_name,
                            f"{definition.kind} {definition.slot.name!r} is defined twice"
                            f" (lines {seen[key]} and {line.number})", line=line.number)
        seen[key] = line.number
        definitions.append(definition)
    return definitions


def _used_names(lines: list[_Line]) -> set[tuple[str, str]]:
    return {(token.kind, token.name) for line in lines for token in iter_tokens(line.text)}


def _definition_of(line: _Line, used: set[tuple[str, str]], pack_id: str,
                   file_name: str) -> Definition | None:
    if _is_negative(line.text):
        return None
    for kind, pattern in ((WILDCARD, _WILDCARD_DEFINITION), (SLOT, _SLOT_DEFINITION)):
        match = pattern.fullmatch(line.text)
        if match and (kind, match.group("name").strip()) in used:
            name = match.group("name").strip()
            values = [value.strip() for value in match.group("values").split("|")]
            values = [value for value in values if value]
            if not values:
                raise PackError(pack_id, file_name, f"the definition of {name!r} has no values",
                                line=line.number)
            return Definition(kind, MatrixSlot(name, values), line.number)
    return None


def parse_tsv(text: str, pack_id: str, file_name: str) -> TextPackContent:
    """The rows and definitions of a `.tsv` pack (raises PackError)."""
    lines = [line for line in split_lines(text) if line.text and not line.text.startswith("#")]
    definitions = find_definitions([line for line in lines if "\t" not in line.raw], lines,
                                   pack_id, file_name)
    defined_at = {definition.line for definition in definitions}
    content = TextPackContent(definitions=definitions)
    data_lines = [line for line in lines if line.number not in defined_at]
    if data_lines and _is_tsv_header(data_lines[0].raw):
        data_lines = data_lines[1:]
    for line in data_lines:
        _add_tsv_row(content, line, pack_id)
    return content


def _is_tsv_header(text: str) -> bool:
    columns = [column.strip().lower() for column in text.split("\t")]
    if columns[0] not in _TSV_HEADER_POSITIVE:
        return False
    return len(columns) == 1 or (len(columns) == 2 and columns[1] in _TSV_HEADER_NEGATIVE)


def _add_tsv_row(content: TextPackContent, line: _Line, pack_id: str) -> None:
    columns = [column.strip() for column in line.raw.split("\t")]
    index = len(content.rows)
    negative = columns[1] if len(columns) > 1 else ""
    content.rows.append(PackRow(index=index, positive=columns[0], negative=negative,
                                line=line.number))
    if len(columns) > 2:
        content.row_errors.append(RowError(
            prompt_pack_id=pack_id, row_index=index, line=line.number,
            reason=Reason.PACK_INVALID,
            message=f"{row_label(pack_id, index, line.number)}: {len(columns)} tab-separated"
                    " columns; expected positive<TAB>negative"))

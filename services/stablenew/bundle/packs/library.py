"""The prompt-pack library: the packs of one directory, read as they are on disk.

- A pack is identified by its file stem; `.json` wins over `.txt`, which wins over `.tsv`. A
  `.json` without rows next to a `.txt`/`.tsv` is that pack's defaults file (matrix, wildcards,
  name, preset_data), see `json_format`.
- Packs changed on disk are picked up without a restart: a parsed pack (or its error) is cached
  under the path, mtime_ns and size of every file it was read from, checked on each load.
- Returned packs are shared with the cache: treat them as read-only.
- Safe for the threads of a gRPC server: the cache is guarded by a lock; two threads that miss at
  the same time both parse, which is harmless.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stablenew.bundle.domain import PackError, Reason, RowError, row_label
from stablenew.bundle.packs.files import (
    DEFAULT_MAX_PACK_BYTES,
    PACK_EXTENSIONS,
    FileStamp,
    check_pack_id,
    decode_text,
    locate,
    read_capped,
    scan_stems,
)
from stablenew.bundle.packs.json_format import JsonPackDocument, parse_json, read_json_pack
from stablenew.bundle.packs.json_values import JsonShapeError
from stablenew.bundle.packs.model import (
    MatrixMode,
    MatrixSlot,
    Pack,
    PackFormat,
    PackMatrix,
    PackRow,
    PackSummary,
)
from stablenew.bundle.packs.text_formats import TextPackContent, parse_tsv, parse_txt
from stablenew.bundle.pipeline_rules import preset_problems
from stablenew.bundle.prompt_text import (
    SLOT,
    WILDCARD,
    iter_tokens,
    scan_tags,
    undefined_token_message,
)
from stablenew.contract.model import PipelineConfig

log = logging.getLogger(__name__)

FORMAT_OF_EXTENSION = {".json": PackFormat.JSON, ".txt": PackFormat.TXT, ".tsv": PackFormat.TSV}
CacheKey = tuple[FileStamp | None, ...]


@dataclass(frozen=True)
class _Source:
    """One file of a pack: which, where, and its decoded text."""

    extension: str
    stamp: FileStamp
    file_name: str
    text: str


@dataclass
class _CacheEntry:
    key: CacheKey
    result: Pack | PackError


class PackLibrary:
    """The packs of one directory (module docstring)."""

    def __init__(self, root: Path | str, *, max_file_bytes: int = DEFAULT_MAX_PACK_BYTES) -> None:
        self._root = Path(root).resolve()
        self._max_file_bytes = max_file_bytes
        self._lock = threading.Lock()
        self._cache: dict[str, _CacheEntry] = {}

    def list_packs(self, after: str = "", limit: int | None = None) -> list[PackSummary]:
        """The packs of the directory sorted by id (those after `after`, at most `limit`),
        unreadable ones with their error message. Only the packs listed are read.

        Never raises because of one bad file.
        """
        stems = scan_stems(self._root)
        self._forget_all_but(set(stems))
        listed = [stem for stem in sorted(stems) if stem > after][:limit]
        return [self._summary(stem, stems[stem]) for stem in listed]

    def load_pack(self, pack_id: str) -> Pack:
        """The pack `pack_id`, re-read when one of its files changed; raises PackError."""
        check_pack_id(pack_id)
        stamps = tuple(locate(self._root, pack_id, extension) for extension in PACK_EXTENSIONS)
        if not any(stamps):
            raise PackError(pack_id, "", f"there is no pack {pack_id!r} in the library",
                            not_found=True)
        with self._lock:
            entry = self._cache.get(pack_id)
        if entry is None or entry.key != stamps:
            entry = _CacheEntry(stamps, self._parse_or_error(pack_id, stamps))
            with self._lock:
                self._cache[pack_id] = entry
        if isinstance(entry.result, PackError):
            raise entry.result.fresh()
        return entry.result

    def signature(self, pack_id: str) -> CacheKey:
        """The pack's files as they are now (path, size, mtime): changes when any file does."""
        try:
            check_pack_id(pack_id)
        except PackError:
            return ()
        return tuple(locate(self._root, pack_id, extension) for extension in PACK_EXTENSIONS)

    def _parse_or_error(self, pack_id: str, stamps: CacheKey) -> Pack | PackError:
        try:
            return self._parse(pack_id, stamps)
        except PackError as error:
            return error

    def _parse(self, pack_id: str, stamps: CacheKey) -> Pack:
        json_stamp, txt_stamp, tsv_stamp = stamps
        text_extension, text_stamp = (".txt", txt_stamp) if txt_stamp else (".tsv", tsv_stamp)
        json_source = self._read(pack_id, ".json", json_stamp) if json_stamp else None
        document = _read_document(pack_id, json_source) if json_source else JsonPackDocument()
        if json_source and (document.rows is not None or text_stamp is None):
            return _assemble(pack_id, document, None, [json_source])
        # Only the file that wins is read: a broken shadowed file must not break the pack.
        assert text_stamp is not None  # at least one of the three files exists
        text_source = self._read(pack_id, text_extension, text_stamp)
        sources = [source for source in (json_source, text_source) if source]
        return _assemble(pack_id, document, text_source, sources)

    def _read(self, pack_id: str, extension: str, stamp: FileStamp) -> _Source:
        file_name = f"{pack_id}{extension}"
        data = read_capped(stamp, pack_id, file_name, self._max_file_bytes)
        return _Source(extension, stamp, file_name, decode_text(data, pack_id, file_name))

    def _summary(self, stem: str, extensions: set[str]) -> PackSummary:
        try:
            pack = self.load_pack(stem)
        except PackError as error:
            return _error_summary(stem, extensions, str(error))
        except Exception as error:  # one unexpected file must not break the whole listing
            log.exception("reading pack %r failed", stem)
            return _error_summary(stem, extensions, f"cannot be read: {error}")
        return PackSummary(pack_id=pack.pack_id, name=pack.name, format=pack.format,
                           row_count=len(pack.rows), modify_time=pack.modify_time)

    def _forget_all_but(self, pack_ids: set[str]) -> None:
        with self._lock:
            for pack_id in [key for key in self._cache if key not in pack_ids]:
                del self._cache[pack_id]


def _error_summary(stem: str, extensions: set[str], message: str) -> PackSummary:
    extension = next(ext for ext in PACK_EXTENSIONS if ext in extensions)
    return PackSummary(pack_id=stem, name=stem, format=FORMAT_OF_EXTENSION[extension],
                       error_message=message)


def _read_document(pack_id: str, source: _Source) -> JsonPackDocument:
    decoded = parse_json(source.text, pack_id, source.file_name)
    try:
        return read_json_pack(decoded)
    except JsonShapeError as error:
        raise PackError(pack_id, source.file_name, error.message, field=error.field) from error


def _assemble(pack_id: str, document: JsonPackDocument, text_source: _Source | None,
              sources: list[_Source]) -> Pack:
    content = _parse_text(pack_id, text_source) if text_source else TextPackContent(
        rows=document.rows or [])
    if not content.rows:
        where = text_source.file_name if text_source else sources[0].file_name
        raise PackError(pack_id, where, "has no prompt rows")
    json_name = next((s.file_name for s in sources if s.extension == ".json"), "the JSON file")
    pack = Pack(
        pack_id=pack_id,
        name=document.name or pack_id,
        format=FORMAT_OF_EXTENSION[(text_source or sources[0]).extension],
        rows=content.rows,
        matrix=_matrix(pack_id, document.matrix, content, json_name),
        defaults=document.defaults,
        modify_time=_modify_time(sources),
        errors=list(content.row_errors) + _preset_errors(pack_id, document.defaults, json_name),
        wildcards=_merge_lists(pack_id, document.wildcards, content.slots_of(WILDCARD),
                               json_name, "wildcard"),
        wildcard_mode=document.wildcard_mode or MatrixMode.RANDOM,
    )
    _check_rows(pack)
    return pack


def _preset_errors(pack_id: str, presets: PipelineConfig, json_name: str) -> list[RowError]:
    """The presets' own problems, as errors of the whole pack (row -1): adding the pack needs
    config overrides that fix them."""
    return [RowError(prompt_pack_id=pack_id, row_index=-1, reason=Reason.PACK_INVALID,
                     message=f"{json_name}: preset {error.field.removeprefix('config.')}: "
                             f"{error.message}")
            for error in preset_problems(presets)]


def _parse_text(pack_id: str, source: _Source) -> TextPackContent:
    parse = parse_txt if source.extension == ".txt" else parse_tsv
    return parse(source.text, pack_id, source.file_name)


def _matrix(pack_id: str, matrix: PackMatrix | None, content: TextPackContent,
            json_name: str) -> PackMatrix:
    """The JSON matrix with the raw-text slot definitions added; those switch the matrix on."""
    base = matrix or PackMatrix()
    raw_slots = content.slots_of(SLOT)
    slots = _merge_lists(pack_id, base.slots, raw_slots, json_name, "slot")
    return PackMatrix(enabled=base.enabled or bool(raw_slots), mode=base.mode, limit=base.limit,
                      slots=slots)


def _merge_lists(pack_id: str, from_json: list[MatrixSlot], from_text: list[MatrixSlot],
                 json_name: str, what: str) -> list[MatrixSlot]:
    names = {slot.name for slot in from_json}
    for slot in from_text:
        if slot.name in names:
            raise PackError(pack_id, json_name,
                            f"{what} {slot.name!r} is defined both here and in the pack text")
    return [*from_json, *from_text]


def _modify_time(sources: list[_Source]) -> datetime:
    newest = max(source.stamp.mtime_ns for source in sources)
    return datetime.fromtimestamp(newest / 1e9, tz=UTC)


def _check_rows(pack: Pack) -> None:
    """List each row's tags and record the rows that cannot run as they are."""
    slot_names = {slot.name for slot in pack.matrix.slots} if pack.matrix.enabled else set()
    defined = {SLOT: slot_names, WILDCARD: {wildcard.name for wildcard in pack.wildcards}}
    for row in pack.rows:
        scan = scan_tags(row.positive, row.negative)
        row.tags = scan.tags
        problems = _row_problems(row, defined)
        problems += [(Reason.PACK_INVALID, problem) for problem in scan.problems]
        pack.errors.extend(_row_error(pack.pack_id, row, problem) for problem in problems)
    pack.errors.sort(key=lambda error: error.row_index)


def _row_problems(row: PackRow, defined: dict[str, set[str]]) -> list[tuple[Reason, str]]:
    problems: list[tuple[Reason, str]] = []
    if not row.positive:
        problems.append((Reason.PACK_INVALID, "the row has no positive prompt text"))
    undefined = {token.display: None for text in (row.positive, row.negative)
                 for token in iter_tokens(text) if token.name not in defined[token.kind]}
    problems.extend((Reason.UNRESOLVED_TOKEN, undefined_token_message(display))
                    for display in undefined)
    return problems


def _row_error(pack_id: str, row: PackRow, problem: tuple[Reason, str]) -> RowError:
    reason, message = problem
    return RowError(prompt_pack_id=pack_id, row_index=row.index, line=row.line, reason=reason,
                    message=f"{row_label(pack_id, row.index, row.line)}: {message}")

"""The `.json` pack format: `pack_data` (name, rows as `slots`, matrix, wildcards) and
`preset_data` (pipeline defaults).

Decisions where the reference is silent:
- A JSON file is the pack itself when `pack_data.slots` holds at least one row (or when no
  `.txt`/`.tsv` of the same stem exists); otherwise it is the defaults file of its sibling.
- Row index = position in `slots`; a slot's own `index` is checked to be an integer, not used.
- `loras` / `positive_embeddings` / `negative_embeddings` are appended to the row's text as
  tags (after the text, embeddings before LoRAs) unless the text already holds a tag of that name,
  so the WebUI gets them and the preview shows them. Items may be `"name"`, `["name", weight]` or
  `{"name": ..., "weight": ...}`.
- `pack_data.wildcards` is `{"name": ["a", "b"]}`; `pack_data.wildcard_mode` is `random`
  (default) or `sequential`.
- NaN/Infinity are refused (not JSON). A key the format does not know, at any level, is a pack
  error naming its JSON path: a misspelt key (`positive` for `text`) would otherwise lose what
  it says without a word. Only the names of `pack_data.wildcards` are the author's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from stablenew.bundle.domain import PackError
from stablenew.bundle.packs.json_values import (
    JsonShapeError,
    as_bool,
    as_float,
    as_int,
    as_list,
    as_object,
    as_str,
    as_str_list,
    optional_list,
    optional_member,
    refuse_unknown_keys,
)
from stablenew.bundle.packs.model import MatrixMode, MatrixSlot, PackMatrix, PackRow
from stablenew.bundle.packs.presets import default_pack_config, read_preset
from stablenew.bundle.prompt_text import embedding_tag, join_prompt, lora_tag
from stablenew.contract.model import PipelineConfig

MATRIX_MODES = {
    "fanout": MatrixMode.FANOUT,
    "sequential": MatrixMode.SEQUENTIAL,
    "rotate": MatrixMode.ROTATE,
    "random": MatrixMode.RANDOM,
}
WILDCARD_MODES = {"random": MatrixMode.RANDOM, "sequential": MatrixMode.SEQUENTIAL}
WILDCARD_NAME = re.compile(r"[A-Za-z0-9](?:[\w./-]*[A-Za-z0-9./-])?")

# The keys each object of the format takes, in the order the messages list them.
TOP_KEYS = ("pack_data", "preset_data")
PACK_DATA_KEYS = ("name", "slots", "matrix", "wildcards", "wildcard_mode")
ROW_KEYS = ("text", "negative", "loras", "positive_embeddings", "negative_embeddings", "index")
TAG_KEYS = ("name", "weight")
MATRIX_KEYS = ("enabled", "mode", "limit", "slots")
SLOT_KEYS = ("name", "values")


@dataclass
class JsonPackDocument:
    """What a JSON file says; `rows` is None when it has no rows (a defaults file)."""

    name: str = ""
    rows: list[PackRow] | None = None
    matrix: PackMatrix | None = None
    wildcards: list[MatrixSlot] = field(default_factory=list)
    wildcard_mode: MatrixMode | None = None
    defaults: PipelineConfig = field(default_factory=default_pack_config)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, pack_id: str, file_name: str) -> Any:
    """Decoded JSON, or a PackError naming the line and column of the syntax error."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise PackError(pack_id, file_name, f"is not valid JSON: {error.msg}",
                        line=error.lineno, column=error.colno) from error
    except ValueError as error:
        raise PackError(pack_id, file_name, f"is not valid JSON: {error}") from error
    except RecursionError as error:
        raise PackError(pack_id, file_name, "is not valid JSON: nested too deeply") from error


def read_json_pack(document: Any) -> JsonPackDocument:
    """The pack parts of a decoded JSON file (raises JsonShapeError for wrong types)."""
    top = as_object(document, "(top level)")
    refuse_unknown_keys(top, TOP_KEYS, "", "a pack file")
    result = JsonPackDocument()
    if top.get("preset_data") is not None:
        result.defaults = read_preset(top["preset_data"])
    pack_data = top.get("pack_data")
    if pack_data is None:
        return result
    data = as_object(pack_data, "pack_data")
    refuse_unknown_keys(data, PACK_DATA_KEYS, "pack_data", "pack_data")
    result.name = optional_member(data, "name", "pack_data", as_str, "").strip()
    if data.get("slots") is not None:
        rows = [_read_row(item, index) for index, item in
                enumerate(as_list(data["slots"], "pack_data.slots"))]
        result.rows = rows or None
    if data.get("matrix") is not None:
        result.matrix = read_matrix(data["matrix"], "pack_data.matrix")
    if data.get("wildcards") is not None:
        result.wildcards = _read_wildcards(data["wildcards"], "pack_data.wildcards")
    if data.get("wildcard_mode") is not None:
        result.wildcard_mode = _read_mode(data["wildcard_mode"], "pack_data.wildcard_mode",
                                          WILDCARD_MODES)
    return result


def _read_row(item: Any, index: int) -> PackRow:
    path = f"pack_data.slots[{index}]"
    slot = as_object(item, path)
    refuse_unknown_keys(slot, ROW_KEYS, path, "a row")
    optional_member(slot, "index", path, as_int, 0)
    text = optional_member(slot, "text", path, as_str, "")
    negative = optional_member(slot, "negative", path, as_str, "")
    loras = [_named_weight(value, f"{path}.loras[{number}]") for number, value in
             enumerate(optional_list(slot, "loras", path))]
    positive_embeddings = _embeddings(slot, "positive_embeddings", path)
    negative_embeddings = _embeddings(slot, "negative_embeddings", path)
    positive_extra = [embedding_tag(name, weight) for name, weight in positive_embeddings
                      if not _mentions(text, "embedding", name)]
    positive_extra += [lora_tag(name, weight) for name, weight in loras
                       if not _mentions(text, "lora", name)]
    negative_extra = [embedding_tag(name, weight) for name, weight in negative_embeddings
                      if not _mentions(negative, "embedding", name)]
    return PackRow(index=index, positive=join_prompt(text.strip(), *positive_extra),
                   negative=join_prompt(negative.strip(), *negative_extra), line=0)


def _embeddings(slot: dict[str, Any], key: str, path: str) -> list[tuple[str, float]]:
    values = optional_list(slot, key, path)
    return [_named_weight(value, f"{path}.{key}[{number}]") for number, value in enumerate(values)]


def _named_weight(value: Any, path: str) -> tuple[str, float]:
    """`"name"`, `["name"]`, `["name", 0.6]` or `{"name": ..., "weight": ...}`."""
    if isinstance(value, str):
        name, weight = value, 1.0
    elif isinstance(value, list) and 1 <= len(value) <= 2:
        name = as_str(value[0], f"{path}[0]")
        weight = as_float(value[1], f"{path}[1]") if len(value) == 2 else 1.0
    elif isinstance(value, dict):
        refuse_unknown_keys(value, TAG_KEYS, path, "a tag")
        name = as_str(value.get("name"), f"{path}.name")
        weight = optional_member(value, "weight", path, as_float, 1.0)
    else:
        raise JsonShapeError(path, 'expected "name", ["name", weight] or {"name", "weight"}')
    if not name.strip() or any(char in name for char in "<>:"):
        raise JsonShapeError(path, f"{name!r} is not a usable tag name")
    return name.strip(), weight


def _mentions(text: str, kind: str, name: str) -> bool:
    return f"<{kind}:{name.lower()}" in text.lower()


def read_matrix(value: Any, path: str) -> PackMatrix:
    """The matrix object at `path` (raises JsonShapeError)."""
    data = as_object(value, path)
    refuse_unknown_keys(data, MATRIX_KEYS, path, "the matrix")
    slots = [_read_slot(item, f"{path}.slots[{index}]") for index, item in
             enumerate(optional_list(data, "slots", path))]
    _refuse_duplicates([slot.name for slot in slots], f"{path}.slots", "slot")
    limit = optional_member(data, "limit", path, as_int, 0)
    if limit < 0:
        raise JsonShapeError(f"{path}.limit", f"must be 0 (no limit) or more, got {limit}")
    return PackMatrix(
        enabled=optional_member(data, "enabled", path, as_bool, bool(slots)),
        mode=optional_member(data, "mode", path,
                             lambda raw, where: _read_mode(raw, where, MATRIX_MODES),
                             MatrixMode.FANOUT),
        limit=limit,
        slots=slots,
    )


def _read_slot(item: Any, path: str) -> MatrixSlot:
    data = as_object(item, path)
    refuse_unknown_keys(data, SLOT_KEYS, path, "a matrix slot")
    name = as_str(data.get("name"), f"{path}.name").strip()
    if not name or any(char in name for char in "[]\n"):
        raise JsonShapeError(f"{path}.name", f"{name!r} is not a usable slot name")
    values = as_str_list(data.get("values"), f"{path}.values")
    if not values:
        raise JsonShapeError(f"{path}.values", f"slot {name!r} has no values")
    return MatrixSlot(name, values)


def _read_wildcards(value: Any, path: str) -> list[MatrixSlot]:
    lists = []
    for name, values in as_object(value, path).items():
        if not WILDCARD_NAME.fullmatch(name) or "__" in name:
            raise JsonShapeError(f"{path}.{name}", f"{name!r} is not a usable wildcard name")
        items = as_str_list(values, f"{path}.{name}")
        if not items:
            raise JsonShapeError(f"{path}.{name}", f"wildcard {name!r} has no values")
        lists.append(MatrixSlot(name, items))
    return lists


def _read_mode(value: Any, path: str, modes: dict[str, MatrixMode]) -> MatrixMode:
    text = as_str(value, path).strip().lower()
    if text not in modes:
        raise JsonShapeError(path, f"unknown mode {value!r}; use one of {', '.join(modes)}")
    return modes[text]


def _refuse_duplicates(names: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise JsonShapeError(path, f"{what} {name!r} is defined twice")
        seen.add(name)

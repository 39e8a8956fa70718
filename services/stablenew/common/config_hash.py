"""The config hash: sha256 of a canonical encoding of everything in a normalized job that affects
the images it makes. The bundle computes it, the queue and the runner recompute it, the history
stores it: equal hashes prove that what was previewed is what ran.

Position, origin and the tag list are bookkeeping, not output, and stay out of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from enum import IntEnum
from typing import Any

from stablenew.common.model import NormalizedJob

# Bumped if the encoding ever changes, so old and new hashes can never be confused.
ENCODING_VERSION = "stablenew.config.v1"
NOT_HASHED = frozenset({"index", "origin", "tags", "config_hash"})


_field_cache: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def _fields(cls: type[Any]) -> tuple[tuple[str, bool], ...]:
    """(name, declared float) per field: 7 and 7.0 must hash alike where a float is declared."""
    fields = _field_cache.get(cls)
    if fields is None:
        hints = typing.get_type_hints(cls)
        fields = tuple((f.name, hints[f.name] is float) for f in dataclasses.fields(cls))
        _field_cache[cls] = fields
    return fields


def _canonical(value: Any) -> Any:
    # Ordered by how often each kind occurs; this runs for every job of every bundle.
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return repr(value)
    if isinstance(value, IntEnum):
        return value.name
    if kind is list:
        return [_canonical(item) for item in value]
    return _canonical_fields(value, _fields(kind))


def _canonical_fields(value: Any, fields: tuple[tuple[str, bool], ...]) -> dict[str, Any]:
    # repr of a float round-trips exactly and never varies by platform.
    return {
        name: repr(float(getattr(value, name))) if is_float else _canonical(getattr(value, name))
        for name, is_float in fields
    }


def canonical_encoding(job: NormalizedJob) -> bytes:
    hashed = tuple(item for item in _fields(NormalizedJob) if item[0] not in NOT_HASHED)
    fields = _canonical_fields(job, hashed)
    document = {"encoding": ENCODING_VERSION, "job": fields}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_hash(job: NormalizedJob) -> str:
    return hashlib.sha256(canonical_encoding(job)).hexdigest()


def bundle_hash(entry_hashes: list[str]) -> str:
    """A job's hash: the sha256 over its entries' hashes in order."""
    return hashlib.sha256("\n".join(entry_hashes).encode()).hexdigest()

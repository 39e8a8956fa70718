"""The config hash: sha256 of a canonical encoding of everything in a normalized job that affects
the images it makes. The bundle computes it, the queue and the runner recompute it, the history
stores it: equal hashes prove that what was previewed is what ran.

Position, origin and the tag list are bookkeeping, not output, and stay out of it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from enum import IntEnum
from typing import Any

from stablenew.common.model import NormalizedJob

# Bumped if the encoding ever changes, so old and new hashes can never be confused.
ENCODING_VERSION = "stablenew.config.v1"
NOT_HASHED = frozenset({"index", "origin", "tags", "config_hash"})


@functools.cache
def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _canonical(value: Any) -> Any:
    # Ordered by how often each kind occurs; this runs for every job of every bundle.
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        # repr round-trips exactly and never varies by platform.
        return repr(value)
    if isinstance(value, IntEnum):
        return value.name
    if kind is list:
        return [_canonical(item) for item in value]
    return {name: _canonical(getattr(value, name)) for name in _field_names(kind)}


def canonical_encoding(job: NormalizedJob) -> bytes:
    fields = {
        name: _canonical(getattr(job, name))
        for name in _field_names(NormalizedJob)
        if name not in NOT_HASHED
    }
    document = {"encoding": ENCODING_VERSION, "job": fields}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_hash(job: NormalizedJob) -> str:
    return hashlib.sha256(canonical_encoding(job)).hexdigest()


def bundle_hash(entry_hashes: list[str]) -> str:
    """A job's hash: the sha256 over its entries' hashes in order."""
    return hashlib.sha256("\n".join(entry_hashes).encode()).hexdigest()

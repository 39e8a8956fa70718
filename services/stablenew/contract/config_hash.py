"""The config hash: sha256 of a canonical encoding of everything in a normalized job that affects
the images it makes. The bundle computes it, the queue and the runner recompute it, the history
stores it: equal hashes prove that what was previewed is what ran.

Position, origin and the tag list are bookkeeping, not output, and stay out of it; so does an
ADetailer pass's `fail_on_no_detection`, a rule about the outcome that changes no pixel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from stablenew.contract.model import AdetailerPass, NormalizedJob, ResizeMode

# Bumped if the encoding ever changes, so old and new hashes can never be confused.
ENCODING_VERSION = "stablenew.config.v1"
NOT_HASHED = frozenset({"index", "origin", "tags", "config_hash"})
# The fields each hashed message leaves out (NOT_HASHED for the job itself).
NOT_HASHED_OF: dict[type[Any], frozenset[str]] = {
    NormalizedJob: NOT_HASHED,
    AdetailerPass: frozenset({"fail_on_no_detection"}),
}
# Enums that were integers when this encoding was fixed: written as their number, as then, so the
# hashes of jobs queued before they became enums do not change.
ENCODED_AS_NUMBER: frozenset[type[IntEnum]] = frozenset({ResizeMode})


Encoder = Callable[[Any], dict[str, Any]]
_encoders: dict[type[Any], Encoder] = {}


def _value_expression(hint: Any, value: str, names: dict[str, Any]) -> str:
    """How one field is written: floats by repr (exact, platform-independent; 7 and 7.0 alike
    where a float is declared), enums by name (but ENCODED_AS_NUMBER), nested twins as objects."""
    if hint is float:
        return f"repr(float({value}))"
    if hint in ENCODED_AS_NUMBER:
        return f"int({value})"
    if isinstance(hint, type) and issubclass(hint, IntEnum):
        names[hint.__name__] = hint
        return f"{hint.__name__}({value}).name"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        names[f"_encode_{hint.__name__}"] = _encoder(hint)
        return f"_encode_{hint.__name__}({value})"
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        element = _value_expression(item, "v", names)
        # A list of plain values is written as it is.
        return value if element == "v" else f"[{element} for v in {value}]"
    return value


def _encoder(cls: type[Any]) -> Encoder:
    """A generated function returning the canonical dict of one dataclass (this runs for every
    job of every bundle, so it is straight-line code rather than a walk over the fields)."""
    encoder = _encoders.get(cls)
    if encoder is None:
        hints = typing.get_type_hints(cls)
        names: dict[str, Any] = {}
        items = ", ".join(
            f"{f.name!r}: {_value_expression(hints[f.name], 'o.' + f.name, names)}"
            for f in dataclasses.fields(cls)
            if f.name not in NOT_HASHED_OF.get(cls, frozenset()))
        source = f"def _encode(o):\n    return {{{items}}}\n"
        exec(compile(source, f"<stablenew encode {cls.__name__}>", "exec"), names)
        encoder = _encoders[cls] = names["_encode"]
    return encoder


def canonical_encoding(job: NormalizedJob) -> bytes:
    document = {"encoding": ENCODING_VERSION, "job": _encoder(NormalizedJob)(job)}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def config_hash(job: NormalizedJob) -> str:
    return hashlib.sha256(canonical_encoding(job)).hexdigest()


def bundle_hash(entry_hashes: list[str]) -> str:
    """A job's hash: the sha256 over its entries' hashes in order."""
    return hashlib.sha256("\n".join(entry_hashes).encode()).hexdigest()

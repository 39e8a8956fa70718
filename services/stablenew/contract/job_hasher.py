"""Fast config hashes for many jobs that differ only in their prompts, seeds and input images.

`stablenew.contract.config_hash.config_hash` walks every field of every job, about 25 µs a job:
too slow for 10,000 jobs. The jobs of one part (the bundle normalising a draft) or of one group
of a submitted job (the queue re-checking every hash) differ only in prompt, negative prompt,
seed, subseed and input images, so `JobHasher` encodes a prototype job once with the official
`canonical_encoding`, with unique markers in those fields, and afterwards only splices the JSON
encoding of the varying values between the fixed pieces. The bytes hashed are exactly those
`canonical_encoding` produces (the same `json` string encoder, the same key order), so the hash
is the official one; the test suite checks this for generated jobs, and each hasher checks it
once for its prototype. If a marker cannot be found exactly once, or that check fails, the
hasher falls back to `config_hash`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from collections.abc import Sequence
from typing import Any

from stablenew.contract.config_hash import canonical_encoding, config_hash
from stablenew.contract.model import NormalizedJob

# The fields that vary between the jobs of one part, in the order `hash` takes them.
VARYING_FIELDS = ("prompt", "negative_prompt", "seed", "subseed", "input_images")
# A string with NUL characters cannot come from a prompt (packs refuse control characters),
# and its JSON form `"\u0000..."` cannot appear by accident in another field's encoding.
_MARKER = "\x00stablenew-hash-marker:{}\x00"

_encode_string = json.JSONEncoder(ensure_ascii=False).encode


class JobHasher:
    def __init__(self, prototype: NormalizedJob) -> None:
        self._prototype = prototype
        pieces, order = _split_encoding(prototype)
        # One %-format with a %s per gap: a single C call assembles the encoding.
        self._format = "%s".join(piece.replace("%", "%%") for piece in pieces)
        self._in_encoding_order = operator.itemgetter(*order) if pieces else None
        # Self-check once per config: should the official encoding ever change in a way the
        # splicing does not follow, fall back to it rather than produce a different hash.
        if self._in_encoding_order is not None and self._spliced(prototype) != config_hash(
                prototype):
            self._in_encoding_order = None

    def hash(self, prompt: str, negative_prompt: str, seed: int, subseed: int,
             input_images: Sequence[str]) -> str:
        """The `config_hash` of the prototype with these five fields replaced."""
        if self._in_encoding_order is None:
            job = dataclasses.replace(self._prototype, prompt=prompt,
                                      negative_prompt=negative_prompt, seed=seed,
                                      subseed=subseed, input_images=list(input_images))
            return config_hash(job)
        encoded = (_encode_string(prompt), _encode_string(negative_prompt), str(int(seed)),
                   str(int(subseed)), _encode_list(input_images))
        text = self._format % self._in_encoding_order(encoded)
        return hashlib.sha256(text.encode()).hexdigest()

    def _spliced(self, job: NormalizedJob) -> str:
        return self.hash(job.prompt, job.negative_prompt, job.seed, job.subseed, job.input_images)


def _encode_list(values: Sequence[str]) -> str:
    if not values:
        return "[]"
    return "[" + ",".join([_encode_string(value) for value in values]) + "]"


def _split_encoding(prototype: NormalizedJob) -> tuple[list[str], list[int]]:
    """The fixed pieces of the prototype's encoding around the varying fields, and which
    varying field sits in each gap; ([], []) when a marker is not found exactly once."""
    markers = {name: _MARKER.format(name) for name in VARYING_FIELDS}
    # input_images is a list: the probe holds one marker string in its place, and the whole
    # list's encoding is spliced where that string's encoding stands.
    changes: dict[str, Any] = dict(markers)
    probe = dataclasses.replace(prototype, **changes)
    text = canonical_encoding(probe).decode()
    found = []
    for position, name in enumerate(VARYING_FIELDS):
        encoded = _encode_string(markers[name])
        if text.count(encoded) != 1:
            return [], []
        found.append((text.index(encoded), position, encoded))
    found.sort()
    pieces, order, cursor = [], [], 0
    for start, position, encoded in found:
        pieces.append(text[cursor:start])
        order.append(position)
        cursor = start + len(encoded)
    pieces.append(text[cursor:])
    return pieces, order

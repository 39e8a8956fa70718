"""Where concrete seeds come from when a config asks for a random one (-1).

Normalising the same draft revision twice must give identical jobs, so "random" here means
"derived": a seed is a hash of a caller-chosen salt and a key naming the job (its part id and
its place in the part). Keys name parts rather than positions in the draft, so adding or removing
one part never changes the seeds of the others. The bundle service uses the draft id as the salt
(add the revision to re-roll on every change).
"""

from __future__ import annotations

import hashlib
import random
from typing import Protocol

# The WebUI's own range for a random seed: [0, 4294967294).
SEED_RANGE = 4_294_967_294


class SeedSource(Protocol):
    """Where concrete seeds come from (module docstring)."""

    def seed_for(self, key: str) -> int:
        """A concrete seed in [0, SEED_RANGE), always the same for the same key."""
        ...


class DerivedSeedSource:
    """Seeds derived from `salt` and the key with BLAKE2b (fast, well mixed, stable across
    Python versions and platforms, unlike `hash()`)."""

    def __init__(self, salt: str) -> None:
        self._base = hashlib.blake2b(digest_size=8, person=b"stablenew-seed")
        self._base.update(salt.encode())
        self._base.update(b"\x1f")

    def seed_for(self, key: str) -> int:
        """The seed of `key` under this source's salt."""
        digest = self._base.copy()
        digest.update(key.encode())
        return int.from_bytes(digest.digest(), "big") % SEED_RANGE


def random_for(seeds: SeedSource, key: str) -> random.Random:
    """A `random.Random` seeded from `seeds`: matrix and wildcard picks reproduce exactly."""
    return random.Random(seeds.seed_for(key))

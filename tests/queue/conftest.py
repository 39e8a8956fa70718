"""Queue fixtures: a real queue server per test (tests/queue/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.queue.harness import QueueHarness


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path / "data", {"STABLENEW_LEASE_SECONDS": "30"})
    with harness.running():
        yield harness


@pytest.fixture
def short_lease_queue(tmp_path: Path) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path / "data", {"STABLENEW_LEASE_SECONDS": "0.5",
                                               "STABLENEW_MAX_ATTEMPTS": "2"})
    with harness.running():
        yield harness

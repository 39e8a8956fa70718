"""History fixtures: a real queue server and a real history server following it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.history.harness import INGESTION, SERVING, HistoryHarness
from tests.history.records import Records
from tests.queue.harness import QueueHarness


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path / "queue-data", {"STABLENEW_LEASE_SECONDS": "30"})
    with harness.running():
        yield harness


@pytest.fixture
def history(tmp_path: Path, queue: QueueHarness) -> Iterator[HistoryHarness]:
    """A history following `queue`, caught up (its ingestion SERVING)."""
    harness = HistoryHarness(tmp_path / "history-data", queue.address)
    with harness.running():
        harness.wait_health(SERVING, INGESTION)
        yield harness


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[HistoryHarness]:
    """A history that follows no queue (STABLENEW_HISTORY_INGEST=off): for queries on records
    written straight into its store."""
    harness = HistoryHarness(tmp_path / "archive-data", env={"STABLENEW_HISTORY_INGEST": "off"})
    with harness.running():
        yield harness


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    """A served history whose records tests make from synthetic queue events."""
    made = Records(tmp_path / "records-data")
    yield made
    made.close()

"""Runner fixtures: the WebUI emulator, a queue and a runner, all in this process on loopback
port 0 (tests/runner/harness.py), and a collector that ends the processes a test started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stablenew.emulator.server import EmulatorServer
from stablenew.emulator.testing import fast_config, running
from tests.queue.harness import QueueHarness
from tests.runner.harness import EmulatorAdmin, ManagedProcess, RunnerHarness


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with running(fast_config(step_seconds=0.002)) as server:
        yield server


@pytest.fixture
def admin(emulator: EmulatorServer) -> Iterator[EmulatorAdmin]:
    client = EmulatorAdmin(emulator.url)
    yield client
    client.close()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[QueueHarness]:
    harness = QueueHarness(tmp_path / "queue", {"STABLENEW_LEASE_SECONDS": "30"})
    with harness.running():
        yield harness


@pytest.fixture
def runner(tmp_path: Path, queue: QueueHarness,
           emulator: EmulatorServer) -> Iterator[RunnerHarness]:
    harness = RunnerHarness(tmp_path / "runner", queue.address, emulator.url)
    with harness.running():
        yield harness


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    """Processes a test starts; whatever still runs at the end is stopped (SIGTERM, then
    SIGKILL)."""
    started: list[ManagedProcess] = []
    yield started
    for process in reversed(started):
        process.close_channel()
        process.end()

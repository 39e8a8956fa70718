"""Runner fixtures: the WebUI emulator, a queue and a runner, all in this process on loopback
port 0 (tests/runner/harness.py), a collector that ends the processes a test started, and the
WebUI client on the fake HTTP layer (tests/runner/fake_webui.py) or on the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stablenew.emulator.server import EmulatorServer
from stablenew.emulator.testing import fast_config, running
from stablenew.runner.webui_client import WebuiClient
from tests.queue.harness import QueueHarness
from tests.runner.fake_webui import FakeWebui, Harness, make_client, reference_webui
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


@pytest.fixture
def fake() -> FakeWebui:
    return reference_webui()


@pytest.fixture
def harness(fake: FakeWebui) -> Iterator[Harness]:
    made = make_client(fake)
    yield made
    made.client.close()


@pytest.fixture
def live(emulator: EmulatorServer) -> Iterator[WebuiClient]:
    """The WebUI client on the emulator over real HTTP, with short backoffs."""
    client = WebuiClient(emulator.url, connect_timeout=2.0, read_timeout=30.0,
                         backoff_seconds=0.05)
    yield client
    client.close()

"""GUI fixtures: the whole system on loopback (the SDK tests' stack: the WebUI emulator over
real HTTP, queue, bundle with a packs directory, runner, history), a view-model harness over
it, and a paused queue for tests that look at queued jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stablenew.sdk import Client, JobState
from tests.gui.harness import ModelHarness, sync_client
from tests.gui.window import CallThreads, Window, counting_calls, virtual_display
from tests.sdk.conftest import stack
from tests.sdk.harness import Stack

__all__ = ["stack"]


def addresses_of(stack: Stack) -> dict[str, str]:
    """The four services' addresses."""
    return {"bundle": stack.bundle.address, "queue": stack.queue.address,
            "runner": stack.runner.address, "history": stack.history.address}


@pytest.fixture
def models(stack: Stack) -> Iterator[ModelHarness]:
    harness = ModelHarness(addresses_of(stack))
    yield harness
    harness.close()


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    made = sync_client(addresses_of(stack))
    yield made
    made.close()


@pytest.fixture
def paused(client: Client) -> Iterator[None]:
    """The queue paused for the test, then every job it left queued cancelled and the queue
    resumed."""
    client.queue.pause()
    yield
    for job in client.queue.list():
        if job.state == JobState.QUEUED:
            client.queue.cancel(job.job_id)
    client.queue.resume()


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """A virtual X display for the session's windows."""
    with virtual_display() as name:
        yield name


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallThreads]:
    """Every SDK call of the test, counted by the thread it ran on."""
    with counting_calls(monkeypatch) as counted:
        yield counted


@pytest.fixture
def window(display: str, stack: Stack, tmp_path: Path, calls: CallThreads) -> Iterator[Window]:
    """The real window over the stack, read in: packs, the runner's names, its draft."""
    opened = Window(display, addresses_of(stack), tmp_path / "gui")
    models = opened.models
    opened.until(lambda: models.pipeline.packs and models.pipeline.capabilities
                 and models.draft.summary is not None and models.queue.loaded,
                 "the window to read the services")
    yield opened
    opened.close()

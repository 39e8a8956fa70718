"""GUI fixtures: the whole system on loopback (the SDK tests' stack: the WebUI emulator over
real HTTP, queue, bundle with a packs directory, runner, history), a view-model harness over
it, and a paused queue for tests that look at queued jobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stablenew.sdk import Client, JobState
from tests.gui.harness import ModelHarness, sync_client
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

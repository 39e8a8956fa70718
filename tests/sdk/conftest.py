"""SDK fixtures: the whole system on loopback in this process (the WebUI emulator over real
HTTP, a queue, a bundle service with a packs directory, a runner, a history following the
queue), started once per session, and a client of each kind over it: every test that takes
`client` runs with the synchronous Client and again with the AsyncClient (through
tests/sdk/adapter.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stablenew.emulator.testing import fast_config, running
from stablenew.sdk import JobState
from tests.bundle_service.harness import BundleHarness, preset, write_pack
from tests.history.harness import SERVING, HistoryHarness
from tests.queue.harness import QueueHarness
from tests.runner.harness import EmulatorAdmin, RunnerHarness
from tests.sdk.harness import KINDS, PACK_ID, PACK_ROWS, Stack, connect


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("sdk-stack")
    packs_dir = root / "packs"
    packs_dir.mkdir()
    write_pack(packs_dir, f"{PACK_ID}.txt", "\n\n".join(PACK_ROWS) + "\n")
    write_pack(packs_dir, f"{PACK_ID}.json", {"pack_data": {"name": "Castles"},
                                              "preset_data": preset(steps=4)})
    with running(fast_config(step_seconds=0.002)) as emulator:
        admin = EmulatorAdmin(emulator.url)
        queue = QueueHarness(root / "queue", {"STABLENEW_LEASE_SECONDS": "30"})
        with queue.running():
            bundle = BundleHarness(root / "bundle", packs_dir, queue.address)
            runner = RunnerHarness(root / "runner", queue.address, emulator.url)
            history = HistoryHarness(root / "history", queue.address)
            with bundle.running(), runner.running(), history.running():
                history.wait_health(SERVING)
                yield Stack(emulator, admin, queue, bundle, runner, history, packs_dir)
        admin.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each test taking it runs with the synchronous client, then with the asyncio one."""
    kind: str = request.param
    return kind


@pytest.fixture
def client(kind: str, stack: Stack) -> Iterator[Any]:
    """A client of the kind under test, on the stack."""
    made = connect(kind, bundle_address=stack.bundle.address,
                   queue_address=stack.queue.address, runner_address=stack.runner.address,
                   history_address=stack.history.address)
    yield made
    made.close()


@pytest.fixture
def paused(client: Any) -> Iterator[None]:
    """The queue paused for the test (queued jobs stay queued), then every job the test left
    queued cancelled and the queue resumed."""
    client.queue.pause()
    yield
    for job in client.queue.list():
        if job.state == JobState.QUEUED:
            client.queue.cancel(job.job_id)
    client.queue.resume()

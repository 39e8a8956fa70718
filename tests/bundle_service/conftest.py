"""Bundle service fixtures: a real queue and a real bundle server on loopback, started once per
test module (tests use their own drafts, packs and request ids, so they do not disturb each
other), and a variant whose queue link can be broken on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bundle_service.harness import BundleHarness, FaultyLink
from tests.queue.harness import QueueHarness


@dataclass
class Stack:
    queue: QueueHarness
    bundle: BundleHarness
    packs_dir: Path
    link: FaultyLink | None = None


def _start(root: Path, with_link: bool) -> Stack:
    queue = QueueHarness(root / "queue", {"STABLENEW_LEASE_SECONDS": "30"}).start()
    assert queue.server is not None
    link = FaultyLink(queue.server.port) if with_link else None
    queue_address = link.address if link else queue.address
    packs_dir = root / "packs"
    bundle = BundleHarness(root / "bundle", packs_dir, queue_address).start()
    return Stack(queue, bundle, packs_dir, link)


def _stop(stack: Stack) -> None:
    stack.bundle.stop()
    if stack.link is not None:
        stack.link.close()
    stack.queue.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started = _start(tmp_path_factory.mktemp("bundle-stack"), with_link=False)
    yield started
    _stop(started)


@pytest.fixture
def linked_stack(tmp_path: Path) -> Iterator[Stack]:
    """A fresh stack per test whose bundle reaches the queue through a FaultyLink."""
    started = _start(tmp_path, with_link=True)
    yield started
    _stop(started)

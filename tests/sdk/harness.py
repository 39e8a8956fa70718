"""SDK test helpers: the stack the session runs on, clients of both kinds, drafts of the test
pack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stablenew.emulator.server import EmulatorServer
from stablenew.sdk import Client, Draft
from tests.bundle_service.harness import BundleHarness, unique
from tests.history.harness import HistoryHarness
from tests.queue.harness import QueueHarness
from tests.queue.processes import free_port
from tests.runner.harness import EmulatorAdmin, RunnerHarness
from tests.sdk.adapter import SyncAsyncClient
from tests.service_harness import wait_for

# Three rows, one job each; the runner makes one image per row.
PACK_ID = "castles"
PACK_ROWS = ("a castle on a hill", "an owl at night", "a fox in snow")
KINDS = ("sync", "async")


@dataclass
class Stack:
    emulator: EmulatorServer
    admin: EmulatorAdmin
    queue: QueueHarness
    bundle: BundleHarness
    runner: RunnerHarness
    history: HistoryHarness
    packs_dir: Path


def connect(kind: str, **arguments: Any) -> Any:
    """A Client ("sync") or an AsyncClient used like one ("async"), reading no variables."""
    arguments.setdefault("env", {})
    return Client(**arguments) if kind == "sync" else SyncAsyncClient(**arguments)


def new_draft(client: Any, rows: list[int] | None = None) -> Draft:
    """A draft holding rows of the test pack (every row when None)."""
    draft = client.drafts.create(display_name=unique("sdk-draft-"))
    result: Draft = client.drafts.add_pack(draft.draft_id, PACK_ID, rows=rows)
    return result


def second_runner(data_dir: Path, stack: Stack) -> RunnerHarness:
    """Another runner of the stack's queue and emulator (not started), on a port of its own
    that it advertises to the queue, under an id no earlier test used."""
    return RunnerHarness(data_dir, stack.queue.address, stack.emulator.url,
                         runner_id=unique("runner-second-"),
                         env={"STABLENEW_RUNNER_ADDR": f"127.0.0.1:{free_port()}"})


def place_only_on(runner: RunnerHarness, relative: str, png: bytes) -> None:
    """An image file under one runner's output root alone."""
    path = runner.output_root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def wait_announced(client: Any, runner: RunnerHarness) -> None:
    """Until the queue lists the runner with the address it advertises."""
    wait_for(lambda: any(r.info.runner_id == runner.runner_id and r.info.address
                         for r in client.queue.runners()), f"{runner.runner_id} announced")

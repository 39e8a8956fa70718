"""The view models of the window without a display: a UI queue that the test thread drains (so
the test thread is the UI thread), the real backend on its own loop thread, and the models built
on them against real services."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from stablenew.gui.backend import Backend
from stablenew.gui.connection_model import ConnectionModel
from stablenew.gui.context import Context, Level, StatusMessage, StatusModel
from stablenew.gui.dispatch import UiQueue
from stablenew.sdk import AsyncClient, Client
from tests.service_harness import wait_for

T = TypeVar("T")

# How long a test waits for something that happens at once on a healthy machine.
PATIENCE_SECONDS = 30.0


class ModelHarness:
    """A context for view models over the services at `addresses`."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = dict(addresses)
        self.ui = UiQueue()
        self.connection = ConnectionModel(addresses)
        self.status = StatusModel()
        self.messages: list[StatusMessage] = []
        self.status.changed.connect(self.messages.append)
        client = AsyncClient(bundle_address=addresses["bundle"],
                             queue_address=addresses["queue"],
                             runner_address=addresses["runner"],
                             history_address=addresses["history"], env={})
        self.backend = Backend(client, self.ui, self.connection)
        self.backend.start()
        self.context = Context(self.ui, self.backend, self.connection, self.status)

    def settle(self, probe: Callable[[], T | None], what: str,
               timeout: float = PATIENCE_SECONDS) -> T:
        """Run the UI callbacks until `probe()` is truthy; its value."""
        def drained() -> T | None:
            self.ui.drain(budget=None)
            return probe()
        return wait_for(drained, what, timeout)

    def errors(self) -> list[str]:
        """The error messages the status line showed."""
        return [message.text for message in self.messages if message.level == Level.ERROR]

    def last_info(self) -> str:
        """The newest informational message."""
        return next((message.text for message in reversed(self.messages)
                     if message.level == Level.INFO), "")

    def close(self) -> None:
        self.backend.close()


def sync_client(addresses: Mapping[str, str]) -> Client:
    """A synchronous SDK client for the test's own checks and set-up."""
    return Client(bundle_address=addresses["bundle"], queue_address=addresses["queue"],
                  runner_address=addresses["runner"], history_address=addresses["history"],
                  env={})


def write_text_pack(packs_dir: Path, pack_id: str, rows: list[str]) -> Path:
    """A .txt pack of one-line rows."""
    path = packs_dir / f"{pack_id}.txt"
    path.write_text("\n\n".join(rows) + "\n", encoding="utf-8")
    return path

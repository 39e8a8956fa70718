"""Fixtures: an emulator on a free loopback port with tiny step times, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stablenew.emulator import EmulatorConfig, EmulatorServer
from stablenew.emulator.testing import fast_config


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with config changes (e.g. api_auth=...); all stop at teardown."""
    servers: list[EmulatorServer] = []

    def start(config: EmulatorConfig | None = None, **changes: Any) -> EmulatorServer:
        server = EmulatorServer(config or fast_config(**changes))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(start_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return start_emulator()


@pytest.fixture
def url(emulator: EmulatorServer) -> str:
    return emulator.url

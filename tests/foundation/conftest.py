"""Fixtures shared by the foundation tests: a clean environment, free loopback ports, a
self-signed TLS pair, and a runner for the `stablenew` command as a user starts it.

Test modules cannot import this file (importlib import mode), so helpers are fixtures that
return callables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.pki import write_server_files
from tests.queue.processes import free_port as pick_free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

FreePort = Callable[[], int]
RunCli = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def free_port() -> FreePort:
    """A callable returning a port that was free on 127.0.0.1 a moment ago."""
    return pick_free_port


@pytest.fixture(scope="session")
def clean_env() -> dict[str, str]:
    """The process environment without any STABLENEW_* variable (a copy: mutate freely)."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("STABLENEW_")}


@pytest.fixture(scope="session")
def stablenew_command() -> list[str]:
    """How a user starts the CLI: the console script beside this interpreter."""
    script = Path(sys.executable).parent / "stablenew"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "stablenew.cli.main"]


@pytest.fixture(scope="session")
def run_cli(stablenew_command: list[str], clean_env: dict[str, str]) -> RunCli:
    """run_cli(*args, env={...extra variables}) -> CompletedProcess with text output."""

    def run(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        full_env = dict(clean_env) | dict(env or {})
        return subprocess.run(
            [*stablenew_command, *args], env=full_env, capture_output=True, text=True,
            timeout=timeout, check=False, cwd=REPO_ROOT,
        )

    return run


def _write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    return write_server_files(directory, issuer=None)


@pytest.fixture(scope="session")
def self_signed() -> Callable[[Path], tuple[Path, Path]]:
    """self_signed(directory) writes a new certificate and key there and returns them."""
    return _write_self_signed


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(certificate, key): self-signed for localhost and 127.0.0.1, as PEM files."""
    yield _write_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def grpc_addr() -> str:
    """pytest-grpc's server address; its own pick is "localhost": stay on the IPv4 loopback."""
    return f"127.0.0.1:{pick_free_port()}"

"""CLI fixtures: one `stablenew up` for the session (the WebUI emulator and the four services as
separate processes, with the test packs in its library), and `cli`, the CLI's main run in this
process against it exactly as a user types the command: arguments in, exit code, standard
output and standard error out.

Test modules cannot import this file (importlib import mode): shared helpers live in
tests/cli/up_process.py and tests/cli/cli_result.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stablenew.cli.main import main
from tests.cli.cli_result import Result, write_test_packs
from tests.cli.up_process import UpProcess, deployment_env
from tests.runner.harness import EmulatorAdmin

RunCli = Callable[..., Result]


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """`stablenew up` with the test packs; stopped with SIGTERM at the end of the session
    (which must end it with exit 0 and no child left)."""
    root = tmp_path_factory.mktemp("cli-up")
    up = UpProcess(root, deployment_env(root))
    write_test_packs(up.packs_dir)
    up.start()
    try:
        up.wait_ready()
        yield up
        up.shut_down()
    finally:
        up.cleanup()


@pytest.fixture
def emulator(system: UpProcess) -> Iterator[EmulatorAdmin]:
    """The emulator's admin endpoint; every fault a test sets is cleared after it."""
    admin = EmulatorAdmin(system.emulator_url)
    yield admin
    admin.faults(clear=True)
    admin.close()


@pytest.fixture
def cli_env(system: UpProcess, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a command sees: the deployment's addresses, and a data directory of the
    test's own (where the CLI remembers its current draft)."""
    for key in list(os.environ):
        if key.startswith("STABLENEW_"):
            monkeypatch.delenv(key)
    env = system.client_env() | {"STABLENEW_DATA_DIR": str(tmp_path / "cli-data")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """cli(*arguments, **variables) -> Result; variables change the environment first."""

    def run(*arguments: str, **variables: str) -> Result:
        for key, value in variables.items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(arguments))
        out, err = capsys.readouterr()
        return Result(list(arguments), code, out, err)

    return run


@pytest.fixture
def paused(cli: RunCli) -> Iterator[None]:
    """The queue paused for the test; afterwards every active job is cancelled and the queue
    resumed, so other tests find it running and empty."""
    cli("queue", "pause").ok()
    yield
    # Running ones too: the runner may already hold the next job (it leases one ahead).
    for job in cli("queue", "list", "--json").ok().json()["jobs"]:
        if job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_RUNNING"):
            cli("queue", "cancel", job["job_id"])
    cli("queue", "resume").ok()

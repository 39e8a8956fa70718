"""`stablenew up` as a user starts it, in its own process with its children, on free loopback
ports and a data directory of the test's own; shared by the CLI and the end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from stablenew.contract.endpoints import SERVICE_NAMES
from tests.queue.processes import free_port
from tests.service_harness import wait_for

READY_SECONDS = 90.0  # only catches a hang: on a shared 2-core machine a start takes seconds
STOP_SECONDS = 30.0


def stablenew_command() -> list[str]:
    """The console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "stablenew"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stablenew.cli.main"]


def clean_environment() -> dict[str, str]:
    """This process's environment without any STABLENEW_* setting."""
    return {key: value for key, value in os.environ.items() if not key.startswith("STABLENEW_")}


def deployment_env(root: Path, emulator: bool = True) -> dict[str, str]:
    """Variables for a deployment under `root`: free ports, a fast emulator."""
    env = {f"STABLENEW_{name.upper()}_ADDR": f"127.0.0.1:{free_port()}" for name in SERVICE_NAMES}
    env |= {"STABLENEW_DATA_DIR": str(root / "data"),
            "STABLENEW_GRACE_SECONDS": "1"}
    if emulator:
        env |= {"STABLENEW_EMULATOR_ADDR": f"127.0.0.1:{free_port()}",
                "STABLENEW_EMULATOR_STEP_SECONDS": "0.002",
                "STABLENEW_EMULATOR_MODEL_LOAD_SECONDS": "0"}
    return env


@dataclass
class UpProcess:
    """One `stablenew up --json` and what it printed."""

    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] = field(init=False)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def stdout_path(self) -> Path:
        return self.root / "up.out"

    @property
    def stderr_path(self) -> Path:
        return self.root / "up.err"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["STABLENEW_DATA_DIR"])

    @property
    def packs_dir(self) -> Path:
        return self.data_dir / "packs"

    @property
    def emulator_url(self) -> str:
        return f"http://{self.env['STABLENEW_EMULATOR_ADDR']}"

    def client_env(self) -> dict[str, str]:
        """What a client of this deployment needs: the addresses (and the data directory)."""
        return dict(self.env)

    def start(self, *arguments: str, json_output: bool = True,
              sigint_ignored: bool = False) -> UpProcess:
        """`stablenew up [--json] ARGUMENTS...`; `sigint_ignored` starts it the way a shell
        starts a background command (SIGINT ignored)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        flags = ["--json", *arguments] if json_output else list(arguments)
        # An ignored signal stays ignored across exec: set it here while the child starts.
        previous = signal.getsignal(signal.SIGINT)
        if sigint_ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
                self.process = subprocess.Popen(
                    [*stablenew_command(), "up", *flags],
                    env=clean_environment() | self.env, stdout=out, stderr=err, cwd=self.root)
        finally:
            signal.signal(signal.SIGINT, previous)
        return self

    def output(self) -> str:
        return (f"exit {self.process.poll()}\nstdout:\n{self.stdout_path.read_text()}\n"
                f"stderr:\n{self.stderr_path.read_text()}")

    def wait_ready(self) -> dict[str, Any]:
        """What `up` prints once every service is ready (fails if `up` exits first): its
        JSON, or {"text": ...} without --json."""
        def printed() -> dict[str, Any] | None:
            assert self.process.poll() is None, self.output()
            text = self.stdout_path.read_text()
            if "Ctrl-C stops everything." in text:
                return {"text": text}
            try:
                report: dict[str, Any] = json.loads(text)
            except ValueError:
                return None
            return report

        self.report = wait_for(printed, "stablenew up to be ready", timeout=READY_SECONDS,
                               interval=0.1)
        return self.report

    def children(self) -> list[psutil.Process]:
        """The processes `up` started (and theirs)."""
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, signal_number: int = signal.SIGTERM) -> int:
        """Send the signal and wait for the exit code."""
        self.process.send_signal(signal_number)
        return self.process.wait(timeout=STOP_SECONDS)

    def shut_down(self) -> None:
        """SIGTERM, as a service manager stops it: exit 0, and no child left running."""
        children = self.children()
        code = self.stop()
        assert code == 0, self.output()
        assert all_gone(children), [child.cmdline() for child in children]

    def cleanup(self) -> None:
        """Whatever happened, nothing of this deployment keeps running."""
        leftovers = [] if self.process.poll() is not None else self.children()
        if self.process.poll() is None:
            self.stop()
        for child in leftovers:
            if child.is_running():
                child.kill()


def alive(process: psutil.Process) -> bool:
    """Still running (a zombie waiting for its parent to reap it has exited)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def all_gone(processes: list[psutil.Process]) -> bool:
    """Whether every one of `processes` has exited."""
    return not any(alive(process) for process in processes)


def run_cli(*arguments: str, env: Mapping[str, str], cwd: Path,
            timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """The CLI as a separate process with `env` (over a clean environment)."""
    return subprocess.run([*stablenew_command(), *arguments], env=clean_environment() | dict(env),
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)

"""`stablenew serve emulator` as a user runs it: a separate process on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from stablenew.cli.main import main
from tests.queue.processes import free_port

DEADLINE = 15.0
COMMAND = [sys.executable, "-m", "stablenew.cli.main", "serve", "emulator"]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        assert process.poll() is None, process.communicate()
        try:
            if requests.get(url + "/sdapi/v1/sd-models", timeout=1).status_code in (200, 401):
                return
        except requests.exceptions.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the emulator did not open its port"
        time.sleep(0.05)


def wait_for_log(process: subprocess.Popen[str], message: str) -> None:
    """Read JSON log lines until one says `message` (the process is past start-up then)."""
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line)["message"] == message:
            return
    pytest.fail(f"the emulator exited before logging {message!r}")


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=DEADLINE)
    return process.returncode, stdout, stderr


@pytest.fixture
def launch() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def start(launch: list[subprocess.Popen[str]], *flags: str,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    process = subprocess.Popen([*COMMAND, *flags], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    launch.append(process)
    return process


@pytest.mark.e2e
def test_serve_generate_and_sigterm(launch: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(launch, "--address", f"127.0.0.1:{port}", "--step-seconds", "0.002",
                    "--model-load-seconds", "0")
    wait_ready(url, process)
    response = requests.post(url + "/sdapi/v1/txt2img", json={"prompt": "cli", "steps": 2},
                             timeout=30)
    assert response.status_code == 200 and len(response.json()["images"]) == 1
    code, stdout, stderr = stop(process)
    assert code == 0
    assert "Traceback" not in stderr
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert all(line["service"] == "emulator" for line in lines)
    messages = [line["message"] for line in lines]
    assert "emulator listening" in messages and "emulator stopped" in messages
    assert any(m.startswith("POST /sdapi/v1/txt2img 200") for m in messages)


@pytest.mark.e2e
def test_environment_variables_configure_it(launch: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(launch, env={"STABLENEW_EMULATOR_ADDR": f"127.0.0.1:{port}",
                                 "STABLENEW_EMULATOR_API_AUTH": "user:pass",
                                 "STABLENEW_EMULATOR_FAIL_NEXT": "1",
                                 "STABLENEW_EMULATOR_STEP_SECONDS": "0.002"})
    wait_ready(url, process)
    assert requests.get(url + "/sdapi/v1/options", timeout=5).status_code == 401
    failed = requests.post(url + "/sdapi/v1/txt2img", json={"steps": 1}, auth=("user", "pass"),
                           timeout=30)
    assert failed.status_code == 500
    code, _, stderr = stop(process)
    assert code == 0 and "Traceback" not in stderr


@pytest.mark.e2e
def test_late_port_open(launch: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    process = start(launch, "--address", f"127.0.0.1:{port}", "--start-delay-seconds", "1.0")
    wait_for_log(process, "delaying start")
    assert not port_open(port)
    wait_ready(f"http://127.0.0.1:{port}", process)
    code, _, _ = stop(process)
    assert code == 0


@pytest.mark.e2e
def test_sigterm_during_start_delay_exits_cleanly(launch: list[subprocess.Popen[str]]) -> None:
    process = start(launch, "--address", f"127.0.0.1:{free_port()}",
                    "--start-delay-seconds", "60")
    wait_for_log(process, "delaying start")
    code, _, stderr = stop(process)
    assert code == 0 and "Traceback" not in stderr


@pytest.mark.e2e
@pytest.mark.parametrize("flags", [["--step-seconds", "soon"], ["--address", "nowhere"],
                                   ["--api-auth", "no-colon"], ["--checkpoint", "nope"],
                                   ["--fail-next", "-5"], ["--no-such-flag"]])
def test_bad_flags_exit_2(flags: list[str]) -> None:
    result = subprocess.run([*COMMAND, *flags], capture_output=True, text=True,
                            timeout=DEADLINE, check=False)
    assert result.returncode == 2
    assert "error" in result.stderr and "Traceback" not in result.stderr


def test_bad_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STABLENEW_EMULATOR_MODEL_LOAD_SECONDS", "-1")
    assert main(["serve", "emulator"]) == 2
    assert "STABLENEW_EMULATOR_MODEL_LOAD_SECONDS" in capsys.readouterr().err


def test_help_documents_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "emulator", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--fail-next", "--oom-next", "--hang-next", "--refuse-seconds",
                 "--start-delay-seconds", "--model-load-seconds", "/emulator/v1/faults",
                 "release_hung", "STABLENEW_EMULATOR_STEP_SECONDS", "OutOfMemoryError"):
        assert word in text


def test_serve_lists_the_emulator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "emulator" in capsys.readouterr().out

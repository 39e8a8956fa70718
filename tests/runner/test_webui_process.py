"""Owning the WebUI process: start and readiness (also a late port), a crash restarted by
supervise(), the restart bound, and stop() ending the whole process group."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_process import (
    ENV_COMMAND,
    RestartLimitError,
    WebuiPhase,
    WebuiProcess,
    WebuiProcessError,
)
from tests.queue.processes import free_port
from tests.service_harness import wait_for

DEADLINE = 20.0
PYTHON = shlex.quote(sys.executable)

# A stand-in WebUI: optionally starts a helper child (its pid written to a file), optionally
# ignores SIGTERM, waits, then answers GET /sdapi/v1/sd-models on the loopback port.
FAKE_WEBUI = '''
import http.server, os, signal, subprocess, sys, time
port, delay = int(sys.argv[1]), float(sys.argv[2])
child_file, ignore_term = sys.argv[3], sys.argv[4]
if ignore_term == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the helper too
print("fake webui starting", flush=True)
if child_file != "-":
    helper = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"])
    with open(child_file + ".tmp", "w") as f:
        f.write(str(helper.pid))
    os.replace(child_file + ".tmp", child_file)
time.sleep(delay)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/sdapi/v1/sd-models"
        body = b"[]" if ok else b'{"detail":"Not Found"}'
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("fake webui listening", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def wait_until(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, what, DEADLINE)


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody has reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def processes() -> Iterator[list[WebuiProcess]]:
    """Every WebuiProcess a test makes is stopped at teardown, whatever the test did."""
    made: list[WebuiProcess] = []
    yield made
    for process in made:
        process.stop(grace=1.0)


@pytest.fixture
def fake_webui(tmp_path: Path, processes: list[WebuiProcess]) -> Callable[..., WebuiProcess]:
    script = tmp_path / "fake_webui.py"
    script.write_text(FAKE_WEBUI)

    def make(port: int, delay: float = 0.0, child_file: Path | None = None,
             ignore_term: bool = False) -> WebuiProcess:
        command = (f"{PYTHON} {shlex.quote(str(script))} {port} {delay} "
                   f"{shlex.quote(str(child_file or '-'))} {int(ignore_term)}")
        process = WebuiProcess(command, log_dir=tmp_path / "logs", poll_interval=0.05)
        processes.append(process)
        return process

    return make


def client_for(port: int) -> WebuiClient:
    return WebuiClient(f"http://127.0.0.1:{port}", connect_timeout=1.0, retries=0)


def test_start_waits_for_the_emulator_opening_its_port_late(
        tmp_path: Path, processes: list[WebuiProcess]) -> None:
    port = free_port()
    command = (f"{PYTHON} -m stablenew.cli.main serve emulator --address 127.0.0.1:{port} "
               "--start-delay-seconds 1 --model-load-seconds 0 --step-seconds 0.001")
    process = WebuiProcess(command, log_dir=tmp_path / "logs", poll_interval=0.05)
    processes.append(process)
    client = client_for(port)
    process.start()
    assert process.alive and process.state.phase is WebuiPhase.STARTING
    assert not client.is_ready()  # the port is not open yet
    assert process.wait_ready(client, timeout=DEADLINE)
    state = process.state
    assert state.phase is WebuiPhase.READY and state.pid == process.pid
    assert client.samplers()
    process.stop(grace=5.0)
    state = process.state
    assert state.phase is WebuiPhase.STOPPED and state.exit_code == 0
    assert not process.alive
    log_text = (tmp_path / "logs" / "webui.log").read_text()
    assert "stablenew starts:" in log_text and "emulator listening" in log_text


def test_a_late_port_is_waited_for(fake_webui: Callable[..., WebuiProcess]) -> None:
    port = free_port()
    process = fake_webui(port, delay=1.0)
    process.start()
    assert process.wait_ready(client_for(port), timeout=DEADLINE)
    assert process.state.phase is WebuiPhase.READY


def test_wait_ready_gives_up_when_the_process_exits(tmp_path: Path,
                                                    processes: list[WebuiProcess]) -> None:
    command = f"{PYTHON} -c \"print('loading weights failed'); raise SystemExit(3)\""
    process = WebuiProcess(command, log_dir=tmp_path, poll_interval=0.05)
    processes.append(process)
    process.start()
    started = time.monotonic()
    assert process.wait_ready(client_for(free_port()), timeout=DEADLINE) is False
    assert time.monotonic() - started < DEADLINE / 2  # not the whole timeout
    state = process.state
    assert state.phase is WebuiPhase.EXITED and state.exit_code == 3
    assert "exited with code 3" in state.reason
    assert "loading weights failed" in state.reason  # the log's tail explains why


def test_wait_ready_times_out(tmp_path: Path, processes: list[WebuiProcess]) -> None:
    process = WebuiProcess([sys.executable, "-c", "import time; time.sleep(60)"],
                           log_dir=tmp_path, poll_interval=0.05)
    processes.append(process)
    process.start()
    assert process.wait_ready(client_for(free_port()), timeout=0.5) is False
    assert process.state.phase is WebuiPhase.STARTING and process.alive


def test_stop_ends_a_wait_ready(tmp_path: Path, processes: list[WebuiProcess]) -> None:
    process = WebuiProcess([sys.executable, "-c", "import time; time.sleep(60)"],
                           log_dir=tmp_path, poll_interval=0.05)
    processes.append(process)
    process.start()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(
        process.wait_ready(client_for(free_port()), timeout=DEADLINE)))
    waiter.start()
    time.sleep(0.2)
    process.stop(grace=2.0)
    waiter.join(timeout=DEADLINE / 2)
    assert results == [False] and process.state.phase is WebuiPhase.STOPPED


def test_supervise_restarts_a_crashed_webui(fake_webui: Callable[..., WebuiProcess]) -> None:
    port = free_port()
    process = fake_webui(port)
    client = client_for(port)
    process.start()
    assert process.wait_ready(client, timeout=DEADLINE)
    assert process.supervise().phase is WebuiPhase.READY  # healthy: nothing to do
    first_pid = process.pid
    assert first_pid is not None
    os.killpg(first_pid, signal.SIGKILL)  # a crash
    wait_until(lambda: not process.alive, "the crash")
    crashed = process.state
    assert crashed.phase is WebuiPhase.EXITED and "SIGKILL" in crashed.reason
    state = process.supervise()
    assert state.phase is WebuiPhase.STARTING and state.restarts == 1
    assert process.pid != first_pid and process.alive
    # Further ticks notice the restarted WebUI answering (the client from wait_ready is kept).
    wait_until(lambda: process.supervise().phase is WebuiPhase.READY, "READY after restart")


def test_restarts_are_bounded(tmp_path: Path, processes: list[WebuiProcess]) -> None:
    command = f"{PYTHON} -c \"print('segfault in the CUDA driver'); raise SystemExit(1)\""
    process = WebuiProcess(command, log_dir=tmp_path, max_restarts=2, restart_window=600.0)
    processes.append(process)
    process.start()
    for restarts in (1, 2):
        wait_until(lambda: process.state.phase is WebuiPhase.EXITED, "the exit")
        assert process.supervise().restarts == restarts
    wait_until(lambda: process.state.phase is WebuiPhase.EXITED, "the last exit")
    pid = process.pid
    for _ in range(2):  # it keeps saying so, and starts nothing
        with pytest.raises(RestartLimitError, match="restarted 2 times within 10 minutes"):
            process.supervise()
    assert process.pid == pid
    state = process.state
    assert state.phase is WebuiPhase.EXITED and state.restarts == 2
    assert "not restarted again" in state.reason and "segfault" in state.reason


def test_the_restart_window_slides(tmp_path: Path, processes: list[WebuiProcess]) -> None:
    process = WebuiProcess([sys.executable, "-c", "raise SystemExit(1)"], log_dir=tmp_path,
                           max_restarts=1, restart_window=0.5)
    processes.append(process)
    process.start()
    process.restart()
    with pytest.raises(RestartLimitError):
        process.restart()
    time.sleep(0.6)
    process.restart()  # the first restart has left the window
    assert process.state.restarts == 1


def test_supervise_does_nothing_after_stop(tmp_path: Path,
                                           processes: list[WebuiProcess]) -> None:
    process = WebuiProcess([sys.executable, "-c", "raise SystemExit(0)"], log_dir=tmp_path)
    processes.append(process)
    process.start()
    process.stop(grace=2.0)
    assert process.supervise().phase is WebuiPhase.STOPPED
    assert process.state.restarts == 0


def test_stop_ends_the_whole_process_group(tmp_path: Path,
                                           fake_webui: Callable[..., WebuiProcess]) -> None:
    port = free_port()
    child_file = tmp_path / "helper.pid"
    process = fake_webui(port, child_file=child_file)
    process.start()
    assert process.wait_ready(client_for(port), timeout=DEADLINE)
    helper = int(child_file.read_text())
    leader = process.pid
    assert leader is not None and os.getpgid(helper) == leader and not gone(helper)
    process.stop(grace=5.0)
    assert gone(leader) and gone(helper)
    assert process.state.exit_code == -signal.SIGTERM


def test_stop_kills_a_group_that_ignores_sigterm(tmp_path: Path,
                                                 fake_webui: Callable[..., WebuiProcess]) -> None:
    port = free_port()
    child_file = tmp_path / "helper.pid"
    process = fake_webui(port, child_file=child_file, ignore_term=True)
    process.start()
    assert process.wait_ready(client_for(port), timeout=DEADLINE)
    helper = int(child_file.read_text())
    process.stop(grace=0.5)
    assert not process.alive and gone(helper)
    assert process.state.exit_code == -signal.SIGKILL


def test_a_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    process = WebuiProcess("no-such-webui-binary --api", log_dir=tmp_path)
    with pytest.raises(WebuiProcessError, match="no-such-webui-binary"):
        process.start()
    assert process.state.phase is WebuiPhase.EXITED
    with pytest.raises(ValueError, match=ENV_COMMAND):
        WebuiProcess("   ", log_dir=tmp_path)


def test_from_env_splits_the_command(tmp_path: Path) -> None:
    assert WebuiProcess.from_env(tmp_path, environ={}) is None
    process = WebuiProcess.from_env(
        tmp_path, environ={ENV_COMMAND: "./webui.sh --api --api-auth 'user:a b'"})
    assert process is not None
    assert process.args == ["./webui.sh", "--api", "--api-auth", "user:a b"]
    assert process.state.phase is WebuiPhase.NOT_STARTED

"""`stablenew gui` as a user starts it, in its own process: with `--local` it runs the services
for the window and stops them when the window closes; without a display, or with a service
that cannot start, it says why in one line and leaves nothing running."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import psutil

from tests.cli.up_process import (
    all_gone,
    clean_environment,
    deployment_env,
    run_cli,
    stablenew_command,
)
from tests.gui.harness import write_text_pack
from tests.service_harness import wait_for

START_SECONDS = 90.0  # only catches a hang: a start takes seconds on a shared machine
STOP_SECONDS = 60.0


def window_ids(display: str) -> list[str]:
    """The X windows named StableNew on `display`."""
    found = subprocess.run(["xdotool", "search", "--name", "^StableNew$"], capture_output=True,
                           text=True, timeout=10, check=False,
                           env=clean_environment() | {"DISPLAY": display})
    return found.stdout.split()


def served(children: list[psutil.Process]) -> list[str]:
    """The services among `children` (`stablenew serve NAME`)."""
    names = []
    for child in children:
        command = child.cmdline()
        if "serve" in command:
            names.append(command[command.index("serve") + 1])
    return sorted(names)


def test_local_runs_the_services_for_the_window_and_stops_them(display: str,
                                                               tmp_path: Path) -> None:
    env = deployment_env(tmp_path) | {"DISPLAY": display}
    data_dir = Path(env["STABLENEW_DATA_DIR"])
    (data_dir / "packs").mkdir(parents=True)
    write_text_pack(data_dir / "packs", "harbour", ["a quiet harbour at dawn"])
    with (tmp_path / "gui.out").open("wb") as out, (tmp_path / "gui.err").open("wb") as err:
        gui = subprocess.Popen([*stablenew_command(), "gui", "--local"],
                               env=clean_environment() | env, stdout=out, stderr=err,
                               cwd=tmp_path)
    try:
        state = data_dir / "gui" / "state.json"
        wait_for(lambda: state.exists() or gui.poll() is not None,
                 "the window to open its draft", timeout=START_SECONDS, interval=0.2)
        assert gui.poll() is None, (tmp_path / "gui.err").read_text()
        assert json.loads(state.read_text())["drafts"][env["STABLENEW_BUNDLE_ADDR"]]
        wait_for(lambda: window_ids(display), "the window on the display")
        children = psutil.Process(gui.pid).children(recursive=True)
        assert served(children) == ["bundle", "emulator", "history", "queue", "runner"]
        gui.send_signal(signal.SIGTERM)  # as closing it from a service manager or Ctrl-C
        assert gui.wait(timeout=STOP_SECONDS) == 0, (tmp_path / "gui.err").read_text()
        wait_for(lambda: all_gone(children), "every service to stop with the window")
        assert not window_ids(display)
    finally:
        if gui.poll() is None:
            gui.kill()
            gui.wait()
    printed = (tmp_path / "gui.out").read_text()
    assert "Starting the services on this machine" in printed
    assert env["STABLENEW_QUEUE_ADDR"] in printed


def test_local_with_a_service_that_cannot_start(display: str, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = deployment_env(tmp_path) | {"DISPLAY": display}
        env["STABLENEW_QUEUE_ADDR"] = f"127.0.0.1:{holder.getsockname()[1]}"
        done = run_cli("gui", "--local", env=env, cwd=tmp_path)
    assert done.returncode == 1, done
    assert "queue exited with code 1" in done.stderr and "stopped everything" in done.stderr
    assert "Traceback" not in done.stderr
    assert not window_ids(display)


def test_without_a_display_it_says_so(tmp_path: Path) -> None:
    done = run_cli("gui", env={"DISPLAY": ":4095"}, cwd=tmp_path)
    assert done.returncode == 1, done
    assert done.stderr.startswith("stablenew: cannot open the window:"), done.stderr
    assert done.stderr.count("\n") == 1


def test_help_names_the_local_mode(tmp_path: Path) -> None:
    done = run_cli("gui", "--help", env={}, cwd=tmp_path)
    assert done.returncode == 0
    words = " ".join(done.stdout.split())
    assert "--local" in words and "stop them when the window closes" in words

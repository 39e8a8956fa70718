"""`stablenew up`: the services (and the emulator when no WebUI answers) as child processes,
ready before it says so, and never outliving it: Ctrl-C, SIGTERM, SIGKILL, a child that dies."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import psutil
import pytest

from stablenew.emulator.testing import fast_config, running
from tests.cli.up_process import UpProcess, all_gone, deployment_env, run_cli
from tests.queue.processes import free_port
from tests.service_harness import wait_for

pytestmark = pytest.mark.e2e

SERVICES = ("bundle", "queue", "runner", "history")


def serve_commands(children: list[psutil.Process]) -> list[str]:
    """Which `stablenew serve NAME` each child is."""
    return sorted(child.cmdline()[child.cmdline().index("serve") + 1] for child in children)


def test_ctrl_c_stops_everything_and_exits_130(tmp_path: Path) -> None:
    # Started as a shell starts a background command: SIGINT ignored, and still honoured.
    up = UpProcess(tmp_path, deployment_env(tmp_path)).start(json_output=False,
                                                             sigint_ignored=True)
    try:
        text = up.wait_ready()["text"]
        for service in SERVICES:
            assert f"  {service:<8} {up.env[f'STABLENEW_{service.upper()}_ADDR']}" in text
        assert f"webui    {up.emulator_url} (the built-in emulator)" in text
        assert f"data     {up.data_dir}" in text
        assert f"packs    {up.packs_dir}" in text
        children = up.children()
        assert serve_commands(children) == ["bundle", "emulator", "history", "queue", "runner"]
        health = run_cli("health", env=up.client_env(), cwd=tmp_path)
        assert health.returncode == 0, health
        assert up.stop(signal.SIGINT) == 130, up.output()
        assert all_gone(children)  # `up` waited for every child before it exited
    finally:
        up.cleanup()
    assert "Traceback" not in up.output()


def test_sigkill_of_up_leaves_no_orphans(tmp_path: Path) -> None:
    # A WebUI already answers where the runner looks: `up` starts no emulator.
    with running(fast_config()) as webui:
        env = deployment_env(tmp_path, emulator=False)
        env["STABLENEW_EMULATOR_ADDR"] = webui.url.removeprefix("http://")
        up = UpProcess(tmp_path, env).start()
        try:
            report = up.wait_ready()
            assert report["webui"] == {"url": webui.url, "emulator": False}
            assert report["services"] == {service: env[f"STABLENEW_{service.upper()}_ADDR"]
                                          for service in SERVICES}
            assert report["data_dir"] == str(up.data_dir)
            assert report["packs_dir"] == str(up.packs_dir)
            children = up.children()
            assert serve_commands(children) == sorted(SERVICES)
            up.process.kill()
            up.process.wait(timeout=10)
            wait_for(lambda: all_gone(children), "every child to stop after up's SIGKILL")
        finally:
            for child in up.children() if up.process.poll() is None else []:
                child.kill()


def test_a_child_that_dies_stops_everything(tmp_path: Path) -> None:
    env = deployment_env(tmp_path, emulator=False)
    env["STABLENEW_WEBUI_URL"] = f"http://127.0.0.1:{free_port()}"  # set: no emulator
    up = UpProcess(tmp_path, env).start()
    try:
        assert up.wait_ready()["webui"]["emulator"] is False
        children = up.children()
        bundle = next(c for c in children if serve_commands([c]) == ["bundle"])
        bundle.kill()
        assert up.process.wait(timeout=60) == 1
        assert all_gone(children)
        error = up.stderr_path.read_text()
        assert "stablenew: bundle exited with code -9" in error and "stopped everything" in error
    finally:
        up.cleanup()


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env = deployment_env(tmp_path)
        env["STABLENEW_QUEUE_ADDR"] = f"127.0.0.1:{holder.getsockname()[1]}"
        up = UpProcess(tmp_path, env).start()
        try:
            assert up.process.wait(timeout=90) == 1
        finally:
            up.cleanup()
    error = up.stderr_path.read_text()
    assert "stablenew: queue exited with code 1" in error, up.output()
    assert "could not start" in error and env["STABLENEW_QUEUE_ADDR"] in error


def test_bad_configuration_starts_nothing(tmp_path: Path) -> None:
    done = run_cli("up", env={"STABLENEW_RUNNER_ADDR": "runner"}, cwd=tmp_path)
    assert done.returncode == 2, done
    assert "STABLENEW_RUNNER_ADDR" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / ".stablenew" / "logs").exists()

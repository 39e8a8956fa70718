"""The whole journey as a user runs it: `stablenew up` starts the services as separate
processes, and every step is the `stablenew` command in a process of its own.

Journey 1: a .txt pack and a matrix .json pack -> draft -> preview -> enqueue -> watch ->
images on disk -> history. What was previewed is what ran (the hashes), every image names its
job and entry, the queue is empty afterwards and the history holds each transition once.
Journey 2: a run-now job overtakes a paused queue, a queued job is cancelled, and a failed
entry is retried alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bundle_service.harness import preset, write_pack
from tests.cli.up_process import UpProcess, deployment_env, run_cli
from tests.runner.harness import EmulatorAdmin, stablenew_chunk
from tests.service_harness import wait_for

pytestmark = pytest.mark.e2e

# A pack the user writes as plain text. The sibling .json switches txt2img on; once a plain
# .txt pack runs with built-in defaults (the bundle's change), drop HARBOUR_DEFAULTS.
HARBOUR_ROWS = ("a harbour at dawn, fishing boats", "a lighthouse keeper reading by a lamp")
HARBOUR_DEFAULTS = {"preset_data": preset(steps=3)}
LANTERNS = {
    "pack_data": {
        "name": "Lanterns",
        "slots": [{"text": "a [[colour]] lantern over a [[water]]"}],
        "matrix": {"enabled": True, "mode": "fanout",
                   "slots": [{"name": "colour", "values": ["red", "blue"]},
                             {"name": "water", "values": ["canal", "pond"]}]},
    },
    "preset_data": preset(steps=3),
}
TERMINAL = {"JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}


class User:
    """Runs `stablenew` commands in processes, in a working directory of its own."""

    def __init__(self, up: UpProcess, home: Path) -> None:
        self.up = up
        self.home = home
        self.env = up.client_env() | {"STABLENEW_DATA_DIR": str(home / "cli")}

    def run(self, *arguments: str, code: int = 0) -> str:
        done = run_cli(*arguments, env=self.env, cwd=self.home)
        assert done.returncode == code, (arguments, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        return done.stdout

    def json(self, *arguments: str, code: int = 0) -> Any:
        return json.loads(self.run(*arguments, "--json", code=code))

    def recorded(self, job_id: str) -> dict[str, Any]:
        """The history's record once the job's end is in it (the history follows the queue:
        until it has caught up, the job is unknown there, exit 2, or not finished)."""
        def finished() -> dict[str, Any] | None:
            done = run_cli("history", "show", job_id, "--json", env=self.env, cwd=self.home)
            assert done.returncode in (0, 2), done
            record: dict[str, Any] = json.loads(done.stdout) if done.returncode == 0 else {}
            return record if record.get("job", {}).get("state") in TERMINAL else None

        return wait_for(finished, f"the history to record the end of {job_id}", interval=0.1)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    root = tmp_path_factory.mktemp("journey")
    deployment = UpProcess(root, deployment_env(root))
    deployment.packs_dir.mkdir(parents=True)
    write_pack(deployment.packs_dir, "harbour.txt", "\n\n".join(HARBOUR_ROWS) + "\n")
    write_pack(deployment.packs_dir, "harbour.json", HARBOUR_DEFAULTS)
    write_pack(deployment.packs_dir, "lanterns.json", LANTERNS)
    deployment.start()
    try:
        deployment.wait_ready()
        yield deployment
        deployment.shut_down()
    finally:
        deployment.cleanup()


@pytest.fixture
def user(up: UpProcess, tmp_path: Path) -> User:
    return User(up, tmp_path)


def images_of(up: UpProcess, job_id: str) -> list[Path]:
    return sorted((up.data_dir / "images").glob(f"*/{job_id}/*.png"))


def test_pack_to_history(user: User, up: UpProcess) -> None:
    user.run("draft", "add-pack", "harbour")
    user.run("draft", "add-pack", "lanterns")
    preview = user.json("draft", "show")
    jobs = preview["jobs"]
    assert [job["prompt"] for job in jobs] == [
        *HARBOUR_ROWS, "a red lantern over a canal", "a red lantern over a pond",
        "a blue lantern over a canal", "a blue lantern over a pond"]
    previewed = [job["config_hash"] for job in jobs]
    shown = user.run("draft", "show")
    assert all(f"hash {config_hash}" in shown for config_hash in previewed)

    job = user.json("draft", "enqueue")["job"]
    job_id = job["job_id"]
    assert job["entry_count"] == len(jobs)
    watched = user.run("watch", job_id)
    assert f"job {job_id} completed: 6/6 entries, 6 image files" in watched

    record = user.recorded(job_id)
    entries, results = record["job"]["entries"], record["job"]["results"]
    assert [entry["config_hash"] for entry in entries] == previewed
    assert [result["executed_config_hash"] for result in results] == previewed
    assert all(result["status"] == "ENTRY_STATUS_COMPLETED" for result in results)

    files = images_of(up, job_id)
    assert len(files) == len(jobs)
    recorded_paths = sorted(image["path"] for result in results for image in result["images"])
    assert [str(f.relative_to(up.data_dir / "images")) for f in files] == recorded_paths
    chunks = [stablenew_chunk(f.read_bytes()) for f in files]
    assert {chunk["job_id"] for chunk in chunks} == {job_id}
    assert sorted(chunk["entry"] for chunk in chunks) == list(range(len(jobs)))

    assert user.json("queue", "list")["jobs"] == []
    assert [t["to_state"] for t in record["transitions"]] == [
        "JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"]
    changes = [event["state_changed"]["to_state"]
               for event in user.json("history", "events", job_id)["events"]
               if "state_changed" in event]
    assert changes == ["JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"]
    listed = user.run("history", "list")
    assert any(line.startswith(f"{job_id}  completed") for line in listed.splitlines())


def test_run_now_cancel_and_retry(user: User, up: UpProcess) -> None:
    admin = EmulatorAdmin(up.emulator_url)
    try:
        user.run("queue", "pause")
        user.run("draft", "add-pack", "harbour")
        waiting = user.json("draft", "enqueue", "--label", "waits")["job"]["job_id"]
        user.run("draft", "add-pack", "lanterns")
        direct = user.json("draft", "enqueue", "--run-now")["job"]["job_id"]
        assert "completed" in user.run("watch", direct)
        still = user.json("queue", "list")["jobs"]
        assert [(j["job_id"], j["state"]) for j in still] == [(waiting, "JOB_STATE_QUEUED")]

        user.run("queue", "cancel", waiting)
        assert f"job {waiting} cancelled" in user.run("watch", waiting, code=1)

        admin.faults(fail_next=-1, fail_match="storm")
        user.run("draft", "add", "a storm over the harbour")
        user.run("draft", "add", "a calm harbour")
        failing = user.json("draft", "enqueue", "--run-now")["job"]["job_id"]
        assert f"job {failing} failed: 1/2 entries" in user.run("watch", failing, code=1)
        admin.faults(clear=True)
        retry = user.json("queue", "retry", failing, "--failed-only")["job"]
        assert retry["entry_count"] == 1
        assert f"job {retry['job_id']} completed: 1/1" in user.run("watch", retry["job_id"])
        retried = user.recorded(retry["job_id"])
        assert retried["job"]["entries"][0]["prompt"] == "a storm over the harbour"
        assert retried["job"]["origin"]["retry_of_job_id"] == failing
        assert user.recorded(waiting)["job"]["state"] == "JOB_STATE_CANCELLED"
        assert user.recorded(failing)["job"]["state"] == "JOB_STATE_FAILED"
    finally:
        admin.faults(clear=True)
        admin.close()
        user.run("queue", "resume")

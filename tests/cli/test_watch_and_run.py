"""`stablenew run` and `stablenew watch`: a job followed to its end, the exit code it ends with
(0 completed, 1 failed or cancelled), and the output as lines or JSON lines."""

from __future__ import annotations

from collections.abc import Callable

from tests.cli.cli_result import MATRIX, SCENES, Result
from tests.runner.harness import EmulatorAdmin
from tests.service_harness import wait_for

RunCli = Callable[..., Result]


def test_run_wait_follows_the_job_to_the_end(cli: RunCli) -> None:
    ran = cli("run", SCENES, "--wait", "--label", "run-wait").ok()
    lines = ran.out.splitlines()
    assert lines[0].startswith("queued job ") and "2 entries, 2 images" in lines[0]
    job_id = lines[0].split()[2].rstrip(":")
    assert f"job {job_id}: running (runner " in ran.out
    assert lines[-1].startswith(f"job {job_id} completed: 2/2 entries, 2 image files in ")
    assert job_id in lines[-1]


def test_progress_lines_name_the_entry_and_stage(cli: RunCli, emulator: EmulatorAdmin) -> None:
    # Slow steps: the runner's heartbeats (every 0.5 s) report progress while an entry runs.
    emulator.faults(step_seconds=0.05)
    ran = cli("run", SCENES, "--rows", "0", "--set", "txt2img.steps=20", "--wait").ok()
    job_id = ran.out.split()[2].rstrip(":")
    assert f"job {job_id}: entry 1/1 txt2img" in ran.out.splitlines()


def test_run_without_wait_queues_and_watch_follows(cli: RunCli) -> None:
    queued = cli("run", MATRIX, "--rows", "0", "--json").ok().json()["job"]
    assert queued["entry_count"] == 4
    watched = cli("watch", queued["job_id"]).ok()
    assert watched.out.splitlines()[-1].startswith(f"job {queued['job_id']} completed: 4/4")
    # A finished job: watch says how it ended, at once, with its exit code.
    again = cli("watch", queued["job_id"]).ok()
    assert again.out.splitlines() == [watched.out.splitlines()[-1]]


def test_json_lines(cli: RunCli) -> None:
    # run --wait watches from before the job is queued: every one of its events is shown.
    *events, last = cli("run", SCENES, "--rows", "0", "--wait", "--json").ok().json_lines()
    job_id = last["job"]["job_id"]
    assert last["job"]["state"] == "JOB_STATE_COMPLETED"
    assert all(event["job_id"] == job_id for event in events)
    sequences = [int(event["sequence"]) for event in events]
    assert sequences == sorted(set(sequences))
    changes = [event["state_changed"]["to_state"] for event in events
               if "state_changed" in event]
    assert "submitted" in events[0]
    assert changes == ["JOB_STATE_RUNNING", "JOB_STATE_COMPLETED"]
    # watch of a finished job: the job, at once.
    assert cli("watch", job_id, "--json").ok().json_lines() == [last]


def test_a_failed_job_exits_1_and_its_failed_entries_can_be_retried(
        cli: RunCli, emulator: EmulatorAdmin) -> None:
    emulator.faults(fail_next=-1, fail_match="doomed")
    draft = cli("draft", "new").ok().out.strip()
    cli("draft", "add", "a doomed ship", "--draft", draft).ok()
    cli("draft", "add", "a calm sea", "--draft", draft).ok()
    job_id = cli("draft", "enqueue", "--draft", draft, "--json").ok().json()["job"]["job_id"]
    failed = cli("watch", job_id)
    assert failed.code == 1, failed
    assert failed.out.splitlines()[-1].startswith(f"job {job_id} failed: 1/2 entries")
    assert "entry 0: failed:" in failed.err
    emulator.faults(clear=True)
    retried = cli("queue", "retry", job_id, "--failed-only", "--json").ok().json()["job"]
    assert retried["entry_count"] == 1
    ran = cli("watch", retried["job_id"]).ok()
    assert f"job {retried['job_id']} completed: 1/1 entries" in ran.out


def test_a_cancelled_job_exits_1(cli: RunCli, paused: None) -> None:
    job_id = cli("run", SCENES, "--json").ok().json()["job"]["job_id"]
    cli("queue", "cancel", job_id).ok()
    cancelled = cli("watch", job_id)
    assert cancelled.code == 1, cancelled
    assert cancelled.out.startswith(f"job {job_id} cancelled: 0/2 entries")


def test_cancel_a_running_job(cli: RunCli, emulator: EmulatorAdmin) -> None:
    emulator.faults(step_seconds=0.05)  # 1.5 s an entry: time to cancel it while it runs
    job_id = cli("run", SCENES, "--set", "txt2img.steps=30", "--json").ok().json()["job"][
        "job_id"]

    def running() -> bool:
        jobs = cli("queue", "list", "--json").ok().json()["jobs"]
        return any(j["job_id"] == job_id and j["state"] == "JOB_STATE_RUNNING" for j in jobs)

    wait_for(running, f"{job_id} to run")
    requested = cli("queue", "cancel", job_id).ok()
    assert requested.out == f"job {job_id} cancel requested (its runner stops it): running\n"
    ended = cli("watch", job_id)
    assert ended.code == 1, ended
    assert ended.out.splitlines()[-1].startswith(f"job {job_id} cancelled: ")


def test_watch_an_unknown_job_is_a_usage_error(cli: RunCli) -> None:
    cli("watch", "no-such-job").fails(2, "JOB_NOT_FOUND")
    cli("run", "no-such-pack", "--wait").fails(2, "PACK_NOT_FOUND")

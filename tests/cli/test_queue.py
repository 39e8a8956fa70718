"""`stablenew queue ...`: list, pause/resume, cancel, move, retry, runners."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc, runner_service_pb2
from tests.cli.cli_result import SCENES, Result
from tests.queue.harness import make_entry, origin
from tests.queue.protocol_runner import ProtocolRunner
from tests.service_harness import wait_for

RunCli = Callable[..., Result]


def enqueue(cli: RunCli, *options: str) -> str:
    """A new job of the scenes pack (through a fresh draft); its id."""
    draft = cli("draft", "new").ok().out.strip()
    cli("draft", "add-pack", SCENES, "--draft", draft).ok()
    job_id: str = cli("draft", "enqueue", "--draft", draft, "--json", *options).ok().json()[
        "job"]["job_id"]
    return job_id


def order(cli: RunCli) -> list[str]:
    return [job["job_id"] for job in cli("queue", "list", "--json").ok().json()["jobs"]]


def test_pause_list_move_and_resume(cli: RunCli, paused: None) -> None:
    first, second, third = (enqueue(cli, "--label", f"job {n}") for n in (1, 2, 3))
    listed = cli("queue", "list").ok()
    assert listed.out.startswith("queue PAUSED: 3 queued")
    rows = listed.out.splitlines()[2:]
    assert [row.split()[:3] for row in rows] == [["0", first, "queued"], ["1", second, "queued"],
                                                 ["2", third, "queued"]]
    moved = cli("queue", "move", third, "front").ok()
    assert moved.out == f"job {third} moved front: queued, position 0\n"
    assert order(cli) == [third, first, second]
    cli("queue", "move", third, "down").ok()
    cli("queue", "move", second, "up").ok()
    assert order(cli) == [first, second, third]
    assert cli("queue", "move", first, "back", "--json").ok().json()["job"][
        "queue_position"] == 2
    state = cli("queue", "list", "--json").ok().json()["state"]
    assert state["paused"] is True
    assert "queue running" in cli("queue", "resume").ok().out
    assert "queue PAUSED" in cli("queue", "pause").ok().out


def test_cancel_a_queued_job_and_refusals(cli: RunCli, paused: None) -> None:
    job_id = enqueue(cli)
    kept = cli("queue", "cancel", job_id, "--return").ok()  # a queued job stays queued
    assert kept.out == f"job {job_id} cancelled: queued, position 0\n"
    cancelled = cli("queue", "cancel", job_id).ok()
    assert cancelled.out.startswith(f"job {job_id} cancelled: cancelled")
    assert order(cli) == []
    cli("queue", "cancel", job_id).fails(2, "ILLEGAL_TRANSITION")
    cli("queue", "move", job_id, "front").fails(2, "ILLEGAL_TRANSITION")
    cli("queue", "cancel", "no-such-job").fails(2, "JOB_NOT_FOUND")
    cli("queue", "move", "no-such-job", "up").fails(2, "JOB_NOT_FOUND")
    cli("queue", "move", job_id, "sideways").fails(2, "invalid choice", "sideways")
    cli("queue", "retry", "no-such-job").fails(2, "JOB_NOT_FOUND")


def test_retry_a_finished_job(cli: RunCli, paused: None) -> None:
    job_id = enqueue(cli)
    cli("queue", "retry", job_id).fails(2, "ILLEGAL_TRANSITION")  # not finished yet
    cli("queue", "cancel", job_id).ok()
    retried = cli("queue", "retry", job_id, "--json").ok().json()["job"]
    assert retried["state"] == "JOB_STATE_QUEUED"
    assert retried["origin"]["retry_of_job_id"] == job_id
    text = cli("queue", "retry", job_id).ok().out
    assert text.startswith("job ") and f"(a retry of {job_id})" in text


def test_runners(cli: RunCli) -> None:
    def announced() -> list[dict[str, Any]]:  # a runner appears with its first lease request
        found: list[dict[str, Any]] = cli("queue", "runners", "--json").ok().json()["runners"]
        return found
    runners = wait_for(announced, "the runner to announce itself")
    assert len(runners) == 1
    runner_id = runners[0]["info"]["runner_id"]
    listed = cli("queue", "runners").ok()
    assert listed.out.splitlines()[0].split()[:2] == ["RUNNER", "ADDRESS"]
    assert runner_id in listed.out


def test_runners_show_the_job_run_the_job_held_and_a_clean_shutdown(
        cli: RunCli, cli_env: dict[str, str]) -> None:
    # A runner of the protocol beside the system's own, with a model only it offers: it runs
    # one job and holds the next, as a pipelined runner does.
    model, runner_id = "cli-pipelined-model", "cli-pipelined"

    def row() -> list[str]:
        (line,) = [line for line in cli("queue", "runners").ok().out.splitlines()
                   if line.startswith(runner_id)]
        return line.split()

    with grpc.insecure_channel(cli_env["STABLENEW_QUEUE_ADDR"]) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        first, second = (stub.SubmitJob(pb.SubmitJobRequest(
            entries=[make_entry(model=model)], origin=origin()), timeout=10).job.job_id
            for _ in range(2))
        runner = ProtocolRunner(channel, runner_id, models=(model,))
        running = runner.lease(webui_state=runner_service_pb2.WEBUI_STATE_READY)
        held = runner.lease(webui_state=runner_service_pb2.WEBUI_STATE_BUSY)
        assert running is not None and held is not None
        assert (running.job.job_id, held.job.job_id) == (first, second)
        listed = row()  # no progress reported yet: the column is blank
        assert (listed[2], listed[-2:]) == ("busy", [first, second])
        runner.heartbeat(running, step=3)
        runner.heartbeat(held, held=True)
        listed = row()
        assert (listed[2], listed[-1]) == ("busy", second)
        assert first in listed and "entry 1/1" in " ".join(listed)
        runner.complete(running)
        runner.complete(held)
        listed = row()
        assert (listed[2], listed[-2:]) == ("ready", ["idle", "-"])

        runner.lease(webui_state=runner_service_pb2.WEBUI_STATE_READY, stopped=True)
    listed = row()
    assert (listed[2], listed[-2:]) == ("stopped", ["-", "-"])
    (entry,) = [r for r in cli("queue", "runners", "--json").ok().json()["runners"]
                if r["info"]["runner_id"] == runner_id]
    assert entry["info"]["stopped"] and "connected" not in entry  # false: left out


def test_queue_list_says_why_each_queued_job_waits(cli: RunCli, cli_env: dict[str, str],
                                                    paused: None) -> None:
    runnable = enqueue(cli)
    # A job the bundle would have refused (its model is no connected runner's), queued
    # straight into the queue as a client of the contract may: it waits, and says why.
    with grpc.insecure_channel(cli_env["STABLENEW_QUEUE_ADDR"]) as channel:
        unrunnable = queue_service_pb2_grpc.QueueServiceStub(channel).SubmitJob(
            pb.SubmitJobRequest(entries=[make_entry(model="no-such-model")], origin=origin()),
            timeout=10).job.job_id

    listed = cli("queue", "list").ok()

    assert "1 job(s) no connected runner can run" in listed.out.splitlines()[0]
    rows = {row.split()[1]: row for row in listed.out.splitlines()[2:]}
    assert rows[runnable].endswith("waiting: the queue is paused")
    assert rows[unrunnable].endswith("waiting: no connected runner offers model 'no-such-model'")
    state = cli("queue", "list", "--json").ok().json()["state"]
    assert state["unrunnable_job_count"] == "1"  # an int64, as JSON writes one

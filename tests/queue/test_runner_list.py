"""What ListRunners says of a runner that leases ahead, of one whose job ended, and of one that
shut down: the job it runs and the one it holds apart, never one for the other; BUSY only while
a job runs; a clean shutdown gone at once, a silent runner after two lease lengths."""

from __future__ import annotations

import threading

from stablenew.v1 import job_pb2, runner_service_pb2
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import QueueHarness
from tests.queue.protocol_runner import Leased, ProtocolRunner
from tests.service_harness import wait_for

BUSY = runner_service_pb2.WEBUI_STATE_BUSY
READY = runner_service_pb2.WEBUI_STATE_READY


def _listed(queue: QueueHarness) -> dict[str, pb.Runner]:
    reply = queue.stub.ListRunners(pb.ListRunnersRequest(), timeout=10)
    return {runner.info.runner_id: runner for runner in reply.runners}


def _jobs(queue: QueueHarness, runner_id: str) -> tuple[str, str, int]:
    """The job it runs, the one it holds, and its listed WebUI state."""
    runner = _listed(queue)[runner_id]
    return runner.current_job_id, runner.held_job_id, runner.info.webui_state


def _runner(queue: QueueHarness, name: str, models: tuple[str, ...] = ("sd15",)
            ) -> ProtocolRunner:
    """A runner on the queue's current channel (a restart opens a new one)."""
    assert queue.channel is not None
    return ProtocolRunner(queue.channel, name, models)


def _leased(runner: ProtocolRunner, webui_state: int) -> Leased:
    leased = runner.lease(webui_state=webui_state)  # type: ignore[arg-type]
    assert leased is not None
    return leased


def test_the_job_a_runner_runs_and_the_one_it_holds_are_listed_apart(
        queue: QueueHarness) -> None:
    first, second = queue.submit().job_id, queue.submit().job_id
    runner = _runner(queue, "pipelined")
    running = _leased(runner, READY)
    runner.heartbeat(running, step=3)
    held = _leased(runner, BUSY)  # asked while the first runs: held ahead
    assert held.job.job_id == second
    # The held job's beats carry no progress; the running job's do: neither moves the other.
    for leased, is_held in ((held, True), (running, False), (held, True)):
        runner.heartbeat(leased, held=is_held)
        assert _jobs(queue, "pipelined") == (first, second, BUSY)
    assert _listed(queue)["pipelined"].progress.step == 1
    runner.lease(webui_state=BUSY)  # another lease ahead, nothing queued: no change
    assert _jobs(queue, "pipelined") == (first, second, BUSY)

    runner.complete(running)  # the held job is the one it runs next
    assert _jobs(queue, "pipelined") == (second, "", BUSY)
    assert not _listed(queue)["pipelined"].HasField("progress")
    runner.heartbeat(held, step=2)
    assert _listed(queue)["pipelined"].progress.step == 2
    queue.restart()
    assert _jobs(queue, "pipelined") == (second, "", BUSY)
    runner = _runner(queue, "pipelined")
    # It announced BUSY last; once its job ended it is READY, not busy and idle.
    runner.complete(held)
    assert _jobs(queue, "pipelined") == ("", "", READY)


def test_a_held_job_given_back_or_expired_leaves_the_list(
        short_lease_queue: QueueHarness) -> None:
    queue = short_lease_queue
    first, second = queue.submit().job_id, queue.submit().job_id
    runner = _runner(queue, "pipelined")
    running = _leased(runner, READY)
    held = _leased(runner, BUSY)
    queue.restart()  # what it holds is kept across a restart
    assert _jobs(queue, "pipelined") == (first, second, BUSY)
    _runner(queue, "pipelined").release(held)
    assert _jobs(queue, "pipelined") == (first, "", BUSY)
    # The runner dies: its job's lease runs out, and the list no longer shows it running.
    wait_for(lambda: _listed(queue)["pipelined"].current_job_id == "",
             "the expired job to leave the runner's entry")
    assert queue.get(running.job.job_id).state == job_pb2.JOB_STATE_QUEUED


def test_a_runner_that_shuts_down_cleanly_is_gone_at_once(queue: QueueHarness) -> None:
    job = queue.submit().job_id
    queue.stub.PauseQueue(pb.PauseQueueRequest())
    leaving, staying = (_runner(queue, name) for name in ("leaving", "staying"))
    assert staying.lease(webui_state=READY) is None
    # A long-poll of the leaving runner still waiting when it says it stopped gets nothing.
    polled: list[Leased | None] = []
    poll = threading.Thread(target=lambda: polled.append(leaving.lease(wait_seconds=20)))
    poll.start()
    wait_for(lambda: "leaving" in _listed(queue), "the long-poll to register")

    assert leaving.lease(webui_state=READY, stopped=True) is None
    poll.join(10)
    assert polled == [None]
    listed = _listed(queue)
    assert listed["leaving"].info.stopped and not listed["leaving"].connected
    assert listed["staying"].connected and not listed["staying"].info.stopped
    assert queue.stub.GetQueueState(pb.GetQueueStateRequest()).state.runner_count == 1
    queue.restart()
    assert not _listed(queue)["leaving"].connected
    leaving, staying = (_runner(queue, name) for name in ("leaving", "staying"))
    # Back again: it announces itself without `stopped`, counts, and leases.
    queue.stub.ResumeQueue(pb.ResumeQueueRequest())
    staying.lease(webui_state=runner_service_pb2.WEBUI_STATE_DISCONNECTED)
    leased = leaving.lease(webui_state=READY)
    assert leased is not None and leased.job.job_id == job
    assert _listed(queue)["leaving"].connected


def test_a_stopped_runner_no_longer_counts_for_why_a_job_waits(queue: QueueHarness) -> None:
    job = queue.submit(model="sdxl").job_id
    runner = _runner(queue, "sdxl-box")
    runner.lease(webui_state=READY)
    assert queue.get(job).waiting_reason == "no connected runner offers model 'sdxl'"
    runner.lease(webui_state=READY, stopped=True)
    assert queue.get(job).waiting_reason == "no runner is connected"

"""The pipelined runner is safe (prefetch.py), with real processes: a queue whose leases last
2 s, a runner process and the emulator. In each test job A generates slowly while the runner
holds the next job B, leased ahead of time:

- B's lease outlives its length (heartbeats), ListRunners shows A running and B held, and
  SIGTERM hands B back at once, never run, without consuming an attempt (ReleaseJob), and
  lists the runner as stopped at once; a WebUI outage hands B back too;
- a cancel of B ends it at once, never run;
- a HIGH job submitted, or a job moved to the front, while B is held runs before B (the held
  job's heartbeat says it is outranked: B goes back, without an attempt, and comes after);
- a runner SIGKILLed while it holds B loses no job: both complete on another runner, B's entry
  made exactly once;
- an idle runner takes the next job after one the WebUI answered without probing the WebUI,
  and a WebUI gone meanwhile costs that next job nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stablenew.contract.proto_mapping import to_proto
from stablenew.v1 import job_pb2, queue_service_pb2_grpc, runner_service_pb2
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import runner_service_pb2 as rpb
from tests.queue.harness import origin
from tests.queue.processes import QueueProcess
from tests.runner.harness import (
    EmulatorAdmin,
    EmulatorProcess,
    ManagedProcess,
    RunnerProcess,
    get_job,
    make_job,
    submit,
    transitions,
    wait_state,
)
from tests.service_harness import wait_for

pytestmark = pytest.mark.e2e

RUNNING = (job_pb2.JOB_STATE_RUNNING,)


@pytest.fixture
def queue_process(tmp_path: Path) -> Iterator[QueueProcess]:
    process = QueueProcess(tmp_path / "queue-data", {"STABLENEW_LEASE_SECONDS": "2"})
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


@pytest.fixture
def stub(queue_process: QueueProcess) -> Iterator[queue_service_pb2_grpc.QueueServiceStub]:
    with grpc.insecure_channel(queue_process.address) as channel:
        yield queue_service_pb2_grpc.QueueServiceStub(channel)


class Pipeline:
    """An emulator (slow: 0.05 s a step) and a runner process on the test's queue."""

    def __init__(self, tmp_path: Path, processes: list[ManagedProcess], queue_address: str,
                 stub: queue_service_pb2_grpc.QueueServiceStub) -> None:
        self.tmp_path = tmp_path
        self.processes = processes
        self.queue_address = queue_address
        self.stub = stub
        self.emulator = self._started(EmulatorProcess(tmp_path, "--step-seconds", "0.05"))
        self.admin = EmulatorAdmin(self.emulator.url)
        self.runner = self.start_runner("runner-a")

    def _started(self, process: EmulatorProcess) -> EmulatorProcess:
        self.processes.append(process)
        return process.start()

    def start_runner(self, runner_id: str) -> RunnerProcess:
        runner = RunnerProcess(self.tmp_path / runner_id, self.queue_address,
                               self.emulator.url, runner_id)
        self.processes.append(runner)
        return runner.start()

    def submit(self, prompt: str, steps: int = 4,
               priority: job_pb2.Priority.ValueType = job_pb2.PRIORITY_NORMAL) -> str:
        request = pb.SubmitJobRequest(entries=[to_proto(make_job(0, prompt, steps=steps))],
                                      origin=origin(), priority=priority)
        job_id: str = self.stub.SubmitJob(request, timeout=10).job.job_id
        return job_id

    def running_and_held(self) -> tuple[str, str]:
        """Job A generating (100 steps: 5 s) and job B held by the runner meanwhile."""
        running = self.submit("job A, slow", steps=100)
        wait_for(self.admin.sampling, "job A to be generating", 20)
        held = self.submit("job B, held ahead")
        wait_for(lambda: get_job(self.stub, held).state == job_pb2.JOB_STATE_RUNNING,
                 "the runner to hold job B", 20)
        assert get_job(self.stub, held).runner_id == "runner-a"
        assert get_job(self.stub, running).state == job_pb2.JOB_STATE_RUNNING
        return running, held

    def restart_emulator(self) -> None:
        """The emulator again after a kill, on the same port, fast (0.002 s a step)."""
        self.emulator = self._started(EmulatorProcess(self.tmp_path, "--step-seconds", "0.002",
                                                      port=self.emulator.port))

    def webui_state(self) -> int:
        """The runner's WebUI state, as it reports it."""
        reply = self.runner.stub.GetRunnerStatus(rpb.GetRunnerStatusRequest(), timeout=10)
        state: int = reply.status.webui_state
        return state

    def made(self, prompt: str) -> int:
        """Generations of `prompt` the emulator finished."""
        return len([item for item in self.admin.generations(prompt) if item["status"] == 200])

    def close(self) -> None:
        self.admin.close()


@pytest.fixture
def pipeline(tmp_path: Path, processes: list[ManagedProcess], queue_process: QueueProcess,
             stub: queue_service_pb2_grpc.QueueServiceStub) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path, processes, queue_process.address, stub)
    yield pipeline
    pipeline.close()


def test_a_held_lease_is_kept_alive_and_sigterm_hands_it_back_unrun(pipeline: Pipeline) -> None:
    running, held = pipeline.running_and_held()
    # Read across several beats of both jobs (A runs 5 s): the entry shows A running and B
    # held, never one for the other.
    for _ in range(8):
        runner = _listed(pipeline.stub)
        assert (runner.current_job_id, runner.held_job_id) == (running, held)
        assert runner.info.webui_state == runner_service_pb2.WEBUI_STATE_BUSY
        time.sleep(0.1)
    # Longer than the 2 s lease: only the held lease's own heartbeats keep it.
    wait_for(lambda: get_job(pipeline.stub, running).state != job_pb2.JOB_STATE_RUNNING
             or pipeline.admin.progress()["progress"] >= 0.8, "job A to be well under way", 20)
    assert (get_job(pipeline.stub, held).state, get_job(pipeline.stub, held).attempt) == (
        job_pb2.JOB_STATE_RUNNING, 1)

    assert pipeline.runner.terminate() == 0
    # Its last word: gone at once, not connected and busy for two more lease lengths.
    runner = _listed(pipeline.stub)
    assert (runner.connected, runner.info.stopped) == (False, True)
    assert (runner.current_job_id, runner.held_job_id) == ("", "")

    job = get_job(pipeline.stub, held)
    assert (job.state, job.attempt) == (job_pb2.JOB_STATE_QUEUED, 0)
    assert "shut down before it started" in transitions(pipeline.stub, held)[-1].reason
    assert pipeline.made("job B") == 0


def _listed(stub: queue_service_pb2_grpc.QueueServiceStub) -> pb.Runner:
    """The one runner the queue knows."""
    (runner,) = stub.ListRunners(pb.ListRunnersRequest(), timeout=10).runners
    return runner


def test_a_webui_outage_gives_the_held_job_back_without_an_attempt(pipeline: Pipeline) -> None:
    running, held = pipeline.running_and_held()

    pipeline.emulator.kill()

    job = wait_state(pipeline.stub, held, states=(job_pb2.JOB_STATE_QUEUED,))
    assert job.attempt == 0  # never started: the release took the attempt back
    assert "the WebUI stopped answering" in transitions(pipeline.stub, held)[-1].reason
    started = wait_state(pipeline.stub, running, states=(job_pb2.JOB_STATE_QUEUED,))
    assert started.attempt == 1  # it ran: handed back with FailJob, the attempt counted


def test_a_cancel_of_the_held_job_ends_it_at_once_unrun(pipeline: Pipeline) -> None:
    running, held = pipeline.running_and_held()

    pipeline.stub.CancelJob(pb.CancelJobRequest(job_id=held, reason="not wanted"), timeout=10)

    job = wait_state(pipeline.stub, held)
    assert job.state == job_pb2.JOB_STATE_CANCELLED
    # Ended while job A still ran: the cancel did not wait for the runner to reach it.
    assert get_job(pipeline.stub, running).state == job_pb2.JOB_STATE_RUNNING
    assert wait_state(pipeline.stub, running).state == job_pb2.JOB_STATE_COMPLETED
    assert pipeline.made("job B") == 0


@pytest.mark.parametrize("comes_first", ["high priority", "moved to the front"])
def test_a_job_that_must_run_first_runs_before_the_held_one(pipeline: Pipeline,
                                                            comes_first: str) -> None:
    running, held = pipeline.running_and_held()

    if comes_first == "high priority":
        urgent = pipeline.submit("job H, urgent", priority=job_pb2.PRIORITY_HIGH)
    else:
        urgent = pipeline.submit("job H, urgent")
        pipeline.stub.MoveJob(pb.MoveJobRequest(job_id=urgent,
                                                position=pb.MOVE_POSITION_FRONT), timeout=10)

    for job_id in (running, urgent, held):
        assert wait_state(pipeline.stub, job_id).state == job_pb2.JOB_STATE_COMPLETED
    order = [item["prompt"] for item in pipeline.admin.generations()]
    assert order.index("job H, urgent") < order.index("job B, held ahead")
    assert pipeline.made("job B") == 1 and pipeline.made("job H") == 1
    assert get_job(pipeline.stub, held).attempt == 1  # the release cost it none
    assert any("a queued job comes first" in change.reason
               for change in transitions(pipeline.stub, held))


def test_a_runner_killed_while_holding_a_job_loses_none(pipeline: Pipeline) -> None:
    running, held = pipeline.running_and_held()

    pipeline.runner.kill()
    pipeline.admin.faults(step_seconds=0.002)
    pipeline.start_runner("runner-b")

    for job_id in (running, held):
        job = wait_state(pipeline.stub, job_id)
        assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
        assert (job.runner_id, job.attempt) == ("runner-b", 2)
    assert pipeline.made("job B") == 1


def test_every_entry_of_many_small_jobs_runs_exactly_once(pipeline: Pipeline) -> None:
    pipeline.admin.faults(step_seconds=0.002)
    job_ids = [submit(pipeline.stub, [make_job(0, f"small job {index:02d}")]).job_id
               for index in range(12)]

    for job_id in job_ids:
        assert wait_state(pipeline.stub, job_id).state == job_pb2.JOB_STATE_COMPLETED
    for index in range(12):
        assert pipeline.made(f"small job {index:02d}") == 1


def test_an_idle_runner_takes_the_next_job_without_probing_the_webui(pipeline: Pipeline) -> None:
    """After a job the WebUI answered, the runner long-polls at once (its probe, three requests,
    took CPU from the finisher writing the job's files): jobs submitted one at a time each run
    without a GET of the options; the runner still reports the WebUI ready."""
    pipeline.admin.faults(step_seconds=0.002)
    first = pipeline.submit("one at a time 0")
    assert wait_state(pipeline.stub, first).state == job_pb2.JOB_STATE_COMPLETED
    options_read = pipeline.admin.stats()["requests"].get("options", 0)

    for index in range(1, 5):
        job_id = pipeline.submit(f"one at a time {index}")
        assert wait_state(pipeline.stub, job_id).state == job_pb2.JOB_STATE_COMPLETED

    assert pipeline.admin.stats()["requests"].get("options", 0) == options_read
    assert pipeline.made("one at a time") == 5
    assert pipeline.webui_state() == rpb.WEBUI_STATE_READY


def test_a_webui_gone_after_a_job_loses_nothing_of_the_next(pipeline: Pipeline) -> None:
    """The WebUI stops right after a job: the next job, leased without a probe, goes back to
    the queue and runs once the WebUI is back, exactly once."""
    pipeline.admin.faults(step_seconds=0.002)
    first = pipeline.submit("before the outage")
    assert wait_state(pipeline.stub, first).state == job_pb2.JOB_STATE_COMPLETED
    pipeline.emulator.kill()

    after = pipeline.submit("after the outage")
    wait_for(lambda: pipeline.webui_state() == rpb.WEBUI_STATE_DISCONNECTED,
             "the runner to find the WebUI gone", 20)
    wait_for(lambda: get_job(pipeline.stub, after).state == job_pb2.JOB_STATE_QUEUED,
             "the job to be back in the queue", 20)
    pipeline.restart_emulator()

    job = wait_state(pipeline.stub, after)
    assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
    assert pipeline.made("after the outage") == 1

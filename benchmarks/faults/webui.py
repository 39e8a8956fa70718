"""Real runners driving the WebUI emulator: a runner SIGKILLed mid-job, the emulator SIGKILLed
mid-generation, and the emulator answering 500s, CUDA out-of-memory errors and hangs."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from benchmarks.faults.ledger import Outcome, all_terminal, lost, tally, wait_until
from stablenew.v1 import queue_service_pb2_grpc
from tests.queue.processes import QueueProcess
from tests.runner.harness import EmulatorAdmin, EmulatorProcess, RunnerProcess, make_job, submit

SETTLE_SECONDS = 120


@dataclass
class Rig:
    """A queue, an emulator and runners, each its own process."""

    root: Path
    queue: QueueProcess
    stub: queue_service_pb2_grpc.QueueServiceStub
    emulator: EmulatorProcess
    admin: EmulatorAdmin
    runners: list[RunnerProcess]

    def add_runner(self, name: str) -> RunnerProcess:
        runner = RunnerProcess(self.root / name, self.queue.address, self.emulator.url, name)
        self.runners.append(runner.start())
        return runner

    def submit(self, jobs: int, steps: int, prompt: str = "job") -> list[str]:
        return [submit(self.stub, [make_job(0, f"{prompt} {n}", steps=steps)]).job_id
                for n in range(jobs)]


@contextmanager
def rig(root: Path, runners: int, step_seconds: str = "0.01") -> Iterator[Rig]:
    queue = QueueProcess(root / "queue-data", {"STABLENEW_LEASE_SECONDS": "1",
                                               "STABLENEW_MAX_ATTEMPTS": "1000"})
    queue.start()
    emulator = EmulatorProcess(root, "--step-seconds", step_seconds).start()
    channel = grpc.insecure_channel(queue.address)
    made = Rig(root, queue, queue_service_pb2_grpc.QueueServiceStub(channel), emulator,
               EmulatorAdmin(emulator.url), [])
    try:
        for n in range(runners):
            made.add_runner(f"runner-{n}")
        yield made
    finally:
        made.admin.close()
        for runner in made.runners:
            runner.close_channel()
            runner.end()
        made.emulator.end()  # the one running now (emulator_sigkill replaces it)
        channel.close()
        queue.stop()


def _outcome(name: str, made: Rig, rounds: int, acknowledged: list[str],
             extra: dict[str, object]) -> Outcome:
    wait_until(all_terminal(made.stub, len(acknowledged)), SETTLE_SECONDS)
    found = tally(made.stub)
    states = found.final_state_counts(made.stub)
    return Outcome(name, rounds, len(found.submitted), lost(acknowledged, found.submitted),
                   found.duplicated, found.stuck,
                   {"final states": dict(states), "leases expired and re-leased": found.requeued,
                    **extra})


def runner_sigkill(root: Path, chaos: random.Random, kills: int = 8, jobs: int = 40) -> Outcome:
    """One of two runners SIGKILLed at a random moment, `kills` times, and started again; the
    jobs it held are leased again after the 1 s lease and completed once."""
    with rig(root, runners=2) as made:
        acknowledged = made.submit(jobs, steps=20)
        for round_ in range(kills):
            time.sleep(chaos.uniform(0.2, 1.0))
            victim = made.runners.pop(chaos.randrange(len(made.runners)))
            victim.kill()
            victim.close_channel()
            made.add_runner(f"{victim.runner_id.split('.')[0]}.{round_}")
        return _outcome("runner SIGKILL", made, kills, acknowledged, {})


def emulator_sigkill(root: Path, chaos: random.Random, kills: int = 6,
                     jobs: int = 30) -> Outcome:
    """The WebUI SIGKILLed mid-generation and started again on its port: the entry it was
    running fails, every job still ends once, and the runner carries on."""
    with rig(root, runners=1) as made:
        acknowledged = made.submit(jobs, steps=20)
        for _ in range(kills):
            time.sleep(chaos.uniform(0.2, 1.0))
            made.emulator.kill()
            made.emulator = EmulatorProcess(root, "--step-seconds", "0.01",
                                            port=made.emulator.port).start()
        return _outcome("emulator SIGKILL", made, kills, acknowledged, {})


def webui_errors(root: Path) -> Outcome:
    """The WebUI answers 500s, then CUDA out-of-memory errors, then hangs (released after the
    runner has waited on them) while jobs run: each job still ends exactly once."""
    with rig(root, runners=1, step_seconds="0.002") as made:
        admin, acknowledged = made.admin, []
        admin.faults(fail_next=5)
        acknowledged += made.submit(10, steps=4, prompt="500")
        admin.faults(oom_next=5)
        acknowledged += made.submit(10, steps=4, prompt="oom")
        wait_until(all_terminal(made.stub, len(acknowledged)), SETTLE_SECONDS)
        hangs = _hang_and_release(made, admin, rounds=3)
        acknowledged += hangs
        injected: dict[str, int] = admin.faults()["injected"]
        return _outcome("WebUI 500 / OOM / hang", made, sum(injected.values()), acknowledged,
                        {"injected": injected})


def _hang_and_release(made: Rig, admin: EmulatorAdmin, rounds: int) -> list[str]:
    jobs: list[str] = []
    for _ in range(rounds):
        admin.faults(hang_next=1)
        jobs += made.submit(2, steps=4, prompt="hang")
        wait_until(lambda: bool(admin.faults()["hanging"]), 30)
        time.sleep(0.5)  # the runner waits on the hung request, its heartbeats keep the lease
        admin.faults(release_hung=True)
    return jobs

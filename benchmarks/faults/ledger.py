"""What a scenario found, and the accounting every scenario shares: from the queue's event
log, which jobs exist, how often each reached a terminal state, and which never did."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import all_events

TERMINAL = frozenset({job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_FAILED,
                      job_pb2.JOB_STATE_CANCELLED})


@dataclass
class Outcome:
    """One scenario's figures. `rounds` counts the faults injected; lost, duplicated and stuck
    must be zero, and so must `errors` (calls that ended INTERNAL or UNKNOWN, services that
    exited, a scenario that could not finish); `figures` adds what else it measured."""

    scenario: str
    rounds: int = 0
    jobs: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    figures: dict[str, object] = field(default_factory=dict)
    errors: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.stuck == self.errors == 0


@dataclass
class Tally:
    """The jobs of an event log: submissions per job and terminal transitions per job."""

    submitted: Counter[str]
    terminal: Counter[str]
    completed: Counter[str]
    last_sequence: int
    gaps: int
    transitions: int  # submissions and state changes: what the history records
    requeued: int  # RUNNING -> QUEUED: a lease that expired (its runner died or was cut off)


    @property
    def duplicated(self) -> int:
        """Jobs that reached a terminal state more than once, or were submitted twice."""
        return (sum(1 for n in self.terminal.values() if n > 1)
                + sum(1 for n in self.submitted.values() if n > 1))

    @property
    def stuck(self) -> int:
        """Jobs that never reached a terminal state."""
        return sum(1 for job_id in self.submitted if self.terminal[job_id] == 0)

    def final_state_counts(self, stub: queue_service_pb2_grpc.QueueServiceStub) -> Counter[str]:
        """How many of the jobs are in each state now, by the queue's GetJob."""
        return Counter(job_pb2.JobState.Name(stub.GetJob(pb.GetJobRequest(
            job_id=job_id, view=job_pb2.JOB_VIEW_BASIC), timeout=10).job.state).removeprefix(
                "JOB_STATE_") for job_id in self.submitted)


def tally(stub: queue_service_pb2_grpc.QueueServiceStub) -> Tally:
    """Read the queue's whole event log and count."""
    events = all_events(stub)
    sequences = [event.sequence for event in events]
    submitted: Counter[str] = Counter()
    terminal: Counter[str] = Counter()
    completed: Counter[str] = Counter()
    for event in events:
        kind = event.WhichOneof("payload")
        if kind == "submitted":
            submitted[event.job_id] += 1
        elif kind == "state_changed" and event.state_changed.to_state in TERMINAL:
            terminal[event.job_id] += 1
            completed[event.job_id] += event.state_changed.to_state == job_pb2.JOB_STATE_COMPLETED
    expected = list(range(sequences[0], sequences[0] + len(sequences))) if sequences else []
    return Tally(submitted, terminal, completed, sequences[-1] if sequences else 0,
                 gaps=sum(1 for a, b in zip(sequences, expected, strict=True) if a != b),
                 transitions=sum(1 for event in events
                                 if event.WhichOneof("payload") in ("submitted", "state_changed")),
                 requeued=sum(1 for event in events
                              if (event.state_changed.from_state, event.state_changed.to_state)
                              == (job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_QUEUED)))


def lost(acknowledged: Iterable[str], found: Iterable[str]) -> int:
    """Acknowledged jobs the log does not hold."""
    return len(set(acknowledged) - set(found))


def wait_until(done: Callable[[], bool], seconds: float, interval: float = 0.2) -> bool:
    """Poll `done` until it holds or `seconds` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def all_terminal(stub: queue_service_pb2_grpc.QueueServiceStub, jobs: int) -> Callable[[], bool]:
    """A probe: `jobs` jobs are in terminal states (the queue's counts)."""
    def probe() -> bool:
        counts = {c.state: c.count for c in stub.GetQueueState(
            pb.GetQueueStateRequest(), timeout=5).state.counts}
        return sum(counts.get(state, 0) for state in TERMINAL) >= jobs
    return probe


def table(outcomes: list[Outcome]) -> str:
    """The figures as a fixed-width table, then each scenario's extra figures."""
    header = (f"{'scenario':<26}{'rounds':>7}{'jobs':>8}{'lost':>6}{'dup':>5}{'stuck':>7}"
              f"{'errors':>8}{'s':>6}")
    lines = [header, "-" * len(header)]
    for o in outcomes:
        lines.append(f"{o.scenario:<26}{o.rounds:>7}{o.jobs:>8}{o.lost:>6}{o.duplicated:>5}"
                     f"{o.stuck:>7}{o.errors:>8}{o.seconds:>6.0f}")
    lines.append("")
    for o in outcomes:
        extra = ", ".join(f"{key} {value}" for key, value in o.figures.items())
        lines.append(f"{o.scenario}: {extra}")
    return "\n".join(lines)

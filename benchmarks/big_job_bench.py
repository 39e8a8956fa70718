"""A 10,000-entry job's LeaseJob and GetJob (full view) against a queue process: the queue sends
the entries as stored, converting none (queue/domain.QueuedJob.stored_entries).

    python -m benchmarks.big_job_bench [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from benchmarks.figures import Figure, printed
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc
from tests.queue.harness import make_entry, origin
from tests.queue.processes import QueueProcess
from tests.service_harness import CHANNEL_OPTIONS

ENTRIES = 10_000


def median_ms(call: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def run(quick: bool) -> list[Figure]:
    """The two figures, each printed as it is measured."""
    rounds = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="stablenew-bench-") as tmp:
        queue = QueueProcess(Path(tmp) / "queue")
        queue.start()
        try:
            with grpc.insecure_channel(queue.address, CHANNEL_OPTIONS) as channel:
                figures = _measure(queue_service_pb2_grpc.QueueServiceStub(channel), rounds)
        finally:
            queue.stop()
    return printed(figures)


def _measure(stub: queue_service_pb2_grpc.QueueServiceStub, rounds: int) -> list[Figure]:
    request = pb.SubmitJobRequest(entries=[make_entry(i) for i in range(ENTRIES)],
                                  origin=origin())
    jobs = [stub.SubmitJob(request, timeout=60).job.job_id for _ in range(rounds)]
    get = pb.GetJobRequest(job_id=jobs[0])
    get_ms = median_ms(lambda: stub.GetJob(get, timeout=60), rounds)
    lease = pb.LeaseJobRequest(runner=pb.RunnerInfo(runner_id="bench", models=["sd15"]))
    lease_ms = median_ms(lambda: stub.LeaseJob(lease, timeout=60), rounds)
    note = f"one {ENTRIES:,}-entry job, full view, at the client"
    limit = "the stored entries are sent as they are: what is left is the machine's load"
    return [Figure("queue.big_job.get_job_full", get_ms, "ms", 50.0, note=note, limit=limit),
            Figure("queue.big_job.lease_job", lease_ms, "ms", 50.0, note=note, limit=limit)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()

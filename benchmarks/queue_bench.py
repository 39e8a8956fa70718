"""Queue benchmark: with N jobs already queued (100,000 by default), how long do SubmitJob,
LeaseJob (+CompleteJob) and the first page of ListJobs take, and how much memory does the
queue process hold? Prints p50/p99 in milliseconds and the resident set size.

    python benchmarks/queue_bench.py [--queued 100000] [--samples 500]

The queue runs as `stablenew serve queue` in its own process; the backlog is written straight
into its SQLite file first (through the queue's own store), which is much faster than submitting
100,000 jobs over gRPC and gives the same rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psutil

from benchmarks.figures import Figure, printed
from stablenew.contract.model import JobOrigin, Priority, RunMode
from stablenew.queue import codec
from stablenew.queue.core import QueueConfig, QueueCore
from stablenew.queue.entries import entry_batch
from stablenew.queue.store import QueueStore
from stablenew.runtime.sqlite_db import Transaction
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc
from tests.queue.harness import make_entry, origin
from tests.queue.processes import QueueProcess
from tests.queue.protocol_runner import ProtocolRunner


def seed(data_dir: Path, count: int) -> None:
    """Write `count` queued one-entry jobs into the queue database."""
    store = QueueStore(data_dir / "queue.sqlite3")
    core = QueueCore(store, QueueConfig())
    entries = entry_batch([make_entry(0)])
    job_origin = JobOrigin(run_mode=RunMode.QUEUE)
    for start in range(0, count, 5000):
        with Transaction(store.db):
            for _ in range(start, min(start + 5000, count)):
                queued = core.new_job(entries, job_origin, Priority.NORMAL, "", {}, "")
                store.insert_job(queued, entries.encoded)
                store.append_event(
                    codec.submitted_event(queued.job, entries.encoded, datetime.now(UTC)))
    store.close()


def measure(call: Callable[[], object], samples: int) -> tuple[float, float]:
    """Time `call` `samples` times; its p50 and p99 in milliseconds."""
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    return statistics.median(timings), p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    figures(args.queued, args.samples)


def figures(queued: int, samples: int) -> list[Figure]:
    """The queue's figures with `queued` jobs waiting, for `make bench`."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        started = time.perf_counter()
        seed(data_dir, queued)
        print(f"seeded {queued} queued jobs in {time.perf_counter() - started:.1f} s")
        process = QueueProcess(data_dir)
        process.start()
        try:
            timings, rss = run_benchmarks(process, samples)
        finally:
            process.stop()
    note = f"{queued:,} queued"
    found = [Figure(f"queue.{name}.{label}", value, "ms", None, note=note)
             for name, pair in timings.items() for label, value in zip(("p50", "p99"), pair,
                                                                       strict=True)]
    found.append(Figure("queue.rss", rss, "MiB", None, note=note))
    return printed(found)


def run_benchmarks(process: QueueProcess,
                   samples: int) -> tuple[dict[str, tuple[float, float]], float]:
    """p50/p99 per call, and the queue's RSS in MiB."""
    with grpc.insecure_channel(process.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        request = pb.SubmitJobRequest(entries=[make_entry(0)], origin=origin())
        timings = {"submit_job": measure(lambda: stub.SubmitJob(request), samples)}
        runner = ProtocolRunner(channel, "bench")

        def lease_and_complete() -> None:
            leased = runner.lease(wait_seconds=0)
            assert leased is not None
            runner.complete(leased)

        timings["lease_and_complete"] = measure(lease_and_complete,
                                                samples)
        timings["lease_job"] = measure(lambda: runner.lease(wait_seconds=0),
                                       samples)
        first_page = pb.ListJobsRequest(page_size=50)
        timings["list_jobs_first_page"] = measure(lambda: stub.ListJobs(first_page), samples)
        rss = psutil.Process(process.pid).memory_info().rss / 2**20
    return timings, rss


if __name__ == "__main__":
    main()

"""Watch fan-out: 200 concurrent WatchJobs streams on a queue process while jobs are submitted;
the delivery latency of each event to each watcher (receive time less the event's own time, on
the same machine) p50/p99, and the queue's resident set size.

    python -m benchmarks.watch_bench [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from pathlib import Path

import grpc
import psutil

from benchmarks.figures import Figure, percentile, printed
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc
from tests.queue.harness import make_entry, origin
from tests.queue.processes import QueueProcess

WATCHERS = 200


class Watcher:
    """One stream; the latency of every submitted event it receives, in milliseconds."""

    def __init__(self, stub: queue_service_pb2_grpc.QueueServiceStub, after: int) -> None:
        self.latencies: list[float] = []
        self.stream = stub.WatchJobs(pb.WatchJobsRequest(after_sequence=after,
                                                         exclude_progress=True))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for reply in self.stream:
                if reply.event.WhichOneof("payload") == "submitted":
                    sent = reply.event.time.ToNanoseconds() / 1e9
                    self.latencies.append((time.time() - sent) * 1000)

    def close(self) -> None:
        self.stream.cancel()  # type: ignore[no-untyped-call]  # grpc stubs leave it untyped
        self.thread.join(5)


def run(quick: bool) -> list[Figure]:
    """The figures, each printed as it is measured."""
    jobs = 20 if quick else 100
    with tempfile.TemporaryDirectory(prefix="stablenew-bench-") as tmp:
        queue = QueueProcess(Path(tmp) / "queue", env={"STABLENEW_MAX_WORKERS": "256"})
        queue.start()
        try:
            latencies, rss = _measure(queue, jobs)
        finally:
            queue.stop()
    note = f"{WATCHERS} watchers, {jobs} jobs submitted one every 20 ms"
    figures = [Figure("watch.delivery.p50", percentile(latencies, 50), "ms", None, note=note),
               Figure("watch.delivery.p99", percentile(latencies, 99), "ms", 50.0, note=note,
                      limit="200 client threads and the queue's stream threads share the "
                            "cores: the tail follows the machine's load"),
               Figure("watch.queue_rss", rss, "MiB", None, note=note)]
    return printed(figures)


def _measure(queue: QueueProcess, jobs: int) -> tuple[list[float], float]:
    with grpc.insecure_channel(queue.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        after = stub.GetQueueState(pb.GetQueueStateRequest(), timeout=10).state.last_sequence
        watchers = [Watcher(stub, after) for _ in range(WATCHERS)]
        request = pb.SubmitJobRequest(entries=[make_entry(0)], origin=origin())
        # A first job every stream receives before measuring: the streams' start-up (200
        # threads connecting) is not what the figure measures.
        stub.SubmitJob(request, timeout=10)
        _wait_delivered(watchers, 1)
        for watcher in watchers:
            watcher.latencies.clear()
        for _ in range(jobs):
            stub.SubmitJob(request, timeout=10)
            time.sleep(0.02)
        _wait_delivered(watchers, jobs)
        rss = psutil.Process(queue.pid).memory_info().rss / 2**20
        for watcher in watchers:
            watcher.close()
    return [ms for watcher in watchers for ms in watcher.latencies], rss


def _wait_delivered(watchers: list[Watcher], events: int) -> None:
    """Until every watcher received `events` events, for at most 30 s."""
    deadline = time.monotonic() + 30
    while (time.monotonic() < deadline
           and sum(len(watcher.latencies) for watcher in watchers) < WATCHERS * events):
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()

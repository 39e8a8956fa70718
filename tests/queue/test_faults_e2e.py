"""Fault tests with the queue in its own process: SIGKILL at random moments, a runner killed
mid-job, and a watcher that never reads."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import psutil
import pytest

from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from tests.queue.harness import all_events, make_entry, origin
from tests.queue.processes import QueueProcess
from tests.queue.protocol_runner import Leased, ProtocolRunner

pytestmark = pytest.mark.e2e
T = TypeVar("T")
RETRIED_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                 grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN}


@pytest.fixture
def queue_process(tmp_path: Path) -> Iterator[QueueProcess]:
    process = QueueProcess(tmp_path / "data", {"STABLENEW_LEASE_SECONDS": "1",
                                               "STABLENEW_MAX_ATTEMPTS": "1000"})
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


def _until_answered(call: Callable[[], T], stop: threading.Event) -> T | None:
    """Retry a call while the queue is down; None if the test is over first."""
    while not stop.is_set():
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() not in RETRIED_CODES:
                raise
            time.sleep(0.05)
    return None


def _drain_until(stream: Iterable[pb.WatchJobsResponse], last: int) -> list[int]:
    """The sequences a stream delivers until `last`, or until the server cancels it."""
    seen: list[int] = []
    try:
        for reply in stream:
            seen.append(reply.event.sequence)
            if reply.event.sequence >= last:
                stream.cancel()  # type: ignore[attr-defined]
                break
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.CANCELLED, error  # disconnected by the server
    return seen


class _Workload:
    """Submits jobs and runs them with protocol runners while the queue keeps dying."""

    def __init__(self, address: str, jobs: int) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = queue_service_pb2_grpc.QueueServiceStub(self.channel)
        self.jobs = jobs
        self.stop = threading.Event()
        self.acknowledged: set[str] = set()
        self.completions: Counter[str] = Counter()
        self.errors: list[BaseException] = []

    def submit_all(self) -> None:
        for index in range(self.jobs):
            request = pb.SubmitJobRequest(entries=[make_entry(0)], origin=origin(),
                                          request_id=f"job-{index}")
            reply = _until_answered(lambda r=request: self.stub.SubmitJob(r, timeout=5),  # type: ignore[misc]
                                    self.stop)
            if reply is not None:
                self.acknowledged.add(reply.job.job_id)

    def run(self, runner_id: str) -> None:
        runner = ProtocolRunner(self.channel, runner_id)
        while not self.stop.is_set():
            leased = _until_answered(lambda: runner.lease(wait_seconds=0.2, timeout=5), self.stop)
            if leased is not None:
                self._finish(runner, leased)

    def _finish(self, runner: ProtocolRunner, leased: Leased) -> None:
        try:
            done = _until_answered(lambda: runner.complete(leased), self.stop)
        except grpc.RpcError as error:
            if details_of(error).reason != "LEASE_NOT_CURRENT":
                self.errors.append(error)
            return  # the lease expired during an outage: someone else runs it
        if done is not None:
            self.completions[f"{leased.job.job_id}/{leased.lease.lease_id}"] += 1

    def guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:  # surfaced by the test, not lost in a thread
                self.errors.append(error)
        return run


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        queue_process: QueueProcess) -> None:
    workload = _Workload(queue_process.address, jobs=500)
    threads = [threading.Thread(target=workload.guarded(workload.submit_all))]
    threads += [threading.Thread(target=workload.guarded(lambda n=n: workload.run(f"r{n}")))  # type: ignore[misc]
                for n in range(3)]
    for thread in threads:
        thread.start()
    chaos = random.Random(20261125)
    for _ in range(20):
        time.sleep(chaos.uniform(0.1, 0.6))
        queue_process.kill()
        queue_process.start()
    threads[0].join(timeout=120)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = {c.state: c.count for c in workload.stub.GetQueueState(
            pb.GetQueueStateRequest(), timeout=5).state.counts}
        if counts.get(job_pb2.JOB_STATE_COMPLETED, 0) >= 500:
            break
        time.sleep(0.2)
    workload.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert workload.errors == []
    assert len(workload.acknowledged) == 500

    events = all_events(workload.stub)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "gap in the log"
    completed = Counter(e.job_id for e in events
                        if e.state_changed.to_state == job_pb2.JOB_STATE_COMPLETED)
    submitted = {e.job_id for e in events if e.WhichOneof("payload") == "submitted"}
    assert workload.acknowledged <= submitted, "an acknowledged job was lost"
    assert len(submitted) == 500, "a retried submit created a second job"
    assert set(completed) == submitted and set(completed.values()) == {1}
    states = {workload.stub.GetJob(pb.GetJobRequest(job_id=job_id,
                                                    view=job_pb2.JOB_VIEW_BASIC)).job.state
              for job_id in submitted}
    assert states == {job_pb2.JOB_STATE_COMPLETED}, "a job was left RUNNING or QUEUED"
    workload.channel.close()


def test_a_runner_killed_mid_job_is_replaced_after_its_lease_expires(
        queue_process: QueueProcess) -> None:
    with grpc.insecure_channel(queue_process.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        job_id = stub.SubmitJob(pb.SubmitJobRequest(entries=[make_entry(0)],
                                                    origin=origin())).job.job_id
        doomed = subprocess.Popen(
            [sys.executable, "-m", "tests.queue.protocol_runner", queue_process.address, "doomed"],
            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
        assert doomed.stdout is not None
        held = json.loads(doomed.stdout.readline())
        assert held["job_id"] == job_id
        time.sleep(1.5)  # heartbeats keep the 1 s lease alive past its first deadline
        survivor = ProtocolRunner(channel, "survivor")
        assert survivor.lease(wait_seconds=0) is None
        doomed.kill()
        doomed.wait()
        leased = survivor.lease(wait_seconds=10)
        assert leased is not None
        assert (leased.job.job_id, leased.lease.attempt) == (job_id, 2)
        assert survivor.complete(leased).state == job_pb2.JOB_STATE_COMPLETED
        late = Leased(pb.Lease(lease_id=held["lease_id"], job_id=job_id,
                               attempt=held["attempt"]), leased.job)
        with pytest.raises(grpc.RpcError) as caught:
            ProtocolRunner(channel, "doomed").complete(late)
        assert details_of(caught.value).reason == "LEASE_NOT_CURRENT"
        events = all_events(stub)
        completions = [e for e in events
                       if e.state_changed.to_state == job_pb2.JOB_STATE_COMPLETED]
        assert len(completions) == 1


def test_a_watcher_that_never_reads_cannot_grow_the_server(tmp_path: Path) -> None:
    process = QueueProcess(tmp_path / "data", {"STABLENEW_WATCHER_BUFFER_BYTES": "262144",
                                               "STABLENEW_WATCHER_STALL_SECONDS": "1"})
    process.start()
    try:
        with grpc.insecure_channel(process.address) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            big = [make_entry(i, prompt="x" * 4000 + str(i)) for i in range(50)]
            stub.SubmitJob(pb.SubmitJobRequest(entries=big, origin=origin()))
            rss_before = psutil.Process(process.pid).memory_info().rss
            # Never read; the deadline only keeps a failing run from hanging.
            stalled = stub.WatchJobs(pb.WatchJobsRequest(after_sequence=0), timeout=90)
            for _ in range(150):  # about 30 MB of events
                stub.SubmitJob(pb.SubmitJobRequest(entries=big, origin=origin()))
            growth = psutil.Process(process.pid).memory_info().rss - rss_before
            assert growth < 25 * 1024 * 1024, f"server grew by {growth / 2**20:.1f} MiB"
            last = stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
            # Either the server cut the stalled watcher (its buffer overflowed while the
            # transport held it back), or the transport took every event off its hands; in
            # neither case may it have gaps.
            seen = _drain_until(stalled, last)
            assert seen == list(range(1, len(seen) + 1))
            assert len(all_events(stub)) == last  # a reconnect still sees everything
    finally:
        assert process.stop() == 0

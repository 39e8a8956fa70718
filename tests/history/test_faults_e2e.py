"""The history killed with SIGKILL at random moments while the queue (its own process) streams the
events of 1,000 jobs that protocol runners submit and complete; restarted each time. Afterwards
every job is in the history with every transition exactly once, and the record of each (now
terminal) job equals the queue's."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from stablenew.history.ingest import INGESTION_HEALTH
from stablenew.history.store.reads import read_only
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import history_service_pb2_grpc, job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as queue_pb
from tests.history.processes import HistoryProcess
from tests.history.queue_helpers import (
    acknowledged,
    assert_same_record,
    expected_transitions,
    submit,
)
from tests.queue.harness import all_events
from tests.queue.processes import QueueProcess
from tests.queue.protocol_runner import ProtocolRunner

pytestmark = pytest.mark.e2e
JOBS = 1000
RUNNERS = 3
MIN_KILLS = 8
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def queue_process(tmp_path: Path) -> Iterator[QueueProcess]:
    process = QueueProcess(tmp_path / "queue-data")
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


class Workload:
    """Submits JOBS jobs and completes them with protocol runners (the queue stays up)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = queue_service_pb2_grpc.QueueServiceStub(self.channel)
        self.submitted: list[str] = []
        self.completed = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.errors: list[BaseException] = []

    def submit_all(self) -> None:
        for index in range(JOBS):
            job = submit(self.stub, direct=index % 10 == 0,
                         pack_id="pack-faults" if index % 3 == 0 else "",
                         prompts=(f"job {index}", f"job {index}, second entry"),
                         request_id=f"fault-{index}")
            with self.lock:
                self.submitted.append(job.job_id)

    def run(self, runner_id: str) -> None:
        runner = ProtocolRunner(self.channel, runner_id)
        while not self.done.is_set():
            if runner.run_one(wait_seconds=0.2) is not None:
                with self.lock:
                    self.completed += 1
                    if self.completed == JOBS:
                        self.done.set()

    def guarded(self, target: object, *args: object) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except BaseException as error:  # surfaced by the test
                self.errors.append(error)
                self.done.set()
        return threading.Thread(target=body)


def wait_caught_up(history: HistoryProcess, last: int) -> None:
    history.wait_status(SERVING, service=INGESTION_HEALTH)
    deadline = time.monotonic() + 60
    while True:
        with read_only(history.data_dir / "history.sqlite3") as reader:
            if reader.cursor() >= last:
                return
        assert time.monotonic() < deadline, "the history did not catch up"
        time.sleep(0.1)


def verify(history: HistoryProcess, queue_stub: queue_service_pb2_grpc.QueueServiceStub,
           job_ids: list[str]) -> None:
    """Every job, every transition once, each record equal to the queue's."""
    events = all_events(queue_stub)
    with grpc.insecure_channel(history.address) as channel:
        stub = history_service_pb2_grpc.HistoryServiceStub(channel)
        for job_id in job_ids:
            recorded = stub.GetJob(pb.HistoryServiceGetJobRequest(job_id=job_id), timeout=10)
            assert recorded.job.state == job_pb2.JOB_STATE_COMPLETED
            assert list(recorded.transitions) == expected_transitions(events, job_id)
            queued = queue_stub.GetJob(queue_pb.GetJobRequest(job_id=job_id), timeout=10)
            assert_same_record(recorded.job, queued.job)
        listed = stub.ListJobs(pb.HistoryServiceListJobsRequest(page_size=1000), timeout=30)
        assert {job.job_id for job in listed.jobs} == set(job_ids)
    with read_only(history.data_dir / "history.sqlite3") as reader:
        sequences = [row[0] for row in reader.db.execute("SELECT sequence FROM transitions")]
    assert [s for s, n in Counter(sequences).items() if n > 1] == [], "recorded twice"
    assert len(sequences) == JOBS * 3  # submitted, running, completed


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
        tmp_path: Path, queue_process: QueueProcess) -> None:
    history = HistoryProcess(tmp_path / "history-data", queue_process.address)
    history.start()
    workload = Workload(queue_process.address)
    threads = [workload.guarded(workload.submit_all)]
    threads += [workload.guarded(workload.run, f"gpu-{n}") for n in range(RUNNERS)]
    for thread in threads:
        thread.start()
    chaos = random.Random(20260412)
    kills = 0
    try:
        while not workload.done.is_set() or kills < MIN_KILLS:
            # Anywhere: while starting, while catching up, while following live.
            time.sleep(chaos.uniform(0.05, 1.0))
            history.kill()
            kills += 1
            history.spawn()
        for thread in threads:
            thread.join(timeout=60)
        assert workload.errors == []
        assert len(workload.submitted) == JOBS
        last = workload.stub.GetQueueState(queue_pb.GetQueueStateRequest()).state.last_sequence
        wait_caught_up(history, last)
        verify(history, workload.stub, workload.submitted)
        # The queue is told everything the history committed (and never more: see
        # test_ingestion's failed-write test).
        deadline = time.monotonic() + 30
        while acknowledged(tmp_path / "queue-data") < last:
            assert time.monotonic() < deadline, "the acknowledgement did not arrive"
            time.sleep(0.1)
        print(f"{kills} kills while {JOBS} jobs ran")
    finally:
        workload.done.set()
        workload.channel.close()
        if history.process is not None and history.process.poll() is None:
            history.stop()

"""Fifty clients submitting 200 jobs each at once, and the history's disk filling up."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import grpc

from benchmarks.faults import full_disk
from benchmarks.faults.ledger import Outcome, lost, tally, wait_until
from stablenew.history.store.reads import read_only
from stablenew.v1 import history_service_pb2 as hpb
from stablenew.v1 import history_service_pb2_grpc, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from tests.fuzz.stack import TRACEBACK
from tests.history.processes import HistoryProcess
from tests.history.queue_helpers import submit
from tests.history.test_faults_e2e import wait_caught_up
from tests.queue.harness import make_entry, origin
from tests.queue.processes import QueueProcess
from tests.queue.protocol_runner import ProtocolRunner

REPOSITORY = Path(__file__).resolve().parents[2]


def _recorded_sequences(history: HistoryProcess) -> Counter[int]:
    with read_only(history.data_dir / "history.sqlite3") as reader:
        return Counter(row[0] for row in reader.db.execute("SELECT sequence FROM transitions"))


def crowd(root: Path, clients: int = 50, each: int = 200) -> Outcome:
    """`clients` threads, each on its own channel, submit `each` jobs at once to the queue while
    the history follows; every acknowledged job is in the log once and recorded once."""
    queue = QueueProcess(root / "queue-data")
    queue.start()
    history = HistoryProcess(root / "history-data", queue.address)
    history.start()
    acknowledged: list[str] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def client(number: int) -> None:
        with grpc.insecure_channel(queue.address) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            for index in range(each):
                request = pb.SubmitJobRequest(entries=[make_entry(0)], origin=origin(),
                                              request_id=f"client-{number}-{index}")
                try:
                    job_id = stub.SubmitJob(request, timeout=60).job.job_id
                except grpc.RpcError as error:
                    with lock:
                        errors[error.code().name] += 1
                    continue
                with lock:
                    acknowledged.append(job_id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    with grpc.insecure_channel(queue.address) as channel:
        found = tally(queue_service_pb2_grpc.QueueServiceStub(channel))
    wait_caught_up(history, found.last_sequence)
    recorded = _recorded_sequences(history)
    history.stop()
    queue.stop()
    not_recorded = found.transitions - len(recorded)
    return Outcome(f"{clients} clients x {each} jobs", clients, len(found.submitted),
                   lost(acknowledged, found.submitted) + not_recorded,
                   found.duplicated + sum(1 for n in recorded.values() if n > 1), 0,
                   {"acknowledged": len(acknowledged), "refused": dict(errors),
                    "recorded by the history": len(recorded)})


class LimitedHistory(HistoryProcess):
    """The history whose database cannot grow past `pages` pages (benchmarks/faults/full_disk)."""

    def __init__(self, data_dir: Path, queue_address: str, pages: int) -> None:
        super().__init__(data_dir, queue_address, {full_disk.PAGES_VARIABLE: str(pages),
                                                   "PYTHONPATH": str(REPOSITORY)})

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.faults.full_disk", "serve", "history",
                 "--log-level", "WARNING"], env=self.env, stdout=log, stderr=log)


def history_disk_full(root: Path, jobs: int = 300, pages: int = 100) -> Outcome:
    """The history's database stops growing (SQLite answers "database or disk is full") while
    jobs run; it keeps serving reads; once space is back (restarted without the limit) it
    records every transition it had not, each once."""
    queue = QueueProcess(root / "queue-data")
    queue.start()
    limited = LimitedHistory(root / "history-data", queue.address, pages)
    limited.start()
    with grpc.insecure_channel(queue.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        runner = ProtocolRunner(channel, "disk-full")
        acknowledged = [submit(stub, prompts=(f"job {n}",), request_id=f"full-{n}").job_id
                        for n in range(jobs)]
        while runner.run_one(wait_seconds=0) is not None:
            pass
        full = wait_until(lambda: "full" in limited.output(), 60)
        reads_while_full = _reads_answer(limited.address)
        tracebacks_while_full = len(TRACEBACK.findall(limited.log_path.read_text(errors="replace")))
        assert limited.stop() is not None
        history = HistoryProcess(root / "history-data", queue.address)
        found = tally(stub)
        history.start()
        wait_caught_up(history, found.last_sequence)
        recorded = _recorded_sequences(history)
        history.stop()
    queue.stop()
    return Outcome("history disk full", int(full), len(found.submitted),
                   lost(acknowledged, found.submitted) + found.transitions - len(recorded),
                   found.duplicated + sum(1 for n in recorded.values() if n > 1), found.stuck,
                   {"max_page_count": pages, "disk full seen": full,
                    "reads answered while full": reads_while_full,
                    "tracebacks in its log while full": tracebacks_while_full,
                    "transitions recorded after": len(recorded)})


def _reads_answer(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = history_service_pb2_grpc.HistoryServiceStub(channel)
        try:
            stub.ListJobs(hpb.HistoryServiceListJobsRequest(page_size=10), timeout=10)
        except grpc.RpcError:
            return False
    return True


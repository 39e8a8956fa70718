"""SIGKILL of the queue, of the history and of a runner at random moments while jobs run, a
runner cut off from the queue past its lease, and a watcher that never reads."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import psutil

from benchmarks.faults.ledger import Outcome, all_terminal, lost, tally, wait_until
from stablenew.history.store.reads import read_only
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import history_service_pb2 as hpb
from stablenew.v1 import history_service_pb2_grpc, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from tests.history.processes import HistoryProcess
from tests.history.queue_helpers import expected_transitions
from tests.history.test_faults_e2e import JOBS as HISTORY_JOBS
from tests.history.test_faults_e2e import Workload as HistoryWorkload
from tests.history.test_faults_e2e import wait_caught_up
from tests.queue.harness import all_events, make_entry, origin
from tests.queue.processes import QueueProcess
from tests.queue.protocol_runner import Leased, ProtocolRunner
from tests.queue.test_faults_e2e import _drain_until
from tests.queue.test_faults_e2e import _Workload as QueueWorkload

RUNNERS = 3


def queue_sigkill(root: Path, chaos: random.Random, kills: int = 20,
                  jobs: int = 300) -> Outcome:
    """The queue SIGKILLed `kills` times while a client submits (retrying with its request id)
    and protocol runners lease and complete (retrying through the outages)."""
    queue = QueueProcess(root / "queue-data", {"STABLENEW_LEASE_SECONDS": "1",
                                               "STABLENEW_MAX_ATTEMPTS": "1000"})
    queue.start()
    workload = QueueWorkload(queue.address, jobs)
    threads = [threading.Thread(target=workload.guarded(workload.submit_all))]
    threads += [threading.Thread(target=workload.guarded(
        lambda n=n: workload.run(f"r{n}"))) for n in range(RUNNERS)]  # type: ignore[misc]
    for thread in threads:
        thread.start()
    try:
        for _ in range(kills):
            time.sleep(chaos.uniform(0.1, 0.6))
            queue.kill()
            queue.start()
        threads[0].join(timeout=120)
        wait_until(all_terminal(workload.stub, jobs), 120)
    finally:
        workload.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    found = tally(workload.stub)
    outcome = Outcome("queue SIGKILL", kills, len(found.submitted),
                      lost(workload.acknowledged, found.submitted), found.duplicated,
                      found.stuck + max(0, jobs - len(workload.acknowledged)),
                      {"events": found.last_sequence, "sequence gaps": found.gaps,
                       "client errors": len(workload.errors),
                       "completions accepted twice": sum(
                           1 for n in workload.completions.values() if n > 1)})
    workload.channel.close()
    queue.stop()
    return outcome


def history_sigkill(root: Path, chaos: random.Random, min_kills: int = 8) -> Outcome:
    """The history SIGKILLed at random moments (starting, catching up, following) while 1,000
    jobs are submitted and completed; afterwards each job's record holds every transition once."""
    queue = QueueProcess(root / "queue-data")
    queue.start()
    history = HistoryProcess(root / "history-data", queue.address)
    history.start()
    workload = HistoryWorkload(queue.address)
    threads = [workload.guarded(workload.submit_all)]
    threads += [workload.guarded(workload.run, f"gpu-{n}") for n in range(RUNNERS)]
    for thread in threads:
        thread.start()
    kills = 0
    try:
        while (not workload.done.is_set() or kills < min_kills) and kills < 100:
            time.sleep(chaos.uniform(0.05, 1.0))
            history.kill()
            kills += 1
            history.spawn()
        for thread in threads:
            thread.join(timeout=60)
        last = workload.stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
        wait_caught_up(history, last)
        missing, twice = _history_differences(history, workload.stub, workload.submitted)
    finally:
        workload.done.set()
        workload.channel.close()
        history.stop()
        queue.stop()
    return Outcome("history SIGKILL", kills, len(workload.submitted), missing, twice,
                   HISTORY_JOBS - len(workload.submitted),
                   {"events": last, "client errors": len(workload.errors)})


def _history_differences(history: HistoryProcess,
                         queue_stub: queue_service_pb2_grpc.QueueServiceStub,
                         job_ids: list[str]) -> tuple[int, int]:
    """(jobs missing or with a transition missing, transitions recorded twice)."""
    events = all_events(queue_stub)
    missing = 0
    with grpc.insecure_channel(history.address) as channel:
        stub = history_service_pb2_grpc.HistoryServiceStub(channel)
        for job_id in job_ids:
            try:
                recorded = stub.GetJob(hpb.HistoryServiceGetJobRequest(job_id=job_id),
                                       timeout=10)
            except grpc.RpcError:
                missing += 1
                continue
            missing += list(recorded.transitions) != expected_transitions(events, job_id)
    with read_only(history.data_dir / "history.sqlite3") as reader:
        sequences = Counter(row[0] for row in reader.db.execute(
            "SELECT sequence FROM transitions"))
    return missing, sum(1 for n in sequences.values() if n > 1)


def partitioned_runner(root: Path, rounds: int = 10) -> Outcome:
    """A runner leases a job, then is cut off (no heartbeat) past its 1 s lease; another runner
    leases the job again and completes it; the first one's late completion must be refused."""
    queue = QueueProcess(root / "queue-data", {"STABLENEW_LEASE_SECONDS": "1"})
    queue.start()
    refused, accepted_late = Counter[str](), 0
    with grpc.insecure_channel(queue.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        cut_off, survivor = ProtocolRunner(channel, "cut-off"), ProtocolRunner(channel, "survivor")
        acknowledged: list[str] = []
        for _ in range(rounds):  # one job at a time: the survivor can only lease that one
            acknowledged.append(stub.SubmitJob(pb.SubmitJobRequest(
                entries=[make_entry(0)], origin=origin()), timeout=10).job.job_id)
            stale = cut_off.lease(wait_seconds=5)
            assert stale is not None
            fresh = survivor.lease(wait_seconds=10)  # after the stale lease expired
            assert fresh is not None and fresh.job.job_id == stale.job.job_id
            survivor.complete(fresh)
            try:
                cut_off.complete(Leased(stale.lease, stale.job))
                accepted_late += 1
            except grpc.RpcError as error:
                refused[details_of(error).reason] += 1
        found = tally(stub)
    queue.stop()
    return Outcome("runner partitioned", rounds, len(found.submitted),
                   lost(acknowledged, found.submitted), found.duplicated + accepted_late,
                   found.stuck, {"late completions refused": dict(refused),
                                 "late completions accepted": accepted_late})


def stalled_watcher(root: Path, submissions: int = 150) -> Outcome:
    """A WatchJobs client that never reads while about 30 MB of events are written: the queue's
    memory stays bounded, and the events the watcher does get have no gap."""
    queue = QueueProcess(root / "queue-data", {"STABLENEW_WATCHER_BUFFER_BYTES": "262144",
                                               "STABLENEW_WATCHER_STALL_SECONDS": "1"})
    queue.start()
    with grpc.insecure_channel(queue.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        big = [make_entry(i, prompt="x" * 4000 + str(i)) for i in range(50)]
        stub.SubmitJob(pb.SubmitJobRequest(entries=big, origin=origin()), timeout=10)
        rss_before = psutil.Process(queue.pid).memory_info().rss
        stalled = stub.WatchJobs(pb.WatchJobsRequest(after_sequence=0), timeout=120)
        for _ in range(submissions):
            stub.SubmitJob(pb.SubmitJobRequest(entries=big, origin=origin()), timeout=10)
        growth = psutil.Process(queue.pid).memory_info().rss - rss_before
        last = stub.GetQueueState(pb.GetQueueStateRequest()).state.last_sequence
        seen = _drain_until(stalled, last)
        gaps = sum(1 for a, b in zip(seen, range(1, len(seen) + 1), strict=False) if a != b)
        found = tally(stub)
    queue.stop()
    missed = gaps + found.gaps + (found.last_sequence != last)
    return Outcome("stalled watcher", 1, len(found.submitted), missed, found.duplicated,
                   0, {"queue RSS growth MiB": round(growth / 2**20, 1),
                       "events written": last, "events the stalled watcher got": len(seen),
                       "gaps in what it got": gaps,
                       "events a reconnect reads": found.last_sequence})

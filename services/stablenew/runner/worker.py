"""The runner's loop: announce itself, lease a job, run it with heartbeats, report, lease the
next one at once so the GPU idles for milliseconds, not seconds.

Heartbeats run on their own thread while the job runs: they extend the lease, carry progress,
and bring back cancel requests, which interrupt the WebUI at once. A lease the queue no longer
recognises (it expired during an outage and the job went to another runner) stops the job
without reporting it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from stablenew.contract.model import EntryResult, Job
from stablenew.contract.proto_mapping import fill_proto, from_proto, to_proto
from stablenew.runner.executor import Executor
from stablenew.runner.status import RunnerState
from stablenew.runner.webui_client import WebuiClient
from stablenew.runner.webui_errors import WebuiError
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc

log = logging.getLogger("stablenew.runner")
T = TypeVar("T")

RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Worker:
    def __init__(self, queue: queue_service_pb2_grpc.QueueServiceStub, client: WebuiClient,
                 executor: Executor, state: RunnerState, address: str,
                 lease_wait_seconds: float = 10.0, heartbeat_seconds: float = 0.5) -> None:
        self.queue = queue
        self.client = client
        self.executor = executor
        self.state = state
        self.address = address
        self.lease_wait_seconds = lease_wait_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stopping = threading.Event()
        self._job_cancel = threading.Event()
        self._job_ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runner-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def shut_down(self) -> None:
        """Stop leasing, and hand a running job back to the queue at once rather than let its
        lease run out."""
        self.stopping.set()
        if self.state.current_job_id:
            self._stop_job(self._job_cancel, "the runner is shutting down")

    def stop(self, timeout: float) -> None:
        self.shut_down()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if not self.state.refresh_webui(self.client):
                    self.stopping.wait(1.0)
                    continue
                leased = self._lease()
                if leased is not None:
                    self._run_leased(*leased)
            except grpc.RpcError as error:
                log.warning("queue call failed: %s", details_of(error).message)
                self.stopping.wait(1.0)
            except Exception:
                # One bad job must not stop the runner; the lease expiry hands it on.
                log.exception("runner loop error")
                self.stopping.wait(1.0)

    def _runner_info(self) -> pb.RunnerInfo:
        capabilities = self.state.capabilities
        models = [model.model_name for model in capabilities.models] if capabilities else []
        return pb.RunnerInfo(runner_id=self.state.runner_id, host=self.state.host,
                             models=models, loaded_model=self.state.loaded_model_name,
                             address=self.address)

    def _lease(self) -> tuple[pb.Lease, Job] | None:
        request = pb.LeaseJobRequest(runner=self._runner_info())
        request.wait_timeout.FromMilliseconds(int(self.lease_wait_seconds * 1000))
        reply = self.queue.LeaseJob(request, timeout=self.lease_wait_seconds + 10)
        if not reply.HasField("lease"):
            return None
        return reply.lease, from_proto(Job, reply.job)

    def _run_leased(self, lease: pb.Lease, job: Job) -> None:
        log.info("running job %s attempt %d (%d entries)", job.job_id, lease.attempt,
                 len(job.entries))
        cancel = self._job_cancel = threading.Event()
        self._job_ended.clear()
        lost = threading.Event()
        self.state.job_started(job.job_id)
        beats = threading.Thread(target=self._heartbeat, args=(lease, cancel, lost),
                                 name="runner-heartbeat", daemon=True)
        beats.start()
        try:
            results, cancelled = self.executor.run_job(job, cancel, self.state.set_progress)
        finally:
            self.state.job_finished()
            self._job_ended.set()
            beats.join()  # ends once job_finished cleared the current job
        if lost.is_set():
            log.warning("lease of job %s was lost; not reporting it", job.job_id)
        elif cancelled and self.stopping.is_set():
            self._hand_back(lease, results)
        else:
            self._report(lease, results, cancelled)

    def _heartbeat(self, lease: pb.Lease, cancel: threading.Event,
                   lost: threading.Event) -> None:
        while self.state.current_job_id == lease.job_id:
            request = pb.HeartbeatRequest(
                runner_id=self.state.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
                attempt=lease.attempt, loaded_model=self.state.loaded_model_name)
            progress = self.state.progress
            if progress is not None:
                fill_proto(progress, request.progress)
            try:
                reply = self.queue.Heartbeat(request, timeout=5)
                if reply.cancel_requested and not cancel.is_set():
                    self._stop_job(cancel, "cancel requested")
            except grpc.RpcError as error:
                if details_of(error).reason == "LEASE_NOT_CURRENT":
                    lost.set()
                    self._stop_job(cancel, "lease lost")
            # Wakes at once when the job ends, so the next lease is not held up by a beat.
            self._job_ended.wait(self.heartbeat_seconds)

    def _stop_job(self, cancel: threading.Event, why: str) -> None:
        log.info("stopping the current job: %s", why)
        cancel.set()
        try:
            self.client.interrupt()
        except WebuiError as error:
            log.warning("interrupt failed: %s", error)

    def _report(self, lease: pb.Lease, results: list[EntryResult], cancelled: bool) -> None:
        request = pb.CompleteJobRequest(
            runner_id=self.state.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
            attempt=lease.attempt, cancelled=cancelled,
            results=[to_proto(result) for result in results])
        reply = _retrying(lambda: self.queue.CompleteJob(request, timeout=10), self.stopping)
        log.info("job %s reported: %s", lease.job_id, reply.job.state)


    def _hand_back(self, lease: pb.Lease, results: list[EntryResult]) -> None:
        request = pb.FailJobRequest(
            runner_id=self.state.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
            attempt=lease.attempt, error_message="the runner shut down while running the job",
            results=[to_proto(result) for result in results], retryable=True)
        self.queue.FailJob(request, timeout=5)
        log.info("job %s handed back to the queue", lease.job_id)


def _retrying(call: Callable[[], T], stopping: threading.Event, attempts: int = 30) -> T:
    """Retry while the queue is unreachable (a restart); a retried report answers the same."""
    for attempt in range(attempts - 1):
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() not in RETRIED or stopping.is_set():
                raise
        time.sleep(min(0.1 * 2 ** attempt, 2.0))
    return call()  # the last attempt: whatever it raises is raised

"""A small client of the runner protocol (LeaseJob, Heartbeat, CompleteJob, FailJob,
ReleaseJob) that drives the queue the way a real runner does, without a WebUI: each entry
"runs" by sending a few heartbeats and produces a COMPLETED (or FAILED) result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from stablenew.v1 import job_pb2, queue_service_pb2_grpc, runner_service_pb2
from stablenew.v1 import queue_service_pb2 as pb


@dataclass
class Leased:
    lease: pb.Lease
    job: job_pb2.Job


class ProtocolRunner:
    def __init__(self, channel: grpc.Channel, runner_id: str, models: tuple[str, ...] = ("sd15",),
                 loaded_model: str = "") -> None:
        self.stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.runner_id = runner_id
        self.models = models
        self.loaded_model = loaded_model

    def lease(self, wait_seconds: float = 0.0, timeout: float = 10.0,
              webui_state: runner_service_pb2.WebuiState.ValueType = (
                  runner_service_pb2.WEBUI_STATE_UNSPECIFIED),
              stopped: bool = False) -> Leased | None:
        """`webui_state` BUSY: a lease ahead, asked while a job runs; `stopped`: the last
        announcement of a runner that shuts down."""
        request = pb.LeaseJobRequest(runner=pb.RunnerInfo(
            runner_id=self.runner_id, host="test-host", models=list(self.models),
            loaded_model=self.loaded_model, webui_state=webui_state, stopped=stopped))
        request.wait_timeout.FromMilliseconds(int(wait_seconds * 1000))
        reply = self.stub.LeaseJob(request, timeout=timeout)
        return Leased(reply.lease, reply.job) if reply.HasField("lease") else None

    def heartbeat(self, leased: Leased, entry_index: int = 0, step: int = 1,
                  held: bool = False) -> pb.HeartbeatResponse:
        """A beat with progress, or (`held`) without: the beat of a job held ahead."""
        progress = None if held else job_pb2.JobProgress(
            entry_index=entry_index, entry_count=len(leased.job.entries), step=step, steps=20)
        return self.stub.Heartbeat(pb.HeartbeatRequest(
            runner_id=self.runner_id, lease_id=leased.lease.lease_id, job_id=leased.job.job_id,
            attempt=leased.lease.attempt, progress=progress, loaded_model=self.loaded_model),
            timeout=10)

    def results(self, leased: Leased,
                failed: Callable[[int], bool] = lambda _: False) -> list[job_pb2.EntryResult]:
        out = []
        for entry in leased.job.entries:
            status = (job_pb2.ENTRY_STATUS_FAILED if failed(entry.index)
                      else job_pb2.ENTRY_STATUS_COMPLETED)
            out.append(job_pb2.EntryResult(
                entry_index=entry.index, prompt=entry.prompt, stage_plan=entry.stage_plan,
                status=status, executed_config_hash=entry.config_hash,
                error_message="emulated failure" if failed(entry.index) else ""))
        return out

    def complete(self, leased: Leased, cancelled: bool = False,
                 results: list[job_pb2.EntryResult] | None = None) -> job_pb2.Job:
        reply = self.stub.CompleteJob(pb.CompleteJobRequest(
            runner_id=self.runner_id, lease_id=leased.lease.lease_id, job_id=leased.job.job_id,
            attempt=leased.lease.attempt,
            results=self.results(leased) if results is None else results,
            cancelled=cancelled), timeout=10)
        return reply.job

    def fail(self, leased: Leased, error: str, retryable: bool = False) -> job_pb2.Job:
        reply = self.stub.FailJob(pb.FailJobRequest(
            runner_id=self.runner_id, lease_id=leased.lease.lease_id, job_id=leased.job.job_id,
            attempt=leased.lease.attempt, error_message=error, retryable=retryable,
            results=self.results(leased, failed=lambda _: True)), timeout=10)
        return reply.job

    def release(self, leased: Leased, reason: str = "a job must run first") -> job_pb2.Job:
        reply = self.stub.ReleaseJob(pb.ReleaseJobRequest(
            runner_id=self.runner_id, lease_id=leased.lease.lease_id, job_id=leased.job.job_id,
            attempt=leased.lease.attempt, reason=reason), timeout=10)
        return reply.job

    def run_one(self, wait_seconds: float = 1.0) -> job_pb2.Job | None:
        """Lease a job, heartbeat once per entry, complete it."""
        leased = self.lease(wait_seconds)
        if leased is None:
            return None
        for entry in leased.job.entries:
            self.heartbeat(leased, entry.index)
        return self.complete(leased)


def hold_one_job(address: str, runner_id: str) -> None:
    """Lease one job, print the lease as JSON, and heartbeat until killed (a runner that dies
    mid-job)."""
    with grpc.insecure_channel(address) as channel:
        runner = ProtocolRunner(channel, runner_id)
        leased = runner.lease(wait_seconds=10)
        assert leased is not None, "no job to hold"
        print(json.dumps({"lease_id": leased.lease.lease_id, "job_id": leased.job.job_id,
                          "attempt": leased.lease.attempt}), flush=True)
        while True:
            runner.heartbeat(leased)
            time.sleep(0.1)


if __name__ == "__main__":
    hold_one_job(sys.argv[1], sys.argv[2])

"""The runner's adapter to the queue (QueueService over gRPC): lease, heartbeat, complete, fail
and release as plain methods on the runner's domain types (domain.JobQueue).

Failures become the exceptions the core understands: QueueUnavailableError when the queue could
not be reached or did not answer in time (retrying may help), LeaseLostError when the queue no
longer recognises the lease, QueueCallError for any other refusal. Each keeps the queue's
answer (code, ErrorInfo reason, message).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from stablenew.contract.errors import Code, ErrorDetails, ErrorReason
from stablenew.contract.model import EntryResult, JobProgress, JobState
from stablenew.contract.proto_mapping import fill_proto, to_proto
from stablenew.runner import mapping
from stablenew.runner.domain import (
    Beat,
    Lease,
    LeasedJob,
    LeaseLostError,
    QueueCallError,
    QueueUnavailableError,
    RunnerInfo,
)
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import queue_service_pb2_grpc

# Deadlines of each call. A lease long-polls for its wait, plus this margin for the answer.
LEASE_MARGIN_SECONDS = 10.0
HEARTBEAT_TIMEOUT = 5.0
COMPLETE_TIMEOUT = 10.0
FAIL_TIMEOUT = 5.0
RELEASE_TIMEOUT = 5.0

UNREACHABLE = {Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED}


class QueueClient:
    """The queue at the other end of `channel` (the caller owns and closes the channel)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = queue_service_pb2_grpc.QueueServiceStub(channel)

    def lease(self, runner: RunnerInfo, wait_seconds: float) -> LeasedJob | None:
        """The next job for `runner`, or None when none came within `wait_seconds`."""
        request = pb.LeaseJobRequest(runner=mapping.runner_info_to_proto(runner))
        request.wait_timeout.FromMilliseconds(int(wait_seconds * 1000))
        with _translated("LeaseJob"):
            reply = self._stub.LeaseJob(request, timeout=wait_seconds + LEASE_MARGIN_SECONDS)
        if not reply.HasField("lease"):
            return None
        return mapping.leased_job_from_proto(runner.runner_id, reply.lease, reply.job)

    def heartbeat(self, lease: Lease, loaded_model: str, progress: JobProgress | None) -> Beat:
        """Extend the lease and report progress; the queue's answer."""
        request = pb.HeartbeatRequest(
            runner_id=lease.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
            attempt=lease.attempt, loaded_model=loaded_model)
        if progress is not None:
            fill_proto(progress, request.progress)
        with _translated("Heartbeat"):
            reply = self._stub.Heartbeat(request, timeout=HEARTBEAT_TIMEOUT)
        return Beat(reply.cancel_requested, reply.outranked)

    def complete(self, lease: Lease, results: list[EntryResult], cancelled: bool) -> JobState:
        """Report every entry's result; the state the job ended in."""
        request = pb.CompleteJobRequest(
            runner_id=lease.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
            attempt=lease.attempt, cancelled=cancelled,
            results=[to_proto(result) for result in results])
        with _translated("CompleteJob"):
            reply = self._stub.CompleteJob(request, timeout=COMPLETE_TIMEOUT)
        return JobState(reply.job.state)

    def fail(self, lease: Lease, message: str, results: list[EntryResult],
             retryable: bool) -> JobState:
        """Report the job failed with every entry's result; its new state."""
        request = pb.FailJobRequest(
            runner_id=lease.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
            attempt=lease.attempt, error_message=message,
            results=[to_proto(result) for result in results], retryable=retryable)
        with _translated("FailJob"):
            reply = self._stub.FailJob(request, timeout=FAIL_TIMEOUT)
        return JobState(reply.job.state)

    def release(self, lease: Lease, reason: str) -> JobState:
        """Give back a lease not started, without consuming an attempt; the job's new state."""
        request = pb.ReleaseJobRequest(
            runner_id=lease.runner_id, lease_id=lease.lease_id, job_id=lease.job_id,
            attempt=lease.attempt, reason=reason)
        with _translated("ReleaseJob"):
            reply = self._stub.ReleaseJob(request, timeout=RELEASE_TIMEOUT)
        return JobState(reply.job.state)


@contextmanager
def _translated(call: str) -> Iterator[None]:
    """Turn a failed gRPC call into the queue error the core handles."""
    try:
        yield
    except grpc.RpcError as error:
        raise queue_error(call, details_of(error)) from None


def queue_error(call: str, details: ErrorDetails) -> QueueCallError:
    """The exception for a failed `call` whose answer was `details`."""
    if details.code in UNREACHABLE:
        return QueueUnavailableError(call, details)
    if details.reason == ErrorReason.LEASE_NOT_CURRENT.name:
        return LeaseLostError(call, details)
    return QueueCallError(call, details)

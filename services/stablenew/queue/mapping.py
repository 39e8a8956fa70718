"""Generated queue messages <-> queue domain objects (the shared twins go through
stablenew.contract.proto_mapping)."""

from __future__ import annotations

from stablenew.contract.model import JobOrigin, JobProgress
from stablenew.contract.proto_mapping import fill_proto, from_proto, job_to_proto
from stablenew.queue.core import QueueStateView
from stablenew.queue.domain import JobRead, Lease, RunnerInfo, RunnerRecord
from stablenew.v1 import job_pb2, queue_service_pb2


def job_message(read: JobRead, view: int) -> job_pb2.Job:
    """The job in `view`; a full view's entries are merged in from their stored form (a Job
    holding only them), never decoded and re-encoded."""
    message = job_to_proto(read.job, view)
    if view == job_pb2.JOB_VIEW_FULL:
        message.MergeFromString(read.stored_entries)
    return message


def origin_from_proto(message: job_pb2.JobOrigin) -> JobOrigin:
    return from_proto(JobOrigin, message)


def progress_from_proto(message: job_pb2.JobProgress) -> JobProgress:
    return from_proto(JobProgress, message)


def runner_info_from_proto(message: queue_service_pb2.RunnerInfo) -> RunnerInfo:
    return RunnerInfo(
        runner_id=message.runner_id,
        host=message.host,
        models=tuple(message.models),
        loaded_model=message.loaded_model,
        address=message.address,
    )


def lease_to_proto(lease: Lease) -> queue_service_pb2.Lease:
    message = queue_service_pb2.Lease(
        lease_id=lease.lease_id, job_id=lease.job_id, attempt=lease.attempt
    )
    message.deadline.FromDatetime(lease.deadline)
    return message


def runner_to_proto(
    record: RunnerRecord, progress: JobProgress | None
) -> queue_service_pb2.Runner:
    info = record.info
    message = queue_service_pb2.Runner(current_job_id=record.current_job_id)
    message.info.CopyFrom(queue_service_pb2.RunnerInfo(
        runner_id=info.runner_id, host=info.host, models=list(info.models),
        loaded_model=info.loaded_model, address=info.address))
    if record.last_heartbeat_time is not None:
        message.last_heartbeat_time.FromDatetime(record.last_heartbeat_time)
    if progress is not None:
        fill_proto(progress, message.progress)
    return message


def state_to_proto(state: QueueStateView) -> queue_service_pb2.QueueState:
    message = queue_service_pb2.QueueState(
        paused=state.paused, runner_count=state.runner_count, last_sequence=state.last_sequence
    )
    for job_state, count in sorted(state.counts.items()):
        message.counts.add(state=int(job_state), count=count)
    if state.estimated_time_left is not None:
        message.estimated_time_left.FromTimedelta(state.estimated_time_left)
    return message

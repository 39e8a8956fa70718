"""Generated queue messages <-> queue domain objects (the shared twins go through
stablenew.contract.proto_mapping)."""

from __future__ import annotations

from stablenew.contract.model import JobOrigin, JobProgress, WebuiState
from stablenew.contract.proto_mapping import fill_proto, from_request, job_to_proto
from stablenew.contract.request_limits import (
    checked_id,
    checked_names,
    checked_text,
    known_enum,
)
from stablenew.queue import codec
from stablenew.queue.core import QueueStateView
from stablenew.queue.domain import Consumer, JobRead, Lease, RunnerInfo, RunnerRecord
from stablenew.runtime.message_budget import FullPage, JobParts, add_parts_within
from stablenew.v1 import job_pb2, queue_service_pb2, runner_service_pb2


def job_message(read: JobRead, view: int) -> job_pb2.Job:
    """The job in `view`; a full view's entries are merged in from their stored form (a Job
    holding only them), never decoded and re-encoded."""
    message = job_to_proto(read.job, view)
    if view == job_pb2.JOB_VIEW_FULL:
        message.MergeFromString(read.stored_entries)
    return message


def full_job_within(read: JobRead, entry_offset: int, result_offset: int,
                    budget: int) -> tuple[job_pb2.Job, JobParts]:
    """The full job, or when it does not fit in `budget` bytes (or offsets are given) the basic
    job with the entries and results from the offsets on that fit."""
    message = job_message(read, job_pb2.JOB_VIEW_FULL)
    if not (entry_offset or result_offset) and message.ByteSize() <= budget:
        return message, JobParts(len(message.entries), len(message.results), False)
    entries, results = list(message.entries), list(message.results)
    message.ClearField("entries")
    message.ClearField("results")
    parts = add_parts_within(message, entries[entry_offset:], results[result_offset:],
                             entry_offset, result_offset, budget - message.ByteSize())
    return message, parts


def full_page(budget: int) -> FullPage[JobRead]:
    """A ListJobs page in the full view within a message budget."""
    return FullPage(budget, lambda read: job_message(read, job_pb2.JOB_VIEW_FULL),
                    lambda read, room: full_job_within(read, 0, 0, room)[0])


def origin_from_proto(message: job_pb2.JobOrigin) -> JobOrigin:
    """A submitted job's origin; INVALID_ARGUMENT for an unknown enum value or a long id."""
    origin = from_request(JobOrigin, message, "origin")
    for name in ("prompt_pack_id", "draft_id", "retry_of_job_id"):
        checked_id(getattr(origin, name), f"origin.{name}", required=False)
    return origin


def progress_from_proto(message: job_pb2.JobProgress) -> JobProgress:
    """A heartbeat's progress; INVALID_ARGUMENT for an unknown stage or an impossible ETA."""
    return from_request(JobProgress, message, "progress")


def runner_info_from_proto(message: queue_service_pb2.RunnerInfo) -> RunnerInfo:
    """What a runner says about itself, each part checked for length."""
    capabilities = codec.encode_capabilities(message.capabilities)
    return RunnerInfo(
        runner_id=checked_id(message.runner_id, "runner.runner_id", required=False),
        host=checked_text(message.host, "runner.host"),
        models=tuple(checked_names(message.models, "runner.models")),
        loaded_model=checked_text(message.loaded_model, "runner.loaded_model"),
        address=checked_text(message.address, "runner.address"),
        capabilities=capabilities,
        checkpoint_names=codec.checkpoint_names(capabilities),
        webui_state=known_enum(WebuiState, message.webui_state, "runner.webui_state"),
        stopped=message.stopped,
    )


def lease_to_proto(lease: Lease) -> queue_service_pb2.Lease:
    message = queue_service_pb2.Lease(
        lease_id=lease.lease_id, job_id=lease.job_id, attempt=lease.attempt
    )
    message.deadline.FromDatetime(lease.deadline)
    return message


def runner_to_proto(
    record: RunnerRecord, connected: bool, progress: JobProgress | None
) -> queue_service_pb2.Runner:
    info = record.info
    message = queue_service_pb2.Runner(current_job_id=record.current_job_id, connected=connected,
                                       held_job_id=record.held_job_id)
    message.info.CopyFrom(queue_service_pb2.RunnerInfo(
        runner_id=info.runner_id, host=info.host, models=list(info.models),
        loaded_model=info.loaded_model, address=info.address, stopped=info.stopped,
        webui_state=runner_service_pb2.WebuiState.ValueType(_listed_state(record))))
    if info.capabilities:
        message.info.capabilities.MergeFromString(info.capabilities)
    if record.last_heartbeat_time is not None:
        message.last_heartbeat_time.FromDatetime(record.last_heartbeat_time)
    if progress is not None:
        fill_proto(progress, message.progress)
    return message


def state_to_proto(state: QueueStateView) -> queue_service_pb2.QueueState:
    message = queue_service_pb2.QueueState(
        paused=state.paused, runner_count=state.runner_count, last_sequence=state.last_sequence,
        unrunnable_job_count=state.unrunnable_job_count)
    for job_state, count in sorted(state.counts.items()):
        message.counts.add(state=int(job_state), count=count)
    if state.estimated_time_left is not None:
        message.estimated_time_left.FromTimedelta(state.estimated_time_left)
    return message


def consumer_to_proto(consumer: Consumer, idle_seconds: float) -> queue_service_pb2.Consumer:
    message = queue_service_pb2.Consumer(
        consumer_id=consumer.consumer_id, acknowledged_sequence=consumer.acknowledged_sequence,
        watching=consumer.watching)
    message.create_time.FromDatetime(consumer.create_time)
    message.last_active_time.FromDatetime(consumer.last_active_time)
    expire_time = consumer.expire_time(idle_seconds)
    if expire_time is not None:
        message.expire_time.FromDatetime(expire_time)
    return message


def _listed_state(record: RunnerRecord) -> WebuiState:
    """BUSY while the runner runs a job, READY once it ended: what the queue knows of its jobs
    beats the state the runner announced with its last lease request (BUSY when it leased
    ahead, which the job's end makes stale)."""
    state = record.info.webui_state
    if state not in (WebuiState.READY, WebuiState.BUSY):
        return state
    return WebuiState.BUSY if record.current_job_id else WebuiState.READY

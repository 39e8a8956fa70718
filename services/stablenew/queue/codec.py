"""Byte encodings the queue stores: a job's entries and results, its event log, and what a
runner's WebUI offers.

The event log keeps each event in its wire form (a serialized stablenew.v1.JobEvent): events are
the contract that watchers replay, so what is stored is exactly what a watcher receives, byte for
byte, after any restart. Entries and results use the same messages for the same reason, and so
does a runner's announced Capabilities, which the queue lists as it was announced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from stablenew.contract.model import EntryResult, Job, JobProgress, JobState, NormalizedJob
from stablenew.contract.proto_mapping import fill_proto, from_proto, to_proto
from stablenew.sdwebui import model_matching
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.v1 import job_pb2, pipeline_pb2, runner_service_pb2


def encode_entries(messages: Sequence[pipeline_pb2.NormalizedJob]) -> bytes:
    """A serialized Job holding only these entries."""
    holder = job_pb2.Job()
    holder.entries.extend(messages)
    return holder.SerializeToString()


def decode_entries(blob: bytes) -> list[NormalizedJob]:
    holder = job_pb2.Job.FromString(blob)
    return [from_proto(NormalizedJob, entry) for entry in holder.entries]


def encode_results(results: list[EntryResult]) -> bytes:
    holder = job_pb2.Job()
    for result in results:
        fill_proto(result, holder.results.add())
    return holder.SerializeToString()


def decode_results(blob: bytes) -> list[EntryResult]:
    holder = job_pb2.Job.FromString(blob)
    return [from_proto(EntryResult, result) for result in holder.results]


def encode_capabilities(message: runner_service_pb2.Capabilities) -> bytes:
    """A runner's announced Capabilities as stored; b"" for an unset one."""
    return message.SerializeToString() if message.ByteSize() else b""


def checkpoint_names(capabilities: bytes) -> frozenset[str]:
    """Every name the checkpoints of stored Capabilities are known by (RunnerInfo)."""
    message = runner_service_pb2.Capabilities.FromString(capabilities)
    return model_matching.checkpoint_names(
        [ModelEntry(model.title, model.model_name, model.hash) for model in message.models])


def _event(job_id: str, now: datetime) -> job_pb2.JobEvent:
    event = job_pb2.JobEvent(job_id=job_id)
    event.time.FromDatetime(now.astimezone(UTC))
    return event


def submitted_event(job: Job, encoded_entries: bytes, now: datetime) -> job_pb2.JobEvent:
    """The job with its entries, which are merged in from their stored encoding (a Job holding
    only them) rather than converted once more."""
    event = _event(job.job_id, now)
    event.submitted.job.CopyFrom(to_proto(job))
    event.submitted.job.MergeFromString(encoded_entries)
    return event


def state_changed_event(
    job: Job, from_state: JobState, reason: str, now: datetime,
    results: list[EntryResult] | None = None,
) -> job_pb2.JobEvent:
    event = _event(job.job_id, now)
    change = event.state_changed
    change.from_state = job_pb2.JobState.ValueType(from_state)
    change.to_state = job_pb2.JobState.ValueType(job.state)
    change.reason = reason
    change.runner_id = job.runner_id
    change.attempt = job.attempt
    change.error_message = job.error_message
    for result in results or []:
        fill_proto(result, change.results.add())
    return event


def progress_event(job_id: str, progress: JobProgress, now: datetime) -> job_pb2.JobEvent:
    event = _event(job_id, now)
    event.progress.progress.CopyFrom(to_proto(progress))
    return event


def cancel_requested_event(
    job_id: str, return_to_queue: bool, reason: str, now: datetime
) -> job_pb2.JobEvent:
    event = _event(job_id, now)
    event.cancel_requested.return_to_queue = return_to_queue
    event.cancel_requested.reason = reason
    return event


def moved_event(job_id: str, position: int, now: datetime) -> job_pb2.JobEvent:
    event = _event(job_id, now)
    event.moved.queue_position = position
    return event


def queue_paused_event(paused: bool, now: datetime) -> job_pb2.JobEvent:
    event = _event("", now)
    if paused:
        event.queue_paused.SetInParent()
    else:
        event.queue_resumed.SetInParent()
    return event

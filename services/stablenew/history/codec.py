"""Byte encodings the history stores: a normalized job (entry) exactly as queued, live progress,
and the queue's events as it logged them.

Events are kept in their wire form (a serialized stablenew.v1.JobEvent) so that ListJobEvents
returns what the queue sent. Two parts are kept once rather than twice: the entries of a
`submitted` event live in the entries table and the results of a terminal `state_changed` event
in the results tables; they are cut from the stored event and put back when it is read.
"""

from __future__ import annotations

from stablenew.contract.model import EntryResult, JobProgress, NormalizedJob
from stablenew.contract.proto_mapping import fill_proto, from_proto, to_proto
from stablenew.v1 import job_pb2, pipeline_pb2

# What was cut from a stored event (a bit set kept next to it).
CUT_ENTRIES = 1
CUT_RESULTS = 2


def encode_entry(entry: NormalizedJob) -> bytes:
    message: pipeline_pb2.NormalizedJob = to_proto(entry)
    return message.SerializeToString()


def decode_entry(blob: bytes) -> NormalizedJob:
    return from_proto(NormalizedJob, pipeline_pb2.NormalizedJob.FromString(blob))


def encode_progress(progress: JobProgress) -> bytes | None:
    if progress == JobProgress():
        return None
    message: job_pb2.JobProgress = to_proto(progress)
    return message.SerializeToString()


def decode_progress(blob: bytes | None) -> JobProgress:
    if not blob:
        return JobProgress()
    return from_proto(JobProgress, job_pb2.JobProgress.FromString(blob))


def cut_event(event: job_pb2.JobEvent) -> tuple[bytes, int]:
    """The event to store, without what other tables hold, and what was cut."""
    cut = 0
    kind = event.WhichOneof("payload")
    if kind == "submitted" and event.submitted.job.entries:
        event = job_pb2.JobEvent.FromString(event.SerializeToString())
        del event.submitted.job.entries[:]
        cut |= CUT_ENTRIES
    elif kind == "state_changed" and event.state_changed.results:
        event = job_pb2.JobEvent.FromString(event.SerializeToString())
        del event.state_changed.results[:]
        cut |= CUT_RESULTS
    return event.SerializeToString(), cut


def restore_event(payload: bytes, cut: int, entries: list[NormalizedJob],
                  results: list[EntryResult]) -> job_pb2.JobEvent:
    """The stored event with what was cut put back."""
    event = job_pb2.JobEvent.FromString(payload)
    if cut & CUT_ENTRIES:
        for entry in entries:
            fill_proto(entry, event.submitted.job.entries.add())
    if cut & CUT_RESULTS:
        for result in results:
            fill_proto(result, event.state_changed.results.add())
    return event

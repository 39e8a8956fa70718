"""The queue as the bundle core sees it: submit a normalised draft as one job, look a job up,
and ask what the connected runners offer (its runner registry, ListRunners).

The adapter between the core and the queue's gRPC API. Failures become `ServiceError`s the
core passes on: a queue that does not answer is UNAVAILABLE DEPENDENCY_UNAVAILABLE (retrying is
safe, a draft revision is queued at most once); anything the queue (or gRPC on its side)
refuses keeps its code, reason and metadata, so EnqueueDraft answers with the queue's own error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import grpc

from stablenew.bundle.domain import NormalizedBundle
from stablenew.bundle.mapping import JobMessages, offered_by
from stablenew.bundle.name_check import OfferedNames
from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.model import Job, JobOrigin, Priority
from stablenew.contract.proto_mapping import fill_proto, from_proto
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as queue_pb

T = TypeVar("T")
SUBMIT_TIMEOUT_SECONDS = 60
LOOKUP_TIMEOUT_SECONDS = 10
# Short: a preview waits for it, and does without it (the names stay unchecked).
RUNNERS_TIMEOUT_SECONDS = 3
RUNNERS_PAGE_SIZE = 1000


class QueueClient:
    """Submits to and reads from the queue over `channel` (the caller owns the channel)."""

    def __init__(self, channel: grpc.Channel, job_messages: JobMessages) -> None:
        self.stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.job_messages = job_messages

    def submit(self, bundle: NormalizedBundle, origin: JobOrigin, priority: Priority,
               label: str, request_id: str) -> Job:
        """The bundle's jobs queued as one job (the queue dedups on `request_id`)."""
        request = queue_pb.SubmitJobRequest(priority=job_pb2.Priority.ValueType(priority),
                                            label=label, request_id=request_id)
        fill_proto(origin, request.origin)
        request.entries.extend(self.job_messages.all(bundle))
        response = _call(lambda: self.stub.SubmitJob(request, timeout=SUBMIT_TIMEOUT_SECONDS))
        return from_proto(Job, response.job)

    def lookup(self, job_id: str) -> Job:
        """The queued job `job_id` (basic view)."""
        request = queue_pb.GetJobRequest(job_id=job_id, view=job_pb2.JOB_VIEW_BASIC)
        response = _call(lambda: self.stub.GetJob(request, timeout=LOOKUP_TIMEOUT_SECONDS))
        return from_proto(Job, response.job)

    def offered_names(self) -> OfferedNames:
        """What the runners the queue counts as connected offer together."""
        offers: list[OfferedNames] = []
        token = ""
        while True:
            response = _call(partial(
                self.stub.ListRunners, queue_pb.ListRunnersRequest(
                    page_size=RUNNERS_PAGE_SIZE, page_token=token),
                timeout=RUNNERS_TIMEOUT_SECONDS))
            offers += [offered_by(runner) for runner in response.runners if runner.connected]
            token = response.next_page_token
            if not token:
                return OfferedNames.union(offers)


def _call(call: Callable[[], T]) -> T:
    try:
        return call()
    except grpc.RpcError as error:
        raise queue_failure(error) from None


def queue_failure(error: grpc.RpcError) -> ServiceError:
    """What a failed queue call means to the bundle's caller (module docstring)."""
    details = details_of(error)
    if details.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
        return ServiceError(Code.UNAVAILABLE, ErrorReason.DEPENDENCY_UNAVAILABLE,
                            f"the queue did not answer ({details.code.name}); retrying is "
                            "safe: a draft revision is queued at most once")
    # The field violations name the queue's request, not the caller's: the message keeps them.
    return ServiceError(details.code,
                        ErrorReason.__members__.get(details.reason, ErrorReason.UNSPECIFIED),
                        f"the queue refused: {details.message}", metadata=details.metadata)

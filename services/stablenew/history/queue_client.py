"""The queue as the history's ingestion reaches it: QueueService over gRPC behind
ingest.QueueConnection. Besides the servicer and the app wiring, the only history module that
speaks gRPC. A failed call becomes a QueueCallError carrying the decoded status (code, and the
queue's reason and metadata), so the ingestion decides on contract terms."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from stablenew.contract.model import Job
from stablenew.history import mapping
from stablenew.history.core import IncomingEvent, UnreadableEvent
from stablenew.history.ingest import EventStream, QueueCallError
from stablenew.runtime.rich_status import details_of
from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as queue_pb


@contextmanager
def _translated() -> Iterator[None]:
    """A failed call inside the block raises QueueCallError instead."""
    try:
        yield
    except grpc.RpcError as error:
        raise QueueCallError(details_of(error)) from error


class _WatchStream:
    """A WatchJobs call as the domain's events."""

    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[IncomingEvent | UnreadableEvent]:
        with _translated():
            for reply in self._call:  # type: ignore[attr-defined]
                yield mapping.read_incoming(reply.event)

    def cancel(self) -> None:
        self._call.cancel()  # type: ignore[no-untyped-call]


class QueueClient:
    """One channel to the queue; every unary call has a deadline."""

    def __init__(self, channel: grpc.Channel, call_timeout_seconds: float) -> None:
        self._channel = channel
        self._stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self._timeout = call_timeout_seconds

    def last_sequence(self) -> int:
        with _translated():
            reply = self._stub.GetQueueState(queue_pb.GetQueueStateRequest(),
                                             timeout=self._timeout)
        return reply.state.last_sequence

    def create_consumer(self, consumer_id: str, after_sequence: int) -> None:
        with _translated():
            self._stub.CreateConsumer(queue_pb.CreateConsumerRequest(
                consumer_id=consumer_id, after_sequence=after_sequence), timeout=self._timeout)

    def watch(self, after_sequence: int, consumer_id: str) -> EventStream:
        with _translated():
            call = self._stub.WatchJobs(queue_pb.WatchJobsRequest(
                after_sequence=after_sequence, consumer_id=consumer_id))
        return _WatchStream(call)

    def get_job(self, job_id: str) -> Job | None:
        try:
            reply = self._stub.GetJob(queue_pb.GetJobRequest(job_id=job_id,
                                                             view=job_pb2.JOB_VIEW_FULL),
                                      timeout=self._timeout)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise QueueCallError(details_of(error)) from error
        return mapping.job_from_proto(reply.job)

    def acknowledge(self, consumer_id: str, sequence: int) -> None:
        with _translated():
            self._stub.AcknowledgeEvents(queue_pb.AcknowledgeEventsRequest(
                consumer_id=consumer_id, sequence=sequence), timeout=self._timeout)

    def close(self) -> None:
        self._channel.close()

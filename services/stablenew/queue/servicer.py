"""The gRPC edge of the queue: requests in, domain calls, responses out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import grpc

from stablenew.contract.errors import invalid_argument
from stablenew.contract.model import EntryResult, Priority
from stablenew.contract.proto_mapping import from_request, job_to_proto
from stablenew.contract.request_limits import (
    MAX_TEXT_CHARS,
    checked_id,
    checked_map,
    checked_names,
    checked_text,
    duration_seconds,
    known_enum,
)
from stablenew.queue import mapping
from stablenew.queue.core import QueueCore
from stablenew.queue.domain import Consumer, MovePosition, RetryScope, RunnerRecord
from stablenew.queue.entries import entry_batch
from stablenew.queue.leasing import Leasing
from stablenew.queue.watchers import WatchFilter
from stablenew.runtime.message_budget import (
    RESPONSE_MARGIN_BYTES,
    checked_offset,
    too_large_to_send,
)
from stablenew.runtime.paging import page_by_name, page_size
from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb

Context = grpc.ServicerContext


def _results(messages: Sequence[job_pb2.EntryResult]) -> list[EntryResult]:
    return [from_request(EntryResult, message, f"results[{index}]")
            for index, message in enumerate(messages)]


def _view(number: int, default: int) -> int:
    """The requested JobView (`default` for UNSPECIFIED); INVALID_ARGUMENT for an unknown one."""
    if number not in job_pb2.JobView.values():
        raise invalid_argument("view", f"unknown value {number}; one of BASIC, FULL")
    return number or default


def _lease_of(request: pb.HeartbeatRequest | pb.CompleteJobRequest | pb.FailJobRequest
              | pb.ReleaseJobRequest) -> tuple[str, str, str, int]:
    """The runner id, lease id, job id and attempt a runner names its lease by, checked."""
    return (checked_id(request.runner_id, "runner_id", required=False),
            checked_id(request.lease_id, "lease_id"), checked_id(request.job_id, "job_id"),
            request.attempt)


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(self, core: QueueCore, leasing: Leasing, max_message_bytes: int) -> None:
        self.core = core
        self.leasing = leasing
        # What a job may take in one message: a SubmitJob request (so that its event can be
        # sent), GetJob's full view before it comes in parts.
        self.job_budget = max_message_bytes - RESPONSE_MARGIN_BYTES
        self.runner_tokens = core.page_tokens("queue.ListRunners")
        self.consumer_tokens = core.page_tokens("queue.ListConsumers")

    def SubmitJob(self, request: pb.SubmitJobRequest, context: Context) -> pb.SubmitJobResponse:
        self._check_fits(request.ByteSize())
        priority = known_enum(Priority, request.priority, "priority")
        label = checked_text(request.label, "label")
        metadata = checked_map(request.metadata, "metadata")
        request_id = checked_id(request.request_id, "request_id", required=False)
        origin = mapping.origin_from_proto(request.origin)
        job = self.core.submit(entry_batch(request.entries), origin, priority, label, metadata,
                               request_id)
        return pb.SubmitJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def _check_fits(self, request_bytes: int) -> None:
        """RESOURCE_EXHAUSTED naming `entries` for a job whose `submitted` event, the request
        and a few hundred bytes the queue adds, could not be sent: WatchJobs would fail at it
        for every watcher, the history's ingestion included, on every attempt."""
        if request_bytes > self.job_budget:
            raise too_large_to_send("entries", "the job", request_bytes, self.job_budget,
                                    "submit it as smaller jobs")

    def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        view = _view(request.view, job_pb2.JOB_VIEW_FULL)
        entry_offset = checked_offset(request.entry_offset, "entry_offset")
        result_offset = checked_offset(request.result_offset, "result_offset")
        read = self.core.get(checked_id(request.job_id, "job_id"),
                             full=view == job_pb2.JOB_VIEW_FULL)
        if view != job_pb2.JOB_VIEW_FULL:
            return pb.GetJobResponse(job=mapping.job_message(read, view))
        job, parts = mapping.full_job_within(read, entry_offset, result_offset, self.job_budget)
        return pb.GetJobResponse(job=job, **parts.fields())

    def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        view = _view(request.view, job_pb2.JOB_VIEW_BASIC)
        size = page_size(request.page_size)
        if view != job_pb2.JOB_VIEW_FULL:
            jobs, token = self.core.list_active(size, request.page_token)
            return pb.ListJobsResponse(jobs=[mapping.job_message(read, view) for read in jobs],
                                       next_page_token=token)
        page = mapping.full_page(self.job_budget)
        _, token = self.core.list_active(size, request.page_token, full=True, take=page.take)
        return pb.ListJobsResponse(jobs=page.jobs, next_page_token=token,
                                   truncated_job_ids=page.truncated_job_ids)

    def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.CancelJobResponse:
        job = self.core.cancel(checked_id(request.job_id, "job_id"), request.return_to_queue,
                               checked_text(request.reason, "reason"))
        return pb.CancelJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def MoveJob(self, request: pb.MoveJobRequest, context: Context) -> pb.MoveJobResponse:
        position = known_enum(MovePosition, request.position, "position",
                              allow_unspecified=False)
        job = self.core.move(checked_id(request.job_id, "job_id"), position,
                             checked_id(request.before_job_id, "before_job_id", required=False))
        return pb.MoveJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def PauseQueue(self, request: pb.PauseQueueRequest, context: Context) -> pb.PauseQueueResponse:
        return pb.PauseQueueResponse(state=mapping.state_to_proto(self.core.set_paused(True)))

    def ResumeQueue(self, request: pb.ResumeQueueRequest,
                    context: Context) -> pb.ResumeQueueResponse:
        return pb.ResumeQueueResponse(state=mapping.state_to_proto(self.core.set_paused(False)))

    def GetQueueState(self, request: pb.GetQueueStateRequest,
                      context: Context) -> pb.GetQueueStateResponse:
        return pb.GetQueueStateResponse(state=mapping.state_to_proto(self.core.state()))

    def RetryJob(self, request: pb.RetryJobRequest, context: Context) -> pb.RetryJobResponse:
        failed_only = known_enum(RetryScope, request.scope, "scope") == RetryScope.FAILED_ENTRIES
        job = self.core.retry(checked_id(request.job_id, "job_id"), failed_only,
                              checked_id(request.request_id, "request_id", required=False))
        return pb.RetryJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def WatchJobs(self, request: pb.WatchJobsRequest,
                  context: Context) -> Iterator[pb.WatchJobsResponse]:
        if request.after_sequence < 0:
            raise invalid_argument("after_sequence", "must not be negative")
        job_ids = checked_names(request.job_ids, "job_ids")
        consumer_id = checked_id(request.consumer_id, "consumer_id", required=False)
        watch_filter = WatchFilter(frozenset(job_ids), request.exclude_progress)
        events = self.core.watch(request.after_sequence, watch_filter, consumer_id,
                                 disconnect=context.cancel, wanted=context.is_active)
        for event in events:
            if not context.is_active():
                return
            yield pb.WatchJobsResponse(event=job_pb2.JobEvent.FromString(event.payload))

    def AcknowledgeEvents(self, request: pb.AcknowledgeEventsRequest,
                          context: Context) -> pb.AcknowledgeEventsResponse:
        acked = self.core.acknowledge(checked_id(request.consumer_id, "consumer_id"),
                                      request.sequence)
        return pb.AcknowledgeEventsResponse(acknowledged_sequence=acked)

    def CreateConsumer(self, request: pb.CreateConsumerRequest,
                       context: Context) -> pb.CreateConsumerResponse:
        consumer = self.core.create_consumer(
            checked_id(request.consumer_id, "consumer_id"), request.after_sequence,
            checked_id(request.request_id, "request_id", required=False))
        return pb.CreateConsumerResponse(consumer=self._consumer(consumer))

    def ListConsumers(self, request: pb.ListConsumersRequest,
                      context: Context) -> pb.ListConsumersResponse:
        page, token = page_by_name(self.consumer_tokens, request.page_token,
                                   page_size(request.page_size), self.core.list_consumers,
                                   lambda consumer: consumer.consumer_id)
        return pb.ListConsumersResponse(consumers=[self._consumer(c) for c in page],
                                        next_page_token=token)

    def DeleteConsumer(self, request: pb.DeleteConsumerRequest,
                       context: Context) -> pb.DeleteConsumerResponse:
        self.core.delete_consumer(checked_id(request.consumer_id, "consumer_id"))
        return pb.DeleteConsumerResponse()

    def _consumer(self, consumer: Consumer) -> pb.Consumer:
        return mapping.consumer_to_proto(consumer, self.core.config.consumer_idle_seconds)

    def LeaseJob(self, request: pb.LeaseJobRequest, context: Context) -> pb.LeaseJobResponse:
        runner = mapping.runner_info_from_proto(request.runner)
        # The leasing caps the wait (max_lease_wait_seconds): a long-poll never outlives it.
        wait = duration_seconds(request.wait_timeout.seconds, request.wait_timeout.nanos,
                                "wait_timeout")
        granted = self.leasing.lease(runner, wait, context.is_active)
        if granted is None:
            return pb.LeaseJobResponse()
        lease, job = granted
        return pb.LeaseJobResponse(lease=mapping.lease_to_proto(lease),
                                   job=mapping.job_message(job, job_pb2.JOB_VIEW_FULL))

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        reply = self.leasing.heartbeat(
            *_lease_of(request),
            mapping.progress_from_proto(request.progress) if request.HasField("progress")
            else None, checked_text(request.loaded_model, "loaded_model"))
        response = pb.HeartbeatResponse(cancel_requested=reply.cancel_requested,
                                        return_to_queue=reply.return_to_queue,
                                        outranked=reply.outranked)
        response.lease_deadline.FromDatetime(reply.lease_deadline)
        return response

    def CompleteJob(self, request: pb.CompleteJobRequest,
                    context: Context) -> pb.CompleteJobResponse:
        job = self.leasing.complete(*_lease_of(request), _results(request.results),
                                    request.cancelled)
        return pb.CompleteJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def FailJob(self, request: pb.FailJobRequest, context: Context) -> pb.FailJobResponse:
        job = self.leasing.fail(
            *_lease_of(request),
            checked_text(request.error_message, "error_message", MAX_TEXT_CHARS),
            _results(request.results), request.retryable)
        return pb.FailJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def ReleaseJob(self, request: pb.ReleaseJobRequest,
                   context: Context) -> pb.ReleaseJobResponse:
        job = self.leasing.release(*_lease_of(request), checked_text(request.reason, "reason"))
        return pb.ReleaseJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def ListRunners(self, request: pb.ListRunnersRequest,
                    context: Context) -> pb.ListRunnersResponse:
        page, token = page_by_name(self.runner_tokens, request.page_token,
                                   page_size(request.page_size), self._runners_after,
                                   lambda record: record[0].info.runner_id)
        runners = [mapping.runner_to_proto(r, connected,
                                           self.leasing.current_progress(r.current_job_id))
                   for r, connected in page]
        return pb.ListRunnersResponse(runners=runners, next_page_token=token)

    def _runners_after(self, after: str, limit: int) -> list[tuple[RunnerRecord, bool]]:
        """At most `limit` runners by id after `after`, each with whether it is connected."""
        return [(record, connected) for record, connected in self.leasing.runners()
                if record.info.runner_id > after][:limit]

"""The gRPC edge of the queue: requests in, domain calls, responses out."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from stablenew.contract.errors import invalid_argument, required
from stablenew.contract.model import EntryResult, Priority
from stablenew.contract.proto_mapping import from_proto, job_to_proto
from stablenew.queue import mapping
from stablenew.queue.core import QueueCore
from stablenew.queue.domain import MovePosition, RetryScope
from stablenew.queue.entries import entry_batch
from stablenew.queue.leasing import Leasing
from stablenew.queue.watchers import WatchFilter
from stablenew.runtime.paging import page_size
from stablenew.v1 import job_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb

Context = grpc.ServicerContext


def _results(messages: object) -> list[EntryResult]:
    return [from_proto(EntryResult, message) for message in messages]  # type: ignore[attr-defined]


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(self, core: QueueCore, leasing: Leasing) -> None:
        self.core = core
        self.leasing = leasing
        self.runner_tokens = core.page_tokens("queue.ListRunners")

    def SubmitJob(self, request: pb.SubmitJobRequest, context: Context) -> pb.SubmitJobResponse:
        job = self.core.submit(
            entry_batch(request.entries),
            mapping.origin_from_proto(request.origin),
            Priority(request.priority), request.label, dict(request.metadata), request.request_id)
        return pb.SubmitJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        view = request.view or job_pb2.JOB_VIEW_FULL
        read = self.core.get(required(request.job_id, "job_id"),
                             full=view == job_pb2.JOB_VIEW_FULL)
        return pb.GetJobResponse(job=mapping.job_message(read, view))

    def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        view = request.view or job_pb2.JOB_VIEW_BASIC
        jobs, token = self.core.list_active(page_size(request.page_size), request.page_token,
                                            full=view == job_pb2.JOB_VIEW_FULL)
        return pb.ListJobsResponse(jobs=[mapping.job_message(read, view) for read in jobs],
                                   next_page_token=token)

    def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.CancelJobResponse:
        job = self.core.cancel(required(request.job_id, "job_id"), request.return_to_queue,
                               request.reason)
        return pb.CancelJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def MoveJob(self, request: pb.MoveJobRequest, context: Context) -> pb.MoveJobResponse:
        if request.position == pb.MOVE_POSITION_UNSPECIFIED:
            raise invalid_argument("position", "one of FRONT, BACK, UP, DOWN, BEFORE")
        job = self.core.move(required(request.job_id, "job_id"),
                             MovePosition(request.position), request.before_job_id)
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
        failed_only = RetryScope(request.scope) == RetryScope.FAILED_ENTRIES
        job = self.core.retry(required(request.job_id, "job_id"), failed_only,
                              request.request_id)
        return pb.RetryJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def WatchJobs(self, request: pb.WatchJobsRequest,
                  context: Context) -> Iterator[pb.WatchJobsResponse]:
        if request.after_sequence < 0:
            raise invalid_argument("after_sequence", "must not be negative")
        watch_filter = WatchFilter(frozenset(request.job_ids), request.exclude_progress)
        events = self.core.watch(request.after_sequence, watch_filter, request.consumer_id,
                                 disconnect=context.cancel)
        for event in events:
            if not context.is_active():
                return
            yield pb.WatchJobsResponse(event=job_pb2.JobEvent.FromString(event.payload))

    def AcknowledgeEvents(self, request: pb.AcknowledgeEventsRequest,
                          context: Context) -> pb.AcknowledgeEventsResponse:
        acked = self.core.acknowledge(request.consumer_id, request.sequence)
        return pb.AcknowledgeEventsResponse(acknowledged_sequence=acked)

    def LeaseJob(self, request: pb.LeaseJobRequest, context: Context) -> pb.LeaseJobResponse:
        runner = mapping.runner_info_from_proto(request.runner)
        granted = self.leasing.lease(runner, request.wait_timeout.ToTimedelta().total_seconds(),
                                     context.is_active)
        if granted is None:
            return pb.LeaseJobResponse()
        lease, job = granted
        return pb.LeaseJobResponse(lease=mapping.lease_to_proto(lease),
                                   job=mapping.job_message(job, job_pb2.JOB_VIEW_FULL))

    def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        reply = self.leasing.heartbeat(
            request.runner_id, required(request.lease_id, "lease_id"),
            required(request.job_id, "job_id"), request.attempt,
            mapping.progress_from_proto(request.progress) if request.HasField("progress")
            else None, request.loaded_model)
        response = pb.HeartbeatResponse(cancel_requested=reply.cancel_requested,
                                        return_to_queue=reply.return_to_queue)
        response.lease_deadline.FromDatetime(reply.lease_deadline)
        return response

    def CompleteJob(self, request: pb.CompleteJobRequest,
                    context: Context) -> pb.CompleteJobResponse:
        job = self.leasing.complete(
            request.runner_id, required(request.lease_id, "lease_id"),
            required(request.job_id, "job_id"), request.attempt, _results(request.results),
            request.cancelled)
        return pb.CompleteJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def FailJob(self, request: pb.FailJobRequest, context: Context) -> pb.FailJobResponse:
        job = self.leasing.fail(
            request.runner_id, required(request.lease_id, "lease_id"),
            required(request.job_id, "job_id"), request.attempt, request.error_message,
            _results(request.results), request.retryable)
        return pb.FailJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def ListRunners(self, request: pb.ListRunnersRequest,
                    context: Context) -> pb.ListRunnersResponse:
        size = page_size(request.page_size)
        position = self.runner_tokens.decode(request.page_token)
        after = str(position[0]) if position else ""
        records = [r for r in self.leasing.runners() if r.info.runner_id > after]
        page = records[:size]
        token = self.runner_tokens.encode([page[-1].info.runner_id]) if len(records) > size else ""
        runners = [mapping.runner_to_proto(r, self.leasing.current_progress(r.current_job_id))
                   for r in page]
        return pb.ListRunnersResponse(runners=runners, next_page_token=token)

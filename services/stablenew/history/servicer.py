"""The gRPC edge of the history: requests in, domain calls, responses out."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from stablenew.contract.endpoints import DEFAULT_MAX_MESSAGE_BYTES
from stablenew.contract.errors import invalid_argument
from stablenew.contract.proto_mapping import job_to_proto
from stablenew.history import mapping
from stablenew.history.core import HistoryCore
from stablenew.history.domain import IngestionStatus
from stablenew.runtime.message_budget import RESPONSE_MARGIN_BYTES, checked_offset
from stablenew.runtime.paging import page_size
from stablenew.v1 import history_service_pb2 as pb
from stablenew.v1 import history_service_pb2_grpc, job_pb2

Context = grpc.ServicerContext
WATCH_POLL_SECONDS = 0.5
QUARANTINE_PAGE_DEFAULT = 20
# A quarantined event may be a submission with thousands of entries.
QUARANTINE_PAGE_MAX = 100


def _view(view: int, default: int) -> int:
    if view not in (job_pb2.JOB_VIEW_UNSPECIFIED, job_pb2.JOB_VIEW_BASIC, job_pb2.JOB_VIEW_FULL):
        raise invalid_argument("view", f"unknown value {view}")
    return view or default


class HistoryServicer(history_service_pb2_grpc.HistoryServiceServicer):
    def __init__(self, core: HistoryCore,
                 ingestion_status: Callable[[], IngestionStatus] | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        """`ingestion_status`: how the ingestion stands (None: a history without one);
        `max_message_bytes`: the server's send limit, which a record is sent within."""
        self.core = core
        self.ingestion_status = ingestion_status or core.without_ingestion
        self.record_budget = max_message_bytes - RESPONSE_MARGIN_BYTES

    def ListJobs(self, request: pb.HistoryServiceListJobsRequest,
                 context: Context) -> pb.HistoryServiceListJobsResponse:
        job_filter = mapping.filter_from_proto(request.filter)
        size = page_size(request.page_size)
        view = _view(request.view, job_pb2.JOB_VIEW_BASIC)
        token = mapping.page_token(request.page_token)
        if view != job_pb2.JOB_VIEW_FULL:
            jobs, next_token = self.core.list_jobs(job_filter, size, token)
            return pb.HistoryServiceListJobsResponse(
                jobs=[job_to_proto(job, view) for job in jobs], next_page_token=next_token)
        page = mapping.full_page(self.record_budget)
        _, next_token = self.core.list_jobs(job_filter, size, token, full=True, take=page.take)
        return pb.HistoryServiceListJobsResponse(jobs=page.jobs, next_page_token=next_token,
                                                 truncated_job_ids=page.truncated_job_ids)

    def GetJob(self, request: pb.HistoryServiceGetJobRequest,
               context: Context) -> pb.HistoryServiceGetJobResponse:
        job_id = mapping.job_id(request.job_id)
        entry_offset = checked_offset(request.entry_offset, "entry_offset")
        result_offset = checked_offset(request.result_offset, "result_offset")
        job, transitions = self.core.get(job_id)
        full = mapping.full_job_within(job, transitions, entry_offset, result_offset,
                                       self.record_budget)
        return pb.HistoryServiceGetJobResponse(job=full.job, transitions=full.transitions,
                                               **full.parts.fields())

    def GetLatestJob(self, request: pb.GetLatestJobRequest,
                     context: Context) -> pb.GetLatestJobResponse:
        job = self.core.latest(mapping.filter_from_proto(request.filter))
        return pb.GetLatestJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def ListJobEvents(self, request: pb.ListJobEventsRequest,
                      context: Context) -> pb.ListJobEventsResponse:
        job_id = mapping.job_id(request.job_id)
        events = self.core.events(job_id, page_size(request.page_size),
                                  mapping.page_token(request.page_token))
        page = mapping.EventPage(self.record_budget)
        token = events.next_page_token
        for event in mapping.events_to_proto(events):
            if not page.take(event):
                token = self.core.events_token(job_id, page.events[-1].sequence)
                break
        return pb.ListJobEventsResponse(events=page.events, next_page_token=token,
                                        truncated_sequences=page.truncated_sequences)

    def UpdateJob(self, request: pb.UpdateJobRequest, context: Context) -> pb.UpdateJobResponse:
        job = self.core.update(
            mapping.job_id(request.job_id),
            mapping.label(request.label) if request.HasField("label") else None,
            request.bookmarked if request.HasField("bookmarked") else None)
        return pb.UpdateJobResponse(job=job_to_proto(job, job_pb2.JOB_VIEW_BASIC))

    def DeleteJob(self, request: pb.DeleteJobRequest, context: Context) -> pb.DeleteJobResponse:
        self.core.delete(mapping.job_id(request.job_id))
        return pb.DeleteJobResponse()

    def PruneHistory(self, request: pb.PruneHistoryRequest,
                     context: Context) -> pb.PruneHistoryResponse:
        removed = self.core.prune(mapping.prune_from_proto(request), request.dry_run)
        return pb.PruneHistoryResponse(removed_count=removed)

    def ExportHistory(self, request: pb.ExportHistoryRequest,
                      context: Context) -> Iterator[pb.ExportHistoryResponse]:
        job_filter = mapping.filter_from_proto(request.filter)
        for job, transitions in self.core.export(job_filter):
            if not context.is_active():
                return
            full = mapping.full_job_within(job, transitions, 0, 0, self.record_budget)
            yield pb.ExportHistoryResponse(job=full.job, transitions=full.transitions,
                                           **full.parts.fields())

    def WatchHistory(self, request: pb.WatchHistoryRequest,
                     context: Context) -> Iterator[pb.WatchHistoryResponse]:
        job_filter = mapping.filter_from_proto(request.filter)
        subscriber = self.core.broadcaster.subscribe(job_filter, disconnect=context.cancel)
        try:
            if request.confirm_subscription:
                # Registered: every change committed from now on reaches this subscriber.
                yield pb.WatchHistoryResponse(subscribed=True)
            while context.is_active() and not self.core.closing.is_set():
                for update in subscriber.take(WATCH_POLL_SECONDS):
                    if update.job is None:
                        yield pb.WatchHistoryResponse(job=job_pb2.Job(job_id=update.job_id),
                                                      deleted=True)
                    else:
                        yield pb.WatchHistoryResponse(
                            job=job_to_proto(update.job, job_pb2.JOB_VIEW_BASIC))
        finally:
            self.core.broadcaster.unsubscribe(subscriber)

    def ImportHistory(self, request: pb.ImportHistoryRequest,
                      context: Context) -> pb.ImportHistoryResponse:
        outcome = self.core.import_jobs(mapping.imported_from_proto(request))
        return pb.ImportHistoryResponse(
            added_count=outcome.added, updated_count=outcome.updated,
            unchanged_count=outcome.unchanged, skipped_job_ids=outcome.skipped_job_ids)

    def GetIngestionStatus(self, request: pb.GetIngestionStatusRequest,
                           context: Context) -> pb.GetIngestionStatusResponse:
        return mapping.ingestion_status_to_proto(self.ingestion_status())

    def ListQuarantinedEvents(self, request: pb.ListQuarantinedEventsRequest,
                              context: Context) -> pb.ListQuarantinedEventsResponse:
        size = page_size(request.page_size, QUARANTINE_PAGE_DEFAULT, QUARANTINE_PAGE_MAX)
        events, token = self.core.quarantined(size, mapping.page_token(request.page_token))
        return pb.ListQuarantinedEventsResponse(
            events=[mapping.quarantined_to_proto(event) for event in events],
            next_page_token=token)

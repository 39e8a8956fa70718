"""Every SDK operation, written once as a generator of commands (see `_commands`): the
synchronous and the asyncio client both run these."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from stablenew.contract.model import JobProgress, JobSource, JobState, Priority, RunMode
from stablenew.contract.proto_mapping import from_proto
from stablenew.sdk import _requests as requests
from stablenew.sdk._commands import Emit, Flow, Next, Notify, Op, Open, Sleep, Unary
from stablenew.sdk.errors import (
    CancelledError,
    DeadlineExceededError,
    InternalError,
    JobNotFoundError,
    PathOutsideRootError,
    RowErrorsError,
    StableNewError,
    UnavailableError,
    WaitTimeoutError,
)
from stablenew.sdk.types import (
    BundleSummary,
    Capabilities,
    Consumer,
    Draft,
    HistoryChange,
    HistoryRecord,
    ImportResult,
    IngestionStatus,
    InterruptResult,
    Job,
    JobEvent,
    JobView,
    MovePosition,
    NormalizedJob,
    Pack,
    PackSummary,
    QuarantinedEvent,
    QueueState,
    Runner,
    RunnerStatus,
    read,
    read_change,
    read_event,
    read_queue_state,
    read_record,
)
from stablenew.v1 import (
    bundle_service_pb2 as bundle_pb,
)
from stablenew.v1 import (
    history_service_pb2 as history_pb,
)
from stablenew.v1 import (
    queue_service_pb2 as queue_pb,
)
from stablenew.v1 import (
    runner_service_pb2 as runner_pb,
)

T = TypeVar("T")

# ImportHistory takes at most this many jobs per request.
IMPORT_BATCH = 1000
# Reconnect back-off of a watch: from the first to the longest wait between attempts.
FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 2.0

PathOrFile = str | os.PathLike[str] | IO[str]


class Ended:
    """What `next_item` answers once a flow has no more items."""


ENDED = Ended()


def next_item(flow: Flow[T]) -> Op[T | Ended]:
    """Run a flow inside an operation up to its next item, or ENDED. Failed calls are passed
    on to the flow, which may handle them."""
    answer: Any = None
    error: StableNewError | None = None
    while True:
        try:
            command = flow.send(answer) if error is None else flow.throw(error)
        except StopIteration:
            return ENDED
        if isinstance(command, Emit):
            value: T = command.value
            return value
        try:
            answer, error = (yield command), None
        except StableNewError as failure:
            answer, error = None, failure


def collect(flow: Flow[T]) -> Op[list[T]]:
    """Every item of a flow, as a list."""
    items: list[T] = []
    while True:
        item = yield from next_item(flow)
        if isinstance(item, Ended):
            return items
        items.append(item)


def pages(service: str, method: str, request: Any,
          items: Callable[[Any], Iterable[T]]) -> Flow[T]:
    """The items of every page of a paged list, reading the next page only when needed."""
    while True:
        reply = yield Unary(service, method, request)
        for item in items(reply):
            yield Emit(item)
        if not reply.next_page_token:
            return
        request = _with_token(request, reply.next_page_token)


def _with_token(request: Message, token: str) -> Any:
    following = type(request)()
    following.CopyFrom(request)
    following.page_token = token  # type: ignore[attr-defined]
    return following


# --- packs ----------------------------------------------------------------------------------


def list_packs(page_size: int) -> Flow[PackSummary]:
    request = bundle_pb.ListPacksRequest(page_size=requests.page_size(page_size))
    return pages("bundle", "ListPacks", request,
                 lambda reply: (read(PackSummary, pack) for pack in reply.packs))


def get_pack(pack_id: str) -> Op[Pack]:
    reply = yield Unary("bundle", "GetPack", bundle_pb.GetPackRequest(pack_id=pack_id))
    return read(Pack, reply.pack)


# --- drafts ---------------------------------------------------------------------------------


def create_draft(display_name: str, request_id: str) -> Op[Draft]:
    request = bundle_pb.CreateDraftRequest(display_name=display_name, request_id=request_id)
    reply = yield Unary("bundle", "CreateDraft", request)
    return read(Draft, reply.draft)


def get_draft(draft_id: str) -> Op[Draft]:
    reply = yield Unary("bundle", "GetDraft", bundle_pb.GetDraftRequest(draft_id=draft_id))
    return read(Draft, reply.draft)


def list_drafts(page_size: int) -> Flow[Draft]:
    request = bundle_pb.ListDraftsRequest(page_size=requests.page_size(page_size))
    return pages("bundle", "ListDrafts", request,
                 lambda reply: (read(Draft, draft) for draft in reply.drafts))


def add_part(draft_id: str, prompt: str, negative: str, config: requests.ConfigLike | None,
             input_images: Sequence[str], request_id: str) -> Op[Draft]:
    request = bundle_pb.AddPartRequest(
        draft_id=draft_id, prompt=prompt, negative_prompt=negative,
        config=requests.pipeline_config(config, "config"),
        input_images=list(input_images), request_id=request_id)
    reply = yield Unary("bundle", "AddPart", request)
    return read(Draft, reply.draft)


def add_pack(draft_id: str, pack_id: str, rows: Sequence[int] | None, prepend: str,
             overrides: requests.ConfigLike | None, request_id: str) -> Op[Draft]:
    request = bundle_pb.AddPackPartsRequest(
        draft_id=draft_id, prompt_pack_id=pack_id, row_indices=list(rows or ()),
        prepend_text=prepend, config_overrides=requests.pipeline_config(overrides, "overrides"),
        request_id=request_id)
    reply = yield Unary("bundle", "AddPackParts", request)
    return read(Draft, reply.draft)


def remove_part(draft_id: str, part_id: str) -> Op[Draft]:
    request = bundle_pb.RemovePartRequest(draft_id=draft_id, part_id=part_id)
    reply = yield Unary("bundle", "RemovePart", request)
    return read(Draft, reply.draft)


def clear_draft(draft_id: str) -> Op[Draft]:
    reply = yield Unary("bundle", "ClearDraft", bundle_pb.ClearDraftRequest(draft_id=draft_id))
    return read(Draft, reply.draft)


def preview_head(draft_id: str, page_size: int) -> Op[tuple[BundleSummary, int, Any]]:
    """The first preview page: the summary, the revision and the page itself."""
    request = bundle_pb.PreviewDraftRequest(draft_id=draft_id,
                                            page_size=requests.page_size(page_size))
    reply = yield Unary("bundle", "PreviewDraft", request)
    return from_proto(BundleSummary, reply.summary), reply.draft_revision, reply


def preview_jobs(draft_id: str, page_size: int, first: Any) -> Flow[NormalizedJob]:
    """The normalized jobs of the first page, then of the pages after it."""
    for job in first.jobs:
        yield Emit(read(NormalizedJob, job))
    if first.next_page_token:
        request = bundle_pb.PreviewDraftRequest(draft_id=draft_id, page_size=page_size,
                                                page_token=first.next_page_token)
        yield from pages("bundle", "PreviewDraft", request,
                         lambda reply: (read(NormalizedJob, job) for job in reply.jobs))


def enqueue(draft_id: str, run_mode: Any, priority: Any, label: str,
            expected_revision: int | None, skip_bad_rows: bool, request_id: str,
            source: Any) -> Op[Job]:
    """EnqueueDraft; unless `skip_bad_rows`, first refuse a draft with row errors and pin the
    revision that was checked."""
    request = bundle_pb.EnqueueDraftRequest(
        draft_id=draft_id, run_mode=requests.number(RunMode, run_mode, "run_mode"),
        priority=requests.number(Priority, priority, "priority"), label=label,
        request_id=request_id)
    if source is not None:
        request.source = requests.number(JobSource, source, "source")
    if not skip_bad_rows:
        draft = yield from get_draft(draft_id)
        if draft.summary.errors:
            raise _row_errors(draft)
        # What was checked is what is queued: a change since is refused, not enqueued.
        if expected_revision is None:
            expected_revision = draft.revision
    request.expected_revision = expected_revision or 0
    reply = yield Unary("bundle", "EnqueueDraft", request)
    return read(Job, reply.job)


def _row_errors(draft: Draft) -> RowErrorsError:
    errors = draft.summary.errors
    listed = "; ".join(f"{e.prompt_pack_id or e.part_id} row {e.row_index}: {e.message}"
                       for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    error = RowErrorsError.local(
        f"draft {draft.draft_id} has {len(errors)} row(s) that make no job: {listed}{more}; "
        "enqueue with skip_bad_rows=True to queue the rest",
        "ROW_ERRORS", metadata={"draft_id": draft.draft_id})
    error.row_errors = tuple(errors)
    return error


# --- queue ----------------------------------------------------------------------------------


def list_queue(view: Any, page_size: int) -> Flow[Job]:
    request = queue_pb.ListJobsRequest(view=requests.number(JobView, view, "view"),
                                       page_size=requests.page_size(page_size))
    return pages("queue", "ListJobs", request, lambda reply: (read(Job, j) for j in reply.jobs))


def get_job(job_id: str, view: Any) -> Op[Job]:
    request = queue_pb.GetJobRequest(job_id=job_id,
                                     view=requests.number(JobView, view, "view"))
    reply = yield Unary("queue", "GetJob", request)
    yield from _whole_job(reply, "queue", queue_pb.GetJobRequest)
    return read(Job, reply.job)


def cancel(job_id: str, return_to_queue: bool, reason: str) -> Op[Job]:
    request = queue_pb.CancelJobRequest(job_id=job_id, return_to_queue=return_to_queue,
                                        reason=reason)
    reply = yield Unary("queue", "CancelJob", request)
    return read(Job, reply.job)


def move(job_id: str, position: Any, before_job_id: str) -> Op[Job]:
    request = queue_pb.MoveJobRequest(
        job_id=job_id, position=requests.number(MovePosition, position, "position"),
        before_job_id=before_job_id)
    reply = yield Unary("queue", "MoveJob", request)
    return read(Job, reply.job)


def queue_state(method: str) -> Op[QueueState]:
    """PauseQueue, ResumeQueue or GetQueueState: each answers the queue's state."""
    request = getattr(queue_pb, f"{method}Request")()
    reply = yield Unary("queue", method, request)
    return read_queue_state(reply.state)


def retry(job_id: str, failed_only: bool, request_id: str) -> Op[Job]:
    scope = (queue_pb.RETRY_SCOPE_FAILED_ENTRIES if failed_only
             else queue_pb.RETRY_SCOPE_ALL_ENTRIES)
    request = queue_pb.RetryJobRequest(job_id=job_id, scope=scope, request_id=request_id)
    reply = yield Unary("queue", "RetryJob", request)
    return read(Job, reply.job)


def list_runners() -> Flow[Runner]:
    return pages("queue", "ListRunners", queue_pb.ListRunnersRequest(),
                 lambda reply: (read(Runner, runner) for runner in reply.runners))


def create_consumer(consumer_id: str, after_sequence: int, request_id: str) -> Op[Consumer]:
    request = queue_pb.CreateConsumerRequest(consumer_id=consumer_id,
                                             after_sequence=after_sequence, request_id=request_id)
    reply = yield Unary("queue", "CreateConsumer", request)
    return read(Consumer, reply.consumer)


def list_consumers(page_size: int) -> Flow[Consumer]:
    request = queue_pb.ListConsumersRequest(page_size=requests.page_size(page_size))
    return pages("queue", "ListConsumers", request,
                 lambda reply: (read(Consumer, consumer) for consumer in reply.consumers))


def delete_consumer(consumer_id: str) -> Op[None]:
    yield Unary("queue", "DeleteConsumer", queue_pb.DeleteConsumerRequest(consumer_id=consumer_id))


def acknowledge(consumer_id: str, sequence: int) -> Op[int]:
    """AcknowledgeEvents: the consumer's acknowledged sequence afterwards (it never moves
    back, so acknowledging 0 only reads it)."""
    request = queue_pb.AcknowledgeEventsRequest(consumer_id=consumer_id, sequence=sequence)
    reply = yield Unary("queue", "AcknowledgeEvents", request)
    acknowledged: int = reply.acknowledged_sequence
    return acknowledged


# --- history --------------------------------------------------------------------------------


def _job_filter(filters: dict[str, Any]) -> tuple[Any, str | None]:
    """The JobFilter of the filter arguments, and the label to match here. The history filters
    by text (a prompt or the label), not by label: a label is sent as the text filter (unless
    a text is given) and matched exactly on what comes back."""
    filters = dict(filters)
    label = filters.pop("label", None)
    if label is not None and not filters.get("text"):
        filters["text"] = label
    return requests.job_filter(**filters), label


def _labelled(items: Flow[T], label: str | None, job_of: Callable[[T], Job]) -> Flow[T]:
    """The items whose job has exactly `label` (all of them when None)."""
    while True:
        item = yield from next_item(items)
        if isinstance(item, Ended):
            return
        if label is None or job_of(item).label == label:
            yield Emit(item)


def list_history(filters: dict[str, Any], view: Any, page_size: int) -> Flow[Job]:
    """History jobs, newest first."""
    job_filter, label = _job_filter(filters)
    request = history_pb.HistoryServiceListJobsRequest(
        filter=job_filter, view=requests.number(JobView, view, "view"),
        page_size=requests.page_size(page_size))
    jobs = pages("history", "ListJobs", request,
                 lambda reply: (read(Job, job) for job in reply.jobs))
    return _labelled(jobs, label, lambda job: job)


def history_record(job_id: str) -> Op[HistoryRecord]:
    request = history_pb.HistoryServiceGetJobRequest(job_id=job_id)
    reply = yield Unary("history", "GetJob", request)
    yield from _whole_job(reply, "history", history_pb.HistoryServiceGetJobRequest)
    return read_record(reply)


def _whole_job(part: Any, service: str, get_request: Callable[..., Message]) -> Op[None]:
    """Complete a full job the queue or the history sent in parts (too large for one message;
    `part`: a response with `job`, `truncated` and the next offsets): read the entries and
    results it left out with the service's GetJob from its offsets on, and append them."""
    reply = part
    while reply.truncated:
        reply = yield Unary(service, "GetJob", get_request(
            job_id=part.job.job_id, entry_offset=reply.next_entry_offset,
            result_offset=reply.next_result_offset))
        part.job.entries.extend(reply.job.entries)
        part.job.results.extend(reply.job.results)


def latest(filters: dict[str, Any]) -> Op[Job]:
    job_filter, label = _job_filter(filters)
    if label is None:
        reply = yield Unary("history", "GetLatestJob",
                            history_pb.GetLatestJobRequest(filter=job_filter))
        return read(Job, reply.job)
    newest = yield from next_item(list_history(filters, JobView.BASIC, 1))
    if isinstance(newest, Ended):
        raise JobNotFoundError.local(f"no job in the history has the label {label!r}",
                                     "JOB_NOT_FOUND")
    record = yield from history_record(newest.job_id)
    return record.job


def job_events(job_id: str, page_size: int) -> Flow[JobEvent]:
    request = history_pb.ListJobEventsRequest(job_id=job_id,
                                              page_size=requests.page_size(page_size))
    return pages("history", "ListJobEvents", request, _page_events)


def _page_events(reply: history_pb.ListJobEventsResponse) -> Iterator[JobEvent]:
    """A page's events, those the history sent without some entries or results marked
    `trimmed`."""
    trimmed = set(reply.truncated_sequences)
    return (read_event(event, trimmed=event.sequence in trimmed) for event in reply.events)


def ingestion_status() -> Op[IngestionStatus]:
    reply = yield Unary("history", "GetIngestionStatus", history_pb.GetIngestionStatusRequest())
    return read(IngestionStatus, reply)


def quarantined_events(page_size: int) -> Flow[QuarantinedEvent]:
    request = history_pb.ListQuarantinedEventsRequest(page_size=requests.page_size(page_size))
    return pages("history", "ListQuarantinedEvents", request,
                 lambda reply: (read(QuarantinedEvent, event) for event in reply.events))


def update_history(job_id: str, bookmarked: bool | None, label: str | None) -> Op[Job]:
    request = history_pb.UpdateJobRequest(job_id=job_id)
    if bookmarked is not None:
        request.bookmarked = bookmarked
    if label is not None:
        request.label = label
    reply = yield Unary("history", "UpdateJob", request)
    return read(Job, reply.job)


def delete_history(job_id: str) -> Op[None]:
    yield Unary("history", "DeleteJob", history_pb.DeleteJobRequest(job_id=job_id))


def prune(older_than: datetime | timedelta | None, states: Any, keep_bookmarked: bool,
          dry_run: bool) -> Op[int]:
    request = history_pb.PruneHistoryRequest(
        states=[requests.wire(s) for s in requests.enum_values(JobState, states, "states")],
        keep_bookmarked=keep_bookmarked, dry_run=dry_run)
    if older_than is not None:
        request.older_than.CopyFrom(requests.timestamp(older_than, "older_than"))
    reply = yield Unary("history", "PruneHistory", request)
    count: int = reply.removed_count
    return count


def export_records(filters: dict[str, Any]) -> Flow[HistoryRecord]:
    job_filter, label = _job_filter(filters)
    return _labelled(_records(job_filter), label, lambda record: record.job)


def _records(job_filter: history_pb.JobFilter) -> Flow[HistoryRecord]:
    stream = yield Open("history", "ExportHistory",
                        history_pb.ExportHistoryRequest(filter=job_filter))
    while (reply := (yield Next(stream))) is not None:
        yield from _whole_job(reply, "history", history_pb.HistoryServiceGetJobRequest)
        yield Emit(read_record(reply))


def export(destination: PathOrFile, filters: dict[str, Any]) -> Op[int]:
    """Write every matching record as JSON Lines (one ImportedJob per line, proto field names);
    the count written."""
    records = export_records(filters)
    with _open_text(destination, "w") as out:
        count = 0
        while True:
            record = yield from next_item(records)
            if isinstance(record, Ended):
                return count
            line = json_format.MessageToDict(record.proto, preserving_proto_field_name=True)
            out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
            count += 1


def import_history(source: PathOrFile) -> Op[ImportResult]:
    """Read a file `export` wrote and send it in requests of at most IMPORT_BATCH jobs."""
    total = history_pb.ImportHistoryResponse()
    batch: list[history_pb.ImportedJob] = []
    with _open_text(source, "r") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                batch.append(_imported_job(line, number))
            if len(batch) == IMPORT_BATCH:
                yield from _send_import(batch, total)
    if batch:
        yield from _send_import(batch, total)
    return read(ImportResult, total)


def _imported_job(line: str, number: int) -> history_pb.ImportedJob:
    """One line as an ImportedJob. Its transitions lose their sequences: those numbered the
    exporting queue's event log, and an import is not from this history's queue."""
    try:
        job = json_format.Parse(line, history_pb.ImportedJob())
    except json_format.ParseError as error:
        raise requests.invalid(f"line {number}", str(error)) from None
    for transition in job.transitions:
        transition.sequence = 0
    return job


def _send_import(batch: list[history_pb.ImportedJob],
                 total: history_pb.ImportHistoryResponse) -> Op[None]:
    reply = yield Unary("history", "ImportHistory", history_pb.ImportHistoryRequest(jobs=batch))
    total.added_count += reply.added_count
    total.updated_count += reply.updated_count
    total.unchanged_count += reply.unchanged_count
    total.skipped_job_ids.extend(reply.skipped_job_ids)
    batch.clear()


class _open_text:  # noqa: N801 - used as a context manager, like open()
    """A path opened as UTF-8 text (and closed after), or a file object used as it is."""

    def __init__(self, target: PathOrFile, mode: str) -> None:
        self._owned = not hasattr(target, "write" if mode == "w" else "read")
        self._file: IO[str] = (open(target, mode, encoding="utf-8")  # type: ignore[arg-type]  # noqa: SIM115
                               if self._owned else target)  # type: ignore[assignment]

    def __enter__(self) -> IO[str]:
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self._file.close()


def watch_history(filters: dict[str, Any],
                  on_subscribed: Callable[[], Any] | None = None) -> Flow[HistoryChange]:
    job_filter, label = _job_filter(filters)
    return _labelled(_changes(job_filter, on_subscribed), label, lambda change: change.job)


def _changes(job_filter: history_pb.JobFilter,
             on_subscribed: Callable[[], Any] | None) -> Flow[HistoryChange]:
    """The history's changes; `on_subscribed` is called once the history has registered the
    watch (before any change), so what the caller lists after it cannot be missed."""
    request = history_pb.WatchHistoryRequest(filter=job_filter,
                                             confirm_subscription=on_subscribed is not None)
    stream = yield Open("history", "WatchHistory", request)
    while (reply := (yield Next(stream))) is not None:
        if not reply.subscribed:
            yield Emit(read_change(reply))
        elif on_subscribed is not None:
            yield Notify(_call_without_value(on_subscribed), None)


def _call_without_value(callback: Callable[[], Any]) -> Callable[[None], Any]:
    """A Notify callback that calls `callback` with nothing."""
    return lambda _: callback()


# --- runner ---------------------------------------------------------------------------------


def runner_status() -> Op[RunnerStatus]:
    reply = yield Unary("runner", "GetRunnerStatus", runner_pb.GetRunnerStatusRequest())
    return read(RunnerStatus, reply.status)


def capabilities(refresh: bool) -> Op[Capabilities]:
    request = runner_pb.GetCapabilitiesRequest(refresh=refresh)
    reply = yield Unary("runner", "GetCapabilities", request)
    return read(Capabilities, reply.capabilities)


def interrupt() -> Op[InterruptResult]:
    reply = yield Unary("runner", "InterruptCurrent", runner_pb.InterruptCurrentRequest())
    return read(InterruptResult, reply)


def image_chunks(path: str, chunk_size: int, address: str) -> Flow[bytes]:
    """An image's bytes in file order, checked: each chunk starts where the last ended, and
    the total is the size the runner announced."""
    request = runner_pb.ReadImageRequest(path=path, chunk_size=chunk_size)
    stream = yield Open("runner", "ReadImage", request, address=address)
    received, total = 0, 0
    while (reply := (yield Next(stream))) is not None:
        if reply.offset != received:
            raise _corrupt(path, f"a chunk at offset {reply.offset}, expected {received}")
        received += len(reply.data)
        total = reply.total_size
        yield Emit(reply.data)
    if received != total:
        raise _corrupt(path, f"{received} bytes received of {total}")


def _corrupt(path: str, what: str) -> InternalError:
    return InternalError.local(f"image {path}: {what}", "IMAGE_CORRUPT", metadata={"path": path})


def read_image(path: str, chunk_size: int, runner_id: str = "") -> Op[bytes]:
    """An image's bytes, from the runner `runner_id` ("" or one the queue has no address for:
    the configured runner)."""
    addresses = yield from _runner_addresses({runner_id})
    chunks = yield from collect(image_chunks(path, chunk_size, addresses.get(runner_id, "")))
    return b"".join(chunks)


def save_image(path: str, destination: str | os.PathLike[str], chunk_size: int,
               address: str = "", sha256: str = "") -> Op[Path]:
    """Stream an image into a file (`destination`, or a file named like the image inside it
    when it is a directory). The file appears whole or not at all; a `sha256` is checked."""
    target = Path(destination)
    if target.is_dir():
        target = target / PurePosixPath(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            chunks = image_chunks(path, chunk_size, address)
            while True:
                chunk = yield from next_item(chunks)
                if isinstance(chunk, Ended):
                    break
                out.write(chunk)
                digest.update(chunk)
        if sha256 and digest.hexdigest() != sha256:
            raise _corrupt(path, f"sha256 {digest.hexdigest()}, the runner recorded {sha256}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# --- watching and waiting -------------------------------------------------------------------


def _reconnectable(error: StableNewError) -> bool:
    """A dropped stream, not a refusal: the queue went away or cut a slow watcher off, or the
    transport failed (an INTERNAL or UNKNOWN without a service's reason)."""
    if isinstance(error, UnavailableError | CancelledError):
        return not isinstance(error, DeadlineExceededError)
    return isinstance(error, InternalError) and not error.reason


def watch(after_sequence: int | None, job_ids: Sequence[str], exclude_progress: bool,
          reconnect_for: float | None, deadline: float | None = None,
          consumer_id: str = "") -> Flow[JobEvent]:
    """The queue's events after `after_sequence`, live, for ever. A dropped stream (or a
    restarted queue) is resumed from the last sequence delivered, so no event is lost or
    repeated; the watch gives up when the queue stays unreachable for `reconnect_for` seconds
    (None: never), or at `deadline` (time.monotonic()) with DeadlineExceededError.

    As the durable consumer `consumer_id` the queue keeps the events it has not acknowledged,
    and `after_sequence` None starts after the last one it acknowledged (else None is 0)."""
    if after_sequence is not None and after_sequence < 0:
        raise requests.invalid("after_sequence", "must not be negative")
    cursor = 0 if after_sequence is None and not consumer_id else after_sequence
    failures = 0
    down_since: float | None = None
    while True:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        try:
            if cursor is None:  # read where the consumer resumes, retried like the watch
                cursor = yield from acknowledge(consumer_id, 0)
            request = queue_pb.WatchJobsRequest(after_sequence=cursor, job_ids=list(job_ids),
                                                exclude_progress=exclude_progress,
                                                consumer_id=consumer_id)
            stream = yield Open("queue", "WatchJobs", request, timeout=timeout)
            while (reply := (yield Next(stream))) is not None:
                failures, down_since = 0, None
                if reply.event.sequence > cursor:  # never again what was delivered
                    cursor = reply.event.sequence
                    yield Emit(read_event(reply.event))
        except StableNewError as error:
            if not _reconnectable(error):
                raise
            down_since = time.monotonic() if down_since is None else down_since
            if reconnect_for is not None and time.monotonic() - down_since > reconnect_for:
                raise
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineExceededError.local("the watch reached its deadline")
        yield Sleep(min(FIRST_RETRY_SECONDS * 2 ** failures, LONGEST_RETRY_SECONDS))
        failures += 1


def job_record(job_id: str, view: JobView = JobView.FULL) -> Op[Job]:
    """The job from the queue, or (full) from the history once the queue has let it go."""
    try:
        return (yield from get_job(job_id, view))
    except JobNotFoundError:
        record = yield from history_record(job_id)
        return record.job


def wait(job_id: str, on_progress: Callable[[JobProgress], Any] | None,
         on_event: Callable[[JobEvent], Any] | None, timeout: float | None,
         reconnect_for: float | None) -> Op[Job]:
    """Follow a job's events until it is COMPLETED, FAILED or CANCELLED; the full job."""
    deadline = None if timeout is None else time.monotonic() + timeout
    # The sequence first, then the job: an event between the two is watched, not missed.
    state = yield from queue_state("GetQueueState")
    job = yield from job_record(job_id, JobView.BASIC)
    if job.state.is_terminal:
        return (yield from job_record(job_id))
    events = watch(state.last_sequence, [job_id], on_progress is None and on_event is None,
                   reconnect_for, deadline)
    try:
        while True:
            event = yield from next_item(events)
            assert not isinstance(event, Ended)  # a watch ends only by raising
            if on_event is not None:
                yield Notify(on_event, event)
            if on_progress is not None and event.progress is not None:
                yield Notify(on_progress, event.progress)
            if event.state_changed is not None and event.state_changed.to_state.is_terminal:
                break
    except DeadlineExceededError:
        if deadline is None or time.monotonic() < deadline:
            raise
        raise WaitTimeoutError.local(f"job {job_id} did not finish within {timeout} s",
                                     "WAIT_TIMEOUT", metadata={"job_id": job_id}) from None
    finally:
        events.close()
    return (yield from job_record(job_id))


def run_pack(pack_id: str, rows: Sequence[int] | None, prepend: str,
             overrides: requests.ConfigLike | None, run_mode: Any, priority: Any, label: str,
             skip_bad_rows: bool, on_progress: Callable[[JobProgress], Any] | None,
             timeout: float | None) -> Op[Job]:
    """Draft, enqueue exactly what the draft holds, and wait. Each create carries a request
    id, so the steps are safe to retry."""
    key = uuid.uuid4().hex
    draft = yield from create_draft(f"run {pack_id}", f"{key}-draft")
    draft = yield from add_pack(draft.draft_id, pack_id, rows, prepend, overrides,
                                f"{key}-pack")
    job = yield from enqueue(draft.draft_id, run_mode, priority, label, draft.revision,
                             skip_bad_rows, f"{key}-enqueue", None)
    return (yield from wait(job.job_id, on_progress, None, timeout, reconnect_for=60.0))


def download_images(job_id: str, destination: str | os.PathLike[str],
                    chunk_size: int) -> Op[list[Path]]:
    """Every image of a job, read from the runner that wrote it, into `destination` under its
    path relative to the output root; each checked against its sha256."""
    job = yield from job_record(job_id)
    images = [image for result in job.results for image in result.images]
    addresses = yield from _runner_addresses({image.runner_id for image in images})
    root = Path(destination)
    saved = []
    for image in images:
        relative = PurePosixPath(image.path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise PathOutsideRootError.local(f"image path {image.path!r} leaves the destination",
                                             "PATH_OUTSIDE_ROOT", metadata={"path": image.path})
        saved.append((yield from save_image(image.path, root.joinpath(*relative.parts),
                                            chunk_size, addresses.get(image.runner_id, ""),
                                            image.sha256)))
    return saved


def _runner_addresses(runner_ids: set[str]) -> Op[dict[str, str]]:
    """Where to read each runner's images: "" (the configured runner) for the configured
    runner itself, an unknown runner or one the queue has no address for; else the address
    it advertises to the queue."""
    if not runner_ids - {""}:
        return {}
    try:
        configured = (yield from runner_status()).runner_id
    except UnavailableError:
        configured = ""
    others = runner_ids - {configured, ""}
    if not others:
        return {}
    runners = yield from collect(list_runners())
    return {r.info.runner_id: r.info.address for r in runners
            if r.info.runner_id in others and r.info.address}

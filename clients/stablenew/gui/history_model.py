"""The history panel's logic: finished jobs newest first, filtered, read page by page as the
table scrolls (keyset pages: the thousandth page costs what the first does), kept current from
the history's watch stream, and the selected job's record with thumbnails and actions.

The first page is read only once the history has confirmed that the watch is registered, so a
job recorded in between is in the page or in the watch, never in neither; a record the watch
brings is put in its place by creation time, or left for a later page when it is older than
the rows read so far. A history that does not confirm (a server from before the confirmation)
gets a bounded wait: then, if the history answers at all (an unreachable one is not an older
one), the first page is read anyway, the status line says a job recorded in between may be
missing, and the next lists of that server are read at once. The history's
watch has no resume position: after a lost connection the list is read again and watched
again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stablenew.gui.backend import PROBES, Stream, is_connection_lost, take
from stablenew.gui.context import Context
from stablenew.gui.formatting import Row, between, clock, name_of, short_id, state_word, yes_no
from stablenew.gui.signals import Signal
from stablenew.gui.thumbnails import Thumbnail, read_thumbnail
from stablenew.sdk import (
    AsyncClient,
    EntryResult,
    HistoryChange,
    HistoryRecord,
    Job,
    JobState,
    PromptSource,
    RunMode,
)

PAGE_SIZE = 100
THUMBNAIL_SIZE = 96
MAX_THUMBNAILS = 8
RETRY_SECONDS = 2.0
# How long the first page waits for the history to confirm its watch; a healthy history
# confirms in milliseconds, one from before the confirmation never does.
CONFIRM_WAIT_SECONDS = 5.0


FINISHED = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]
STATE_FILTERS: dict[str, list[JobState] | None] = {
    "finished": FINISHED,
    "completed": [JobState.COMPLETED],
    "failed": [JobState.FAILED],
    "cancelled": [JobState.CANCELLED],
    "all": None,
}
SOURCE_FILTERS: dict[str, PromptSource | None] = {
    "manual and pack": None, "manual": PromptSource.MANUAL, "pack": PromptSource.PACK}
_OLDEST = datetime.min.replace(tzinfo=UTC)

FolderOpener = Callable[[Path], None]


@dataclass(frozen=True)
class HistoryFilter:
    """What the history shows: a state group, manual or pack prompts, one pack, a text."""

    states: str = "finished"
    prompt_source: str = "manual and pack"
    pack: str = ""
    text: str = ""

    def arguments(self) -> dict[str, Any]:
        """The SDK's filter arguments."""
        return {"state": STATE_FILTERS[self.states],
                "prompt_source": SOURCE_FILTERS[self.prompt_source],
                "pack": self.pack or None, "text": self.text.strip() or None}


def newest_first(job: Job) -> tuple[datetime, str]:
    """The history's order key (create time, then job id), to sort descending."""
    return (job.create_time or _OLDEST, job.job_id)


class _Listing:
    """The pages of one filter, read on the backend's loop one page at a time."""

    def __init__(self, history_filter: HistoryFilter) -> None:
        self.filter = history_filter
        self.first_page_asked = False
        self._pages: AsyncIterator[Job] | None = None

    async def next_page(self, client: AsyncClient) -> tuple[list[Job], bool]:
        if self._pages is None:
            self._pages = client.history.list(**self.filter.arguments(), page_size=PAGE_SIZE)
        return await take(self._pages, PAGE_SIZE)


@dataclass(frozen=True)
class EntryLine:
    """One entry of the selected job with what came of it."""

    index: int
    prompt: str
    seed: int
    status: str
    images: int
    error: str


def entry_lines(record: HistoryRecord) -> list[EntryLine]:
    """The selected job's entries with their results (results alone for imported records)."""
    results: dict[int, EntryResult] = {r.entry_index: r for r in record.job.results}
    lines = []
    for entry in record.job.entries:
        result = results.pop(entry.index, None)
        lines.append(EntryLine(entry.index, entry.prompt, entry.seed,
                               name_of(result.status) if result else "not run",
                               len(result.images) if result else 0,
                               result.error_message if result else ""))
    lines += [EntryLine(r.entry_index, r.prompt, 0, name_of(r.status), len(r.images),
                        r.error_message) for r in results.values()]
    return lines


class HistoryModel:
    """The history list, its filter, paging and watch, and the selected job.

    Attributes:
        changed: Emitted when the list or the filter changed.
        details_changed: Emitted when the selected job's record or thumbnails changed.
    """

    def __init__(self, context: Context, images_dir: Path, open_folder: FolderOpener) -> None:
        self._context = context
        self._images_dir = images_dir
        self._open_folder = open_folder
        self.filter = HistoryFilter()
        self.jobs: list[Job] = []
        self.has_more = True
        self.loading = False
        self.selected_id = ""
        self.record: HistoryRecord | None = None
        self.thumbnails: list[Thumbnail] = []
        self.changed: Signal[None] = Signal()
        self.details_changed: Signal[None] = Signal()
        self._listing = _Listing(self.filter)
        self._stream: Stream | None = None
        # Set once the history failed to confirm a watch in time: it is taken to be a server
        # from before the confirmation until it is reached again after a lost connection.
        self._confirms_watch = True
        context.connection.restored_signal.connect(self._on_restored)

    # --- the list -------------------------------------------------------------------------

    def start(self) -> None:
        """Watch the history and read its first page."""
        self._reset()

    def stop(self) -> None:
        """Stop watching."""
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def reload(self) -> None:
        """Read the list again from its first page (and watch again)."""
        self._reset()

    def set_filter(self, history_filter: HistoryFilter) -> None:
        """Show the jobs `history_filter` selects (the list is read again)."""
        if history_filter != self.filter:
            self.filter = history_filter
            self._reset()

    def _reset(self) -> None:
        self.stop()
        self._listing = _Listing(self.filter)
        # Loading until the first page is in: it is read once the watch is registered.
        self.jobs, self.has_more, self.loading = [], True, True
        self._watch()
        self.changed.emit(None)

    def load_more(self) -> None:
        """Read the next page (the table scrolled near its end)."""
        if self.loading or not self.has_more:
            return
        self.loading = True
        listing = self._listing
        self._context.backend.call("history", listing.next_page,
                                   lambda page: self._page(listing, page),
                                   lambda error: self._page_failed(listing, error))

    def _page(self, listing: _Listing, page: tuple[list[Job], bool]) -> None:
        if listing is not self._listing:
            return  # the filter changed meanwhile
        jobs, ended = page
        shown = {job.job_id for job in self.jobs}
        self.jobs += [job for job in jobs if job.job_id not in shown]
        self.has_more, self.loading = not ended, False
        self.changed.emit(None)

    def _page_failed(self, listing: _Listing, error: Exception) -> None:
        if listing is not self._listing:
            return
        self.loading = False
        if not is_connection_lost(error):
            self._context.status.error("Reading the history", error)
            self.has_more = False  # a page that fails for a reason would fail again
            self.changed.emit(None)

    def _watch(self) -> None:
        arguments = self.filter.arguments()
        listing = self._listing
        backend = self._context.backend

        def subscribed() -> None:  # on the backend's loop
            backend.post(lambda: self._subscribed(listing))
        self._stream = backend.stream(
            "history", lambda client: client.history.watch(on_subscribed=subscribed,
                                                           **arguments),
            self._changes, self._watch_ended)
        if self._confirms_watch:
            backend.after(CONFIRM_WAIT_SECONDS, lambda: self._confirmation_overdue(listing))
        else:
            self._read_first_page(listing)

    def _subscribed(self, listing: _Listing) -> None:
        """The history registered the watch: every record written from now on reaches it,
        so the first page, read now, leaves none out."""
        self._confirms_watch = True
        self._read_first_page(listing)

    def _confirmation_overdue(self, listing: _Listing) -> None:
        """No confirmation in time. An unreachable history is not an older one (the list is
        read again once it is back), so the history is asked first whether it answers."""
        if self._waits_for_confirmation(listing):
            self._context.backend.call(
                "history", PROBES["history"], lambda _: self._confirmation_missing(listing),
                lambda error: None if is_connection_lost(error)
                else self._confirmation_missing(listing))

    def _confirmation_missing(self, listing: _Listing) -> None:
        """The history answers but did not confirm the watch: it does not send confirmations
        (an older server), so the list is read without one rather than never."""
        if not self._waits_for_confirmation(listing):
            return
        self._confirms_watch = False
        self._context.status.info(
            f"The history did not confirm its watch within {CONFIRM_WAIT_SECONDS:g} s (an older "
            "history server?): the list is read without it, and a job recorded while it was "
            "read may be missing until it is read again (F5)")
        self._read_first_page(listing)

    def _waits_for_confirmation(self, listing: _Listing) -> bool:
        return (listing is self._listing and not listing.first_page_asked
                and not self._context.connection.is_lost("history"))

    def _read_first_page(self, listing: _Listing) -> None:
        if listing is self._listing and not listing.first_page_asked:
            listing.first_page_asked = True
            self.loading = False
            self.load_more()

    def _watch_ended(self, error: Exception | None) -> None:
        self._stream = None
        if is_connection_lost(error) and self._context.connection.is_lost("history"):
            return  # `_on_restored` reads the list again
        if error is not None and not is_connection_lost(error):
            self._context.status.error("Following the history", error)
        self._context.backend.after(RETRY_SECONDS, self._rewatch)

    def _rewatch(self) -> None:
        if self._stream is None:
            self._reset()

    def _on_restored(self, service: str) -> None:
        if service == "history":
            self._confirms_watch = True  # it may be another server now
            self._rewatch()

    def _changes(self, changes: list[HistoryChange]) -> None:
        for change in changes:
            self._apply(change)
        self.changed.emit(None)
        if self.record is not None and any(c.job.job_id == self.selected_id for c in changes):
            self.select(self.selected_id)

    def _apply(self, change: HistoryChange) -> None:
        index = next((i for i, job in enumerate(self.jobs)
                      if job.job_id == change.job.job_id), None)
        if change.deleted:
            if index is not None:
                del self.jobs[index]
            return
        if index is not None:
            self.jobs[index] = change.job
            return
        key = newest_first(change.job)
        position = next((i for i, job in enumerate(self.jobs) if newest_first(job) < key),
                        len(self.jobs))
        if position < len(self.jobs) or not self.has_more:
            self.jobs.insert(position, change.job)
        # else: older than every row read so far; a later page brings it

    # --- the selected job -----------------------------------------------------------------

    def select(self, job_id: str) -> None:
        """Read a job's full record (entries, results, transitions) and its thumbnails."""
        if job_id != self.selected_id:
            self.record, self.thumbnails = None, []
        self.selected_id = job_id
        self.details_changed.emit(None)
        if job_id:
            self._context.backend.call(
                "history", lambda client: client.history.get(job_id), self._record_loaded,
                lambda error: self._context.status.error(f"Reading job {short_id(job_id)}",
                                                         error))

    def _record_loaded(self, record: HistoryRecord) -> None:
        if record.job.job_id != self.selected_id:
            return
        self.record = record
        self.details_changed.emit(None)
        images = [image for result in sorted(record.job.results, key=lambda r: r.entry_index)
                  for image in result.images][:MAX_THUMBNAILS]
        if images and not self.thumbnails:
            job_id = record.job.job_id

            async def read(client: AsyncClient) -> list[Thumbnail]:
                return [await read_thumbnail(client, image, THUMBNAIL_SIZE) for image in images]
            self._context.backend.call(
                "runner", read, lambda thumbnails: self._thumbnails_loaded(job_id, thumbnails),
                lambda error: self._context.status.error("Reading the images", error))

    def _thumbnails_loaded(self, job_id: str, thumbnails: list[Thumbnail]) -> None:
        if job_id == self.selected_id:
            self.thumbnails = thumbnails
            self.details_changed.emit(None)

    def selected_job(self) -> Job | None:
        """The selected job as listed (or as recorded, once read)."""
        if self.record is not None:
            return self.record.job
        return next((job for job in self.jobs if job.job_id == self.selected_id), None)

    def details(self) -> str:
        """The selected job's facts: ids, prompt source, hashes, errors and state changes."""
        job = self.selected_job()
        if job is None:
            return "Select a job to see its entries, errors and images."
        lines = [f"Job {job.job_id} · {state_word(job.state)}"
                 + (f" · label {job.label!r}" if job.label else "")
                 + (" · bookmarked" if job.bookmarked else ""),
                 job.payload_summary,
                 f"config hash {job.config_hash[:16]} · runner {job.runner_id or '-'} · "
                 f"attempt {job.attempt}"]
        if job.origin.retry_of_job_id:
            lines.append(f"retry of {job.origin.retry_of_job_id}")
        if job.error_message:
            lines.append(f"error: {job.error_message}")
        if self.record is not None:
            lines.append("  →  ".join(f"{state_word(t.to_state)} {clock(t.time)[11:]}"
                                      for t in self.record.transitions))
        return "\n".join(lines)

    # --- actions on the selected job ------------------------------------------------------

    def retry(self, failed_only: bool) -> None:
        """Queue the selected job again (all entries, or only those that did not complete)."""
        job_id = self.selected_id
        what = "the failed entries" if failed_only else "every entry"
        self._context.backend.call(
            "queue", lambda client: client.queue.retry(job_id, failed_only=failed_only),
            lambda job: self._context.status.info(
                f"Retrying {what} of {short_id(job_id)} as job {short_id(job.job_id)}"),
            lambda error: self._context.status.error(f"Retry {short_id(job_id)}", error))

    def toggle_bookmark(self) -> None:
        """Bookmark the selected job, or take its bookmark away."""
        job = self.selected_job()
        if job is None:
            return
        bookmarked = not job.bookmarked
        self._update(job.job_id, "Bookmark", bookmarked=bookmarked)

    def set_label(self, label: str) -> None:
        """Label the selected job ("" removes the label)."""
        if self.selected_id:
            self._update(self.selected_id, "Label", label=label.strip())

    def _update(self, job_id: str, action: str, **changes: Any) -> None:
        self._context.backend.call(
            "history", lambda client: client.history.update(job_id, **changes),
            lambda job: self._context.status.info(f"{action}: job {short_id(job_id)} updated"),
            lambda error: self._context.status.error(f"{action} {short_id(job_id)}", error))

    def open_folder(self) -> None:
        """Download the selected job's images (each read from the runner that wrote it) into
        the local image folder, and open that folder."""
        job_id = self.selected_id
        if not job_id:
            return
        folder = self._images_dir / job_id

        async def fetch(client: AsyncClient) -> Path | None:
            files = await client.download_images(job_id, folder)
            if not files:
                return None
            self._open_folder(files[0].parent)
            return files[0].parent
        self._context.backend.call(
            "runner", fetch, lambda opened: self._context.status.info(
                f"Opened {opened}" if opened else f"Job {short_id(job_id)} has no images"),
            lambda error: self._context.status.error(f"Open the images of {short_id(job_id)}",
                                                     error))

    # --- what the panel shows -------------------------------------------------------------

    def rows(self) -> list[Row]:
        """The table: one row per job, newest first."""
        return [Row(job.job_id, (
            ("★ " if job.bookmarked else "") + short_id(job.job_id),
            "run now" if job.origin.run_mode == RunMode.DIRECT else name_of(job.origin.run_mode),
            name_of(job.origin.source), name_of(job.origin.prompt_source),
            job.origin.prompt_pack_id, str(job.stage_count), yes_no(job.has_adetailer),
            yes_no(job.has_upscale), clock(job.start_time, short=True),
            clock(job.complete_time, short=True), between(job.start_time, job.complete_time),
            state_word(job.state), str(job.image_count)), state_word(job.state))
            for job in self.jobs]

    def with_filter(self, **changes: str) -> HistoryFilter:
        """The current filter with some fields changed."""
        return replace(self.filter, **changes)

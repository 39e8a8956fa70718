"""The running-job panel's logic: the job a runner works on now (entry, stage, step, ETA, from
the queue's progress events) and a thumbnail of the newest image, read through the runner that
wrote it.

The running job's progress names the newest image it has written (`JobProgress.latest_image`),
so the thumbnail follows the running job itself; when a job ends, its last image stays; at
start, before anything runs, the newest completed job in the history gives it.
"""

from __future__ import annotations

from stablenew.gui.context import Context
from stablenew.gui.formatting import progress_line, short_id
from stablenew.gui.queue_model import QueueItem, QueueModel
from stablenew.gui.signals import Signal
from stablenew.gui.thumbnails import Thumbnail, newest_image, read_thumbnail
from stablenew.sdk import (
    AsyncClient,
    EntryResult,
    ImageRef,
    JobEvent,
    JobNotFoundError,
    JobState,
)

THUMBNAIL_SIZE = 112


async def _latest_results(client: AsyncClient) -> list[EntryResult]:
    """The results of the newest completed job in the history (none when there is none)."""
    try:
        latest = await client.history.latest(state=JobState.COMPLETED)
    except JobNotFoundError:
        return []
    return (await client.history.get(latest.job_id)).job.results


class RunningModel:
    """What runs now, and the newest image.

    Attributes:
        changed: Emitted when the running job, its progress or the thumbnail changed.
    """

    def __init__(self, context: Context, queue: QueueModel) -> None:
        self._context = context
        self._queue = queue
        self.job: QueueItem | None = None
        self.thumbnail: Thumbnail | None = None
        self.thumbnail_caption = ""
        # The image last asked for: an older read that answers later is not shown.
        self._wanted_path = ""
        self.changed: Signal[None] = Signal()
        queue.changed.connect(self._queue_changed)
        queue.finished.connect(self._job_finished)

    def start(self) -> None:
        """Show the newest image the history knows of."""
        self._context.backend.call("history", _latest_results, self._show_first,
                                   lambda error: None)  # no image yet is not worth a message

    def _queue_changed(self, _: None) -> None:
        running = [item for item in self._queue.jobs() if item.state == JobState.RUNNING]
        self.job = running[0] if running else None
        self.changed.emit(None)
        if self.job is not None and self.job.progress.latest_image.path:
            self._show(self.job.progress.latest_image)

    def _job_finished(self, event: JobEvent) -> None:
        change = event.state_changed
        if change is not None:
            self._show_newest(change.results)

    def _show_first(self, results: list[EntryResult]) -> None:
        """The history's newest image, unless a job's image came first."""
        if not self._wanted_path:
            self._show_newest(results)

    def _show_newest(self, results: list[EntryResult]) -> None:
        image = newest_image(results)
        if image is not None:
            self._show(image)

    def _show(self, image: ImageRef) -> None:
        """Read `image` from its runner and show it (unless it is the one asked for last)."""
        if image.path == self._wanted_path:
            return
        self._wanted_path = image.path
        self._context.backend.call(
            "runner", lambda client: read_thumbnail(client, image, THUMBNAIL_SIZE),
            lambda thumbnail: self._set_thumbnail(thumbnail, image),
            lambda error: self._context.status.error("Reading the newest image", error))

    def _set_thumbnail(self, thumbnail: Thumbnail, image: ImageRef) -> None:
        if image.path != self._wanted_path:
            return  # a newer image was asked for meanwhile
        self.thumbnail = thumbnail
        self.thumbnail_caption = f"newest image · seed {image.seed}"
        self.changed.emit(None)

    # --- what the panel shows -------------------------------------------------------------

    def headline(self) -> str:
        """Which job runs, or that none does."""
        if self.job is None:
            return "Nothing running" + (" (queue paused)" if self._queue.paused else "")
        more = " · cancelling" if self.job.cancel_requested else ""
        return f"Running {short_id(self.job.job_id)}: {self.job.title}{more}"

    def detail(self) -> str:
        """Entry, stage, step and ETA of the running job."""
        if self.job is None:
            return ""
        runner = f" · on {self.job.runner_id}" if self.job.runner_id else ""
        return (progress_line(self.job.progress) or "starting") + runner

    def fraction(self) -> float:
        """How much of the running job is done, 0..1."""
        return self.job.progress.fraction if self.job is not None else 0.0

"""The preview panel's logic: the window's draft, what it expands to, and the queue buttons.

The window keeps one draft in the bundle service (its id is remembered per bundle address, so
a restarted window finds its draft again). Every change (Add to Job, Add Pack, Remove, Clear)
is followed by a preview, and the panel shows exactly what the service previewed: the summary,
the normalized jobs (read page by page as the table scrolls) and the rows that make no job.
Changes run one after another, in the order the user asked for them, so a quick second click
is neither lost nor overtaken. "Add to Queue" and "Run Now" enqueue the previewed revision
(`expected_revision`): a draft that changed meanwhile is refused, not queued unseen.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from stablenew.gui.backend import is_connection_lost, take
from stablenew.gui.context import Context
from stablenew.gui.formatting import Row, short_id, stage_word
from stablenew.gui.pipeline_model import ManualPart, PackParts
from stablenew.gui.signals import Signal
from stablenew.sdk import (
    AsyncClient,
    BundleSummary,
    DraftNotFoundError,
    InvalidPageTokenError,
    JobSource,
    NormalizedJob,
    RowError,
    RunMode,
)

PAGE_SIZE = 100
DRAFT_NAME = "StableNew GUI"


class DraftMemory:
    """The window's draft id per bundle address, in a small JSON file."""

    def __init__(self, path: Path, bundle_address: str) -> None:
        self.path = path
        self._address = bundle_address

    def _read(self) -> dict[str, str]:
        try:
            drafts = json.loads(self.path.read_text(encoding="utf-8")).get("drafts", {})
        except (OSError, ValueError, AttributeError):
            return {}  # none yet, or unreadable: a new draft is made
        return {str(key): str(value) for key, value in drafts.items()}

    def get(self) -> str | None:
        """The remembered draft id for this bundle service."""
        return self._read().get(self._address)

    def set(self, draft_id: str) -> None:
        """Remember `draft_id` (written whole, through a temporary file)."""
        drafts = self._read() | {self._address: draft_id}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"drafts": drafts}, indent=1), encoding="utf-8")
        temporary.replace(self.path)


@dataclass
class Previewed:
    """A preview as read: the summary, the revision, the first jobs and the rest to read."""

    draft_id: str
    summary: BundleSummary
    revision: int
    jobs: list[NormalizedJob]
    rest: AsyncIterator[NormalizedJob] | None
    message: str = ""


async def preview(client: AsyncClient, draft_id: str, message: str = "") -> Previewed:
    """The draft's preview with its first page of jobs."""
    result = await client.drafts.preview(draft_id, page_size=PAGE_SIZE)
    jobs, ended = await take(result.jobs, PAGE_SIZE)
    return Previewed(draft_id, result.summary, result.draft_revision, jobs,
                     None if ended else result.jobs, message)


async def _open_draft(client: AsyncClient, memory: DraftMemory) -> Previewed:
    """The remembered draft, or a new one (remembered) when there is none or it is gone."""
    draft_id = memory.get()
    if draft_id:
        try:
            return await preview(client, draft_id)
        except DraftNotFoundError:
            pass
    draft = await client.drafts.create(display_name=DRAFT_NAME)
    memory.set(draft.draft_id)
    return await preview(client, draft.draft_id,
                         f"Started a new draft {short_id(draft.draft_id)}")


# A step of the draft's work: given the client and the draft id (read on the UI thread when
# the step starts), it changes or reads the draft and returns its preview.
Step = Callable[[AsyncClient, str], Awaitable[Previewed]]


def _row_error_text(error: RowError) -> str:
    """The service's message names the pack, the row and the line already."""
    return f"{error.reason.name}: {error.message}"


class DraftModel:
    """The draft, its preview and the actions on it.

    Attributes:
        changed: Emitted when the preview, the busy flag or the draft changed.
        enqueued: Emitted with the message of a successful enqueue.
    """

    def __init__(self, context: Context, memory: DraftMemory) -> None:
        self._context = context
        self._memory = memory
        self.draft_id = ""
        self.revision = 0
        self.summary: BundleSummary | None = None
        self.jobs: list[NormalizedJob] = []
        self.busy = False
        self._rest: AsyncIterator[NormalizedJob] | None = None
        self._steps: deque[tuple[str, Step, bool]] = deque()
        self.changed: Signal[None] = Signal()
        context.connection.restored_signal.connect(self._on_restored)

    # --- running the steps in order -------------------------------------------------------

    def start(self) -> None:
        """Open the window's draft and preview it."""
        self._run("Opening the draft", self._open, needs_draft=False)

    def _open(self, client: AsyncClient, _: str) -> Awaitable[Previewed]:
        return _open_draft(client, self._memory)

    def refresh(self) -> None:
        """Preview the draft again (a pack it uses may have changed on disk)."""
        self._run("Previewing the draft", preview)

    def _run(self, action: str, step: Step, needs_draft: bool = True) -> None:
        self._steps.append((action, step, needs_draft))
        if not self.busy:
            self._next()

    def _next(self) -> None:
        self.busy = bool(self._steps)
        self.changed.emit(None)
        if not self._steps:
            return
        action, step, needs_draft = self._steps.popleft()
        draft_id = self.draft_id
        if needs_draft and not draft_id:
            self._context.status.error(action, "the draft is not open (is the bundle service "
                                       "reachable?)")
            self._next()
            return
        self._context.backend.call("bundle", lambda client: step(client, draft_id),
                                   self._previewed, lambda error: self._failed(action, error))

    def _previewed(self, result: Previewed) -> None:
        # Steps run one at a time, so each result is the newest state of the draft.
        self.draft_id = result.draft_id
        self.revision = result.revision
        self.summary = result.summary
        self.jobs = result.jobs
        self._rest = result.rest
        if result.message:
            self._context.status.info(result.message)
        self._next()

    def _failed(self, action: str, error: Exception) -> None:
        if isinstance(error, DraftNotFoundError):
            self._context.status.error(action, "the draft is gone; started a new one")
            self._steps.clear()
            self._steps.append(("Opening the draft", self._open, False))
        elif not is_connection_lost(error) or self.draft_id:
            self._context.status.error(action, error)
        self._next()

    def _on_restored(self, service: str) -> None:
        if service == "bundle" and not self.draft_id and not self.busy:
            self.start()

    def _change(self, action: str, change: Callable[[AsyncClient, str], Awaitable[object]],
                message: str) -> None:
        """A change of the draft, then its preview."""
        async def step(client: AsyncClient, draft_id: str) -> Previewed:
            await change(client, draft_id)
            return await preview(client, draft_id, message)
        self._run(action, step)

    # --- actions --------------------------------------------------------------------------

    def add_part(self, part: ManualPart) -> None:
        """Add to Job: the prompt with the current settings."""
        self._change("Add to Job", lambda client, draft_id: client.drafts.add_part(
            draft_id, part.prompt, part.negative, config=part.config), "Added the prompt")

    def add_pack(self, parts: PackParts) -> None:
        """Add Pack: the selected rows of a pack (every row when none is selected)."""
        rows = f"{len(parts.rows)} row(s)" if parts.rows else "every row"
        self._change("Add Pack", lambda client, draft_id: client.drafts.add_pack(
            draft_id, parts.pack_id, rows=parts.rows or None, prepend=parts.prepend,
            overrides=parts.overrides or None), f"Added {rows} of pack {parts.pack_id}")

    def remove(self, part_id: str) -> None:
        """Remove one part (a manual prompt or one pack row)."""
        self._change("Remove", lambda client, draft_id: client.drafts.remove_part(
            draft_id, part_id), "Removed the part")

    def clear(self) -> None:
        """Remove every part."""
        self._change("Clear Draft", lambda client, draft_id: client.drafts.clear(draft_id),
                     "Cleared the draft")

    def enqueue(self, run_mode: RunMode, label: str = "") -> None:
        """Add to Queue (QUEUE) or Run Now (DIRECT): exactly the previewed revision."""
        if not self.can_enqueue():
            self._context.status.error(self._action(run_mode), self.why_not_enqueue())
            return
        revision = self.revision
        source = JobSource.RUN_NOW if run_mode == RunMode.DIRECT else JobSource.ADD_TO_QUEUE

        async def step(client: AsyncClient, draft_id: str) -> Previewed:
            job = await client.drafts.enqueue(
                draft_id, run_mode=run_mode, label=label, expected_revision=revision,
                source=source)
            message = (f"Queued job {short_id(job.job_id)}: {job.entry_count} jobs, "
                       f"{job.estimated_images} images, position {job.queue_position + 1}")
            return await preview(client, draft_id, message)
        self._run(self._action(run_mode), step)

    @staticmethod
    def _action(run_mode: RunMode) -> str:
        return "Run Now" if run_mode == RunMode.DIRECT else "Add to Queue"

    def load_more(self) -> None:
        """Read the next page of normalized jobs (the table scrolled near its end)."""
        rest, summary = self._rest, self.summary
        if rest is None or summary is None or self.busy:
            return
        self._rest = None
        revision, jobs = self.revision, self.jobs

        async def step(client: AsyncClient, draft_id: str) -> Previewed:
            try:
                more, ended = await take(rest, PAGE_SIZE)
            except InvalidPageTokenError:  # the draft changed since: preview it again
                return await preview(client, draft_id)
            return Previewed(draft_id, summary, revision, jobs + more, None if ended else rest)
        self._run("Reading more of the preview", step)

    # --- what the panel shows -------------------------------------------------------------

    def errors(self) -> list[RowError]:
        """The rows that make no job."""
        return list(self.summary.errors) if self.summary else []

    def can_enqueue(self) -> bool:
        """Whether the queue buttons work: jobs to queue and no row errors."""
        return self.summary is not None and self.summary.job_count > 0 and not self.errors()

    def why_not_enqueue(self) -> str:
        """Why the queue buttons are disabled ("" when they are not)."""
        if self.summary is None:
            return "the draft is not previewed yet"
        if self.errors():
            return f"{len(self.errors())} row(s) make no job: remove them first"
        if self.summary.job_count == 0:
            return "the draft is empty"
        return ""

    def summary_line(self) -> str:
        """Parts, jobs, estimated images, stages and batch in one line, and whether the names
        went unchecked (a wrong one is then found only when a runner runs the job)."""
        summary = self.summary
        if summary is None:
            return "No draft yet"
        line = (f"{summary.part_count} parts · {summary.job_count} jobs · "
                f"{summary.estimated_images} images")
        if summary.stage_summary:
            line += f" · stages: {summary.stage_summary}"
        if summary.batch_summary:
            line += f" · batch: {summary.batch_summary}"
        if summary.errors:
            line += f" · {len(summary.errors)} row error(s)"
        if not summary.name_check.checked:
            line += f" · names unchecked: {summary.name_check.unchecked_reason}"
        return line

    def has_more(self) -> bool:
        """Whether more normalized jobs can be read."""
        return self._rest is not None

    def rows(self) -> list[Row]:
        """The row errors first (loud), then the normalized jobs as previewed."""
        rows = [Row(f"error:{index}", ("!", _row_error_text(error), "", "", "", "", "", "",
                                       "", ""), "error")
                for index, error in enumerate(self.errors())]
        for job in self.jobs:
            rows.append(Row(f"job:{job.index}", (
                str(job.index + 1), job.prompt, job.negative_prompt, str(job.seed), job.model,
                job.sampler_name, f"{job.width}x{job.height}", str(job.steps),
                "+".join(stage_word(stage) for stage in job.stage_plan),
                job.config_hash[:12]), "job"))
        return rows

    def part_of(self, key: str) -> str:
        """The part a table row came from ("" when unknown)."""
        kind, _, number = key.partition(":")
        index = int(number) if number.isdigit() else -1
        if kind == "error" and 0 <= index < len(self.errors()):
            return self.errors()[index].part_id
        if kind == "job":
            return next((job.origin.part_id for job in self.jobs if job.index == index), "")
        return ""

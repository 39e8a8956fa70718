"""The window's view models together, and the actions that span two of them (the pipeline's
prompt and settings going into the draft)."""

from __future__ import annotations

from pathlib import Path

from stablenew.gui.context import Context
from stablenew.gui.draft_model import DraftMemory, DraftModel
from stablenew.gui.history_model import FolderOpener, HistoryModel
from stablenew.gui.pipeline_model import InvalidFormError, PipelineModel
from stablenew.gui.queue_model import QueueModel
from stablenew.gui.running_model import RunningModel


class WindowModel:
    """Every panel's view model over one context."""

    def __init__(self, context: Context, draft_memory: DraftMemory, images_dir: Path,
                 open_folder: FolderOpener) -> None:
        self.context = context
        self.pipeline = PipelineModel(context)
        self.draft = DraftModel(context, draft_memory)
        self.queue = QueueModel(context)
        self.running = RunningModel(context, self.queue)
        self.history = HistoryModel(context, images_dir, open_folder)

    def start(self) -> None:
        """Read everything and start following the queue and the history."""
        self.pipeline.start()
        self.draft.start()
        self.queue.start()
        self.running.start()
        self.history.start()

    def stop(self) -> None:
        """Stop the streams (the backend closes the rest)."""
        self.queue.stop()
        self.history.stop()

    def add_to_job(self) -> None:
        """The current prompt and settings into the draft (the form shows what is wrong)."""
        try:
            part = self.pipeline.manual_part()
        except InvalidFormError as error:
            self.context.status.error("Add to Job", f"fix the marked fields: {error}")
            return
        self.draft.add_part(part)

    def add_pack(self) -> None:
        """The selected rows of the picked pack into the draft."""
        try:
            parts = self.pipeline.pack_parts()
        except InvalidFormError as error:
            self.context.status.error("Add Pack", f"fix the marked fields: {error}")
            return
        self.draft.add_pack(parts)

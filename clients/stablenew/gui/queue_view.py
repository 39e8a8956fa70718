"""The queue panel and the running-job strip, bound to `QueueModel` and `RunningModel`."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from stablenew.gui.queue_model import QueueModel
from stablenew.gui.running_model import RunningModel
from stablenew.gui.thumbnails import Thumbnail
from stablenew.gui.widgets import PAD, SMALL_PAD, Column, Table, key_action, photo, throttled
from stablenew.sdk import MovePosition

COLUMNS = (Column("#", 44), Column("state", 130), Column("progress", 176),
           Column("job", 250, stretch=True), Column("mode", 64), Column("priority", 64),
           Column("entries", 58, anchor="e"), Column("images", 58, anchor="e"))
KEYS = "Keys: Del cancel · Shift+Del cancel and return · Ctrl+Home / ↑ / ↓ / End move"
REDRAW_MS = 100


class QueueView(ttk.Frame):
    """The Queue tab: the controls, the counts and the active jobs in run order."""

    def __init__(self, parent: tk.Misc, model: QueueModel) -> None:
        super().__init__(parent, padding=PAD)
        self.model = model
        self.columnconfigure(0, weight=1)
        self.rowconfigure(2, weight=1)
        bar = ttk.Frame(self)
        bar.grid(row=0, column=0, sticky="ew", pady=(0, PAD))
        self.pause_button = ttk.Button(bar, text="Pause (F8)", command=model.toggle_pause)
        self.pause_button.pack(side="left", padx=(0, PAD * 2))
        self.buttons: dict[str, ttk.Button] = {}
        for name, text, command in (
                ("cancel", "Cancel", lambda: self._on_selected(model.cancel)),
                ("return", "Cancel and return",
                 lambda: self._on_selected(lambda job: model.cancel(job, True))),
                ("front", "⤒ Front", self._mover(MovePosition.FRONT)),
                ("up", "↑ Up", self._mover(MovePosition.UP)),
                ("down", "↓ Down", self._mover(MovePosition.DOWN)),
                ("back", "⤓ Back", self._mover(MovePosition.BACK))):
            button = self.buttons[name] = ttk.Button(bar, text=text, command=command,
                                                     style="Compact.TButton")
            button.pack(side="left", padx=(0, SMALL_PAD))
        self.summary = ttk.Label(self, style="Headline.TLabel")
        self.summary.grid(row=1, column=0, sticky="w", pady=(0, SMALL_PAD))
        ttk.Label(self, text=KEYS, style="Muted.TLabel").grid(row=3, column=0, sticky="w",
                                                              pady=(SMALL_PAD, 0))
        self.table = Table(self, COLUMNS, height=16)
        self.table.grid(row=2, column=0, sticky="nsew")
        tree = self.table.tree
        for sequence, command in (
                ("<Delete>", self.buttons["cancel"].invoke),
                ("<Shift-Delete>", self.buttons["return"].invoke),
                ("<Control-Home>", self.buttons["front"].invoke),
                ("<Control-Up>", self.buttons["up"].invoke),
                ("<Control-Down>", self.buttons["down"].invoke),
                ("<Control-End>", self.buttons["back"].invoke)):
            tree.bind(sequence, key_action(command))
        self._redraw = throttled(self, REDRAW_MS, self.refresh)
        model.changed.connect(lambda _: self._redraw())
        self.refresh()

    def _on_selected(self, action: Callable[[str], None]) -> None:
        job_id = self.table.selected()
        if job_id:
            action(job_id)

    def _mover(self, position: MovePosition) -> Callable[[], None]:
        return lambda: self._on_selected(lambda job_id: self.model.move(job_id, position))

    def refresh(self) -> None:
        """Show the jobs, the counts and the pause state."""
        self.table.show(self.model.rows())
        self.summary.configure(text=self.model.summary())
        self.pause_button.configure(text="Resume (F8)" if self.model.paused else "Pause (F8)")


class RunningView(ttk.Frame):
    """The strip at the bottom: what runs now, how far it is, and the newest image."""

    def __init__(self, parent: tk.Misc, model: RunningModel) -> None:
        super().__init__(parent, padding=(PAD, SMALL_PAD))
        self.model = model
        self.columnconfigure(1, weight=1)
        self.picture = ttk.Label(self, text="no image yet", anchor="center",
                                 width=14, relief="groove")
        self.picture.grid(row=0, column=0, rowspan=4, sticky="nsew", padx=(0, PAD))
        self.headline = ttk.Label(self, style="Headline.TLabel")
        self.headline.grid(row=0, column=1, sticky="w")
        self.detail = ttk.Label(self)
        self.detail.grid(row=1, column=1, sticky="w")
        self.progress = ttk.Progressbar(self, mode="determinate", maximum=1.0)
        self.progress.grid(row=2, column=1, sticky="ew", pady=SMALL_PAD)
        self.caption = ttk.Label(self, style="Muted.TLabel")
        self.caption.grid(row=3, column=1, sticky="w")
        self._image: tk.PhotoImage | None = None
        self._thumbnail: Thumbnail | None = None
        model.changed.connect(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Show the running job, its progress and the newest image."""
        model = self.model
        self.headline.configure(text=model.headline())
        self.detail.configure(text=model.detail())
        self.progress.configure(value=model.fraction())
        self.caption.configure(text=model.thumbnail_caption)
        if model.thumbnail is not None and model.thumbnail is not self._thumbnail:
            self._thumbnail = model.thumbnail
            self._image = photo(self, model.thumbnail.png)
            self.picture.configure(image=self._image, text="")

"""The preview panel's widgets, bound to `DraftModel`: the draft's buttons, its summary and the
normalized jobs exactly as the service previewed them (row errors first, in red)."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import messagebox, ttk

from stablenew.gui.draft_model import DraftModel
from stablenew.gui.widgets import PAD, SMALL_PAD, Column, Table
from stablenew.gui.window_model import WindowModel
from stablenew.sdk import RunMode

COLUMNS = (Column("#", 48), Column("prompt", 360, stretch=True), Column("negative", 160),
           Column("seed", 100), Column("model", 150), Column("sampler", 90),
           Column("size", 80), Column("steps", 50), Column("stages", 140),
           Column("config hash", 110))


class PreviewView(ttk.Frame):
    """The Preview tab."""

    def __init__(self, parent: tk.Misc, window: WindowModel) -> None:
        super().__init__(parent, padding=PAD)
        self.window = window
        self.model: DraftModel = window.draft
        self.columnconfigure(0, weight=1)
        self.rowconfigure(3, weight=1)
        bar = ttk.Frame(self)
        bar.grid(row=0, column=0, sticky="ew", pady=(0, PAD))
        self.buttons: dict[str, ttk.Button] = {}
        for name, text, command in (
                ("add_job", "Add to Job  Ctrl+J", window.add_to_job),
                ("add_pack", "Add Pack  Ctrl+Shift+P", window.add_pack),
                ("remove", "Remove  Del", self.remove_selected),
                ("clear", "Clear Draft  Ctrl+L", self.clear)):
            self._button(bar, name, text, command).pack(side="left", padx=(0, SMALL_PAD))
        queue_bar = ttk.Frame(self)
        queue_bar.grid(row=1, column=0, sticky="ew", pady=(0, PAD))
        ttk.Label(queue_bar, text="Job label").pack(side="left")
        self.label = tk.StringVar()
        ttk.Entry(queue_bar, textvariable=self.label, width=24).pack(side="left",
                                                                      padx=SMALL_PAD)
        self._button(queue_bar, "run_now", "Run Now  Ctrl+Shift+Enter",
                     lambda: self.enqueue(RunMode.DIRECT)).pack(side="right")
        self._button(queue_bar, "add_queue", "Add to Queue  Ctrl+Enter",
                     lambda: self.enqueue(RunMode.QUEUE), accent=True).pack(
            side="right", padx=SMALL_PAD)
        self.why_not = ttk.Label(queue_bar, style="Muted.TLabel")
        self.why_not.pack(side="right", padx=PAD)
        self.summary = ttk.Label(self, style="Headline.TLabel")
        self.summary.grid(row=2, column=0, sticky="w", pady=(0, SMALL_PAD))
        self.table = Table(self, COLUMNS, height=14)
        self.table.grid(row=3, column=0, sticky="nsew")
        self.table.near_end = self.model.load_more
        self.table.tree.bind("<Delete>", lambda _e: self.remove_selected())
        self.model.changed.connect(lambda _: self.refresh())
        self.refresh()

    def _button(self, parent: tk.Misc, name: str, text: str, command: Callable[[], None],
                accent: bool = False) -> ttk.Button:
        button = ttk.Button(parent, text=text, command=command,
                            style="Accent.TButton" if accent else "TButton")
        self.buttons[name] = button
        return button

    def refresh(self) -> None:
        """Show the model's summary, rows and which buttons work."""
        model = self.model
        busy = " · working…" if model.busy else ""
        self.summary.configure(text=model.summary_line() + busy)
        self.table.show(model.rows())
        state = "normal" if model.can_enqueue() else "disabled"
        for name in ("add_queue", "run_now"):
            self.buttons[name].configure(state=state)
        self.why_not.configure(text=model.why_not_enqueue())

    def remove_selected(self) -> None:
        """Remove the part the selected row came from."""
        part_id = self.model.part_of(self.table.selected())
        if part_id:
            self.model.remove(part_id)
        else:
            self.window.context.status.error("Remove", "select a row of the preview first")

    def clear(self) -> None:
        """Clear the draft, after asking when it holds anything."""
        summary = self.model.summary
        if summary and summary.part_count and not messagebox.askyesno(
                "Clear Draft", f"Remove all {summary.part_count} parts of the draft?",
                parent=self):
            return
        self.model.clear()

    def enqueue(self, run_mode: RunMode) -> None:
        """Add to Queue or Run Now, with the label typed in."""
        self.model.enqueue(run_mode, label=self.label.get().strip())

"""The history panel's widgets, bound to `HistoryModel`: filters, the jobs newest first (the
next page is read as the table nears its end), and the selected job's facts, entries, images
and actions."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk

from stablenew.gui.formatting import Row
from stablenew.gui.history_model import (
    SOURCE_FILTERS,
    STATE_FILTERS,
    EntryLine,
    HistoryModel,
    entry_lines,
)
from stablenew.gui.widgets import (
    PAD,
    SMALL_PAD,
    Column,
    Table,
    key_action,
    photo,
    throttled,
)

COLUMNS = (Column("job", 80), Column("mode", 60), Column("source", 100),
           Column("prompts", 62), Column("pack", 70), Column("stages", 56, anchor="e"),
           Column("AD", 32), Column("upscale", 62), Column("started", 100),
           Column("completed", 100), Column("took", 48, anchor="e"), Column("state", 84),
           Column("images", 58, anchor="e"))
ENTRY_COLUMNS = (Column("#", 36), Column("status", 84), Column("seed", 100),
                 Column("images", 54, anchor="e"), Column("prompt", 160, stretch=True),
                 Column("error", 120))
TEXT_FILTER_MS = 400
REDRAW_MS = 100
THUMBNAILS_PER_ROW = 4


def entry_row(line: EntryLine) -> Row:
    """An entry of the selected job as a table row."""
    tag = line.status if line.status in ("completed", "failed", "cancelled") else "job"
    return Row(str(line.index), (str(line.index + 1), line.status, str(line.seed),
                                 str(line.images), line.prompt, line.error), tag)


class HistoryView(ttk.Frame):
    """The History tab."""

    def __init__(self, parent: tk.Misc, model: HistoryModel,
                 pack_ids: Callable[[], list[str]]) -> None:
        super().__init__(parent, padding=PAD)
        self.model = model
        self._pack_ids = pack_ids
        self.columnconfigure(0, weight=1)
        self.rowconfigure(1, weight=3)
        self.rowconfigure(2, weight=2)
        self._build_filters().grid(row=0, column=0, sticky="ew", pady=(0, PAD))
        self.table = Table(self, COLUMNS, height=9)
        self.table.grid(row=1, column=0, sticky="nsew")
        self.table.near_end = model.load_more
        self.table.on_select(model.select)
        self._build_details().grid(row=2, column=0, sticky="nsew", pady=(PAD, 0))
        for sequence, name in (("<Control-r>", "retry"), ("<Control-R>", "retry_failed"),
                               ("<Control-b>", "bookmark"), ("<Control-o>", "folder")):
            self.table.tree.bind(sequence, key_action(self.buttons[name].invoke))
        self.table.tree.bind("<F2>", key_action(self.label_entry.focus_set))
        self._images: list[tk.PhotoImage] = []
        self._redraw = throttled(self, REDRAW_MS, self.refresh)
        model.changed.connect(lambda _: self._redraw())
        model.details_changed.connect(lambda _: self.refresh_details())
        self.refresh()
        self.refresh_details()

    # --- building -------------------------------------------------------------------------

    def _build_filters(self) -> ttk.Frame:
        bar = ttk.Frame(self)
        # Packed first so that it keeps its width; the filters give way on a narrow window.
        self.count = ttk.Label(bar, style="Muted.TLabel")
        self.count.pack(side="right")
        self.states = self._choice(bar, "Show", list(STATE_FILTERS), self.model.filter.states)
        self.sources = self._choice(bar, "Prompts", list(SOURCE_FILTERS),
                                    self.model.filter.prompt_source)
        self.pack_filter = self._choice(bar, "Pack", [""], "")
        self.pack_filter.configure(width=14)
        self.pack_filter.configure(postcommand=lambda: self.pack_filter.configure(
            values=["", *self._pack_ids()]))
        ttk.Label(bar, text="Text").pack(side="left", padx=(PAD, SMALL_PAD))
        self.text = tk.StringVar()
        ttk.Entry(bar, textvariable=self.text, width=18).pack(side="left")
        self._text_timer = ""
        self.text.trace_add("write", lambda *_: self._text_changed())
        return bar

    def _choice(self, bar: ttk.Frame, label: str, values: list[str],
                value: str) -> ttk.Combobox:
        ttk.Label(bar, text=label).pack(side="left", padx=(PAD, SMALL_PAD))
        box = ttk.Combobox(bar, values=values, state="readonly",
                           width=max(len(text) for text in values) + 2 if values else 12)
        box.set(value)
        box.pack(side="left")
        box.bind("<<ComboboxSelected>>", lambda _e: self.apply_filters())
        return box

    def _text_changed(self) -> None:
        if self._text_timer:
            self.after_cancel(self._text_timer)
        self._text_timer = self.after(TEXT_FILTER_MS, self.apply_filters)

    def apply_filters(self) -> None:
        """Read the history again with the filters as set."""
        self._text_timer = ""
        self.model.set_filter(self.model.with_filter(
            states=self.states.get(), prompt_source=self.sources.get(),
            pack=self.pack_filter.get(), text=self.text.get()))

    def _build_details(self) -> ttk.Frame:
        frame = ttk.Frame(self)
        frame.columnconfigure(0, weight=1)
        frame.rowconfigure(2, weight=1)
        actions = ttk.Frame(frame)
        actions.grid(row=0, column=0, columnspan=2, sticky="ew", pady=(0, SMALL_PAD))
        self.buttons: dict[str, ttk.Button] = {}
        for name, text, command in (
                ("retry", "Retry all  Ctrl+R", lambda: self.model.retry(False)),
                ("retry_failed", "Retry failed  Ctrl+Shift+R", lambda: self.model.retry(True)),
                ("bookmark", "Bookmark  Ctrl+B", self.model.toggle_bookmark),
                ("folder", "Open image folder  Ctrl+O", self.model.open_folder)):
            button = self.buttons[name] = ttk.Button(actions, text=text, command=command)
            button.pack(side="left", padx=(0, SMALL_PAD))
        ttk.Label(actions, text="Label  F2").pack(side="left", padx=(PAD, SMALL_PAD))
        self.label = tk.StringVar()
        self.label_entry = ttk.Entry(actions, textvariable=self.label, width=18)
        self.label_entry.pack(side="left")
        self.label_entry.bind("<Return>", lambda _e: self.model.set_label(self.label.get()))
        self.buttons["label"] = ttk.Button(
            actions, text="Set", width=4, command=lambda: self.model.set_label(self.label.get()))
        self.buttons["label"].pack(side="left", padx=SMALL_PAD)
        self.facts = ttk.Label(frame, justify="left", anchor="nw")
        self.facts.grid(row=1, column=0, sticky="ew", pady=(0, SMALL_PAD))
        self.facts.bind("<Configure>", lambda event: self.facts.configure(
            wraplength=max(event.width - PAD, 100)))
        self.entries = Table(frame, ENTRY_COLUMNS, height=4)
        self.entries.grid(row=2, column=0, sticky="nsew")
        self.gallery = ttk.Frame(frame)
        self.gallery.grid(row=1, column=1, rowspan=2, sticky="ne", padx=(PAD, 0))
        return frame

    # --- following the model --------------------------------------------------------------

    def refresh(self) -> None:
        """Show the jobs read so far."""
        self.table.show(self.model.rows())
        count, loading = len(self.model.jobs), self.model.loading
        if loading and not count:
            self.count.configure(text="reading…")
            return
        more = "+" if self.model.has_more else ""  # the next page comes as the table scrolls
        self.count.configure(text=f"{count:,}{more} job{'' if count == 1 and not more else 's'}"
                                  + (" · reading…" if loading else ""))

    def refresh_details(self) -> None:
        """Show the selected job's facts, entries and thumbnails."""
        model = self.model
        self.facts.configure(text=model.details())
        job = model.selected_job()
        if job is not None and self.focus_get() is not self.label_entry:
            self.label.set(job.label)
        self.entries.show([entry_row(line) for line in entry_lines(model.record)]
                          if model.record is not None else [])
        state = "normal" if model.selected_id else "disabled"
        for button in self.buttons.values():
            button.configure(state=state)
        for child in self.gallery.winfo_children():
            child.destroy()
        self._images = [photo(self, thumbnail.png) for thumbnail in model.thumbnails]
        for index, image in enumerate(self._images):
            ttk.Label(self.gallery, image=image).grid(
                row=index // THUMBNAILS_PER_ROW, column=index % THUMBNAILS_PER_ROW,
                padx=1, pady=1)

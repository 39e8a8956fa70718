"""The window's shared pieces: the style (spacing, fonts, state colours), a table that follows a
view model's rows without freezing the window, and a scrolled frame.

Only the Tk thread calls anything here.
"""

from __future__ import annotations

import base64
import tkinter as tk
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from tkinter import font as tkfont
from tkinter import ttk
from typing import Literal

from stablenew.gui.formatting import Row

PAD = 6
SMALL_PAD = 3
# Tk operations one pass of a table sync may do; the rest follows on the next pass, so a list
# of thousands of rows fills in without holding the event loop.
OPS_PER_PASS = 250
# Scrolled this close to the end, a table asks for its next page.
NEAR_END = 0.9
# Room beside a column heading's text (the heading's padding and borders).
HEADING_ROOM = 2 * PAD

# State colours: (text, background). Words say the state too; colour only helps.
COLOURS = {
    "queued": ("#1d3f6e", "#eef3fb"),
    "running": ("#0b5394", "#d7e8fa"),
    "completed": ("#1e5e2a", "#e6f4e8"),
    "failed": ("#8b1a1a", "#fbe4e4"),
    "cancelled": ("#7a4b00", "#fdf0d9"),
    "error": ("#8b1a1a", "#fbe4e4"),
    "job": ("#202020", "#ffffff"),
}
BANNER_COLOURS = ("#ffffff", "#b3261e")
NOTE_COLOURS = ("#202020", "#fdf0d9")
ERROR_TEXT = "#b3261e"


def apply_style(root: tk.Tk) -> ttk.Style:
    """One look for the whole window: the clam theme, readable fonts, even spacing."""
    style = ttk.Style(root)
    style.theme_use("clam")
    base = tkfont.nametofont("TkDefaultFont")
    base.configure(size=10)
    tkfont.nametofont("TkTextFont").configure(size=10)
    tkfont.nametofont("TkHeadingFont").configure(size=10, weight="normal")
    line = base.metrics("linespace")
    style.configure("Treeview", rowheight=line + 6)
    style.configure("Treeview.Heading", padding=(SMALL_PAD, SMALL_PAD), foreground="#1d3f6e")
    style.configure("TButton", padding=(PAD + 2, SMALL_PAD))
    style.configure("Compact.TButton", padding=(SMALL_PAD + 1, SMALL_PAD))
    style.configure("Accent.TButton", foreground="#ffffff", background="#0b5394")
    style.map("Accent.TButton", background=[("disabled", "#9fb4cc"), ("active", "#0d63b0")])
    style.configure("TLabelframe", padding=PAD)
    style.configure("TNotebook.Tab", padding=(PAD * 2, SMALL_PAD))
    style.configure("Headline.TLabel", font=(base.actual("family"), 11, "bold"))
    style.configure("Muted.TLabel", foreground="#555555")
    style.configure("Error.TLabel", foreground=ERROR_TEXT)
    return style


@dataclass(frozen=True)
class Column:
    """A table column: its heading, width in pixels, and whether it takes spare room."""

    heading: str
    width: int
    stretch: bool = False
    anchor: Literal["w", "e", "center"] = "w"


class Table(ttk.Frame):
    """A Treeview with scroll bars that shows `Row`s by key, syncing only what changed."""

    def __init__(self, parent: tk.Misc, columns: Sequence[Column], height: int = 10) -> None:
        super().__init__(parent)
        names = [f"c{index}" for index in range(len(columns))]
        self.tree = ttk.Treeview(self, columns=names, show="headings", height=height,
                                 selectmode="browse")
        heading_font = tkfont.nametofont("TkHeadingFont")
        for name, column in zip(names, columns, strict=True):
            self.tree.heading(name, text=column.heading, anchor="w")
            # Never narrower than its heading: the fonts differ from one desktop to another.
            width = max(column.width, heading_font.measure(column.heading) + HEADING_ROOM)
            self.tree.column(name, width=width, minwidth=40, stretch=column.stretch,
                             anchor=column.anchor)
        for tag, (foreground, background) in COLOURS.items():
            self.tree.tag_configure(tag, foreground=foreground, background=background)
        vertical = ttk.Scrollbar(self, orient="vertical", command=self.tree.yview)
        horizontal = ttk.Scrollbar(self, orient="horizontal", command=self.tree.xview)
        self.tree.configure(yscrollcommand=self._scrolled(vertical),
                            xscrollcommand=horizontal.set)
        self.tree.grid(row=0, column=0, sticky="nsew")
        vertical.grid(row=0, column=1, sticky="ns")
        horizontal.grid(row=1, column=0, sticky="ew")
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        self._order: list[str] = []
        self._shown: dict[str, tuple[tuple[str, ...], str]] = {}
        self._wanted: list[Row] = []
        self._pending = False
        self.near_end: Callable[[], None] | None = None

    def _scrolled(self, bar: ttk.Scrollbar) -> Callable[[float, float], None]:
        def moved(first: float, last: float) -> None:
            bar.set(first, last)  # Tk passes the fractions as text
            if self.near_end is not None and self._order and float(last) >= NEAR_END:
                self.near_end()
        return moved

    def show(self, rows: list[Row]) -> None:
        """Make the table show `rows`, in order (soon: large changes take several passes)."""
        self._wanted = rows
        if not self._pending:
            self._pending = True
            self.after_idle(self._sync)

    def _sync(self) -> None:
        self._pending = False
        budget = OPS_PER_PASS
        wanted = {row.key for row in self._wanted}
        gone = [key for key in self._order if key not in wanted][:budget]
        if gone:
            self.tree.delete(*gone)
            for key in gone:
                del self._shown[key]
            gone_set = set(gone)
            self._order = [key for key in self._order if key not in gone_set]
            budget -= len(gone)
        for index, row in enumerate(self._wanted):
            if budget <= 0:
                break
            budget -= self._sync_row(index, row)
        if budget <= 0 or len(self._order) != len(self._wanted):
            self._pending = True
            self.after(1, self._sync)

    def _sync_row(self, index: int, row: Row) -> int:
        """Put one row in place; the Tk operations it took."""
        shown = self._shown.get(row.key)
        ops = 0
        if shown is None:
            self.tree.insert("", index, iid=row.key, values=row.values, tags=(row.tag,))
            self._order.insert(index, row.key)
            self._shown[row.key] = (row.values, row.tag)
            return 1
        if shown != (row.values, row.tag):
            self.tree.item(row.key, values=row.values, tags=(row.tag,))
            self._shown[row.key] = (row.values, row.tag)
            ops += 1
        if self._order[index] != row.key:
            self.tree.move(row.key, "", index)
            self._order.remove(row.key)
            self._order.insert(index, row.key)
            ops += 1
        return ops

    def selected(self) -> str:
        """The selected row's key ("" when none)."""
        selection = self.tree.selection()
        return str(selection[0]) if selection else ""

    def shown_keys(self) -> list[str]:
        """The keys of the rows shown, in order."""
        return list(self._order)

    def on_select(self, callback: Callable[[str], None]) -> None:
        """Call `callback` with the key of each row the user selects."""
        self.tree.bind("<<TreeviewSelect>>", lambda _event: callback(self.selected()))


class ScrollFrame(ttk.Frame):
    """A frame whose `body` scrolls vertically (the mouse wheel works over it)."""

    def __init__(self, parent: tk.Misc, width: int) -> None:
        super().__init__(parent)
        self.canvas = tk.Canvas(self, width=width, highlightthickness=0, borderwidth=0)
        bar = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview)
        self.body = ttk.Frame(self.canvas, padding=PAD)
        self.body.bind("<Configure>", lambda _event: self.canvas.configure(
            scrollregion=self.canvas.bbox("all")))
        window = self.canvas.create_window((0, 0), window=self.body, anchor="nw")
        self.canvas.bind("<Configure>", lambda event: self.canvas.itemconfigure(
            window, width=event.width))
        self.canvas.configure(yscrollcommand=bar.set)
        self.canvas.grid(row=0, column=0, sticky="nsew")
        bar.grid(row=0, column=1, sticky="ns")
        self.rowconfigure(0, weight=1)
        self.columnconfigure(0, weight=1)
        for sequence in ("<Button-4>", "<Button-5>", "<MouseWheel>"):
            self.body.bind_all(sequence, self._wheel, add="+")

    def _wheel(self, event: tk.Event[tk.Misc]) -> None:
        widget = self.winfo_containing(event.x_root, event.y_root)
        if widget is None or not str(widget).startswith(str(self)):
            return
        if isinstance(widget, tk.Text | ttk.Treeview | tk.Listbox):
            return  # they scroll themselves
        step = -1 if event.num == 4 or event.delta > 0 else 1
        self.canvas.yview_scroll(step, "units")


def throttled(widget: tk.Misc, delay_ms: int, action: Callable[[], None]) -> Callable[[], None]:
    """`action` run at most once per `delay_ms`: a burst of model changes redraws once."""
    pending = False

    def run() -> None:
        nonlocal pending
        pending = False
        action()

    def request() -> None:
        nonlocal pending
        if not pending:
            pending = True
            widget.after(delay_ms, run)
    return request


def photo(master: tk.Misc, png: bytes) -> tk.PhotoImage:
    """A Tk image from PNG bytes (Tk 8.6 reads PNG itself)."""
    return tk.PhotoImage(master=master, data=base64.b64encode(png).decode("ascii"),
                         format="png")


def key_action(action: Callable[[], object]) -> Callable[[tk.Event[tk.Misc]], str]:
    """A key binding that runs `action` and stops the key there (no class binding after it:
    Ctrl+Enter in a text box queues the draft, it does not also add a line)."""
    def handler(_event: tk.Event[tk.Misc]) -> str:
        action()
        return "break"
    return handler

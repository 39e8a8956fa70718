"""The window: the panels laid out, the banner and the status line, the keyboard shortcuts,
and the Tk side of the threading (the UI queue drained from `after()`).

Nothing here talks to a service: the view models ask the backend, whose loop thread does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tkinter import ttk
from types import FrameType
from typing import Any

from stablenew.gui.backend import Backend
from stablenew.gui.connection_model import ConnectionModel
from stablenew.gui.context import Context, Level, StatusMessage, StatusModel
from stablenew.gui.dispatch import UiQueue
from stablenew.gui.draft_model import DraftMemory
from stablenew.gui.history_view import HistoryView
from stablenew.gui.pipeline_view import PipelineView
from stablenew.gui.preview_view import PreviewView
from stablenew.gui.queue_view import QueueView, RunningView
from stablenew.gui.widgets import (
    BANNER_COLOURS,
    ERROR_TEXT,
    NOTE_COLOURS,
    PAD,
    SMALL_PAD,
    apply_style,
    key_action,
)
from stablenew.gui.window_model import WindowModel
from stablenew.sdk import AsyncClient, RunMode

PUMP_MS = 15
WATCHDOG_MS = 1000
SIZE = "1366x768"
# A local service that stopped, in words (None while all run): `stablenew gui --local`.
Watchdog = Callable[[], str | None]


class StallMonitor:
    """How long the Tk thread stays away from its event loop.

    A timer ticks every `TICK_MS`; between two ticks the Tk thread runs whatever the loop
    dispatches (callbacks, redraws). `longest_busy` is the most CPU time the Tk thread spent
    between two ticks: the longest the window could not answer because of its own work.
    `longest_gap` is the wall-clock gap, which also counts time the machine gave to others.
    """

    TICK_MS = 20

    def __init__(self, root: tk.Misc) -> None:
        self._root = root
        self.longest_busy = 0.0
        self.longest_gap = 0.0
        self.ticks = 0
        self._wall = time.monotonic()
        self._cpu = time.thread_time()
        root.after(self.TICK_MS, self._tick)

    def reset(self) -> None:
        """Start measuring afresh."""
        self.longest_busy = self.longest_gap = 0.0
        self.ticks = 0

    def _tick(self) -> None:
        wall, cpu = time.monotonic(), time.thread_time()
        self.longest_gap = max(self.longest_gap, wall - self._wall)
        self.longest_busy = max(self.longest_busy, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu
        self.ticks += 1
        self._root.after(self.TICK_MS, self._tick)


class MainWindow:
    """The panels in one window over a running backend."""

    def __init__(self, root: tk.Tk, window: WindowModel, watchdog: Watchdog | None = None
                 ) -> None:
        self.root = root
        self.window = window
        self.context = window.context
        self._watchdog = watchdog
        self._closing = False
        self.close_requested = False
        apply_style(root)
        root.title("StableNew")
        root.geometry(SIZE)
        root.minsize(1024, 640)
        self.banner = tk.Label(root, anchor="w", padx=PAD, pady=SMALL_PAD)
        self.status = ttk.Label(root, anchor="w", padding=(PAD, SMALL_PAD), relief="sunken")
        self.status.pack(side="bottom", fill="x")
        self.running_view = RunningView(root, window.running)
        self.running_view.pack(side="bottom", fill="x")
        ttk.Separator(root).pack(side="bottom", fill="x")
        panes = self.panes = ttk.PanedWindow(root, orient="horizontal")
        panes.pack(side="top", fill="both", expand=True)
        self.pipeline_view = PipelineView(panes, window.pipeline)
        panes.add(self.pipeline_view, weight=0)
        self.notebook = ttk.Notebook(panes)
        panes.add(self.notebook, weight=1)
        self.preview_view = PreviewView(self.notebook, window)
        self.queue_view = QueueView(self.notebook, window.queue)
        self.history_view = HistoryView(
            self.notebook, window.history,
            lambda: [pack.pack_id for pack in window.pipeline.packs])
        for view, title in ((self.preview_view, "Preview  Alt+1"),
                            (self.queue_view, "Queue  Alt+2"),
                            (self.history_view, "History  Alt+3")):
            self.notebook.add(view, text=title)
        self._bind_shortcuts()
        self.context.connection.changed.connect(lambda _: self._show_banner())
        self.context.status.changed.connect(self._show_status)
        window.queue.changed.connect(lambda _: self._title_queue_tab())
        self.monitor = StallMonitor(root)
        root.protocol("WM_DELETE_WINDOW", self.close)
        self._show_banner()
        self._pump()
        if watchdog is not None:
            root.after(WATCHDOG_MS, self._watch_children)

    # --- shortcuts ------------------------------------------------------------------------

    def shortcuts(self) -> dict[str, Callable[[], object]]:
        """The window-wide keys and what they do."""
        preview = self.preview_view
        return {
            "<Control-j>": self.window.add_to_job,
            "<Control-P>": self.window.add_pack,
            "<Control-Return>": lambda: preview.enqueue(RunMode.QUEUE),
            "<Control-Shift-Return>": lambda: preview.enqueue(RunMode.DIRECT),
            "<Control-l>": preview.clear,
            "<F5>": self.refresh_all,
            "<F8>": self.window.queue.toggle_pause,
            "<Alt-Key-1>": lambda: self.show_tab(self.preview_view),
            "<Alt-Key-2>": lambda: self.show_tab(self.queue_view),
            "<Alt-Key-3>": lambda: self.show_tab(self.history_view),
        }

    def _bind_shortcuts(self) -> None:
        for sequence, action in self.shortcuts().items():
            handler = key_action(action)
            self.root.bind_all(sequence, handler)
            # A text box has its own bindings for some of these keys (Return adds a line):
            # there the shortcut wins and the key goes no further.
            for text in self.pipeline_view.text_widgets():
                text.bind(sequence, handler)

    def show_tab(self, view: ttk.Frame) -> None:
        """Bring a tab to the front."""
        notebook: Any = self.notebook  # typeshed leaves Notebook's methods untyped
        notebook.select(view)

    def refresh_all(self) -> None:
        """F5: read the packs, the runner's names, the preview and the history again."""
        self.window.pipeline.load_packs()
        self.window.pipeline.load_capabilities(refresh=True)
        self.window.draft.refresh()
        self.window.history.reload()

    # --- the banner, the status line, the tab titles --------------------------------------

    def _show_banner(self) -> None:
        connection = self.context.connection
        text = connection.banner()
        if not text:
            self.banner.pack_forget()
            return
        colours = BANNER_COLOURS if connection.any_lost() else NOTE_COLOURS
        self.banner.configure(text=text, foreground=colours[0], background=colours[1])
        self.banner.pack(side="top", fill="x", before=self.panes)

    def _show_status(self, message: StatusMessage) -> None:
        colour = ERROR_TEXT if message.level == Level.ERROR else ""
        self.status.configure(text=message.text, foreground=colour)

    def _title_queue_tab(self) -> None:
        count = len(self.window.queue.order)
        notebook: Any = self.notebook
        notebook.tab(self.queue_view, text=f"Queue ({count})  Alt+2")

    # --- the Tk side of the threading -----------------------------------------------------

    def _pump(self) -> None:
        """Run what the backend posted, a little at a time, and come back soon."""
        if self.close_requested:
            self.close()
            return
        self.context.ui.drain()
        self.root.after(PUMP_MS, self._pump)

    def _watch_children(self) -> None:
        assert self._watchdog is not None  # only scheduled with one
        failure = self._watchdog()
        if failure:
            self.context.connection.set_note(failure)
        else:
            self.root.after(WATCHDOG_MS, self._watch_children)

    def close(self) -> None:
        """Stop following the services, close the backend and the window."""
        if self._closing:
            return
        self._closing = True
        self.window.stop()
        self.context.backend.close()
        self.root.destroy()


def open_folder(folder: Path) -> None:
    """Show a folder in the desktop's file manager."""
    if sys.platform == "win32":
        os.startfile(folder)  # type: ignore[attr-defined,unused-ignore]
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    subprocess.Popen([opener, str(folder)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def build(root: tk.Tk, client: AsyncClient, state_dir: Path,
          watchdog: Watchdog | None = None) -> MainWindow:
    """The window over `client`, its backend started and its models reading."""
    ui = UiQueue()
    connection = ConnectionModel(client.config.addresses)
    context = Context(ui, Backend(client, ui, connection), connection, StatusModel())
    window = WindowModel(
        context, DraftMemory(state_dir / "state.json", client.config.addresses["bundle"]),
        state_dir / "images", open_folder)
    main = MainWindow(root, window, watchdog)
    context.backend.start()
    window.start()
    return main


@contextmanager
def closing_on_signals(main: MainWindow) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP close the window as its close button does."""
    def request(_signum: int, _frame: FrameType | None) -> None:
        main.close_requested = True
    numbers = [signal.SIGINT, signal.SIGTERM] + (
        [signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {number: signal.signal(number, request) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(client: AsyncClient, state_dir: Path, watchdog: Watchdog | None = None) -> None:
    """Open the window and run it until it is closed."""
    root = tk.Tk(className="StableNew")
    main = build(root, client, state_dir, watchdog)
    with closing_on_signals(main):
        root.mainloop()

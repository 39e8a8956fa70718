"""The real window on a virtual X display (Xvfb, started for the session), driven like a
person drives it: real key presses through xdotool, clicks on its widgets, the Tk event loop
pumped by the test thread (which is therefore the Tk thread). Screenshots are the window's
pixels as the X server has them."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
import tkinter as tk
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from tkinter import font as tkfont
from typing import Any, TypeVar

import pytest
from PIL import ImageGrab

from stablenew.gui import app
from stablenew.gui.widgets import Table
from stablenew.sdk import AsyncClient
from stablenew.sdk.transport import AsyncTransport, SyncTransport

T = TypeVar("T")

PATIENCE_SECONDS = 60.0
XVFB_START_SECONDS = 20.0
SCREEN = "1366x768x24"
# Room a table cell or heading needs beside its text (padding, borders) not to cut it off.
TEXT_ROOM = 8
# Where screenshots go: STABLENEW_GUI_SCREENSHOTS, else build/gui-screenshots in the tree.
SCREENSHOTS = Path(os.environ.get("STABLENEW_GUI_SCREENSHOTS")
                   or Path(__file__).resolve().parents[2] / "build" / "gui-screenshots")


@contextmanager
def virtual_display() -> Iterator[str]:
    """An Xvfb server on a free display number for the block; its name (":N")."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None or shutil.which("xdotool") is None:
        pytest.skip("Xvfb and xdotool are needed for the window tests: "
                    "scripts/ensure_test_display.sh installs them (make test runs it)")
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", SCREEN, "-nolisten", "tcp"],
        pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], XVFB_START_SECONDS)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number:
            raise AssertionError(f"Xvfb did not start within {XVFB_START_SECONDS} s")
        yield f":{number}"
    finally:
        os.close(read_end)
        process.terminate()
        process.wait(timeout=10)


class CallThreads:
    """Which threads the SDK's transports make their calls on: every unary call, stream
    opening and stream read goes through `_execute`, so that is where they are counted."""

    def __init__(self) -> None:
        self.threads: dict[int, int] = {}
        self._lock = threading.Lock()

    def record(self) -> None:
        ident = threading.get_ident()
        with self._lock:
            self.threads[ident] = self.threads.get(ident, 0) + 1

    def reset(self) -> None:
        """Forget the calls counted so far (the test's own set-up)."""
        with self._lock:
            self.threads.clear()

    def calls_on(self, ident: int) -> int:
        with self._lock:
            return self.threads.get(ident, 0)

    def total(self) -> int:
        with self._lock:
            return sum(self.threads.values())


@contextmanager
def counting_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallThreads]:
    """Count, by thread, every call the SDK makes while the block runs."""
    calls = CallThreads()
    sync_execute = SyncTransport._execute
    async_execute = AsyncTransport._execute

    def sync_counted(self: SyncTransport, *args: Any) -> Any:
        calls.record()
        return sync_execute(self, *args)

    async def async_counted(self: AsyncTransport, *args: Any) -> Any:
        calls.record()
        return await async_execute(self, *args)

    monkeypatch.setattr(SyncTransport, "_execute", sync_counted)
    monkeypatch.setattr(AsyncTransport, "_execute", async_counted)
    yield calls


class Window:
    """The window over the services at `addresses`, on `display`."""

    def __init__(self, display: str, addresses: Mapping[str, str], state_dir: Path) -> None:
        self.display = display
        self.root = tk.Tk(screenName=display, className="StableNew")
        client = AsyncClient(bundle_address=addresses["bundle"],
                             queue_address=addresses["queue"],
                             runner_address=addresses["runner"],
                             history_address=addresses["history"], env={})
        self.main = app.build(self.root, client, state_dir)
        self.models = self.main.window
        self.tk_thread = threading.get_ident()
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-aside")
        self.pump()

    def pump(self, seconds: float = 0.0) -> None:
        """Let the window run for a while (at least one round of its event loop)."""
        deadline = time.monotonic() + seconds
        while True:
            self.root.update()
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    def until(self, probe: Callable[[], T | None], what: str,
              timeout: float = PATIENCE_SECONDS) -> T:
        """Run the window until `probe()` is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    def aside(self, action: Callable[[], T]) -> T:
        """The test's own work (its SDK calls, xdotool) on a helper thread while the window
        keeps running: what the Tk thread does and what it waits for stay the window's."""
        done = self._helper.submit(action)
        self.until(done.done, "the test's own call")
        return done.result()

    def press(self, *keys: str, into: tk.Misc | None = None) -> None:
        """Real key presses (xdotool through the X server) into the window, with the
        keyboard focus on `into` (default: the window itself)."""
        (into or self.root).focus_force()
        self.pump()
        self.aside(lambda: subprocess.run(
            ["xdotool", "key", "--clearmodifiers", *keys], check=True, timeout=10,
            env={**os.environ, "DISPLAY": self.display}))
        self.pump(0.05)

    def screenshot(self, name: str, widget: tk.Misc | None = None) -> Path:
        """The pixels of `widget` (default: the whole window) as a PNG among the artifacts."""
        self.pump(0.2)
        target = widget or self.root
        x, y = target.winfo_rootx(), target.winfo_rooty()
        box = (x, y, x + target.winfo_width(), y + target.winfo_height())
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        ImageGrab.grab(bbox=box, xdisplay=self.display).save(path)
        return path

    def close(self) -> None:
        self._helper.shutdown()
        self.main.close()


def cut_off(table: Table, cells_of: Sequence[str] = ()) -> list[str]:
    """The headings of `table`, and the shown cells of the columns headed `cells_of`, whose text
    is wider than their column as it is on the screen: what a reader sees cut off."""
    tree, heading_font = table.tree, tkfont.nametofont("TkHeadingFont")
    cell_font = tkfont.nametofont("TkDefaultFont")
    cut: list[str] = []
    for name in tree["columns"]:
        width, heading = int(tree.column(name, "width")), str(tree.heading(name, "text"))
        if heading_font.measure(heading) + TEXT_ROOM > width:
            cut.append(heading)
        if heading in cells_of:
            cut += [value for key in tree.get_children()
                    if cell_font.measure(value := str(tree.set(key, name))) + TEXT_ROOM > width]
    return cut

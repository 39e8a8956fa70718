"""Every service call of the window, on one asyncio event loop in a thread of its own.

View models hand the backend an operation (a coroutine function of the SDK's `AsyncClient`)
and a callback; the operation runs on the loop, the callback on the UI thread (through the
`UiQueue`). Streams (the queue's watch, the history's watch) run there too and deliver their
items in batches. So the Tk thread never waits for the network, and no other thread touches a
widget.

The backend also notices a lost service: a call or stream that fails because the connection
failed (UNAVAILABLE or DEADLINE_EXCEEDED without a StableNew reason) marks the service lost,
and a probe on the loop tries it again, backing off, until it answers; the connection model
then tells the panels, which catch up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from stablenew.gui.connection_model import ConnectionModel
from stablenew.gui.dispatch import UiQueue
from stablenew.sdk import AsyncClient, Code, StableNewError

T = TypeVar("T")

Operation = Callable[[AsyncClient], Awaitable[T]]
Opener = Callable[[AsyncClient], AsyncIterator[T]]

PROBE_FIRST_SECONDS = 0.25
PROBE_MAX_SECONDS = 2.0
CLOSE_SECONDS = 5.0

log = logging.getLogger(__name__)


def is_connection_lost(error: BaseException | None) -> bool:
    """Whether `error` is the connection failing, not an answer of the service (a service's
    own UNAVAILABLE, such as WEBUI_UNAVAILABLE, carries a reason)."""
    return (isinstance(error, StableNewError) and not error.reason
            and error.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED))


async def first(items: AsyncIterator[T]) -> T | None:
    """The first item of an async iterator (None when empty); the iterator is closed."""
    try:
        return await anext(items, None)
    finally:
        closing = getattr(items, "aclose", None)
        if closing is not None:
            await closing()


async def take(items: AsyncIterator[T], count: int) -> tuple[list[T], bool]:
    """Up to `count` items, and whether the iterator ended (a page of a paged list)."""
    taken: list[T] = []
    while len(taken) < count:
        item = await anext(items, None)
        if item is None:
            return taken, True
        taken.append(item)
    return taken, False


# The cheapest call each service answers: it tells whether the service is back.
PROBES: dict[str, Operation[Any]] = {
    "bundle": lambda client: first(client.packs.list(page_size=1)),
    "queue": lambda client: client.queue.state(),
    "runner": lambda client: client.runner.status(),
    "history": lambda client: first(client.history.list(page_size=1)),
}


class Stream:
    """A running stream; `cancel` stops it, and no callback of it runs afterwards."""

    def __init__(self) -> None:
        self.cancelled = False
        self._future: Future[None] | None = None

    def attach(self, future: Future[None]) -> None:
        """The loop's task reading the stream."""
        self._future = future

    def cancel(self) -> None:
        """Stop the stream (call on the UI thread)."""
        self.cancelled = True
        if self._future is not None:
            self._future.cancel()


class _Batch:
    """Stream items gathered on the loop until the UI thread takes them, so a burst of events
    costs one UI callback, not one per event."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def add(self, item: Any) -> bool:
        """Add an item; True when the batch was empty (a delivery must be posted)."""
        with self._lock:
            self._items.append(item)
            return len(self._items) == 1

    def take(self) -> list[Any]:
        """Every item gathered so far."""
        with self._lock:
            items, self._items = self._items, []
            return items


class Backend:
    """The event loop thread, the client on it, and the delivery of results to the UI."""

    def __init__(self, client: AsyncClient, ui: UiQueue, connection: ConnectionModel) -> None:
        self.client = client
        self._ui = ui
        self._connection = connection
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="stablenew-gui-services", daemon=True)
        self._lost: set[str] = set()

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    def close(self) -> None:
        """Cancel every call and stream, close the client's channels, stop the loop."""
        if not self._thread.is_alive():
            return
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            done.result(timeout=CLOSE_SECONDS)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CLOSE_SECONDS)
            if not self._thread.is_alive():
                self._loop.close()

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()

    # --- calls ----------------------------------------------------------------------------

    def call(self, service: str, operation: Operation[T], on_result: Callable[[T], None],
             on_error: Callable[[Exception], None]) -> None:
        """Run `operation(client)` on the loop; then `on_result(result)` or `on_error(error)`
        on the UI thread. `service` names the service it talks to (for lost connections)."""
        asyncio.run_coroutine_threadsafe(
            self._call(service, operation, on_result, on_error), self._loop)

    async def _call(self, service: str, operation: Operation[T],
                    on_result: Callable[[T], None],
                    on_error: Callable[[Exception], None]) -> None:
        try:
            result = await operation(self.client)
        except Exception as error:  # every failure reaches the view model, which reports it
            self._failed(service, error)
            self._ui.post(partial(on_error, error))
            return
        self._reached(service)
        self._ui.post(partial(on_result, result))

    def stream(self, service: str, opener: Opener[T], on_items: Callable[[list[T]], None],
               on_end: Callable[[Exception | None], None]) -> Stream:
        """Read `opener(client)` on the loop; its items reach `on_items` on the UI thread in
        batches, and its end (None, or the error) reaches `on_end`, unless it was cancelled."""
        handle = Stream()

        def deliver(batch: _Batch) -> None:
            if not handle.cancelled:
                on_items(batch.take())

        def end(error: Exception | None) -> None:
            if not handle.cancelled:
                on_end(error)

        handle.attach(asyncio.run_coroutine_threadsafe(
            self._stream(service, opener, deliver, end), self._loop))
        return handle

    async def _stream(self, service: str, opener: Opener[T],
                      deliver: Callable[[_Batch], None],
                      end: Callable[[Exception | None], None]) -> None:
        batch = _Batch()
        try:
            async for item in opener(self.client):
                self._reached(service)
                if batch.add(item):
                    self._ui.post(partial(deliver, batch))
        except Exception as error:  # the view model decides: resume, reload or report
            self._failed(service, error)
            self._ui.post(partial(end, error))
            return
        self._ui.post(partial(end, None))

    def post(self, callback: Callable[[], None]) -> None:
        """Run `callback` on the UI thread (for an SDK callback that runs on the loop)."""
        self._ui.post(callback)

    def after(self, seconds: float, callback: Callable[[], None]) -> None:
        """Run `callback` on the UI thread in `seconds` (without a Tk timer, so view models
        can wait without a display)."""
        self._loop.call_soon_threadsafe(self._loop.call_later, seconds, self._ui.post, callback)

    # --- lost services --------------------------------------------------------------------

    def _failed(self, service: str, error: Exception) -> None:
        if not isinstance(error, StableNewError):
            log.error("unexpected error in a %s call", service, exc_info=error)
        if is_connection_lost(error) and service not in self._lost:
            self._lost.add(service)
            message = error.message if isinstance(error, StableNewError) else str(error)
            self._ui.post(partial(self._connection.lost, service, message))
            self._loop.create_task(self._probe(service))

    def _reached(self, service: str) -> None:
        if service in self._lost:
            self._lost.discard(service)
            self._ui.post(partial(self._connection.restored, service))

    async def _probe(self, service: str) -> None:
        delay = PROBE_FIRST_SECONDS
        while service in self._lost:
            await asyncio.sleep(delay)
            try:
                await PROBES[service](self.client)
            except Exception as error:  # any answer but a lost connection means it is back
                if is_connection_lost(error):
                    delay = min(delay * 2, PROBE_MAX_SECONDS)
                    continue
            self._reached(service)

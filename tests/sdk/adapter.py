"""The asyncio client behind the synchronous client's interface, so that one test body checks
both: every coroutine runs on an event loop in a thread of its own, and every async iterator
(lists, watches, `AsyncPreview.jobs`) is read through as a plain iterator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from stablenew.sdk import AsyncClient
from stablenew.sdk.types import AsyncPreview, Preview


class EventLoopThread:
    """An event loop running in a daemon thread until `close`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, items: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self.run(anext(items))  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            closing = getattr(items, "aclose", None)
            if closing is not None:
                self.run(closing())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class _Synchronous:
    """Calls to the wrapped object's methods, made synchronous."""

    def __init__(self, target: Any, loop: EventLoopThread) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return _Synchronous(attribute, self._loop) if hasattr(attribute, "_transport") \
                else attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._result(attribute(*args, **kwargs))
        return call

    def _result(self, value: Any) -> Any:
        if asyncio.iscoroutine(value):
            return self._result(self._loop.run(value))
        if isinstance(value, AsyncIterator):
            return self._loop.iterate(value)
        if isinstance(value, AsyncPreview):
            return Preview(summary=value.summary, draft_revision=value.draft_revision,
                           jobs=self._loop.iterate(value.jobs))
        return value


class SyncAsyncClient(_Synchronous):
    """An AsyncClient used like a Client."""

    def __init__(self, **arguments: Any) -> None:
        loop = EventLoopThread()
        super().__init__(AsyncClient(**arguments), loop)

    def close(self) -> None:
        self._loop.run(self._target.close())
        self._loop.close()

    def __enter__(self) -> SyncAsyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

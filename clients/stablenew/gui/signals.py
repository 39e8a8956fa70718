"""A minimal observer: view models announce changes, widgets (and other view models) listen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Signal(Generic[T]):
    """Listeners called in the order they connected, with one value, on the emitting thread
    (always the UI thread: view models change only there)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[T], None]] = []

    def connect(self, listener: Callable[[T], None]) -> Callable[[], None]:
        """Call `listener` on every emit; the returned function disconnects it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, value: T) -> None:
        """Call every listener with `value`."""
        for listener in list(self._listeners):
            listener(value)

"""The set of live subscribers a service fans committed changes out to (the queue's event
watchers, the history's record watchers). Each subscriber keeps its own bounded buffer; this
only keeps the set, safe to change while a publish is under way."""

from __future__ import annotations

import threading
from typing import Generic, Protocol, TypeVar

Item_contra = TypeVar("Item_contra", contravariant=True)


class Subscriber(Protocol[Item_contra]):
    def offer(self, item: Item_contra) -> None: ...

    def wake(self) -> None: ...


S = TypeVar("S", bound=Subscriber)  # type: ignore[type-arg]
T = TypeVar("T")


class Fanout(Generic[S, T]):
    def __init__(self) -> None:
        self._subscribers: set[S] = set()
        self._lock = threading.Lock()

    def add(self, subscriber: S) -> S:
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: S) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def snapshot(self) -> list[S]:
        """The subscribers now; offering to them happens outside the lock."""
        with self._lock:
            return list(self._subscribers)

    def publish(self, items: list[T]) -> None:
        if not items:
            return
        for subscriber in self.snapshot():
            for item in items:
                subscriber.offer(item)

    def wake_all(self) -> None:
        for subscriber in self.snapshot():
            subscriber.wake()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._subscribers)

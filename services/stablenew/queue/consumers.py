"""The durable consumers of the event log: created, listed and deleted explicitly, and expired
after an idle time, so a consumer that is gone (a GUI that once watched, a retired history) can
no longer hold the log for ever.

A consumer is active while it has a watch open and whenever it is created or acknowledges; one
idle longer than `idle_seconds` is deleted by `expire` (the queue's maintenance, before each
prune). The idle time is wall-clock time, a queue restart included: a consumer whose queue was
down longer than that expires at the next prune, and re-creates itself when it comes back.

Used under the core's lock, like the store, inside the core's transactions.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from stablenew.contract.errors import Code, ErrorReason, ServiceError, invalid_argument
from stablenew.queue.domain import Consumer
from stablenew.queue.store import QueueStore

log = logging.getLogger("stablenew.queue.consumers")


def consumer_not_found(consumer_id: str) -> ServiceError:
    return ServiceError(
        Code.NOT_FOUND, ErrorReason.CONSUMER_NOT_FOUND,
        f"no durable consumer {consumer_id!r}: never created, deleted, or expired after its "
        "idle time; create it (CreateConsumer) and watch again",
        metadata={"consumer_id": consumer_id})


def refuse_beyond_log(store: QueueStore, field_path: str, sequence: int) -> None:
    """INVALID_ARGUMENT naming `field_path` for a sequence past the last event logged."""
    if sequence > store.last_sequence:
        raise invalid_argument(
            field_path, f"{sequence} is beyond the last event ({store.last_sequence})")


class ConsumerRegistry:
    """The consumers in the store, and which of them are watching now (in memory: a watch
    does not outlive the process)."""

    def __init__(self, store: QueueStore, idle_seconds: float) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self._watching: Counter[str] = Counter()

    def create(self, consumer_id: str, after_sequence: int, request_id: str) -> Consumer:
        """A new consumer holding the events after `after_sequence`; the existing one when
        `request_id` repeats the request that created it."""
        if after_sequence < 0:
            raise invalid_argument("after_sequence", "must not be negative")
        refuse_beyond_log(self.store, "after_sequence", after_sequence)
        existing = self.store.consumer(consumer_id)
        if existing is not None:
            if request_id and existing.request_id == request_id:
                return self._view(existing)
            raise ServiceError(
                Code.ALREADY_EXISTS, ErrorReason.CONSUMER_ALREADY_EXISTS,
                f"durable consumer {consumer_id!r} already exists", metadata={
                    "consumer_id": consumer_id,
                    "acknowledged_sequence": str(existing.acknowledged_sequence)})
        now = datetime.now(UTC)
        consumer = Consumer(consumer_id, after_sequence, now, now, request_id)
        self.store.create_consumer(consumer)
        log.info("durable consumer %s created, holding the events after %d", consumer_id,
                 after_sequence, extra={"consumer_id": consumer_id})
        return self._view(consumer)

    def get(self, consumer_id: str) -> Consumer:
        consumer = self.store.consumer(consumer_id)
        if consumer is None:
            raise consumer_not_found(consumer_id)
        return self._view(consumer)

    def page(self, after_id: str, size: int) -> list[Consumer]:
        return [self._view(c) for c in self.store.consumers_after(after_id, size)]

    def delete(self, consumer_id: str) -> None:
        if not self.store.delete_consumer(consumer_id):
            raise consumer_not_found(consumer_id)
        log.info("durable consumer %s deleted", consumer_id, extra={"consumer_id": consumer_id})

    def acknowledge(self, consumer_id: str, sequence: int) -> int:
        acknowledged = self.store.acknowledge(consumer_id, sequence)
        if acknowledged is None:
            raise consumer_not_found(consumer_id)
        return acknowledged

    def watch_started(self, consumer_id: str) -> None:
        """A watch as `consumer_id` opens: NOT_FOUND CONSUMER_NOT_FOUND for an unknown one."""
        self.get(consumer_id)
        self.store.touch_consumer(consumer_id)
        self._watching[consumer_id] += 1

    def watch_ended(self, consumer_id: str) -> None:
        """Its idle time starts now (deleted meanwhile: nothing to touch)."""
        self._watching[consumer_id] -= 1
        if self._watching[consumer_id] <= 0:
            del self._watching[consumer_id]
        self.store.touch_consumer(consumer_id)

    def expire(self) -> list[str]:
        """Delete the consumers idle longer than `idle_seconds`; a watching one is active."""
        for consumer_id in self._watching:
            self.store.touch_consumer(consumer_id)
        expired = self.store.idle_consumers(time.time() - self.idle_seconds)
        for consumer_id in expired:
            self.store.delete_consumer(consumer_id)
            log.warning("durable consumer %s expired after %.0f s without watching or "
                        "acknowledging; the events it held may be pruned", consumer_id,
                        self.idle_seconds, extra={"consumer_id": consumer_id})
        return expired

    def _view(self, consumer: Consumer) -> Consumer:
        return replace(consumer, watching=consumer.consumer_id in self._watching)

"""Wiring of the queue service: what `stablenew serve queue` starts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import replace

import grpc

from stablenew.queue.core import QueueConfig, QueueCore
from stablenew.queue.leasing import Leasing
from stablenew.queue.servicer import QueueServicer
from stablenew.queue.store import QueueStore
from stablenew.runtime.message_budget import RESPONSE_MARGIN_BYTES
from stablenew.runtime.periodic import PeriodicTask
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import ServerSettings, positive_float, positive_int
from stablenew.v1 import queue_service_pb2, queue_service_pb2_grpc

log = logging.getLogger("stablenew.queue")

SERVICE = queue_service_pb2.DESCRIPTOR.services_by_name["QueueService"]
MAINTENANCE_INTERVAL_SECONDS = 0.25


def queue_config(env: Mapping[str, str]) -> QueueConfig:
    defaults = QueueConfig()
    return QueueConfig(
        lease_seconds=positive_float(env, "STABLENEW_LEASE_SECONDS", defaults.lease_seconds),
        max_attempts=positive_int(env, "STABLENEW_MAX_ATTEMPTS", defaults.max_attempts),
        event_retention_seconds=positive_float(
            env, "STABLENEW_EVENT_RETENTION_SECONDS", defaults.event_retention_seconds),
        watcher_stall_seconds=positive_float(
            env, "STABLENEW_WATCHER_STALL_SECONDS", defaults.watcher_stall_seconds),
        watcher_buffer_bytes=positive_int(
            env, "STABLENEW_WATCHER_BUFFER_BYTES", defaults.watcher_buffer_bytes),
        consumer_idle_seconds=positive_float(
            env, "STABLENEW_CONSUMER_IDLE_SECONDS", defaults.consumer_idle_seconds),
        prune_interval_seconds=positive_float(
            env, "STABLENEW_PRUNE_INTERVAL_SECONDS", defaults.prune_interval_seconds),
    )


def maintenance(core: QueueCore, leasing: Leasing) -> PeriodicTask:
    """Expires leases and cuts stalled watchers every tick; prunes the log now and then."""
    last_prune = 0.0

    def tick() -> None:
        nonlocal last_prune
        leasing.expire_leases()
        core.broadcaster.disconnect_stalled()
        if time.monotonic() - last_prune >= core.config.prune_interval_seconds:
            last_prune = time.monotonic()
            core.prune()

    return PeriodicTask("queue-maintenance", MAINTENANCE_INTERVAL_SECONDS, tick)


def build(settings: ServerSettings, env: Mapping[str, str] | None = None) -> ServiceSpec:
    env = os.environ if env is None else env
    store = QueueStore(settings.data_dir / "queue.sqlite3",
                       settings.sqlite_synchronous)
    core = QueueCore(store, replace(queue_config(env), max_event_bytes=(
        settings.max_message_bytes - RESPONSE_MARGIN_BYTES)))
    leasing = Leasing(core)
    background = maintenance(core, leasing)

    def register(server: grpc.Server) -> None:
        queue_service_pb2_grpc.add_QueueServiceServicer_to_server(
            QueueServicer(core, leasing, settings.max_message_bytes), server)
        background.start()

    def draining() -> None:
        core.close()
        leasing.wake_waiters()

    def stop() -> None:
        background.stop()
        store.close()

    return ServiceSpec(name=settings.service, proto_services=[SERVICE.full_name],
                       register=register, on_draining=draining, on_stop=stop)

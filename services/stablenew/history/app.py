"""Wiring of the history service: what `stablenew serve history` starts.

Settings (beyond the common ones):
- STABLENEW_QUEUE_ADDR (and the common token/TLS variables): the queue whose log is followed.
- STABLENEW_HISTORY_INGEST: `on` (default) or `off` (serve the database only, e.g. an archive
  of imported records).

Health: the service's names ("" and HistoryService) are SERVING once it serves reads, queue or
no queue (a health check that depended on the queue would take the history's records out of a
load balancer with every queue outage); the ingestion reports on its own name,
ingest.INGESTION_HEALTH, and through GetIngestionStatus.
- STABLENEW_HISTORY_CONSUMER_ID: the durable consumer name at the queue (default `history`).
- STABLENEW_HISTORY_RETRY_MAX_SECONDS: the longest wait between reconnects (default 10).
- STABLENEW_HISTORY_MAX_AGE_DAYS, STABLENEW_HISTORY_MAX_ROWS,
  STABLENEW_HISTORY_RETENTION_INTERVAL_SECONDS: the automatic retention policy (retention.py).
- STABLENEW_SQLITE_SYNCHRONOUS: NORMAL (default) or FULL (store.py explains the choice).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from stablenew.contract.errors import ServiceError
from stablenew.history.core import HistoryCore
from stablenew.history.ingest import (
    DEFAULT_CONSUMER_ID,
    INGESTION_HEALTH,
    IngestConfig,
    Ingestor,
)
from stablenew.history.queue_client import QueueClient
from stablenew.history.retention import retention_policy, retention_task
from stablenew.history.servicer import HistoryServicer
from stablenew.history.store import HistoryStore
from stablenew.runtime.channel import open_channel
from stablenew.runtime.server import Server, ServiceSpec, StartupError
from stablenew.runtime.settings import ConfigError, ServerSettings, positive_float
from stablenew.v1 import history_service_pb2 as contract
from stablenew.v1 import history_service_pb2_grpc

SERVICE = contract.DESCRIPTOR.services_by_name["HistoryService"]
DATABASE_NAME = "history.sqlite3"
SWITCH_VALUES = {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False}


def ingest_enabled(env: Mapping[str, str]) -> bool:
    text = env.get("STABLENEW_HISTORY_INGEST", "on").strip().lower() or "on"
    if text not in SWITCH_VALUES:
        raise ConfigError(f"STABLENEW_HISTORY_INGEST: {text!r} is not on or off")
    return SWITCH_VALUES[text]


def ingest_config(env: Mapping[str, str]) -> IngestConfig:
    defaults = IngestConfig()
    consumer_id = env.get("STABLENEW_HISTORY_CONSUMER_ID", "").strip() or DEFAULT_CONSUMER_ID
    return IngestConfig(
        consumer_id=consumer_id,
        retry_max_seconds=positive_float(env, "STABLENEW_HISTORY_RETRY_MAX_SECONDS",
                                         defaults.retry_max_seconds))


def open_core(path: Path, synchronous: str) -> HistoryCore:
    """The store and the core over the database file; a file that cannot serve is a
    StartupError saying why."""
    if path.is_dir():
        raise StartupError(f"cannot open database {path}: it is a directory")
    try:
        store = HistoryStore(path, synchronous)
    except (sqlite3.Error, ServiceError) as error:
        raise StartupError(f"cannot use database {path}: {error}") from None
    try:
        return HistoryCore(store)
    except sqlite3.Error as error:
        store.close()
        raise StartupError(f"cannot use database {path}: {error}") from None


def build(settings: ServerSettings, env: Mapping[str, str] | None = None) -> ServiceSpec:
    env = os.environ if env is None else env
    policy = retention_policy(env)
    config = ingest_config(env)
    follow_queue = ingest_enabled(env)
    core = open_core(settings.data_dir / DATABASE_NAME, settings.sqlite_synchronous)
    store = core.store
    retention = retention_task(core, policy)
    servers: list[Server] = []

    def set_serving(serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for server in servers:
            server.health.set(INGESTION_HEALTH, status)

    def queue_client() -> QueueClient:
        # Keepalive: a queue that hangs with the watch open is noticed (runtime.channel).
        return QueueClient(open_channel("queue", env=env, keepalive=True),
                           config.call_timeout_seconds)

    ingestors = ([Ingestor(core, queue_client, config, set_serving)] if follow_queue else [])

    def register(server: grpc.Server) -> None:
        servicer = HistoryServicer(core, ingestors[0].status if ingestors else None,
                                   settings.max_message_bytes)
        history_service_pb2_grpc.add_HistoryServiceServicer_to_server(servicer, server)

    def started(server: Server) -> None:
        servers.append(server)
        for ingestor in ingestors:
            ingestor.start()
        retention.start()

    def draining() -> None:
        core.close()
        for ingestor in ingestors:
            ingestor.stop()

    def stop() -> None:
        retention.stop()
        store.close()

    return ServiceSpec(name=settings.service, proto_services=[SERVICE.full_name],
                       register=register, on_draining=draining, on_stop=stop,
                       on_started=started)

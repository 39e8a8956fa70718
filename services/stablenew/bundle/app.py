"""Wiring of the bundle service: what `stablenew serve bundle` starts.

Packs come from STABLENEW_PACKS_DIR (default: <data dir>/packs); drafts live in
<data dir>/bundle.sqlite3; EnqueueDraft submits to the queue at STABLENEW_QUEUE_ADDR.
STABLENEW_MAX_VARIANTS_PER_ROW (default 512, at most 8192) caps what one pack row may expand to.
What the connected runners offer (the names a draft's jobs are checked against) is asked of the
queue at most every STABLENEW_OFFER_CACHE_SECONDS (default 5; 0 asks on every draft read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import grpc

from stablenew.bundle.core import BundleCore, OfferCache
from stablenew.bundle.expansion import (
    DEFAULT_MAX_VARIANTS_PER_ROW,
    HARD_MAX_VARIANTS_PER_ROW,
    ExpansionLimits,
)
from stablenew.bundle.mapping import JobMessages
from stablenew.bundle.packs.library import PackLibrary
from stablenew.bundle.queue_client import QueueClient
from stablenew.bundle.servicer import BundleServicer
from stablenew.bundle.store import BundleStore
from stablenew.runtime.channel import open_channel
from stablenew.runtime.server import ServiceSpec
from stablenew.runtime.settings import (
    ConfigError,
    ServerSettings,
    non_negative_float,
    positive_int,
)
from stablenew.v1 import bundle_service_pb2, bundle_service_pb2_grpc

SERVICE = bundle_service_pb2.DESCRIPTOR.services_by_name["BundleService"]
DEFAULT_OFFER_CACHE_SECONDS = 5.0


def expansion_limits(env: Mapping[str, str]) -> ExpansionLimits:
    """The variant cap of STABLENEW_MAX_VARIANTS_PER_ROW (ConfigError when out of range)."""
    cap = positive_int(env, "STABLENEW_MAX_VARIANTS_PER_ROW", DEFAULT_MAX_VARIANTS_PER_ROW)
    if cap > HARD_MAX_VARIANTS_PER_ROW:
        raise ConfigError(f"STABLENEW_MAX_VARIANTS_PER_ROW: {cap} is over the hard maximum "
                          f"of {HARD_MAX_VARIANTS_PER_ROW} variants a row")
    return ExpansionLimits(cap)


def offer_cache_seconds(env: Mapping[str, str]) -> float:
    """How long an answer of the queue about the runners' offer is used (ConfigError when
    STABLENEW_OFFER_CACHE_SECONDS is not a number of 0 or more)."""
    return non_negative_float(env, "STABLENEW_OFFER_CACHE_SECONDS", DEFAULT_OFFER_CACHE_SECONDS)


def build(settings: ServerSettings, env: Mapping[str, str] | None = None) -> ServiceSpec:
    """The bundle service over its store, pack library and queue link, ready to serve."""
    env = os.environ if env is None else env
    store = BundleStore(settings.data_dir / "bundle.sqlite3",
                        settings.sqlite_synchronous)
    packs_dir = Path(env.get("STABLENEW_PACKS_DIR") or settings.data_dir / "packs")
    packs_dir.mkdir(parents=True, exist_ok=True)
    channel = open_channel("queue", env=env)
    job_messages = JobMessages()
    queue = QueueClient(channel, job_messages)
    offers = OfferCache(queue.offered_names, offer_cache_seconds(env))
    core = BundleCore(store, PackLibrary(packs_dir), queue.submit, queue.lookup, offers,
                      expansion_limits(env))

    def register(server: grpc.Server) -> None:
        bundle_service_pb2_grpc.add_BundleServiceServicer_to_server(
            BundleServicer(core, job_messages), server)

    def stop() -> None:
        channel.close()
        store.close()

    return ServiceSpec(name=settings.service, proto_services=[SERVICE.full_name],
                       register=register, on_stop=stop)

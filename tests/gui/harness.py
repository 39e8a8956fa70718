"""The view models of the window without a display: a UI queue that the test thread drains (so
the test thread is the UI thread), the real backend on its own loop thread, and the models built
on them against real services."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from google.protobuf import json_format

from stablenew.gui.backend import Backend
from stablenew.gui.connection_model import ConnectionModel
from stablenew.gui.context import Context, Level, StatusMessage, StatusModel
from stablenew.gui.dispatch import UiQueue
from stablenew.sdk import AsyncClient, Client
from stablenew.v1 import history_service_pb2, job_pb2, pipeline_pb2
from tests.service_harness import wait_for

T = TypeVar("T")

# How long a test waits for something that happens at once on a healthy machine.
PATIENCE_SECONDS = 30.0


class ModelHarness:
    """A context for view models over the services at `addresses`."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = dict(addresses)
        self.ui = UiQueue()
        self.connection = ConnectionModel(addresses)
        self.status = StatusModel()
        self.messages: list[StatusMessage] = []
        self.status.changed.connect(self.messages.append)
        client = AsyncClient(bundle_address=addresses["bundle"],
                             queue_address=addresses["queue"],
                             runner_address=addresses["runner"],
                             history_address=addresses["history"], env={})
        self.backend = Backend(client, self.ui, self.connection)
        self.backend.start()
        self.context = Context(self.ui, self.backend, self.connection, self.status)

    def settle(self, probe: Callable[[], T | None], what: str,
               timeout: float = PATIENCE_SECONDS) -> T:
        """Run the UI callbacks until `probe()` is truthy; its value."""
        def drained() -> T | None:
            self.ui.drain(budget=None)
            return probe()
        return wait_for(drained, what, timeout)

    def errors(self) -> list[str]:
        """The error messages the status line showed."""
        return [message.text for message in self.messages if message.level == Level.ERROR]

    def last_info(self) -> str:
        """The newest informational message."""
        return next((message.text for message in reversed(self.messages)
                     if message.level == Level.INFO), "")

    def close(self) -> None:
        self.backend.close()


def sync_client(addresses: Mapping[str, str]) -> Client:
    """A synchronous SDK client for the test's own checks and set-up."""
    return Client(bundle_address=addresses["bundle"], queue_address=addresses["queue"],
                  runner_address=addresses["runner"], history_address=addresses["history"],
                  env={})


def write_text_pack(packs_dir: Path, pack_id: str, rows: list[str]) -> Path:
    """A .txt pack of one-line rows."""
    path = packs_dir / f"{pack_id}.txt"
    path.write_text("\n\n".join(rows) + "\n", encoding="utf-8")
    return path


def import_jobs(client: Client, path: Path, jobs: list[job_pb2.Job]) -> None:
    """Put finished jobs into the history through its import (a file of ImportedJob lines,
    each with its state changes), as the SDK's export writes them."""
    with path.open("w", encoding="utf-8") as out:
        for job in jobs:
            record = history_service_pb2.ImportedJob(job=job, transitions=[
                job_pb2.JobTransition(from_state=job_pb2.JOB_STATE_QUEUED,
                                      to_state=job_pb2.JOB_STATE_RUNNING, time=job.start_time),
                job_pb2.JobTransition(from_state=job_pb2.JOB_STATE_RUNNING, to_state=job.state,
                                      time=job.complete_time)])
            line = json_format.MessageToDict(record, preserving_proto_field_name=True)
            out.write(json.dumps(line) + "\n")
    client.history.import_(path)


def finished_job(job_id: str, minute: int, label: str,
                 state: job_pb2.JobState.ValueType = job_pb2.JOB_STATE_COMPLETED,
                 pack: str = "") -> job_pb2.Job:
    """A finished job created `minute` minutes after a fixed moment (a pack job when `pack`)."""
    created = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)
    job = job_pb2.Job(
        job_id=job_id, state=state, label=label, entry_count=1, estimated_images=1,
        stage_count=1, payload_summary=f"1 entry, 1 image: {label} (txt2img)",
        origin=job_pb2.JobOrigin(
            run_mode=job_pb2.RUN_MODE_QUEUE, source=job_pb2.JOB_SOURCE_ADD_TO_QUEUE,
            prompt_source=(pipeline_pb2.PROMPT_SOURCE_PACK if pack
                           else pipeline_pb2.PROMPT_SOURCE_MANUAL), prompt_pack_id=pack))
    job.create_time.FromDatetime(created)
    job.start_time.FromDatetime(created + timedelta(seconds=1))
    job.complete_time.FromDatetime(created + timedelta(seconds=3))
    return job

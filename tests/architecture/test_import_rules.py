"""The layer rules hold for the whole source tree, and the checker catches each crossing the
architecture review found (so a passing run means something)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.import_rules import (
    load_modules,
    module_from_source,
    violations,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [ROOT / "services", ROOT / "clients"]


def test_the_source_tree_keeps_every_layer_rule() -> None:
    modules = load_modules(SOURCE_ROOTS)
    assert len(modules) > 50, "the checker found no sources"
    assert [str(violation) for violation in violations(modules)] == []


# Each crossing as it stood before the layers were fixed: (module, source, words of the rule).
CROSSINGS = [
    ("stablenew.queue.domain", "import grpc\n", "only in servicers"),
    ("stablenew.queue.domain", "from stablenew.v1 import errors_pb2\n", "only in servicers"),
    ("stablenew.queue.core", "from stablenew.runtime.rich_status import to_grpc_status\n",
     "only in servicers"),
    ("stablenew.bundle.core", "from google.rpc import status_pb2\n", "only in servicers"),
    ("stablenew.history.core", "def read(db):\n    db.execute('BEGIN')\n", "SQL runs only"),
    ("stablenew.history.core", "QUERY = 'SELECT job_id FROM jobs'\n", "SQL runs only"),
    ("stablenew.contract.model", "import grpc\n", "transport-free"),
    ("stablenew.contract.job_row", "import sqlite3\n", "transport-free"),
    ("stablenew.contract.model", "from stablenew.queue.domain import Job\n",
     "imports only itself"),
    ("stablenew.contract.model", "from stablenew.runtime.settings import ServerSettings\n",
     "imports only itself"),
    ("stablenew.sdwebui.adetailer_tabs", "from stablenew.runner import payloads\n",
     "plain facts"),
    ("stablenew.runtime.server", "from stablenew.queue import app\n", "knows none of them"),
    ("stablenew.bundle.store", "from stablenew.bundle.normalize import DraftPart\n",
     "not on the use cases"),
    ("stablenew.queue.store", "from stablenew.queue.core import QueueCore\n",
     "not on the use cases"),
    ("stablenew.queue.domain", "from stablenew.queue.store import QueueStore\n",
     "nothing but itself"),
    ("stablenew.queue.core", "from stablenew.queue.servicer import QueueServicer\n",
     "never reaches back"),
    ("stablenew.runner.executor", "from stablenew.queue.domain import Job\n",
     "another service's internals"),
    ("stablenew.history.queue_client", "from stablenew.queue import core\n",
     "another service's internals"),
    ("stablenew.cli.history_command", "from stablenew.history.import_jsonl import read\n",
     "clients import only"),
    ("stablenew.cli.history_command", "from stablenew.runtime.rich_status import details_of\n",
     "clients import only"),
    ("stablenew.sdk.client", "from stablenew.runtime.channel import open_channel\n",
     "clients import only"),
    ("stablenew.sdk.client", "from stablenew.cli import main\n", "clients import only"),
    ("stablenew.sdk.client", "from ..runtime import channel\n", "clients import only"),
    ("stablenew.sdk.client", "from stablenew.gui import app\n", "clients import only"),
    ("stablenew.gui.backend", "from stablenew.queue.core import QueueCore\n",
     "clients import only"),
    ("stablenew.gui.backend", "from stablenew.runtime.channel import open_channel\n",
     "clients import only"),
]


@pytest.mark.parametrize(("name", "source", "words"), CROSSINGS)
def test_the_checker_catches_the_crossing(name: str, source: str, words: str) -> None:
    found = violations([module_from_source(name, source)])
    assert found, f"{name} may not do this: {source!r}"
    assert any(words in violation.rule for violation in found), [str(v) for v in found]


ALLOWED = [
    ("stablenew.queue.servicer", "import grpc\nfrom stablenew.v1 import errors_pb2\n"),
    ("stablenew.queue.app", "from stablenew.runtime.server import ServiceSpec\n"),
    ("stablenew.history.queue_client",
     "import grpc\nfrom stablenew.v1 import queue_service_pb2_grpc\n"),
    ("stablenew.history.core", "from stablenew.history.queue_client import QueueFeed\n"),
    ("stablenew.history.store", "def read(db):\n    db.execute('BEGIN')\n"),
    ("stablenew.history.store.queries", "QUERY = 'SELECT job_id FROM jobs'\n"),
    ("stablenew.queue.domain", "from stablenew.contract.errors import ServiceError\n"),
    ("stablenew.queue.core", "from stablenew.v1 import job_pb2\n"),
    ("stablenew.cli.serve_command", "from stablenew.queue.app import build\n"),
    ("stablenew.cli.main", "from stablenew.sdk import Client\nfrom stablenew.v1 import job_pb2\n"),
    ("stablenew.contract.proto_mapping", "from stablenew.v1 import pipeline_pb2\n"),
    ("stablenew.cli.main", "from stablenew.gui import command\n"),
    ("stablenew.gui.command", "from stablenew.cli.supervisor import Supervisor\n"),
]


@pytest.mark.parametrize(("name", "source"), ALLOWED)
def test_the_checker_lets_the_allowed_through(name: str, source: str) -> None:
    assert [str(v) for v in violations([module_from_source(name, source)])] == []

"""`stablenew serve history` as a user runs it: a corrupt, unreadable or unusable database file
gives a clear start-up error and exit code 1, not a traceback; bad retention settings give exit
code 2; and a history started without a queue is SERVING, its ingestion health NOT_SERVING
until the queue appears."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from stablenew.history.ingest import INGESTION_HEALTH
from tests.history.processes import HistoryProcess, health_of
from tests.queue.processes import QueueProcess, free_port

pytestmark = pytest.mark.e2e


def serve(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "STABLENEW_DATA_DIR": str(data_dir),
                "STABLENEW_HISTORY_ADDR": f"127.0.0.1:{free_port()}", **env}
    return subprocess.run([sys.executable, "-m", "stablenew.cli.main", "serve", "history"],
                          env=full_env, capture_output=True, text=True, timeout=60, check=False)


def test_a_corrupt_database_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.sqlite3").write_bytes(b"this is not a database, " * 400)
    done = serve(data)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "history could not start" in done.stderr
    assert "history.sqlite3" in done.stderr
    assert "not a database" in done.stderr


def test_a_database_path_that_is_a_directory_is_a_clear_startup_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "history.sqlite3").mkdir(parents=True)
    done = serve(tmp_path / "data")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "history could not start" in done.stderr and "directory" in done.stderr


def test_a_data_directory_that_cannot_be_created_is_a_clear_startup_error(
        tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("in the way")
    done = serve(tmp_path / "a-file" / "data")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "history could not start" in done.stderr


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "history.sqlite3") as db:
        db.execute("PRAGMA user_version = 99")
    done = serve(data)
    assert done.returncode == 1
    assert "newer than this program knows" in done.stderr


@pytest.mark.parametrize("setting", ["STABLENEW_HISTORY_MAX_ROWS", "STABLENEW_HISTORY_MAX_AGE_DAYS",
                                     "STABLENEW_HISTORY_INGEST"])
def test_bad_settings_are_configuration_errors(tmp_path: Path, setting: str) -> None:
    done = serve(tmp_path / "data", **{setting: "-3"})
    assert done.returncode == 2
    assert setting in done.stderr
    assert "Traceback" not in done.stderr


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextmanager
def queue_and_history(tmp_path: Path) -> Iterator[tuple[QueueProcess, HistoryProcess]]:
    """A queue and a history following it, neither started; afterwards the history must stop
    cleanly with no traceback in its output, and whatever still runs is stopped."""
    queue = QueueProcess(tmp_path / "queue-data")
    history = HistoryProcess(tmp_path / "history-data", queue.address)
    try:
        yield queue, history
        assert history.stop() == 0
        assert "Traceback" not in history.output()
    finally:
        if history.process is not None and history.process.poll() is None:
            history.kill()
        if queue.process is not None and queue.process.poll() is None:
            queue.stop()


def test_serving_alone_with_the_ingestion_not_serving_until_the_queue_appears(
        tmp_path: Path) -> None:
    with queue_and_history(tmp_path) as (queue, history):
        history.spawn()
        history.wait_status(NOT_SERVING, service=INGESTION_HEALTH)
        assert health_of(history.address) == SERVING
        queue.start()
        history.wait_status(SERVING, service=INGESTION_HEALTH)
        assert queue.stop() == 0
        history.wait_status(NOT_SERVING, service=INGESTION_HEALTH)
        assert health_of(history.address) == SERVING


def test_a_queue_that_hangs_is_noticed_and_followed_again_once_it_answers(
        tmp_path: Path) -> None:
    # A stopped process keeps its connections open but answers nothing, as does a network path
    # that drops packets: the history's watch stays open and quiet until pings find it dead.
    with queue_and_history(tmp_path) as (queue, history):
        queue.start()
        history.start()
        os.kill(queue.pid, signal.SIGSTOP)
        try:
            history.wait_status(NOT_SERVING, service=INGESTION_HEALTH)
            assert health_of(history.address) == SERVING
        finally:
            os.kill(queue.pid, signal.SIGCONT)
        history.wait_status(SERVING, service=INGESTION_HEALTH)

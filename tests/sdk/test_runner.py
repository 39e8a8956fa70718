"""The runner through the SDK: status, capabilities, interrupt, images read to bytes and to
files (from the configured runner or the one named), a job's images downloaded, and the errors
of each."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stablenew.sdk import (
    ImageNotFoundError,
    InvalidArgumentError,
    Job,
    PathOutsideRootError,
    WebuiState,
    WebuiUnavailableError,
)
from tests.queue.processes import free_port
from tests.runner.harness import RunnerHarness
from tests.sdk.harness import (
    PACK_ID,
    Stack,
    connect,
    new_draft,
    place_only_on,
    second_runner,
    wait_announced,
)
from tests.service_harness import wait_for


@pytest.fixture(scope="module")
def finished(stack: Stack) -> Job:
    with connect("sync", bundle_address=stack.bundle.address,
                 queue_address=stack.queue.address) as client:
        job: Job = client.run_pack(PACK_ID, timeout=60)
        return job


@pytest.fixture
def unreachable_webui(tmp_path: Path, stack: Stack) -> Iterator[RunnerHarness]:
    """A second runner whose WebUI URL answers nothing."""
    harness = RunnerHarness(tmp_path / "lonely", stack.queue.address,
                            f"http://127.0.0.1:{free_port()}", runner_id="runner-lonely")
    with harness.running():
        yield harness


def test_status_and_capabilities(client: Any, stack: Stack) -> None:
    status = client.runner.status()
    assert (status.runner_id, status.webui_state) == (stack.runner.runner_id, WebuiState.READY)
    assert status.webui_url == stack.emulator.url
    capabilities = client.runner.capabilities(refresh=True)
    assert capabilities.models and "Euler a" in capabilities.samplers
    assert capabilities.fetch_time is not None
    assert client.runner.capabilities().proto.samplers == capabilities.proto.samplers


def test_interrupt(client: Any, stack: Stack) -> None:
    wait_for(lambda: not client.runner.status().current_job_id, "an idle runner")
    idle = client.runner.interrupt()
    assert (idle.interrupted, idle.job_id) == (False, "")
    stack.admin.faults(step_seconds=0.2)
    try:
        job = client.drafts.enqueue(new_draft(client, rows=[0]).draft_id)
        wait_for(stack.admin.sampling, "a generation sampling")
        result = client.runner.interrupt()
    finally:
        stack.admin.faults(step_seconds=0.002)
    assert (result.interrupted, result.job_id) == (True, job.job_id)
    assert result.proto.job_id == job.job_id
    client.wait(job.job_id, timeout=60)


def test_an_image_is_read_to_bytes_and_to_a_file(client: Any, finished: Job,
                                                 tmp_path: Path, stack: Stack) -> None:
    image = finished.results[0].images[0]
    data = client.runner.read_image(image.path, chunk_size=1024)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (image.size_bytes, image.sha256)
    assert data == (stack.runner.output_root / image.path).read_bytes()
    into_directory = client.runner.save_image(image.path, tmp_path)
    assert into_directory == tmp_path / Path(image.path).name
    assert into_directory.read_bytes() == data
    named = client.runner.save_image(image.path, tmp_path / "sub" / "x.png")
    assert named.read_bytes() == data
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        [into_directory.name, "sub", "x.png"])  # no partial file left


@pytest.fixture
def other_runner(tmp_path: Path, stack: Stack) -> Iterator[RunnerHarness]:
    """A second runner of the queue (no job is queued while it runs: it writes nothing)."""
    harness = second_runner(tmp_path / "second", stack)
    with harness.running():
        yield harness


def test_an_image_is_read_from_the_runner_named(client: Any, finished: Job, stack: Stack,
                                                other_runner: RunnerHarness) -> None:
    image = finished.results[0].images[0]
    png = (stack.runner.output_root / image.path).read_bytes()
    # A file only the second runner holds: under its own output root, at a path the first lacks.
    only_there = f"elsewhere/{Path(image.path).name}"
    place_only_on(other_runner, only_there, png)
    wait_announced(client, other_runner)
    assert client.runner.read_image(only_there, runner_id=other_runner.runner_id) == png
    with pytest.raises(ImageNotFoundError):
        client.runner.read_image(only_there)  # the configured runner has no such file
    with pytest.raises(ImageNotFoundError):
        # A runner the queue does not know: read from the configured runner.
        client.runner.read_image(only_there, runner_id="runner-nobody-knows")
    assert client.runner.read_image(image.path, runner_id=stack.runner.runner_id) == png


def test_image_errors(client: Any, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError):
        client.runner.read_image("2000-01-01/none/000.png")
    with pytest.raises(PathOutsideRootError):
        client.runner.read_image("../outside.png")
    with pytest.raises(InvalidArgumentError) as caught:
        client.runner.read_image("")
    assert [v.field for v in caught.value.violations] == ["path"]
    with pytest.raises(ImageNotFoundError):
        client.runner.save_image("2000-01-01/none/000.png", tmp_path / "never.png")
    assert list(tmp_path.iterdir()) == []


def test_download_images_of_a_job(client: Any, finished: Job, tmp_path: Path) -> None:
    saved = client.download_images(finished.job_id, tmp_path / "out")
    images = [image for result in finished.results for image in result.images]
    assert saved == [tmp_path / "out" / image.path for image in images]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in saved] == [
        image.sha256 for image in images]


def test_an_unreachable_webui_is_a_state_and_its_capabilities_an_error(
        kind: str, unreachable_webui: RunnerHarness) -> None:
    with connect(kind, runner_address=unreachable_webui.address) as client:
        assert client.runner.status().webui_state in (WebuiState.DISCONNECTED,
                                                      WebuiState.ERROR)
        with pytest.raises(WebuiUnavailableError) as caught:
            client.runner.capabilities(refresh=True)
    assert caught.value.reason == "WEBUI_UNAVAILABLE"

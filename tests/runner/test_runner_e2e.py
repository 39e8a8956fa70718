"""The runner's "done when" points with real processes: `stablenew serve queue|runner|emulator`
as a user starts them, talking gRPC and HTTP over the loopback.

- a 3-entry txt2img + ADetailer + upscale job: files, sizes, infotexts, manifest, hashes, and
  ReadImage from the runner process;
- a runner SIGKILLed mid-job: the queue's lease expiry hands the job to another runner, where
  it completes exactly once;
- the emulator SIGKILLed mid-job: the job goes back to the queue and completes once it is back;
- the WebUI down for 30 s in the middle of a 20-entry job: nothing is leased meanwhile, the
  queue lists the runner's WebUI as disconnected (ListRunners, the SDK, `stablenew queue
  runners`) and says why the job waits, and the job completes on its second attempt with
  every entry made once;
- a WebUI that opens its port late: DISCONNECTED, then READY, then the job runs;
- a WebUI the runner owns (STABLENEW_WEBUI_CMD): started, used, stopped with the runner.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from stablenew.cli.main import main as cli_main
from stablenew.contract.errors import Code
from stablenew.runner.outputs import png_size, png_text
from stablenew.runtime.rich_status import details_of
from stablenew.sdk import Client, WebuiState
from stablenew.v1 import job_pb2, pipeline_pb2, queue_service_pb2_grpc
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import runner_service_pb2 as rpb
from tests.queue.harness import QueueHarness
from tests.queue.processes import QueueProcess, free_port
from tests.runner.harness import (
    FULL_PLAN,
    EmulatorAdmin,
    EmulatorProcess,
    ManagedProcess,
    RunnerHarness,
    RunnerProcess,
    check_image_refs,
    get_job,
    make_job,
    read_image,
    submit,
    transitions,
    wait_state,
)
from tests.service_harness import wait_for

pytestmark = pytest.mark.e2e

STAGES = ["txt2img", "adetailer", "upscale"]


@pytest.fixture
def queue_process(tmp_path: Path) -> Iterator[QueueProcess]:
    process = QueueProcess(tmp_path / "queue-data", {"STABLENEW_LEASE_SECONDS": "1"})
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


@pytest.fixture
def queue_stub(queue_process: QueueProcess) -> Iterator[queue_service_pb2_grpc.QueueServiceStub]:
    with grpc.insecure_channel(queue_process.address) as channel:
        yield queue_service_pb2_grpc.QueueServiceStub(channel)


def start_emulator(processes: list[ManagedProcess], tmp_path: Path, *flags: str,
                   port: int = 0, wait: bool = True) -> EmulatorProcess:
    emulator = EmulatorProcess(tmp_path, *flags, port=port)
    processes.append(emulator)
    return emulator.start(wait=wait)


def start_runner(processes: list[ManagedProcess], tmp_path: Path, queue_address: str,
                 webui_url: str, runner_id: str) -> RunnerProcess:
    runner = RunnerProcess(tmp_path / runner_id, queue_address, webui_url, runner_id)
    processes.append(runner)
    return runner.start()


def test_a_three_entry_job_leaves_the_expected_files(
        tmp_path: Path, processes: list[ManagedProcess], queue_process: QueueProcess,
        queue_stub: queue_service_pb2_grpc.QueueServiceStub) -> None:
    emulator = start_emulator(processes, tmp_path, "--step-seconds", "0.002")
    runner = start_runner(processes, tmp_path, queue_process.address, emulator.url, "runner-e2e")
    entries = [make_job(i, f"{name} on a cliff, oil painting", FULL_PLAN)
               for i, name in enumerate(("a lighthouse", "a castle", "a windmill"))]
    job = wait_state(queue_stub, submit(queue_stub, entries).job_id)

    assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
    assert (job.runner_id, job.attempt) == ("runner-e2e", 1)
    results = sorted(job.results, key=lambda r: r.entry_index)
    assert [r.entry_index for r in results] == [0, 1, 2]
    folder_pattern = re.compile(rf"^\d{{4}}-\d{{2}}-\d{{2}}/{job.job_id}/")
    for entry, result in zip(entries, results, strict=True):
        assert result.status == job_pb2.ENTRY_STATUS_COMPLETED, result.error_message
        assert result.executed_config_hash == entry.config_hash
        assert result.prompt == entry.prompt
        assert [pipeline_pb2.StageType.Name(i.stage) for i in result.images] == [
            f"STAGE_TYPE_{stage.upper()}" for stage in STAGES]
        assert [(i.width, i.height) for i in result.images] == [(64, 64), (64, 64), (128, 128)]
        check_image_refs(result, runner.output_root)
        for image, stage in zip(result.images, STAGES, strict=True):
            assert folder_pattern.match(image.path), image.path
            assert Path(image.path).name == f"{entry.index:03d}_{stage}_{entry.seed}.png"
            assert image.runner_id == "runner-e2e"
            data = (runner.output_root / image.path).read_bytes()
            assert png_size(data) == (image.width, image.height)
            infotext = png_text(data)["parameters"]
            assert infotext.startswith(entry.prompt + "\n")
            assert f"Seed: {entry.seed}" in infotext
            assert "Model: v1-5-pruned-emaonly" in infotext
            chunk = json.loads(png_text(data)["stablenew"])
            assert chunk == {"job_id": job.job_id, "entry": entry.index, "stage": stage,
                             "seed": entry.seed, "config_hash": entry.config_hash}
        detailed = png_text((runner.output_root / result.images[1].path).read_bytes())
        assert "ADetailer model: face_yolov8n.pt" in detailed["parameters"]

    folder = runner.output_root / Path(results[0].images[0].path).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["job_id"], manifest["runner_id"]) == (job.job_id, "runner-e2e")
    assert [e["status"] for e in manifest["entries"]] == ["completed"] * 3
    for listed, result in zip(manifest["entries"], results, strict=True):
        assert listed["prompt"] == result.prompt
        assert listed["stage_plan"] == STAGES
        assert [(i["path"], i["sha256"], i["width"], i["height"]) for i in listed["images"]] == [
            (i.path, i.sha256, i.width, i.height) for i in result.images]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["manifest.json", *(Path(i.path).name for r in results for i in r.images)])

    # The queue knows where to read the images: the runner's address, by its id.
    runners = queue_stub.ListRunners(pb.ListRunnersRequest(), timeout=10).runners
    assert [(r.info.runner_id, r.info.address) for r in runners] == [
        ("runner-e2e", runner.address)]
    for result in results:
        image = result.images[-1]
        data, replies = read_image(runner.stub, image.path, chunk_size=4096)
        assert data == (runner.output_root / image.path).read_bytes()
        assert replies[-1].offset + len(replies[-1].data) == replies[0].total_size == len(data)
    for path, code, reason in (
            ("../queue-data/queue.db", Code.PERMISSION_DENIED, "PATH_OUTSIDE_ROOT"),
            (f"{results[0].images[0].path}/../../../../x.png", Code.PERMISSION_DENIED,
             "PATH_OUTSIDE_ROOT"),
            (str(Path(results[0].images[0].path).parent / "999_txt2img_1.png"),
             Code.NOT_FOUND, "IMAGE_NOT_FOUND")):
        with pytest.raises(grpc.RpcError) as raised:
            read_image(runner.stub, path)
        details = details_of(raised.value)
        assert (details.code, details.reason) == (code, reason), path


def test_a_killed_runner_is_replaced_by_lease_expiry_and_the_job_completes_once(
        tmp_path: Path, processes: list[ManagedProcess], queue_process: QueueProcess,
        queue_stub: queue_service_pb2_grpc.QueueServiceStub) -> None:
    emulator = start_emulator(processes, tmp_path, "--step-seconds", "0.05")
    admin = EmulatorAdmin(emulator.url)
    first = start_runner(processes, tmp_path, queue_process.address, emulator.url, "runner-a")
    entries = [make_job(i, f"survivor {i}", steps=20) for i in range(2)]  # 1 s per generation
    job_id = submit(queue_stub, entries).job_id
    wait_for(lambda: get_job(queue_stub, job_id).runner_id == "runner-a" and admin.sampling(),
             "runner-a to be generating", 20)

    first.kill()
    admin.faults(step_seconds=0.002)
    second = start_runner(processes, tmp_path, queue_process.address, emulator.url, "runner-b")
    job = wait_state(queue_stub, job_id)
    admin.close()

    assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
    assert (job.runner_id, job.attempt) == ("runner-b", 2)
    assert [r.status for r in job.results] == [job_pb2.ENTRY_STATUS_COMPLETED] * 2
    for result in job.results:
        check_image_refs(result, second.output_root)
        assert {i.runner_id for i in result.images} == {"runner-b"}
    moves = [(t.from_state, t.to_state, t.runner_id) for t in transitions(queue_stub, job_id)]
    completed = [m for m in moves if m[1] == job_pb2.JOB_STATE_COMPLETED]
    assert completed == [(job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_COMPLETED, "runner-b")]
    expired = [t for t in transitions(queue_stub, job_id)
               if (t.from_state, t.to_state) == (job_pb2.JOB_STATE_RUNNING,
                                                 job_pb2.JOB_STATE_QUEUED)]
    assert len(expired) == 1 and "expired" in expired[0].reason
    assert [m[1] for m in moves].count(job_pb2.JOB_STATE_RUNNING) == 2


def test_a_killed_webui_hands_the_job_back_and_it_completes_once_the_webui_is_back(
        tmp_path: Path, processes: list[ManagedProcess], queue: QueueHarness) -> None:
    emulator = start_emulator(processes, tmp_path, "--step-seconds", "0.05")
    admin = EmulatorAdmin(emulator.url)
    runner = RunnerHarness(tmp_path / "runner", queue.address, emulator.url).start()
    try:
        job_id = submit(queue.stub, [make_job(0, "cut short", steps=40)]).job_id  # 2 s
        wait_for(admin.sampling, "the generation to be sampling", 20)
        emulator.kill()

        # An outage is not the job's fault: it goes back to the queue, nothing failed.
        down = runner.wait_webui(rpb.WEBUI_STATE_DISCONNECTED)
        assert emulator.url in down.reason or "stopped answering" in down.reason
        queued = wait_state(queue.stub, job_id, (job_pb2.JOB_STATE_QUEUED,))
        assert queued.attempt == 1 and "POST /sdapi/v1/txt2img" in queued.error_message
        assert not [r for r in queued.results if r.status == job_pb2.ENTRY_STATUS_FAILED]

        start_emulator(processes, tmp_path, "--step-seconds", "0.002", port=emulator.port)
        job = wait_state(queue.stub, job_id)
        assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
        assert job.attempt == 2
        check_image_refs(job.results[0], runner.output_root)
    finally:
        admin.close()
        runner.stop()


def _listed_webui_state(queue: QueueHarness, runner_id: str) -> int:
    reply = queue.stub.ListRunners(pb.ListRunnersRequest(), timeout=10)
    (runner,) = [r for r in reply.runners if r.info.runner_id == runner_id]
    return runner.info.webui_state


def _cli_runners(queue: QueueHarness, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> tuple[str, list[Any]]:
    """`stablenew queue runners` against `queue`: the table, and the SDK's runners."""
    monkeypatch.setenv("STABLENEW_QUEUE_ADDR", queue.address)
    capsys.readouterr()
    assert cli_main(["queue", "runners"]) == 0
    table = capsys.readouterr().out
    with Client() as client:
        return table, client.queue.runners()


def test_a_webui_down_for_30_s_mid_job_leases_nothing_and_every_entry_runs_once(
        tmp_path: Path, processes: list[ManagedProcess], queue: QueueHarness,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    emulator = start_emulator(processes, tmp_path, "--step-seconds", "0.01")
    admin = EmulatorAdmin(emulator.url)
    runner = RunnerHarness(tmp_path / "runner", queue.address, emulator.url).start()
    entries = [make_job(i, f"entry {i:02d} of twenty", steps=10) for i in range(20)]
    try:
        job_id = submit(queue.stub, entries).job_id
        wait_for(lambda: len(admin.generations("of twenty")) >= 5, "five entries to be made")
        admin.faults(refuse_seconds=30)  # the port closes: every new connection is refused

        runner.wait_webui(rpb.WEBUI_STATE_DISCONNECTED)
        queued = wait_state(queue.stub, job_id, (job_pb2.JOB_STATE_QUEUED,))
        done = [r for r in queued.results if r.status == job_pb2.ENTRY_STATUS_COMPLETED]
        assert 5 <= len(done) < 20 and len(queued.results) == len(done)
        # The queue lists the runner's WebUI as it announced it (ListRunners, the SDK, the CLI).
        wait_for(lambda: _listed_webui_state(queue, runner.runner_id)
                 == rpb.WEBUI_STATE_DISCONNECTED, "the queue to list the WebUI as down")
        assert get_job(queue.stub, job_id).waiting_reason == (
            "no connected runner that can run it has its WebUI ready")
        table, (listed,) = _cli_runners(queue, monkeypatch, capsys)
        assert listed.info.webui_state == WebuiState.DISCONNECTED
        (row,) = [line for line in table.splitlines() if line.startswith(runner.runner_id)]
        assert row.split()[2] == "disconnected"
        # While the WebUI is down the runner leases nothing: the job stays QUEUED. (The job is
        # read before the runner: a runner still DISCONNECTED after it was read was so then.)
        polls = 0
        while True:
            state = get_job(queue.stub, job_id).state
            if runner.status().webui_state != rpb.WEBUI_STATE_DISCONNECTED:
                break
            assert state == job_pb2.JOB_STATE_QUEUED
            polls += 1
            time.sleep(0.5)
        assert polls > 1

        job = wait_state(queue.stub, job_id, timeout=60)
        assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
        assert job.attempt == 2
        assert _listed_webui_state(queue, runner.runner_id) in (rpb.WEBUI_STATE_READY,
                                                                rpb.WEBUI_STATE_BUSY)
        assert [r.entry_index for r in job.results] == list(range(20))
        assert all(r.status == job_pb2.ENTRY_STATUS_COMPLETED for r in job.results)
        made = [item["prompt"] for item in admin.generations("of twenty")
                if item["status"] == 200]
        assert sorted(made) == sorted(entry.prompt for entry in entries)  # each exactly once
        states = [move.to_state for move in transitions(queue.stub, job_id)]
        assert states.count(job_pb2.JOB_STATE_RUNNING) == 2
    finally:
        admin.close()
        runner.stop()


def test_a_webui_that_opens_its_port_late_is_waited_for(
        tmp_path: Path, processes: list[ManagedProcess], queue: QueueHarness) -> None:
    emulator = start_emulator(processes, tmp_path, "--step-seconds", "0.002",
                              "--start-delay-seconds", "2", wait=False)
    runner = RunnerHarness(tmp_path / "runner", queue.address, emulator.url).start()
    try:
        seen: list[int] = []

        def ready() -> bool:
            status = runner.status()
            if not seen or seen[-1] != status.webui_state:
                seen.append(status.webui_state)
            if status.webui_state == rpb.WEBUI_STATE_DISCONNECTED:
                assert status.reason
            # The queued job is leased at once: the runner may already be BUSY when polled.
            return status.webui_state in (rpb.WEBUI_STATE_READY, rpb.WEBUI_STATE_BUSY)

        wait_for(lambda: emulator.url in runner.status().reason, "a connection failure", 10)
        job_id = submit(queue.stub, [make_job(0, "worth the wait")]).job_id
        assert get_job(queue.stub, job_id).state == job_pb2.JOB_STATE_QUEUED
        wait_for(ready, "the runner to see the WebUI ready", 30)
        assert seen[0] == rpb.WEBUI_STATE_DISCONNECTED
        assert seen[-1] in (rpb.WEBUI_STATE_READY, rpb.WEBUI_STATE_BUSY)

        job = wait_state(queue.stub, job_id)
        assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
        assert job.runner_id == runner.runner_id
    finally:
        runner.stop()


def _owned_emulator_command(port: int, *flags: str) -> str:
    return shlex.join([sys.executable, "-m", "stablenew.cli.main", "serve", "emulator",
                       "--address", f"127.0.0.1:{port}", "--step-seconds", "0.002",
                       "--model-load-seconds", "0", "--log-level", "WARNING", *flags])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_webui_the_runner_owns_is_started_used_and_stopped(
        tmp_path: Path, queue: QueueHarness) -> None:
    port = free_port()
    runner = RunnerHarness(tmp_path / "runner", queue.address,
                           f"http://127.0.0.1:{port}",
                           env={"STABLENEW_WEBUI_CMD": _owned_emulator_command(port)}).start()
    try:
        ready = runner.wait_webui(rpb.WEBUI_STATE_READY, timeout=30)
        assert ready.owns_webui_process
        job = wait_state(queue.stub, submit(queue.stub, [make_job(0, "owned webui")]).job_id)
        assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
    finally:
        runner.stop(grace=3)
    # Stopping the runner stopped the WebUI it started.
    wait_for(lambda: not _port_open(port), "the owned WebUI to stop", 10)
    assert (tmp_path / "runner" / "logs" / "webui.log").is_file()


def test_a_webui_the_runner_owns_is_reported_starting_until_it_answers(
        tmp_path: Path, queue: QueueHarness) -> None:
    port = free_port()
    command = _owned_emulator_command(port, "--start-delay-seconds", "2")
    runner = RunnerHarness(tmp_path / "runner", queue.address,
                           f"http://127.0.0.1:{port}",
                           env={"STABLENEW_WEBUI_CMD": command}).start()
    seen: list[tuple[int, str]] = []
    try:
        def ready() -> bool:
            status = runner.status()
            seen.append((status.webui_state, status.reason))
            return status.webui_state == rpb.WEBUI_STATE_READY
        wait_for(ready, "the owned WebUI to be ready", 30, interval=0.05)
    finally:
        runner.stop(grace=3)
    before_ready = {state for state, _ in seen[:-1]}
    assert before_ready == {rpb.WEBUI_STATE_STARTING}, seen[:3]

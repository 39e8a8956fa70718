"""The runner service in this process, between a real queue and the WebUI emulator over real
HTTP: per-entry failures (500s retried, out-of-memory not), cancel, ADetailer skipped
silently, status and capabilities, InterruptCurrent, ReadImage, input images, the config-hash
check, handing a job back on shutdown, jobs back to back, and the WebUI's basic auth."""

from __future__ import annotations

import hashlib
import os
from functools import partial
from pathlib import Path

import grpc
import pytest
from PIL import Image

from stablenew.contract.errors import Code
from stablenew.contract.model import UpscaleConfig, UpscaleMode
from stablenew.emulator.generation import INJECTED_FAILURE
from stablenew.emulator.server import EmulatorServer
from stablenew.emulator.testing import fast_config, running
from stablenew.runner import app as runner_app
from stablenew.runner.outputs import png_size, png_text
from stablenew.runtime.rich_status import details_of
from stablenew.runtime.settings import ConfigError, ServerSettings
from stablenew.v1 import job_pb2, pipeline_pb2
from stablenew.v1 import queue_service_pb2 as pb
from stablenew.v1 import runner_service_pb2 as rpb
from tests.queue.harness import QueueHarness
from tests.queue.processes import free_port
from tests.runner.harness import (
    ADETAILER,
    FULL_PLAN,
    TERMINAL,
    TXT2IMG,
    UPSCALE,
    EmulatorAdmin,
    RunnerHarness,
    check_image_refs,
    face_pass,
    get_job,
    make_job,
    read_image,
    stablenew_chunk,
    submit,
    transitions,
    wait_state,
)
from tests.service_harness import wait_for

COMPLETED, FAILED, CANCELLED = (job_pb2.ENTRY_STATUS_COMPLETED, job_pb2.ENTRY_STATUS_FAILED,
                                job_pb2.ENTRY_STATUS_CANCELLED)
READY, BUSY, DISCONNECTED = (rpb.WEBUI_STATE_READY, rpb.WEBUI_STATE_BUSY,
                             rpb.WEBUI_STATE_DISCONNECTED)


def statuses(job: job_pb2.Job) -> list[int]:
    return [result.status for result in sorted(job.results, key=lambda r: r.entry_index)]


def error_reason(error: grpc.RpcError) -> tuple[Code, str]:
    details = details_of(error)
    return details.code, details.reason


# --- per-entry failures ------------------------------------------------------------------------


def test_an_entry_failing_with_500s_is_recorded_and_the_other_entries_complete(
        queue: QueueHarness, runner: RunnerHarness, admin: EmulatorAdmin) -> None:
    admin.faults(fail_next=5, fail_match="bravo")
    entries = [make_job(i, f"{name} lighthouse", FULL_PLAN)
               for i, name in enumerate(("alpha", "bravo", "charlie"))]
    job = wait_state(queue.stub, submit(queue.stub, entries).job_id)

    assert job.state == job_pb2.JOB_STATE_FAILED
    assert statuses(job) == [COMPLETED, FAILED, COMPLETED]
    first, second, third = sorted(job.results, key=lambda r: r.entry_index)
    assert INJECTED_FAILURE in second.error_message  # the WebUI's own error text
    assert "HTTP 500" in second.error_message
    assert list(second.images) == []
    for result in (first, third):
        assert [i.stage for i in result.images] == [pipeline_pb2.STAGE_TYPE_TXT2IMG,
                                                    pipeline_pb2.STAGE_TYPE_ADETAILER,
                                                    pipeline_pb2.STAGE_TYPE_UPSCALE]
        check_image_refs(result, runner.output_root)
    # The WebUI's own 500 is deterministic: asked once, not retried.
    attempts = admin.generations("bravo")
    assert [a["status"] for a in attempts] == [500]
    faults = admin.faults()
    assert (faults["injected"]["fail"], faults["fail_next"]) == (1, 4)


def test_out_of_memory_is_not_retried(queue: QueueHarness, runner: RunnerHarness,
                                      admin: EmulatorAdmin) -> None:
    admin.faults(oom_next=5, oom_match="bravo")
    entries = [make_job(i, f"{name} meadow") for i, name in enumerate(("alpha", "bravo"))]
    job = wait_state(queue.stub, submit(queue.stub, entries).job_id)

    assert job.state == job_pb2.JOB_STATE_FAILED
    assert statuses(job) == [COMPLETED, FAILED]
    failed = sorted(job.results, key=lambda r: r.entry_index)[1]
    assert "CUDA out of memory" in failed.error_message
    assert "out of memory" in failed.error_message.split(":")[1]  # the kind, not only the text
    # Exactly one attempt reached the WebUI.
    assert [a["status"] for a in admin.generations("bravo")] == [500]
    faults = admin.faults()
    assert (faults["injected"]["oom"], faults["oom_next"]) == (1, 4)


def test_an_adetailer_model_the_webui_lacks_fails_its_entry_before_it_runs(
        queue: QueueHarness, runner: RunnerHarness, admin: EmulatorAdmin) -> None:
    # The real extension would answer 200 with the model in the infotext and detail nothing.
    entries = [make_job(0, "skipped detail", (TXT2IMG, ADETAILER),
                        adetailer_passes=[face_pass("nonexistent.pt")]),
               make_job(1, "real detail", (TXT2IMG, ADETAILER))]
    job = wait_state(queue.stub, submit(queue.stub, entries).job_id)
    assert job.state == job_pb2.JOB_STATE_FAILED
    assert statuses(job) == [FAILED, COMPLETED]
    skipped, detailed = sorted(job.results, key=lambda r: r.entry_index)
    assert "ADetailer model 'nonexistent.pt' is not offered by the WebUI" in (
        skipped.error_message)
    assert list(skipped.images) == [] and admin.generations("skipped detail") == []
    assert len(detailed.images) == 2
    assert [(o.model, o.outcome) for o in detailed.adetailer_outcomes] == [
        ("face_yolov8n.pt", job_pb2.ADETAILER_OUTCOME_KIND_DETAILED)]


def test_a_pass_that_detects_nothing_is_recorded_as_such_and_the_entry_completes(
        queue: QueueHarness, runner: RunnerHarness, admin: EmulatorAdmin) -> None:
    admin.faults(adetailer_detect_nothing="hand")
    entry = make_job(0, "no hands here", (TXT2IMG, ADETAILER), batch_size=2,
                     adetailer_passes=[face_pass(), face_pass("hand_yolov8n.pt")])
    job = wait_state(queue.stub, submit(queue.stub, [entry]).job_id)
    assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
    (result,) = job.results
    assert result.executed_config_hash == entry.config_hash
    outcomes = [(o.image_index, o.pass_index, o.model, o.outcome)
                for o in result.adetailer_outcomes]
    detailed, nothing = (job_pb2.ADETAILER_OUTCOME_KIND_DETAILED,
                         job_pb2.ADETAILER_OUTCOME_KIND_NOTHING_DETECTED)
    assert outcomes == [(0, 0, "face_yolov8n.pt", detailed), (0, 1, "hand_yolov8n.pt", nothing),
                        (1, 0, "face_yolov8n.pt", detailed), (1, 1, "hand_yolov8n.pt", nothing)]


# --- cancel ------------------------------------------------------------------------------------


def test_a_cancel_interrupts_the_generation_and_keeps_the_finished_entries(
        queue: QueueHarness, runner: RunnerHarness, emulator: EmulatorServer,
        admin: EmulatorAdmin) -> None:
    emulator.faults.update({"step_seconds": 0.07})
    # 150 steps: the most the queue accepts (stablenew.contract.pipeline_limits).
    entries = [make_job(0, "alpha quick", steps=2),
               make_job(1, "bravo long", steps=150),  # 10 s unless interrupted
               make_job(2, "charlie never", steps=2)]
    job_id = submit(queue.stub, entries).job_id
    wait_for(lambda: admin.generations("alpha") and admin.sampling(),
             "the second entry to be sampling", 20)
    # From here a step takes 5 s: left alone, the generation would sample for over 10 minutes,
    # so it ends within the wait below only if the cancel reaches the WebUI as an interrupt.
    emulator.faults.update({"step_seconds": 5.0})

    queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10)
    wait_for(lambda: admin.generations("bravo"), "the cancel to interrupt the generation", 30)
    assert admin.stats()["requests"].get("interrupt", 0) >= 1

    job = wait_state(queue.stub, job_id)
    assert job.state == job_pb2.JOB_STATE_CANCELLED
    assert statuses(job) == [COMPLETED, CANCELLED]
    finished = sorted(job.results, key=lambda r: r.entry_index)[0]
    assert len(finished.images) == 1
    check_image_refs(finished, runner.output_root)
    assert admin.generations("charlie") == []

    # The interrupt does not linger: the next job runs normally.
    emulator.faults.update({"step_seconds": 0.002})
    later = wait_state(queue.stub, submit(queue.stub, [make_job(0, "after cancel")]).job_id)
    assert later.state == job_pb2.JOB_STATE_COMPLETED


def test_a_cancel_with_return_to_queue_runs_the_job_again(
        queue: QueueHarness, runner: RunnerHarness, emulator: EmulatorServer,
        admin: EmulatorAdmin) -> None:
    emulator.faults.update({"step_seconds": 0.05})
    job_id = submit(queue.stub, [make_job(0, "requeued", steps=100)]).job_id  # 5 s
    wait_for(admin.sampling, "the generation to be sampling", 20)
    queue.stub.CancelJob(pb.CancelJobRequest(job_id=job_id, return_to_queue=True), timeout=10)
    wait_for(lambda: get_job(queue.stub, job_id).attempt == 2, "the second attempt", 10)
    emulator.faults.update({"step_seconds": 0.002})
    job = wait_state(queue.stub, job_id)
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert job.attempt == 2
    moves = [(t.from_state, t.to_state) for t in transitions(queue.stub, job_id)]
    assert (job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_QUEUED) in moves
    assert moves.count((job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_COMPLETED)) == 1


# --- status, capabilities, interrupt -----------------------------------------------------------


def test_status_is_ready_then_busy_with_the_job_and_its_progress(
        queue: QueueHarness, runner: RunnerHarness, emulator: EmulatorServer,
        admin: EmulatorAdmin) -> None:
    ready = runner.wait_webui(READY)
    assert ready.runner_id == "runner-a"
    assert ready.webui_url == emulator.url
    assert ready.loaded_model == "v1-5-pruned-emaonly"
    assert (ready.reason, ready.current_job_id, ready.owns_webui_process) == ("", "", False)

    emulator.faults.update({"step_seconds": 0.05})
    job_id = submit(queue.stub, [make_job(0, "busy one", steps=60)]).job_id

    def busy_with_progress() -> rpb.RunnerStatus | None:
        status = runner.status()
        return status if status.webui_state == BUSY and status.progress.steps else None
    busy = wait_for(busy_with_progress, "BUSY with progress", 20)
    assert busy.current_job_id == job_id
    assert (busy.progress.entry_index, busy.progress.entry_count) == (0, 1)
    assert busy.progress.stage == pipeline_pb2.STAGE_TYPE_TXT2IMG
    assert busy.progress.steps == 60
    assert 0 <= busy.progress.step <= 60
    # The queue sees the same progress through the heartbeats.
    wait_for(lambda: get_job(queue.stub, job_id).progress.steps == 60,
             "progress in the queue", 10)

    reply = runner.stub.InterruptCurrent(rpb.InterruptCurrentRequest(), timeout=10)
    assert (reply.interrupted, reply.job_id) == (True, job_id)
    # An interrupt is not a cancel: the WebUI returns what it made and the job completes.
    job = wait_state(queue.stub, job_id, timeout=10)
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert admin.generations("busy one")[0]["status"] == 200

    idle = runner.wait_webui(READY, timeout=10)
    assert idle.current_job_id == ""
    assert not idle.HasField("progress")


def test_interrupt_when_idle_interrupts_nothing(runner: RunnerHarness) -> None:
    runner.wait_webui(READY)
    reply = runner.stub.InterruptCurrent(rpb.InterruptCurrentRequest(), timeout=10)
    assert (reply.interrupted, reply.job_id) == (False, "")


def test_capabilities_are_cached_and_refreshable(runner: RunnerHarness) -> None:
    runner.wait_webui(READY)
    first = runner.stub.GetCapabilities(rpb.GetCapabilitiesRequest(), timeout=10).capabilities
    assert "v1-5-pruned-emaonly" in [m.model_name for m in first.models]
    assert "v1-5-pruned-emaonly.safetensors [6ce0161689]" in [m.title for m in first.models]
    assert all(m.hash for m in first.models)
    assert {"Euler a", "DPM++ 2M"} <= set(first.samplers)
    assert {"None", "Lanczos", "R-ESRGAN 4x+"} <= set(first.upscalers)
    assert {"face_yolov8n.pt", "hand_yolov8n.pt"} <= set(first.adetailer_models)
    assert "vae-ft-mse-840000-ema-pruned.safetensors" in first.vaes
    assert "karras" in first.schedulers
    assert first.HasField("fetch_time")

    cached = runner.stub.GetCapabilities(rpb.GetCapabilitiesRequest(), timeout=10).capabilities
    assert cached.fetch_time == first.fetch_time
    refreshed = runner.stub.GetCapabilities(rpb.GetCapabilitiesRequest(refresh=True),
                                            timeout=10).capabilities
    assert refreshed.fetch_time.ToDatetime() > first.fetch_time.ToDatetime()
    assert list(refreshed.models) == list(first.models)
    again = runner.stub.GetCapabilities(rpb.GetCapabilitiesRequest(), timeout=10).capabilities
    assert again.fetch_time == refreshed.fetch_time


def test_a_webui_that_is_down_is_disconnected_with_a_reason(tmp_path: Path,
                                                            queue: QueueHarness) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    runner = RunnerHarness(tmp_path / "down", queue.address, url).start()
    try:
        status = runner.wait_webui(DISCONNECTED)
        assert status.reason and url in status.reason
        job_id = submit(queue.stub, [make_job(0, "waits")]).job_id
        with pytest.raises(grpc.RpcError) as raised:
            runner.stub.GetCapabilities(rpb.GetCapabilitiesRequest(), timeout=20)
        assert error_reason(raised.value) == (Code.UNAVAILABLE, "WEBUI_UNAVAILABLE")
        with pytest.raises(grpc.RpcError) as raised:
            runner.stub.InterruptCurrent(rpb.InterruptCurrentRequest(), timeout=20)
        assert error_reason(raised.value) == (Code.UNAVAILABLE, "WEBUI_UNAVAILABLE")
        # Nothing was leased while the WebUI was down (the calls above took seconds).
        assert get_job(queue.stub, job_id).state == job_pb2.JOB_STATE_QUEUED
        assert runner.status().webui_state == DISCONNECTED
    finally:
        runner.stop()


# --- ReadImage ---------------------------------------------------------------------------------


def test_read_image_streams_the_file_in_chunks_and_refuses_other_paths(
        queue: QueueHarness, runner: RunnerHarness, tmp_path: Path) -> None:
    job = wait_state(queue.stub, submit(queue.stub, [make_job(0, "to read", FULL_PLAN)]).job_id)
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    image = job.results[0].images[-1]
    on_disk = (runner.output_root / image.path).read_bytes()

    data, replies = read_image(runner.stub, image.path, chunk_size=1000)
    assert data == on_disk
    assert hashlib.sha256(data).hexdigest() == image.sha256
    assert len(replies) == -(-len(on_disk) // 1000)
    assert [r.offset for r in replies] == list(range(0, len(on_disk), 1000))
    assert {r.total_size for r in replies} == {len(on_disk)}
    default, replies = read_image(runner.stub, image.path)
    assert default == on_disk and len(replies) == 1  # under the 64 KiB default

    (tmp_path / "secret.png").write_bytes(b"not yours")
    os.symlink(tmp_path / "secret.png", runner.output_root / "link.png")
    refused = {"../secret.png": "PATH_OUTSIDE_ROOT",
               f"{image.path}/../../../../secret.png": "PATH_OUTSIDE_ROOT",
               str(runner.output_root / image.path): "PATH_OUTSIDE_ROOT",
               "link.png": "PATH_OUTSIDE_ROOT"}
    for path, reason in refused.items():
        with pytest.raises(grpc.RpcError) as raised:
            read_image(runner.stub, path)
        assert error_reason(raised.value) == (Code.PERMISSION_DENIED, reason), path
    folder = str(Path(image.path).parent)
    os.symlink("loop_b.png", runner.output_root / "loop_a.png")
    os.symlink("loop_a.png", runner.output_root / "loop_b.png")
    for path in ("2000-01-01/0123456789abcdef/000_txt2img_1.png", folder, "loop_a.png"):
        with pytest.raises(grpc.RpcError) as raised:
            read_image(runner.stub, path)
        assert error_reason(raised.value) == (Code.NOT_FOUND, "IMAGE_NOT_FOUND")
    for path, chunk_size in (("", 0), (image.path, -1), (image.path, 1024 * 1024 + 1),
                             ("x" * 300, 0), (f"{folder}/{'é' * 200}.png", 0), ("a/" * 3000, 0)):
        with pytest.raises(grpc.RpcError) as raised:
            read_image(runner.stub, path, chunk_size)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- input images and the config-hash check ----------------------------------------------------


def test_upscale_only_runs_on_input_images_and_refuses_paths_outside_the_input_folder(
        queue: QueueHarness, runner: RunnerHarness, tmp_path: Path) -> None:
    (runner.input_root / "batch").mkdir()
    Image.new("RGB", (48, 32), (10, 200, 10)).save(runner.input_root / "batch" / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "runner" / "outside.png")
    # The queue refuses "../outside.png" itself; a link that leads out is the runner's to refuse.
    (runner.input_root / "batch" / "escape.png").symlink_to(tmp_path / "runner" / "outside.png")
    entries = [make_job(0, "", (UPSCALE,), input_images=["batch/a.png"]),
               make_job(1, "", (UPSCALE,), input_images=["batch/escape.png"])]
    job = wait_state(queue.stub, submit(queue.stub, entries).job_id)

    assert job.state == job_pb2.JOB_STATE_FAILED
    assert statuses(job) == [COMPLETED, FAILED]
    upscaled, refused = sorted(job.results, key=lambda r: r.entry_index)
    (image,) = upscaled.images
    assert (image.width, image.height, image.seed) == (96, 64, 100)
    data = (runner.output_root / image.path).read_bytes()
    assert png_size(data) == (96, 64)
    assert stablenew_chunk(data)["stage"] == "upscale"
    assert Path(image.path).name == "000_upscale_100.png"
    assert "batch/escape.png" in refused.error_message
    assert list(refused.images) == []


def test_a_config_hash_mismatch_between_queue_and_runner_is_an_entry_error(
        queue: QueueHarness, runner: RunnerHarness, admin: EmulatorAdmin) -> None:
    # upscaler "None" hashes differently from "" but the runner can only send "None" for both:
    # the hash it recomputes from its requests differs from the queued one.
    mismatched = make_job(0, "mismatched", (TXT2IMG, UPSCALE), upscale=UpscaleConfig(
        mode=UpscaleMode.EXTRAS, upscaler="None", factor=2.0))
    job = wait_state(queue.stub, submit(queue.stub, [mismatched, make_job(1, "matched")]).job_id)
    assert job.state == job_pb2.JOB_STATE_FAILED
    assert statuses(job) == [FAILED, COMPLETED]
    refused, ran = sorted(job.results, key=lambda r: r.entry_index)
    assert "config hash mismatch" in refused.error_message
    assert list(refused.images) == []
    assert admin.generations("mismatched") == []
    assert ran.executed_config_hash == job.entries[1].config_hash


# --- shutdown --------------------------------------------------------------------------------


def test_a_runner_shutting_down_hands_its_job_back_at_once(
        tmp_path: Path, queue: QueueHarness, emulator: EmulatorServer,
        admin: EmulatorAdmin) -> None:
    address = queue.address
    first = RunnerHarness(tmp_path / "first", address, emulator.url, runner_id="runner-a",
                          env={"STABLENEW_GRACE_SECONDS": "3"}).start()
    emulator.faults.update({"step_seconds": 0.07})
    job_id = submit(queue.stub, [make_job(0, "handed back", steps=150)]).job_id
    try:
        wait_for(admin.sampling, "the generation to be sampling", 20)
    finally:
        first.stop(grace=3)
    # Back in the queue well before its 30 s lease could have expired.
    job = get_job(queue.stub, job_id)
    assert job.state == job_pb2.JOB_STATE_QUEUED
    assert admin.generations("handed back")[0]["status"] == 200  # interrupted, not left running

    emulator.faults.update({"step_seconds": 0.002})
    second = RunnerHarness(tmp_path / "second", address, emulator.url,
                           runner_id="runner-b").start()
    try:
        job = wait_state(queue.stub, job_id)
    finally:
        second.stop()
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert (job.runner_id, job.attempt) == ("runner-b", 2)
    assert (tmp_path / "second" / "images" / job.results[0].images[0].path).is_file()
    assert "handed back" in png_text(
        (tmp_path / "second" / "images" / job.results[0].images[0].path).read_bytes()
    )["parameters"]


# --- the queue's outages ---------------------------------------------------------------------


def finished(queue: QueueHarness, job_id: str) -> job_pb2.Job | None:
    """The job once it ended; None while the queue is not reachable yet (this process's
    channels share gRPC's reconnect backoff with the runner's)."""
    try:
        job = get_job(queue.stub, job_id)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None
    return job if job.state in TERMINAL else None


def test_a_report_waits_out_a_queue_restart(tmp_path: Path, emulator: EmulatorServer,
                                            admin: EmulatorAdmin) -> None:
    # A fixed port, so that the runner finds the restarted queue where it was.
    queue = QueueHarness(tmp_path / "queue", {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
                                              "STABLENEW_LEASE_SECONDS": "30"}).start()
    runner = RunnerHarness(tmp_path / "runner", queue.address, emulator.url).start()
    try:
        emulator.faults.update({"step_seconds": 0.05})
        job_id = submit(queue.stub, [make_job(0, "outlasts the queue", steps=20)]).job_id
        wait_for(admin.sampling, "the generation to be sampling", 20)
        queue.stop()
        # The manifest is written when the job has run, just before the runner reports it.
        wait_for(lambda: next(runner.output_root.glob(f"*/{job_id}/manifest.json"), None),
                 "the job to finish while the queue is down", 20)
        queue.start()
        job = wait_for(lambda: finished(queue, job_id), "the report to reach the queue", 30)
        moves = [(t.from_state, t.to_state) for t in transitions(queue.stub, job_id)]
    finally:
        runner.stop()
        queue.stop()
    assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
    # Reported by the lease it ran under: not expired, not run again.
    assert (job.runner_id, job.attempt) == ("runner-a", 1)
    assert moves == [(job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING),
                     (job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_COMPLETED)]
    check_image_refs(job.results[0], runner.output_root)


# The queue's message limit below: 12 entries of 8 images each submit in about 5 KB; their
# results (an image reference of about 150 bytes per image) take about 16 KB, which the queue
# receives but could not send as the job's `failed` event (it refuses them, naming `results`).
SMALL_MESSAGE_BYTES = 16 * 1024


def test_results_too_large_to_report_fail_the_job_with_the_reason_once(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    queue = QueueHarness(tmp_path / "queue", {"STABLENEW_LEASE_SECONDS": "30",
                                              "STABLENEW_MAX_MESSAGE_BYTES":
                                                  str(SMALL_MESSAGE_BYTES)})
    with queue.running(), RunnerHarness(tmp_path / "runner", queue.address,
                                        emulator.url).running():
        entries = [make_job(i, f"many images {i}", batch_size=8) for i in range(12)]
        job = wait_state(queue.stub, submit(queue.stub, entries).job_id)
        moves = [(t.from_state, t.to_state) for t in transitions(queue.stub, job.job_id)]
    assert job.state == job_pb2.JOB_STATE_FAILED
    assert "the results could not be reported, too large for one message" in job.error_message
    assert "results:" in job.error_message and "output folder" in job.error_message
    # Failed at once by the runner's report, not run again after its lease expired.
    assert job.attempt == 1
    assert moves == [(job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING),
                     (job_pb2.JOB_STATE_RUNNING, job_pb2.JOB_STATE_FAILED)]


# --- keeping the GPU busy ----------------------------------------------------------------------

# The issue: "it leases the next job as soon as the current one is reported, so the GPU idles
# for milliseconds, not seconds". Shown by the order of events, not by a clock: the next job is
# already leased to this runner while the current one is still in the WebUI, and it reaches the
# WebUI while the current one's report cannot reach the queue at all. So nothing between two
# jobs waits for the queue: neither a lease nor a report.


def running_here(queue: QueueHarness, job_id: str) -> bool:
    job = get_job(queue.stub, job_id)
    return job.state == job_pb2.JOB_STATE_RUNNING and job.runner_id == "runner-a"


def test_queued_jobs_follow_each_other_without_seconds_of_idle_webui(
        tmp_path: Path, emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    # A fixed port, so that the runner finds the restarted queue where it was.
    queue = QueueHarness(tmp_path / "queue", {"STABLENEW_QUEUE_ADDR": f"127.0.0.1:{free_port()}",
                                              "STABLENEW_LEASE_SECONDS": "30"}).start()
    runner = RunnerHarness(tmp_path / "runner", queue.address, emulator.url).start()
    try:
        runner.wait_webui(READY)
        # The first job's generation hangs in the WebUI until released: it cannot end early.
        admin.faults(hang_next=1, hang_match="back to back 0")
        first, second = (submit(queue.stub, [make_job(0, f"back to back {index}")]).job_id
                         for index in range(2))
        wait_for(lambda: running_here(queue, second) or None,
                 "the next job to be leased while the first one generates", 20)
        assert admin.generations() == []  # the first one is still in the WebUI
        assert running_here(queue, first)
        queue.stop()
        admin.faults(release_hung=True)
        arrived = wait_for(lambda: admin.generations("back to back 1") or None,
                           "the next job to reach the WebUI while the queue is down", 20)
        # Both generations ended while the queue was down, so neither report had reached it.
        ended = [item["prompt"] for item in admin.generations("back to back")]
        queue.start()
        jobs = [wait_for(partial(finished, queue, job_id),
                         "the reports to reach the restarted queue", 60)
                for job_id in (first, second)]
    finally:
        runner.stop()
        queue.stop()
    assert [item["status"] for item in arrived] == [200]
    assert [prompt[:len("back to back 0")] for prompt in ended] == ["back to back 0",
                                                                    "back to back 1"]
    for job in jobs:
        assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
        # Each ran once, under the lease it was given ahead: nothing expired or ran again.
        assert (job.runner_id, job.attempt) == ("runner-a", 1)


# --- configuration -----------------------------------------------------------------------------


def test_a_webui_behind_basic_auth_is_used_with_the_configured_credentials(
        tmp_path: Path, queue: QueueHarness) -> None:
    address = queue.address
    with running(fast_config(step_seconds=0.002, api_auth=(("sd", "s3cret"),))) as protected:
        wrong = RunnerHarness(tmp_path / "wrong", address, protected.url, runner_id="wrong",
                              env={"STABLENEW_WEBUI_AUTH": "sd:nope"}).start()
        right = None
        try:
            def tried() -> rpb.RunnerStatus | None:
                status = wrong.status()
                return status if status.reason.startswith("no answer") else None
            refused = wait_for(tried, "the wrong credentials to be tried", 10)
            assert refused.webui_state != READY
            job_id = submit(queue.stub, [make_job(0, "behind auth")]).job_id
            right = RunnerHarness(tmp_path / "right", address, protected.url, runner_id="right",
                                  env={"STABLENEW_WEBUI_AUTH": "sd:s3cret"}).start()
            job = wait_state(queue.stub, job_id)
            assert job.state == job_pb2.JOB_STATE_COMPLETED, job.error_message
            assert job.runner_id == "right"
            assert wrong.status().webui_state != READY
        finally:
            wrong.stop()
            if right is not None:
                right.stop()


@pytest.mark.parametrize("auth", ["no-colon", ":password-only"])
def test_malformed_webui_credentials_are_a_configuration_error(tmp_path: Path,
                                                                auth: str) -> None:
    env = {"STABLENEW_RUNNER_ADDR": "127.0.0.1:0", "STABLENEW_DATA_DIR": str(tmp_path),
           "STABLENEW_WEBUI_AUTH": auth}
    with pytest.raises(ConfigError, match="STABLENEW_WEBUI_AUTH"):
        runner_app.build(ServerSettings.load("runner", env=env), env)


def test_a_blank_webui_command_means_the_runner_owns_no_webui(
        tmp_path: Path, queue: QueueHarness, emulator: EmulatorServer) -> None:
    runner = RunnerHarness(tmp_path / "blank", queue.address, emulator.url,
                           env={"STABLENEW_WEBUI_CMD": "  "}).start()
    try:
        status = runner.wait_webui(READY)
        assert status.owns_webui_process is False
    finally:
        runner.stop()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://webui:7860", "http://", "webui:7860"])
def test_a_webui_url_that_is_not_http_is_a_configuration_error(tmp_path: Path, url: str) -> None:
    env = {"STABLENEW_RUNNER_ADDR": "127.0.0.1:0", "STABLENEW_DATA_DIR": str(tmp_path),
           "STABLENEW_WEBUI_URL": url}
    with pytest.raises(ConfigError, match="STABLENEW_WEBUI_URL"):
        runner_app.build(ServerSettings.load("runner", env=env), env)


def test_credentials_in_the_webui_url_are_used_and_never_shown(
        tmp_path: Path, queue: QueueHarness) -> None:
    with running(fast_config(step_seconds=0.002, api_auth=(("sd", "s3cret"),))) as protected:
        url = protected.url.replace("http://", "http://sd:s3cret@")
        runner = RunnerHarness(tmp_path / "url-auth", queue.address, url).start()
        try:
            status = runner.wait_webui(READY)
            assert "s3cret" not in str(status) and "sd:" not in status.webui_url
            assert status.webui_url == protected.url.rstrip("/")
        finally:
            runner.stop()

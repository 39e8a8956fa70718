"""Progress during a generation, interrupt, skip, and the FIFO order of queued requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from stablenew.emulator import EmulatorServer
from stablenew.emulator.testing import decode_png, info_of
from tests.service_harness import wait_for

DEADLINE = 10.0


def post(url: str, path: str, **body: Any) -> requests.Response:
    return requests.post(url + path, json=body, timeout=30)


def progress(url: str, skip_current_image: bool = True) -> dict[str, Any]:
    flag = "true" if skip_current_image else "false"
    result: dict[str, Any] = requests.get(
        f"{url}/sdapi/v1/progress?skip_current_image={flag}", timeout=10).json()
    return result


def wait_until(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, what, DEADLINE, interval=0.005)


def in_background(url: str, **body: Any) -> Future[requests.Response]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(post, url, "/sdapi/v1/txt2img", **body)
    pool.shutdown(wait=False)
    return future


def stats(url: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(url + "/emulator/v1/stats", timeout=10).json()
    return result


def depth_is(url: str, depth: int) -> Callable[[], bool]:
    return lambda: stats(url)["queue_depth"] == depth


def test_idle_progress(url: str) -> None:
    report = progress(url)
    assert report["progress"] == 0 and report["eta_relative"] == 0
    assert report["state"]["job_count"] == 0 and report["current_image"] is None
    assert {"skipped", "interrupted", "job", "job_count", "job_no", "sampling_step",
            "sampling_steps"} <= set(report["state"])
    # The WebUI's ProgressResponse model: current_task is passed to it and dropped.
    assert set(report) == {"progress", "eta_relative", "state", "current_image", "textinfo"}


def test_progress_rises_during_a_generation(
        start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(step_seconds=0.01).url
    future = in_background(url, prompt="slow", steps=40, seed=1)
    wait_until(lambda: progress(url)["state"]["sampling_step"] >= 1, "sampling to start")
    samples = []
    while not future.done():
        report = progress(url, skip_current_image=False)
        if report["state"]["job_count"]:
            samples.append(report)
        time.sleep(0.02)
    assert future.result().status_code == 200
    assert len(samples) >= 3
    values = [s["progress"] for s in samples]
    assert values == sorted(values) and 0 < values[0] < values[-1] <= 1
    # After the last step the job number advances and the step count resets until the end.
    sampling = [s for s in samples if s["state"]["job_no"] == 0]
    steps = [s["state"]["sampling_step"] for s in sampling]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    state = sampling[-1]["state"]
    assert state["job"] == "scripts_txt2img" and state["job_count"] == 1
    assert state["sampling_steps"] == 40 and state["job_no"] == 0
    assert samples[-1]["eta_relative"] >= 0
    assert all("current_task" not in sample for sample in samples)
    assert any(s["current_image"] for s in samples)
    assert progress(url)["state"]["job_count"] == 0


def test_interrupt_returns_200_with_images_so_far(
        start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(step_seconds=0.01).url
    request = {"prompt": "long", "seed": 9, "steps": 100, "n_iter": 4}
    future = in_background(url, **request)
    wait_until(lambda: progress(url)["state"]["sampling_step"] >= 2, "sampling to start")
    assert post(url, "/sdapi/v1/interrupt").json() == {}
    response = future.result(timeout=DEADLINE)
    assert response.status_code == 200
    body = response.json()
    assert len(body["images"]) == 1
    assert info_of(body)["all_seeds"] == [9, 10, 11, 12]
    assert len(info_of(body)["infotexts"]) == 1


def test_skip_ends_the_current_image_only(
        start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(step_seconds=0.01).url
    request = {"prompt": "skip me", "seed": 4, "steps": 60, "n_iter": 2}
    future = in_background(url, **request)
    wait_until(lambda: progress(url)["state"]["sampling_step"] >= 2, "sampling to start")
    assert post(url, "/sdapi/v1/skip").status_code == 200
    skipped = future.result(timeout=DEADLINE).json()
    assert len(skipped["images"]) == 2
    requests.post(url + "/emulator/v1/faults", json={"step_seconds": 0}, timeout=10)
    complete = post(url, "/sdapi/v1/txt2img", **request).json()
    assert skipped["images"][0] != complete["images"][0]
    assert skipped["images"][1] == complete["images"][1]
    assert decode_png(skipped["images"][0]).size == (512, 512)


def test_concurrent_requests_run_one_at_a_time_in_arrival_order(
        start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(step_seconds=0.01).url
    wait_until(lambda: stats(url)["queue_depth"] == 0, "the start-up model load")
    sent = time.time()
    futures = [in_background(url, prompt="first", steps=30, seed=1)]
    wait_until(lambda: stats(url)["queue_depth"] == 1, "the first request to run")
    for number in range(2, 6):
        futures.append(in_background(url, prompt=f"request {number}", steps=2, seed=number))
        wait_until(depth_is(url, number), f"request {number} to queue")
    assert progress(url)["state"]["job"] == "scripts_txt2img"
    assert all(f.result(timeout=DEADLINE).status_code == 200 for f in futures)
    replied = time.time()
    recent = stats(url)["recent"]
    assert [entry["prompt"] for entry in recent] == [
        "first", "request 2", "request 3", "request 4", "request 5"]
    # Each request's times: received on arrival (the later ones while the first ran), answered
    # one after the other, all between the client's sending and its last reply.
    first_answered = recent[0]["answered"]
    assert all(entry["received"] < first_answered for entry in recent[1:])
    answered = [entry["answered"] for entry in recent]
    assert answered == sorted(answered)
    assert all(sent <= entry["received"] <= entry["answered"] <= replied for entry in recent)


def test_progress_answers_while_the_lock_is_held(
        start_emulator: Callable[..., EmulatorServer]) -> None:
    server = start_emulator(step_seconds=0.01)
    future = in_background(server.url, prompt="busy", steps=50)
    wait_until(lambda: progress(server.url)["state"]["job_count"] == 1, "the generation")
    answered = threading.Event()

    def poll() -> None:
        progress(server.url)
        answered.set()

    threading.Thread(target=poll).start()
    assert answered.wait(DEADLINE)
    assert not future.done() or future.result().status_code == 200
    assert future.result(timeout=DEADLINE).status_code == 200

"""Fault injection: the admin endpoint, and each fault as a client sees it."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from stablenew.emulator import EmulatorServer, FaultSettings
from tests.service_harness import wait_for

DEADLINE = 10.0


def txt2img(url: str, prompt: str = "x", timeout: float = 30) -> requests.Response:
    return requests.post(url + "/sdapi/v1/txt2img", json={"prompt": prompt, "steps": 1},
                         timeout=timeout)


def faults(url: str, body: dict[str, Any] | None = None) -> requests.Response:
    if body is None:
        return requests.get(url + "/emulator/v1/faults", timeout=10)
    return requests.post(url + "/emulator/v1/faults", json=body, timeout=10)


def test_admin_endpoint_reads_and_updates(url: str) -> None:
    state = faults(url).json()
    assert state == {"fail_next": 0, "fail_match": "", "oom_next": 0, "oom_match": "",
                     "hang_next": 0, "hang_match": "", "refuse_seconds": 0.0,
                     "model_load_seconds": 0.0, "step_seconds": 0.002, "hanging": 0,
                     "injected": {"hang": 0, "oom": 0, "fail": 0},
                     "adetailer_detect_nothing": ""}
    updated = faults(url, {"fail_next": 2, "fail_match": "cat", "step_seconds": 0}).json()
    assert updated["fail_next"] == 2 and updated["fail_match"] == "cat"
    assert updated["oom_next"] == 0 and updated["step_seconds"] == 0
    cleared = faults(url, {"clear": True}).json()
    assert cleared["fail_next"] == 0 and cleared["step_seconds"] == 0.002


@pytest.mark.parametrize("body", [{"fail_nxt": 1}, {"fail_next": "one"}, {"fail_next": -2},
                                  {"refuse_seconds": -1}, {"clear": "yes"}])
def test_admin_rejects_bad_updates(url: str, body: dict[str, Any]) -> None:
    response = faults(url, body)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert requests.post(url + "/emulator/v1/faults", data=b"[", timeout=10).status_code == 400


def test_fail_next_only_for_matching_prompt(url: str) -> None:
    faults(url, {"fail_next": 1, "fail_match": "entry 2"})
    assert txt2img(url, "entry 1").status_code == 200
    failed = txt2img(url, "entry 2")
    assert failed.status_code == 500
    body = failed.json()
    assert set(body) == {"error", "detail", "body", "errors"}
    assert body["error"] == "RuntimeError" and body["errors"]
    assert txt2img(url, "entry 2").status_code == 200
    assert faults(url).json()["injected"]["fail"] == 1


def test_fail_by_endpoint_name_and_unlimited(url: str) -> None:
    faults(url, {"fail_next": -1, "fail_match": "extra-single-image"})
    assert txt2img(url).status_code == 200
    for _ in range(2):
        response = requests.post(url + "/sdapi/v1/extra-single-image", timeout=10,
                                 json={"image": "", "upscaler_1": "Lanczos"})
        assert response.status_code == 500
    faults(url, {"clear": True})


def test_out_of_memory(url: str) -> None:
    faults(url, {"oom_next": 1})
    response = txt2img(url)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "OutOfMemoryError"
    assert body["errors"].startswith("CUDA out of memory. Tried to allocate")
    assert txt2img(url).status_code == 200


def test_faults_armed_at_start(start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(faults=FaultSettings(oom_next=1, fail_next=1)).url
    assert txt2img(url).json()["error"] == "OutOfMemoryError"
    assert txt2img(url).json()["error"] == "RuntimeError"
    assert txt2img(url).status_code == 200


def test_hang_until_released(url: str) -> None:
    faults(url, {"hang_next": 1})
    with pytest.raises(requests.exceptions.ReadTimeout):
        txt2img(url, "stuck", timeout=0.5)
    assert faults(url).json()["hanging"] == 1
    with ThreadPoolExecutor(max_workers=1) as pool:
        queued = pool.submit(txt2img, url, "behind the hang")
        time.sleep(0.1)
        assert not queued.done()
        faults(url, {"release_hung": True})
        assert queued.result(timeout=DEADLINE).status_code == 200
    recent = requests.get(url + "/emulator/v1/stats", timeout=10).json()["recent"]
    assert [r["prompt"] for r in recent] == ["stuck", "behind the hang"]


def _connects(url: str) -> bool:
    try:
        requests.get(url + "/sdapi/v1/sd-models", timeout=2)
    except requests.exceptions.ConnectionError:
        return False
    return True


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, what, DEADLINE, interval=0.01)


def test_refused_connections_then_recovery(url: str) -> None:
    assert faults(url, {"refuse_seconds": 0.6}).status_code == 200
    _wait_for(lambda: not _connects(url), "connections to be refused")
    with pytest.raises(requests.exceptions.ConnectionError):
        txt2img(url)
    _wait_for(lambda: _connects(url), "the port to reopen")
    assert txt2img(url).status_code == 200
    assert faults(url).json()["refuse_seconds"] == 0


def test_refusal_can_be_ended_early(emulator: EmulatorServer) -> None:
    emulator.faults.update({"refuse_seconds": 60})
    _wait_for(lambda: not _connects(emulator.url), "connections to be refused")
    emulator.faults.update({"refuse_seconds": 0})
    _wait_for(lambda: _connects(emulator.url), "the port to reopen")

"""Options and model switching, and HTTP Basic auth on /sdapi/*."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from stablenew.emulator import EmulatorServer
from stablenew.emulator.testing import info_of

V15 = "v1-5-pruned-emaonly.safetensors [6ce0161689]"
XL = "sd_xl_base_1.0.safetensors [31e35c80fc]"


def options(url: str, **auth: Any) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(url + "/sdapi/v1/options", timeout=10,
                                          **auth).json()
    return result


def set_options(url: str, body: Any) -> requests.Response:
    return requests.post(url + "/sdapi/v1/options", json=body, timeout=30)


def test_default_options(url: str) -> None:
    current = options(url)
    assert current["sd_model_checkpoint"] == V15
    assert current["sd_vae"] == "Automatic" and current["CLIP_stop_at_last_layers"] == 1


def test_the_webuis_whole_option_set_is_there_and_writable(url: str) -> None:
    current = options(url)
    assert len(current) > 300
    for key in ("send_seed", "send_size", "samples_format", "sd_noise_schedule", "emphasis",
                "hires_fix_refiner_pass", "live_previews_enable", "ad_max_models"):
        assert key in current
    # What AUTOMATIC1111's own test_options_write does.
    assert set_options(url, {"send_seed": not current["send_seed"]}).status_code == 200
    assert options(url)["send_seed"] is (not current["send_seed"])
    refused = set_options(url, {"no_such_option": 1})
    assert refused.status_code == 500 and refused.json()["error"] == "KeyError"


def test_switch_model_by_name_or_title(url: str) -> None:
    response = set_options(url, {"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"})
    assert response.status_code == 200 and response.json() is None
    assert options(url)["sd_model_checkpoint"] == XL
    info = info_of(requests.post(url + "/sdapi/v1/txt2img", json={"steps": 1},
                                 timeout=30).json())
    assert info["sd_model_name"] == "sd_xl_base_1.0"
    assert set_options(url, {"sd_model_checkpoint": V15}).status_code == 200
    assert options(url)["sd_model_checkpoint"] == V15


def test_switch_blocks_under_the_generation_lock(
        start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(model_load_seconds=0.3).url
    with ThreadPoolExecutor(max_workers=2) as pool:
        switching = pool.submit(set_options, url, {"sd_model_checkpoint": "dreamshaper_8"})
        deadline = time.monotonic() + 10
        while requests.get(url + "/emulator/v1/stats", timeout=10).json()["queue_depth"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        queued = pool.submit(requests.post, url + "/sdapi/v1/txt2img",
                             json={"steps": 1}, timeout=30)
        assert switching.result().json() is None
        info = info_of(queued.result().json())
    assert info["sd_model_name"] == "dreamshaper_8"


def test_unknown_model_and_unknown_key_are_500(url: str) -> None:
    response = set_options(url, {"sd_model_checkpoint": "imaginary.safetensors"})
    assert response.status_code == 500
    assert response.json() == {"error": "RuntimeError", "detail": "", "body": "",
                                "errors": "model 'imaginary.safetensors' not found"}
    response = set_options(url, {"no_such_option": 1})
    assert response.status_code == 500
    assert response.json()["error"] == "KeyError"
    assert options(url)["sd_model_checkpoint"] == V15


def test_option_changes_reach_the_infotext(url: str) -> None:
    assert set_options(url, {"CLIP_stop_at_last_layers": 2,
                             "sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"}
                       ).status_code == 200
    info = info_of(requests.post(url + "/sdapi/v1/txt2img", json={"steps": 1},
                                 timeout=30).json())
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    assert info["sd_vae_name"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert len(info["sd_vae_hash"]) == 10


def test_api_auth(start_emulator: Callable[..., EmulatorServer]) -> None:
    url = start_emulator(api_auth=(("alice", "s3cret"),)).url
    missing = requests.get(url + "/sdapi/v1/sd-models", timeout=10)
    assert missing.status_code == 401
    assert missing.json()["detail"] == "Not authenticated"
    assert missing.headers["WWW-Authenticate"] == "Basic"
    wrong = requests.get(url + "/sdapi/v1/sd-models", auth=("alice", "nope"), timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "Incorrect username or password"
    right = requests.get(url + "/sdapi/v1/sd-models", auth=("alice", "s3cret"), timeout=10)
    assert right.status_code == 200
    generated = requests.post(url + "/sdapi/v1/txt2img", json={"steps": 1},
                              auth=("alice", "s3cret"), timeout=30)
    assert generated.status_code == 200
    assert requests.get(url + "/emulator/v1/faults", timeout=10).status_code == 200
    assert requests.get(url + "/adetailer/v1/ad_model", timeout=10).status_code == 200
    assert requests.get(url + "/sdapi/v1/nope", timeout=10).status_code == 404

"""The WebUI's answers parsed into typed results: the reference shapes (fixtures/) of every
route the runner reads, and every malformed body as BAD_RESPONSE, through the client on the fake
HTTP layer (fake_webui.py)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from stablenew.emulator.testing import INFO_KEYS
from stablenew.runner.webui_client import CONTROL_READ_TIMEOUT
from stablenew.runner.webui_errors import WebuiError, WebuiErrorKind
from stablenew.runner.webui_responses import GenerationResult, Progress, parse_progress
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.sdwebui.names import SchedulerEntry
from tests.runner.fake_webui import (
    PNG_SIGNATURE,
    Harness,
    Reply,
    fixture,
    json_reply,
)

# Parsing the reference shapes ----------------------------------------------------------------


def test_txt2img_parses_the_reference_response(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/txt2img", json_reply("txt2img_response.json"))
    payload = {"prompt": "a lighthouse at dusk, oil painting", "seed": 1234, "batch_size": 2}
    result = harness.client.txt2img(payload)
    assert isinstance(result, GenerationResult)
    assert len(result.images) == 2
    for png, seed in zip(result.images, (1234, 1235), strict=True):
        assert png.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(png))
        assert image.size == (8, 8)
        assert f"Seed: {seed}" in image.info["parameters"]
    assert set(result.info) >= INFO_KEYS
    assert result.info["all_seeds"] == [1234, 1235]
    assert result.info["extra_generation_params"]["ADetailer model"] == "face_yolov8n.pt"
    assert result.parameters["batch_size"] == 2
    [call] = harness.fake.calls
    assert call.body == payload
    assert call.timeout == (3.0, 600.0)


def test_img2img_and_extras_parse(harness: Harness) -> None:
    harness.fake.on("POST", "/sdapi/v1/img2img", json_reply("img2img_response.json"))
    harness.fake.on("POST", "/sdapi/v1/extra-single-image",
                    json_reply("extra_single_image_response.json"))
    result = harness.client.img2img({"init_images": ["..."], "denoising_strength": 0.35})
    assert len(result.images) == 1 and result.info["denoising_strength"] == 0.35
    assert set(result.info) >= INFO_KEYS
    upscaled = harness.client.extra_single_image({"image": "...", "upscaling_resize": 2})
    assert Image.open(io.BytesIO(upscaled)).size == (16, 16)


def test_images_may_carry_a_data_url_prefix(harness: Harness) -> None:
    body = fixture("txt2img_response.json")
    body["images"] = ["data:image/png;base64," + body["images"][0]]
    harness.fake.on("POST", "/sdapi/v1/txt2img", Reply(200, body))
    [png] = harness.client.txt2img({}).images
    assert png.startswith(PNG_SIGNATURE)


def test_progress_busy_and_idle(harness: Harness) -> None:
    harness.fake.on("GET", "/sdapi/v1/progress", json_reply("progress_busy.json"),
                    json_reply("progress_idle.json"))
    busy = harness.client.progress()
    assert busy == Progress(progress=0.4625, eta_relative=3.871, job_count=1, job_no=0,
                            sampling_step=9, sampling_steps=20, interrupted=False,
                            skipped=False, textinfo="")
    assert not busy.idle
    idle = harness.client.progress()
    assert idle.idle and idle.progress == 0.0
    call = harness.fake.calls[0]
    assert call.query == {"skip_current_image": "true"}
    assert call.timeout == (3.0, CONTROL_READ_TIMEOUT)


def test_options_models_and_lists(harness: Harness) -> None:
    client = harness.client
    assert client.options()["CLIP_stop_at_last_layers"] == 1
    assert client.loaded_model_title() == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    models = client.sd_models()
    assert models[0] == ModelEntry(
        "v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly", "6ce0161689",
        "/opt/stable-diffusion-webui/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
        "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa")
    assert models[2].hash == "" and models[2].title == "dreamshaper_8.safetensors"
    assert models[1].name == "SDXL/sd_xl_base_1.0.safetensors"
    assert client.samplers()[:3] == ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"]
    assert "Euler a" in client.samplers()
    schedulers = client.schedulers()
    assert [entry.name for entry in schedulers[:3]] == ["automatic", "uniform", "karras"]
    assert SchedulerEntry("sgm_uniform", "SGM Uniform", ("SGMUniform",)) in schedulers
    assert client.upscalers()[:3] == ["None", "Lanczos", "Nearest"]
    assert "R-ESRGAN 4x+" in client.upscalers()
    assert client.sd_vaes() == ["vae-ft-mse-840000-ema-pruned.safetensors",
                                "sdxl_vae.safetensors"]
    assert "face_yolov8n.pt" in client.adetailer_models()


def test_adetailer_not_installed_is_an_empty_list(harness: Harness) -> None:
    del harness.fake.routes[("GET", "/adetailer/v1/ad_model")]  # the fake answers 404
    assert harness.client.adetailer_models() == []
    assert harness.fake.count("GET", "/adetailer/v1/ad_model") == 1


def test_progress_fields_a_fork_leaves_out_count_as_zero() -> None:
    progress = parse_progress({"state": {"job_count": 1}}, "GET /sdapi/v1/progress")
    assert progress == Progress(progress=0.0, eta_relative=0.0, job_count=1, job_no=0,
                                sampling_step=0, sampling_steps=0, interrupted=False,
                                skipped=False, textinfo="")
    with pytest.raises(WebuiError) as caught:
        parse_progress({"progress": "half", "state": {}}, "GET /sdapi/v1/progress")
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE
    assert caught.value.endpoint == "GET /sdapi/v1/progress"


# Bodies that are not what the API promises ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "this is not json",
        {"parameters": {}, "info": "{}"},
        {"images": "abc", "parameters": {}, "info": "{}"},
        {"images": [], "parameters": {}, "info": {"seed": 1}},
        {"images": [], "parameters": {}, "info": "{not json"},
        {"images": [], "parameters": {}, "info": "[1, 2]"},
        {"images": ["!!! not base64 !!!"], "parameters": {}, "info": "{}"},
        {"images": [""], "parameters": {}, "info": "{}"},
        {"images": [None], "parameters": {}, "info": "{}"},
    ],
)
def test_bad_generation_responses(harness: Harness, body: Any) -> None:
    raw = isinstance(body, str)
    harness.fake.on("POST", "/sdapi/v1/txt2img", Reply(200, body, raw=raw))
    with pytest.raises(WebuiError) as caught:
        harness.client.txt2img({})
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE
    assert harness.fake.count("POST", "/sdapi/v1/txt2img") == 1


@pytest.mark.parametrize(
    ("method", "path", "call", "body"),
    [
        ("POST", "/sdapi/v1/extra-single-image", "extra", {"html_info": ""}),
        ("GET", "/sdapi/v1/progress", "progress", {"progress": 0.5}),
        ("GET", "/sdapi/v1/options", "options", ["not", "a", "dict"]),
        ("GET", "/sdapi/v1/samplers", "samplers", [{"label": "no name"}]),
        ("GET", "/sdapi/v1/sd-models", "models", [{"model_name": "no title"}]),
        ("GET", "/adetailer/v1/ad_model", "adetailer", {"models": []}),
    ],
)
def test_bad_shapes_elsewhere(harness: Harness, method: str, path: str, call: str,
                              body: Any) -> None:
    harness.fake.on(method, path, Reply(200, body))
    client = harness.client
    calls: dict[str, Callable[[], object]] = {
        "extra": lambda: client.extra_single_image({}), "progress": client.progress,
        "options": client.options, "samplers": client.samplers, "models": client.sd_models,
        "adetailer": client.adetailer_models}
    with pytest.raises(WebuiError) as caught:
        calls[call]()
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE


def test_loaded_model_title_needs_a_string(harness: Harness) -> None:
    harness.fake.on("GET", "/sdapi/v1/options", Reply(200, {"sd_vae": "Automatic"}))
    with pytest.raises(WebuiError) as caught:
        harness.client.loaded_model_title()
    assert caught.value.kind is WebuiErrorKind.BAD_RESPONSE

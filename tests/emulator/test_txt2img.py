"""txt2img: response shape, defaults, determinism, seeds, infotexts, samplers, validation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests

from stablenew.emulator.testing import INFO_KEYS, decode_png, info_of, png_parameters


def txt2img(url: str, **body: Any) -> requests.Response:
    return requests.post(url + "/sdapi/v1/txt2img", json=body, timeout=30)


def ok(url: str, **body: Any) -> dict[str, Any]:
    response = txt2img(url, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_empty_body_uses_every_default(url: str) -> None:
    body = ok(url, steps=3)
    assert set(body) == {"images", "parameters", "info"}
    assert isinstance(body["info"], str)
    info = info_of(body)
    assert set(info) == INFO_KEYS
    assert info["width"] == 512 and info["height"] == 512 and info["cfg_scale"] == 7.0
    assert info["sampler_name"] == "Euler" and info["batch_size"] == 1
    assert info["sd_model_name"] == "v1-5-pruned-emaonly"
    assert re.fullmatch(r"[0-9a-f]{10}", info["sd_model_hash"])
    assert re.fullmatch(r"\d{14}", info["job_timestamp"])
    assert info["version"] == "v1.10.1" and info["clip_skip"] == 1
    assert info["extra_generation_params"] == {} and info["index_of_first_image"] == 0
    assert len(body["images"]) == 1 and not body["images"][0].startswith("data:")


def test_parameters_echo_request_with_defaults(url: str) -> None:
    parameters = ok(url, prompt="p", steps="3", cfg_scale=5, unknown_key=1)["parameters"]
    assert parameters["steps"] == 3 and parameters["cfg_scale"] == 5.0
    assert "unknown_key" not in parameters
    assert parameters["seed"] == -1 and parameters["n_iter"] == 1
    assert parameters["sampler_name"] is None and parameters["sampler_index"] == "Euler"
    assert parameters["styles"] == [] and parameters["override_settings"] == {}
    assert parameters["denoising_strength"] == 0.75 and parameters["enable_hr"] is False
    assert parameters["send_images"] is True and parameters["alwayson_scripts"] == {}


def test_same_request_gives_byte_identical_images(url: str) -> None:
    request = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 42, "steps": 4}
    first, second = ok(url, **request), ok(url, **request)
    assert first["images"] == second["images"]


def test_different_seed_or_prompt_gives_different_pixels(url: str) -> None:
    base = decode_png(ok(url, prompt="a lighthouse", seed=1, steps=2)["images"][0])
    other_seed = decode_png(ok(url, prompt="a lighthouse", seed=2, steps=2)["images"][0])
    other_prompt = decode_png(ok(url, prompt="a castle", seed=1, steps=2)["images"][0])
    assert base.tobytes() != other_seed.tobytes()
    assert base.tobytes() != other_prompt.tobytes()


def test_batch_size_times_n_iter_images_with_consecutive_seeds(url: str) -> None:
    body = ok(url, prompt="x", seed=100, batch_size=2, n_iter=3, steps=2)
    info = info_of(body)
    assert len(body["images"]) == 6
    assert info["all_seeds"] == [100, 101, 102, 103, 104, 105] and info["seed"] == 100
    assert info["all_subseeds"] == [info["subseed"] + i for i in range(6)]
    assert len(info["infotexts"]) == 6 and len(info["all_prompts"]) == 6
    assert len({image for image in body["images"]}) == 6


def test_subseed_strength_keeps_one_seed(url: str) -> None:
    info = info_of(ok(url, seed=7, subseed=3, subseed_strength=0.5, batch_size=3, steps=2))
    assert info["all_seeds"] == [7, 7, 7] and info["all_subseeds"] == [3, 4, 5]
    assert "Variation seed: 3, Variation seed strength: 0.5" in info["infotexts"][0]


def test_random_seed_is_in_webui_range(url: str) -> None:
    info = info_of(ok(url, seed=-1, steps=1))
    assert 0 <= info["seed"] < 4294967294


def test_png_parameters_chunk_matches_infotexts(url: str) -> None:
    body = ok(url, prompt="a cat, on a mat", negative_prompt="dog", seed=5, steps=3,
              batch_size=2)
    info = info_of(body)
    for image, infotext in zip(body["images"], info["infotexts"], strict=True):
        assert png_parameters(image) == infotext
    lines = info["infotexts"][1].split("\n")
    assert lines[0] == "a cat, on a mat" and lines[1] == "Negative prompt: dog"
    assert lines[2].startswith("Steps: 3, Sampler: Euler, Schedule type: Automatic, "
                               "CFG scale: 7.0, Seed: 6, Size: 512x512, Model hash: ")
    assert lines[2].endswith("Version: v1.10.1")


def test_infotext_omits_empty_negative_prompt(url: str) -> None:
    infotext = info_of(ok(url, prompt="only positive", steps=1))["infotexts"][0]
    assert "Negative prompt" not in infotext
    assert infotext.split("\n")[1].startswith("Steps: 1,")


@pytest.mark.parametrize(("name", "sampler", "schedule"), [
    ("Euler a Karras", "Euler a", "Karras"),
    ("DPM++ 2M", "DPM++ 2M", "Karras"),
    ("UniPC", "UniPC", "Automatic"),
    ("No Such Sampler", "DPM++ 2M", "Karras"),
    ("no such sampler exponential", "DPM++ 2M", "Exponential"),
])
def test_sampler_name_split_and_fallback(url: str, name: str, sampler: str,
                                         schedule: str) -> None:
    info = info_of(ok(url, sampler_name=name, steps=1))
    assert info["sampler_name"] == sampler
    assert f"Sampler: {sampler}, Schedule type: {schedule}," in info["infotexts"][0]


def test_scheduler_field(url: str) -> None:
    info = info_of(ok(url, sampler_name="Euler", scheduler="karras", steps=1))
    assert "Sampler: Euler, Schedule type: Karras," in info["infotexts"][0]
    # The schedule that ran is in extra_generation_params, unless it is the model's own.
    assert info["extra_generation_params"]["Schedule type"] == "Karras"
    assert "Schedule type" not in info_of(ok(url, sampler_name="Euler", steps=1))[
        "extra_generation_params"]
    automatic = info_of(ok(url, sampler_name="DPM++ 2M", steps=1))
    assert automatic["extra_generation_params"]["Schedule type"] == "Karras"


def test_an_unknown_scheduler_runs_the_models_schedule_and_is_written_as_sent(url: str) -> None:
    info = info_of(ok(url, sampler_name="DPM++ 2M", scheduler="karas", steps=1))
    assert "Schedule type: karas," in info["infotexts"][0]
    assert "Schedule type" not in info["extra_generation_params"]
    assert ok(url, sampler_name="DPM++ 2M", scheduler="karas", steps=1, seed=3)["images"] != (
        ok(url, sampler_name="DPM++ 2M", scheduler="karras", steps=1, seed=3)["images"])


def test_unknown_override_checkpoint_is_dropped(url: str) -> None:
    info = info_of(ok(url, steps=1, override_settings={"sd_model_checkpoint": "nope"}))
    assert info["sd_model_name"] == "v1-5-pruned-emaonly"


def test_known_override_checkpoint_and_clip_skip(url: str) -> None:
    info = info_of(ok(url, steps=1, override_settings={
        "sd_model_checkpoint": "sd_xl_base_1.0", "CLIP_stop_at_last_layers": 2}))
    assert info["sd_model_name"] == "sd_xl_base_1.0" and info["sd_model_hash"] == "31e35c80fc"
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0]
    options = requests.get(url + "/sdapi/v1/options", timeout=10).json()
    assert options["sd_model_checkpoint"].startswith("v1-5-pruned-emaonly")


def test_hires_fix_upscales_and_reports(url: str) -> None:
    body = ok(url, steps=2, width=256, height=128, enable_hr=True, hr_scale=2,
              hr_upscaler="Latent", hr_second_pass_steps=3)
    info = info_of(body)
    assert decode_png(body["images"][0]).size == (512, 256)
    assert info["width"] == 256
    extra = info["extra_generation_params"]
    assert extra["Hires upscale"] == 2.0 and extra["Hires steps"] == 3
    assert extra["Hires upscaler"] == "Latent" and extra["Denoising strength"] == 0.75


def test_unknown_hr_upscaler_is_500(url: str) -> None:
    response = txt2img(url, enable_hr=True, hr_upscaler="Magic 9x", steps=1)
    assert response.status_code == 500
    assert response.json() == {"error": "Exception", "detail": "", "body": "",
                                "errors": "could not find upscaler named Magic 9x"}
    assert txt2img(url, enable_hr=False, hr_upscaler="Magic 9x", steps=1).status_code == 200


def test_an_empty_hr_upscaler_is_500_and_a_missing_one_is_the_latent_default(url: str) -> None:
    response = txt2img(url, enable_hr=True, hr_upscaler="", steps=1)
    assert response.status_code == 500
    assert response.json()["errors"] == "could not find upscaler named "
    info = info_of(ok(url, enable_hr=True, steps=1, width=64, height=64))
    assert "Hires upscaler" not in info["extra_generation_params"]


@pytest.mark.parametrize(("hr_scheduler", "reported"), [
    (None, None),  # left out: the first pass's scheduler again, nothing to write
    ("", "Karras"),  # "": Automatic, the hires sampler's own default
    ("uniform", "Uniform"),
])
def test_hr_scheduler_missing_copies_the_first_pass_and_empty_is_automatic(
        url: str, hr_scheduler: str | None, reported: str | None) -> None:
    body: dict[str, Any] = {"enable_hr": True, "steps": 1, "width": 64, "height": 64,
                            "sampler_name": "DPM++ 2M", "scheduler": "exponential"}
    if hr_scheduler is not None:
        body["hr_scheduler"] = hr_scheduler
    info = info_of(ok(url, **body))
    extra = info["extra_generation_params"]
    assert extra["Schedule type"] == "Exponential"
    assert extra.get("Hires schedule type") == reported


def test_refiner(url: str) -> None:
    response = txt2img(url, refiner_checkpoint="missing-model", steps=1)
    assert response.status_code == 500
    assert response.json()["errors"] == "Could not find checkpoint with name missing-model"
    info = info_of(ok(url, refiner_checkpoint="sd_xl_refiner", refiner_switch_at=0.8, steps=1))
    assert info["extra_generation_params"] == {"Refiner": "sd_xl_refiner_1.0 [7440042bbd]",
                                               "Refiner switch at": 0.8}


def test_send_images_false_and_grid_with_save_images(url: str) -> None:
    assert ok(url, steps=1, send_images=False)["images"] == []
    body = ok(url, steps=1, batch_size=2, save_images=True)
    info = info_of(body)
    assert len(body["images"]) == 3 and info["index_of_first_image"] == 1
    assert len(info["infotexts"]) == 3


def test_values_needing_quotes_are_json_quoted(url: str) -> None:
    infotext = info_of(ok(url, steps=1, enable_hr=True, hr_prompt="a, b"))["infotexts"][0]
    assert 'Hires prompt: "a, b"' in infotext


@pytest.mark.parametrize(("body", "loc", "kind"), [
    ({"steps": "many"}, ["body", "steps"], "type_error.integer"),
    ({"cfg_scale": "high"}, ["body", "cfg_scale"], "type_error.float"),
    ({"enable_hr": "perhaps"}, ["body", "enable_hr"], "type_error.bool"),
    ({"prompt": {"a": 1}}, ["body", "prompt"], "type_error.str"),
    ({"styles": ["ok", {"x": 1}]}, ["body", "styles", 1], "type_error.str"),
    ({"override_settings": []}, ["body", "override_settings"], "type_error.dict"),
])
def test_wrong_types_are_422(url: str, body: dict[str, Any], loc: list[Any],
                             kind: str) -> None:
    response = txt2img(url, **body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["type"] == kind and detail[0]["msg"]


def test_body_that_is_not_json_or_object_is_422(url: str) -> None:
    broken = requests.post(url + "/sdapi/v1/txt2img", data=b"{nope", timeout=10,
                           headers={"Content-Type": "application/json"})
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "value_error.jsondecode"
    listed = requests.post(url + "/sdapi/v1/txt2img", data=json.dumps([1]), timeout=10)
    assert listed.status_code == 422
    assert listed.json()["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize("scripts", [
    {"script_name": "Nonexistent Script"},
    {"alwayson_scripts": {"NoSuchExtension": {"args": []}}},
])
def test_unknown_scripts_are_422(url: str, scripts: dict[str, Any]) -> None:
    response = txt2img(url, steps=1, **scripts)
    assert response.status_code == 422
    name = scripts.get("script_name") or next(iter(scripts["alwayson_scripts"]))
    assert response.json()["detail"] == f"Script '{name}' not found"
    assert response.json()["error"] == "HTTPException"


def test_implicit_out_of_memory_for_huge_batches(url: str) -> None:
    response = txt2img(url, width=4096, height=4096, batch_size=2, steps=1)
    assert response.status_code == 500
    assert response.json()["error"] == "OutOfMemoryError"

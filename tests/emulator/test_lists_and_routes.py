"""The listing endpoints, the extension's routes, and routing errors."""

from __future__ import annotations

import re

import requests

from stablenew.emulator.testing import info_of


def get(url: str, path: str) -> requests.Response:
    return requests.get(url + path, timeout=10)


def test_sd_models_lists_plausible_checkpoints(url: str) -> None:
    models = get(url, "/sdapi/v1/sd-models").json()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} == set(models[0])
    names = [m["model_name"] for m in models]
    assert "v1-5-pruned-emaonly" in names
    assert any("xl" in name for name in names)
    for model in models:
        assert re.fullmatch(r"[0-9a-f]{10}", model["hash"])
        assert model["sha256"].startswith(model["hash"]) and len(model["sha256"]) == 64
        assert model["title"] == f"{model['filename'].rsplit('/', 1)[-1]} [{model['hash']}]"


def test_samplers_start_with_dpmpp_2m(url: str) -> None:
    samplers = get(url, "/sdapi/v1/samplers").json()
    assert samplers[0]["name"] == "DPM++ 2M"
    assert set(samplers[0]) == {"name", "aliases", "options"}
    names = {s["name"] for s in samplers}
    assert {"Euler a", "Euler", "DDIM", "UniPC", "LCM"} <= names


def test_schedulers(url: str) -> None:
    schedulers = get(url, "/sdapi/v1/schedulers").json()
    assert schedulers[0]["name"] == "automatic" and schedulers[0]["label"] == "Automatic"
    assert {"name", "label", "aliases"} <= set(schedulers[0])
    assert {"uniform", "karras", "exponential"} <= {s["name"] for s in schedulers}


def test_upscalers_and_latent_modes(url: str) -> None:
    upscalers = get(url, "/sdapi/v1/upscalers").json()
    assert set(upscalers[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    names = [u["name"] for u in upscalers]
    assert names[:3] == ["None", "Lanczos", "Nearest"]
    assert "R-ESRGAN 4x+" in names
    modes = get(url, "/sdapi/v1/latent-upscale-modes").json()
    assert {"name": "Latent"} in modes


def test_vae_memory_scripts_face_restorers(url: str) -> None:
    vaes = get(url, "/sdapi/v1/sd-vae").json()
    assert vaes and set(vaes[0]) == {"model_name", "filename"}
    memory = get(url, "/sdapi/v1/memory").json()
    assert set(memory["ram"]) == {"free", "used", "total"}
    assert memory["cuda"] == {"error": "unavailable"}
    scripts = get(url, "/sdapi/v1/scripts").json()
    assert "adetailer" in scripts["txt2img"] and "x/y/z plot" in scripts["img2img"]
    assert get(url, "/sdapi/v1/face-restorers").json()[0]["name"] == "CodeFormer"


def test_adetailer_routes(url: str) -> None:
    models = get(url, "/adetailer/v1/ad_model").json()["ad_model"]
    assert "face_yolov8n.pt" in models and "hand_yolov8n.pt" in models
    assert get(url, "/adetailer/v1/version").json() == {"version": "25.3.0"}


def test_checkpoint_maintenance_routes(url: str) -> None:
    assert requests.post(url + "/sdapi/v1/refresh-checkpoints", timeout=10).json() is None
    assert requests.post(url + "/sdapi/v1/unload-checkpoint", timeout=10).json() == {}
    assert requests.post(url + "/sdapi/v1/reload-checkpoint", timeout=10).json() == {}


def test_unknown_route_is_fastapi_404(url: str) -> None:
    response = get(url, "/sdapi/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert response.headers["Content-Type"] == "application/json"


def test_wrong_method_is_405(url: str) -> None:
    response = get(url, "/sdapi/v1/txt2img")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


def test_the_other_listing_routes_of_the_webui_answer_with_their_shapes(url: str) -> None:
    assert get(url, "/sdapi/v1/hypernetworks").json() == []
    assert get(url, "/sdapi/v1/prompt-styles").json() == []
    assert get(url, "/sdapi/v1/embeddings").json() == {"loaded": {}, "skipped": {}}
    realesrgan = get(url, "/sdapi/v1/realesrgan-models").json()
    assert {"name", "path", "scale"} == set(realesrgan[0])
    assert "R-ESRGAN 4x+" in [model["name"] for model in realesrgan]
    scripts = get(url, "/sdapi/v1/script-info").json()
    assert {"name", "is_alwayson", "is_img2img", "args"} == set(scripts[0])
    adetailer = [s for s in scripts if s["name"] == "adetailer"]
    assert [s["is_img2img"] for s in adetailer] == [False, True]
    assert all(s["is_alwayson"] for s in adetailer)
    (extension,) = get(url, "/sdapi/v1/extensions").json()
    assert extension["name"] == "adetailer" and extension["enabled"] is True
    assert set(extension) == {"name", "remote", "branch", "commit_hash", "commit_date",
                              "version", "enabled"}


def test_refresh_embeddings_answers_null(url: str) -> None:
    response = requests.post(url + "/sdapi/v1/refresh-embeddings", timeout=10)
    assert (response.status_code, response.json()) == (200, None)


def test_png_info_reads_an_images_infotext_back(url: str) -> None:
    made = requests.post(url + "/sdapi/v1/txt2img", timeout=30, json={
        "prompt": "a red door, at dusk", "negative_prompt": "blurry", "seed": 5, "steps": 3,
        "width": 64, "height": 64}).json()
    body = requests.post(url + "/sdapi/v1/png-info", json={"image": made["images"][0]},
                         timeout=10).json()
    assert body["info"] == info_of(made)["infotexts"][0]
    assert body["items"] == {}
    parameters = body["parameters"]
    assert (parameters["Prompt"], parameters["Negative prompt"]) == ("a red door, at dusk",
                                                                     "blurry")
    assert (parameters["Steps"], parameters["Seed"], parameters["Size"]) == ("3", "5", "64x64")
    missing = requests.post(url + "/sdapi/v1/png-info", json={}, timeout=10)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "image"]

"""ADetailer through alwayson_scripts: reported when it ran, silently skipped when it did not."""

from __future__ import annotations

from typing import Any

import requests

from stablenew.emulator.testing import info_of

BASE = {"prompt": "portrait", "seed": 11, "steps": 3}


def generate(url: str, args: Any = None, path: str = "/sdapi/v1/txt2img",
             **more: Any) -> dict[str, Any]:
    body = {**BASE, **more}
    if args is not None:
        body["alwayson_scripts"] = {"ADetailer": {"args": args}}
    response = requests.post(url + path, json=body, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def adetailer_keys(body: dict[str, Any]) -> dict[str, Any]:
    extra = info_of(body)["extra_generation_params"]
    return {k: v for k, v in extra.items() if k.startswith("ADetailer")}


def test_valid_pass_is_reported_and_alters_the_image(url: str) -> None:
    plain = generate(url)
    detailed = generate(url, [True, False, {"ad_model": "face_yolov8n.pt"}])
    assert adetailer_keys(detailed) == {
        "ADetailer model": "face_yolov8n.pt", "ADetailer confidence": 0.3,
        "ADetailer dilate erode": 4, "ADetailer mask blur": 4,
        "ADetailer denoising strength": 0.4, "ADetailer inpaint only masked": True,
        "ADetailer inpaint padding": 32, "ADetailer version": "25.3.0",
    }
    assert detailed["images"] != plain["images"]
    assert detailed["images"] == generate(url, [True, False,
                                                {"ad_model": "face_yolov8n.pt"}])["images"]
    infotext = info_of(detailed)["infotexts"][0]
    assert "ADetailer model: face_yolov8n.pt" in infotext
    assert infotext.endswith("ADetailer version: 25.3.0, Version: v1.10.1")


def test_second_tab_keys_have_ordinal_suffix(url: str) -> None:
    body = generate(url, [True, False, {"ad_model": "face_yolov8n.pt"},
                          {"ad_model": "hand_yolov8n.pt", "ad_prompt": "detailed hands",
                           "ad_confidence": 0.5}])
    keys = adetailer_keys(body)
    assert keys["ADetailer model 2nd"] == "hand_yolov8n.pt"
    assert keys["ADetailer prompt 2nd"] == "detailed hands"
    assert keys["ADetailer confidence 2nd"] == 0.5
    assert "ADetailer prompt" not in keys


def test_bare_list_of_dicts_works(url: str) -> None:
    body = generate(url, [{"ad_model": "mediapipe_face_full"}])
    assert adetailer_keys(body)["ADetailer model"] == "mediapipe_face_full"


def test_unknown_key_skips_adetailer_silently(url: str) -> None:
    plain = generate(url)
    body = generate(url, [True, False, {"ad_model": "face_yolov8n.pt", "ad_bogus_key": 1}])
    assert adetailer_keys(body) == {}
    assert body["images"] == plain["images"]


def test_unknown_model_skips_that_pass_silently(url: str) -> None:
    plain = generate(url)
    body = generate(url, [True, False, {"ad_model": "no_such_model.pt"}])
    assert adetailer_keys(body) == {}
    assert body["images"] == plain["images"]
    mixed = generate(url, [True, False, {"ad_model": "no_such_model.pt"},
                           {"ad_model": "hand_yolov8n.pt"}])
    keys = adetailer_keys(mixed)
    assert "ADetailer model" not in keys and keys["ADetailer model 2nd"] == "hand_yolov8n.pt"


def test_disabled_or_none_model_does_nothing(url: str) -> None:
    assert adetailer_keys(generate(url, [False, False, {"ad_model": "face_yolov8n.pt"}])) == {}
    assert adetailer_keys(generate(url, [True, False, {"ad_model": "None"}])) == {}


def test_bad_value_type_skips_adetailer(url: str) -> None:
    body = generate(url, [True, False, {"ad_model": "face_yolov8n.pt", "ad_confidence": "x"}])
    assert adetailer_keys(body) == {}


def test_adetailer_on_img2img(url: str) -> None:
    init = generate(url, width=64, height=64)["images"][0]
    body = generate(url, [True, False, {"ad_model": "face_yolov8s.pt"}],
                    path="/sdapi/v1/img2img", init_images=[init], width=64, height=64)
    assert adetailer_keys(body)["ADetailer model"] == "face_yolov8s.pt"

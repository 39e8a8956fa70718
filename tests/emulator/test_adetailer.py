"""ADetailer through alwayson_scripts as the v25.3 extension behaves: every valid tab is
reported before anything is detected, a bad tab is skipped and the rest renumbered, an unknown
model details nothing (still 200, still reported), a pass that detects nothing leaves the image
as it was, and skip_img2img leaves 1 step of Euler at 128x128 in the infotext."""

from __future__ import annotations

import base64
import io
from typing import Any

import requests
from PIL import Image

from stablenew.emulator import EmulatorServer
from stablenew.emulator.testing import info_of

BASE = {"prompt": "portrait", "seed": 11, "steps": 3}


def encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")


def pixels(body: dict[str, Any]) -> bytes:
    """The first image's pixels (its infotext chunk aside)."""
    return decode(body["images"][0]).tobytes()


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


def test_an_unknown_model_is_reported_but_details_nothing(url: str) -> None:
    plain = generate(url)
    body = generate(url, [True, False, {"ad_model": "no_such_model.pt"}])
    assert adetailer_keys(body)["ADetailer model"] == "no_such_model.pt"
    assert "ADetailer model: no_such_model.pt" in info_of(body)["infotexts"][0]
    assert pixels(body) == pixels(plain)
    # The extension raises at the unknown model: the passes after it do not run either.
    mixed = generate(url, [True, False, {"ad_model": "no_such_model.pt"},
                           {"ad_model": "hand_yolov8n.pt"}])
    keys = adetailer_keys(mixed)
    assert (keys["ADetailer model"], keys["ADetailer model 2nd"]) == ("no_such_model.pt",
                                                                      "hand_yolov8n.pt")
    assert pixels(mixed) == pixels(plain)
    # The passes before it did.
    before = generate(url, [True, False, {"ad_model": "hand_yolov8n.pt"},
                            {"ad_model": "no_such_model.pt"}])
    assert pixels(before) == pixels(generate(url, [True, False,
                                                  {"ad_model": "hand_yolov8n.pt"}]))
    assert pixels(before) != pixels(plain)


def test_one_bad_tab_of_three_is_skipped_and_the_rest_renumbered(url: str) -> None:
    body = generate(url, [True, False, {"ad_model": "face_yolov8n.pt"},
                          {"ad_model": "hand_yolov8n.pt", "ad_bogus_key": 1},
                          {"ad_model": "person_yolov8n-seg.pt"}])
    keys = adetailer_keys(body)
    assert keys["ADetailer model"] == "face_yolov8n.pt"
    assert keys["ADetailer model 2nd"] == "person_yolov8n-seg.pt"
    assert not [key for key in keys if key.endswith("3rd")]
    both = generate(url, [True, False, {"ad_model": "face_yolov8n.pt"},
                          {"ad_model": "person_yolov8n-seg.pt"}])
    assert pixels(body) == pixels(both)


def test_a_pass_that_detects_nothing_leaves_the_image_and_keeps_its_keys(
        url: str, emulator: EmulatorServer) -> None:
    plain = generate(url)
    emulator.faults.update({"adetailer_detect_nothing": "hand"})
    body = generate(url, [True, False, {"ad_model": "hand_yolov8n.pt"}])
    assert adetailer_keys(body)["ADetailer model"] == "hand_yolov8n.pt"
    assert pixels(body) == pixels(plain)
    # Only the passes the switch names find nothing.
    face = generate(url, [True, False, {"ad_model": "face_yolov8n.pt"}])
    assert pixels(face) != pixels(plain)
    emulator.faults.update({"adetailer_detect_nothing": "*"})
    nothing = generate(url, [True, False, {"ad_model": "face_yolov8n.pt"}])
    assert pixels(nothing) == pixels(plain)


def test_skip_img2img_reports_one_step_of_euler_at_128_and_returns_the_input_size(
        url: str, emulator: EmulatorServer) -> None:
    source = Image.new("RGB", (96, 72), (40, 90, 160))
    init = encode(source)
    body = generate(url, [True, True, {"ad_model": "face_yolov8n.pt"}],
                    path="/sdapi/v1/img2img", init_images=[init], width=96, height=72,
                    steps=20, sampler_name="DPM++ 2M", denoising_strength=0.0)
    info = info_of(body)
    assert (info["steps"], info["sampler_name"], info["width"], info["height"]) == (
        1, "Euler", 128, 128)
    params = info["infotexts"][0].rsplit("\n", 1)[-1]
    assert params.startswith("Steps: 1, Sampler: Euler, ") and "Size: 128x128" in params
    detailed = decode(body["images"][0])
    assert detailed.size == (96, 72) and detailed.tobytes() != source.tobytes()
    # Nothing detected: the input comes back pixel for pixel.
    emulator.faults.update({"adetailer_detect_nothing": "*"})
    body = generate(url, [True, True, {"ad_model": "face_yolov8n.pt"}],
                    path="/sdapi/v1/img2img", init_images=[init], width=96, height=72)
    assert pixels(body) == source.tobytes()


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

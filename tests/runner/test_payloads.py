"""Normalized job -> WebUI requests: the documented field names and values of every stage
(sdwebui-api.md), and the config-hash round trip executed_job(job, plan_requests(job)) that the
runner uses to prove it sends what was queued."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stablenew.contract.config_hash import config_hash
from stablenew.contract.model import (
    AdetailerPass,
    HiresFixConfig,
    Img2ImgConfig,
    NormalizedJob,
    RefinerConfig,
    ResizeMode,
    StageType,
    UpscaleConfig,
    UpscaleMode,
)
from stablenew.emulator import schema
from stablenew.runner.payloads import (
    EntryPlan,
    StageRequest,
    adetailer_script,
    comparable,
    executed_job,
    plan_requests,
)
from stablenew.sdwebui.adetailer_tabs import ARG_LABELS
from tests.runner.harness import ADETAILER, IMG2IMG, TXT2IMG, UPSCALE

# The request fields sdwebui-api.md documents, per endpoint.
TXT2IMG_FIELDS = {
    "prompt", "negative_prompt", "styles", "seed", "subseed", "subseed_strength",
    "seed_resize_from_h", "seed_resize_from_w", "sampler_name", "sampler_index", "scheduler",
    "batch_size", "n_iter", "steps", "cfg_scale", "width", "height", "restore_faces", "tiling",
    "denoising_strength", "override_settings", "override_settings_restore_afterwards",
    "refiner_checkpoint", "refiner_switch_at", "enable_hr", "hr_scale", "hr_upscaler",
    "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name",
    "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt", "send_images",
    "save_images", "alwayson_scripts", "script_name", "script_args", "infotext",
    "force_task_id",
}
HIRES_FIELDS = {name for name in TXT2IMG_FIELDS if name.startswith("hr_")} | {"enable_hr"}
IMG2IMG_FIELDS = (TXT2IMG_FIELDS - HIRES_FIELDS) | {
    "init_images", "resize_mode", "image_cfg_scale", "mask", "mask_blur", "inpainting_fill",
    "inpaint_full_res", "inpaint_full_res_padding", "inpainting_mask_invert",
    "include_init_images",
}
EXTRAS_FIELDS = {
    "image", "resize_mode", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h",
    "upscaling_crop", "upscaler_1", "upscaler_2", "extras_upscaler_2_visibility",
    "gfpgan_visibility", "codeformer_visibility", "codeformer_weight",
}
# The ADetailer tab keys the reference lists (an unknown key voids the whole tab).
ADETAILER_KEYS = {
    "ad_model", "ad_tab_enable", "ad_prompt", "ad_negative_prompt", "ad_confidence",
    "ad_mask_k", "ad_mask_min_ratio", "ad_mask_max_ratio", "ad_dilate_erode", "ad_mask_blur",
    "ad_denoising_strength", "ad_inpaint_only_masked", "ad_inpaint_only_masked_padding",
    "ad_use_steps", "ad_steps", "ad_use_cfg_scale", "ad_cfg_scale", "ad_use_sampler",
    "ad_sampler", "ad_scheduler", "ad_use_checkpoint", "ad_checkpoint", "ad_use_vae", "ad_vae",
    "ad_restore_face",
}


def rich_job(stages: list[StageType], **changes: Any) -> NormalizedJob:
    """Every output-affecting field away from its default."""
    job = NormalizedJob(
        index=2, prompt="a castle, <lora:detail:0.5>", negative_prompt="blurry",
        stage_plan=stages, seed=1234, subseed=99, subseed_strength=0.25,
        model="v1-5-pruned-emaonly", vae="vae-ft-mse-840000-ema-pruned.safetensors",
        sampler_name="DPM++ 2M", scheduler="Karras", width=512, height=768, steps=30,
        cfg_scale=7.5, batch_size=2, n_iter=3, clip_skip=2,
        hires_fix=HiresFixConfig(
            enabled=True, scale=1.5, upscaler="Latent", second_pass_steps=10, resize_x=0,
            resize_y=0, denoising_strength=0.45, checkpoint="dreamshaper_8",
            sampler_name="Euler a", scheduler="karras", prompt="hires prompt",
            negative_prompt="hires negative"),
        refiner=RefinerConfig(enabled=True, checkpoint="sd_xl_refiner_1.0", switch_at=0.8),
        img2img=Img2ImgConfig(denoising_strength=0.3, resize_mode=ResizeMode.CROP_AND_RESIZE,
                              steps=20, cfg_scale=6.0, sampler_name="Euler",
                              scheduler="Uniform"),
        adetailer_passes=[
            AdetailerPass(model="face_yolov8n.pt", prompt="detailed face",
                          negative_prompt="ugly", confidence=0.35, mask_blur=5, dilate_erode=6,
                          denoising_strength=0.45, inpaint_only_masked=True,
                          inpaint_padding=40),
            AdetailerPass(model="hand_yolov8n.pt", confidence=0.5, mask_blur=4, dilate_erode=4,
                          denoising_strength=0.3, inpaint_only_masked=False, inpaint_padding=0,
                          steps=12, cfg_scale=5.0, sampler_name="Euler a"),
        ],
        upscale=UpscaleConfig(mode=UpscaleMode.EXTRAS, upscaler="R-ESRGAN 4x+", factor=2.5,
                              upscaler_2="Lanczos", upscaler_2_visibility=0.3))
    for name, value in changes.items():
        setattr(job, name, value)
    job.config_hash = config_hash(job)
    return job


def request_for(plan: EntryPlan, stage: StageType) -> StageRequest:
    return next(request for request in plan.requests if request.stage == stage)


def hashes_match(job: NormalizedJob, plan: EntryPlan) -> bool:
    return config_hash(comparable(executed_job(job, plan))) == config_hash(comparable(job))


# --- txt2img -----------------------------------------------------------------------------------


def test_txt2img_sends_the_generation_hires_fix_and_refiner_fields() -> None:
    job = rich_job([TXT2IMG])
    request = plan_requests(job).requests[0]
    assert (request.stage, request.endpoint) == (TXT2IMG, "txt2img")
    body = request.body
    assert set(body) <= TXT2IMG_FIELDS
    assert body == {
        "prompt": "a castle, <lora:detail:0.5>", "negative_prompt": "blurry", "seed": 1234,
        "subseed": 99, "subseed_strength": 0.25, "sampler_name": "DPM++ 2M",
        "scheduler": "Karras", "steps": 30, "cfg_scale": 7.5, "width": 512, "height": 768,
        "batch_size": 2, "n_iter": 3, "send_images": True, "save_images": False,
        "override_settings": {"CLIP_stop_at_last_layers": 2},
        "override_settings_restore_afterwards": True,
        "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "hr_second_pass_steps": 10,
        "hr_resize_x": 0, "hr_resize_y": 0, "denoising_strength": 0.45,
        "hr_checkpoint_name": "dreamshaper_8", "hr_sampler_name": "Euler a",
        "hr_scheduler": "karras", "hr_prompt": "hires prompt",
        "hr_negative_prompt": "hires negative",
        "refiner_checkpoint": "sd_xl_refiner_1.0", "refiner_switch_at": 0.8,
    }
    assert not request.adetailer_tabs


def test_hires_text_fields_left_empty_are_not_sent() -> None:
    # "" is a value to the WebUI: hr_upscaler "" is a 500 "could not find upscaler named",
    # hr_scheduler "" runs Automatic; absent, they are the latent default and the first pass's
    # scheduler.
    job = rich_job([TXT2IMG], hires_fix=HiresFixConfig(enabled=True, scale=2.0,
                                                       denoising_strength=0.5))
    body = plan_requests(job).requests[0].body
    assert not {key for key, value in body.items() if value == ""}
    assert not {"hr_upscaler", "hr_scheduler", "hr_sampler_name", "hr_checkpoint_name",
                "hr_prompt", "hr_negative_prompt"} & set(body)
    assert (body["enable_hr"], body["hr_scale"]) == (True, 2.0)
    assert hashes_match(job, plan_requests(job))


@pytest.mark.parametrize("stages", [[TXT2IMG, IMG2IMG, ADETAILER, UPSCALE], [IMG2IMG, UPSCALE],
                                    [TXT2IMG, ADETAILER], [UPSCALE]])
def test_every_key_sent_is_a_field_of_the_webuis_request_models(stages: list[StageType]) -> None:
    # The emulator's request models are the WebUI v1.10.1 API models field for field; a key
    # they lack would be dropped without a word by the real WebUI.
    job = rich_job(stages, input_images=["in.png"])
    models = {"txt2img": schema.TXT2IMG, "img2img": schema.IMG2IMG,
              "extra-single-image": schema.EXTRAS_SINGLE}
    for request in plan_requests(job).requests:
        fields = {spec.name for spec in models[request.endpoint]}
        assert set(request.body) <= fields, request.endpoint
        for tab in request.adetailer_tabs:
            assert set(tab) <= set(ARG_LABELS)


def test_txt2img_without_hires_refiner_scheduler_or_clip_skip_leaves_them_to_the_webui() -> None:
    job = rich_job([TXT2IMG], hires_fix=HiresFixConfig(enabled=False, scale=2.0),
                   refiner=RefinerConfig(enabled=False, checkpoint="sd_xl_refiner_1.0"),
                   scheduler="", clip_skip=0)
    body = plan_requests(job).requests[0].body
    assert not set(body) & (HIRES_FIELDS | {"refiner_checkpoint", "refiner_switch_at"})
    assert "denoising_strength" not in body
    assert "scheduler" not in body  # null in the WebUI: automatic
    assert body["override_settings"] == {}


def test_the_plan_carries_model_and_vae_and_one_request_per_stage_in_order() -> None:
    job = rich_job([TXT2IMG, IMG2IMG, ADETAILER, UPSCALE])
    plan = plan_requests(job)
    assert (plan.model, plan.vae) == (job.model, job.vae)
    assert [r.stage for r in plan.requests] == [TXT2IMG, IMG2IMG, ADETAILER, UPSCALE]
    assert [r.endpoint for r in plan.requests] == [
        "txt2img", "img2img", "img2img", "extra-single-image"]
    # Input images are filled in while running, never built into the plan.
    assert all("init_images" not in r.body and "image" not in r.body for r in plan.requests)


# --- img2img -----------------------------------------------------------------------------------


def test_img2img_as_the_first_stage_generates_the_whole_batch() -> None:
    job = rich_job([IMG2IMG], input_images=["in/a.png"])
    request = plan_requests(job).requests[0]
    assert (request.stage, request.endpoint) == (IMG2IMG, "img2img")
    body = request.body
    assert set(body) <= IMG2IMG_FIELDS
    assert {key: body[key] for key in (
        "prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "width", "height",
        "batch_size", "n_iter", "denoising_strength", "resize_mode", "steps", "cfg_scale",
        "sampler_name", "scheduler")} == {
        "prompt": job.prompt, "negative_prompt": "blurry", "seed": 1234, "subseed": 99,
        "subseed_strength": 0.25, "width": 512, "height": 768, "batch_size": 2, "n_iter": 3,
        "denoising_strength": 0.3, "resize_mode": 1, "steps": 20, "cfg_scale": 6.0,
        "sampler_name": "Euler", "scheduler": "Uniform"}
    assert body["override_settings"] == {"CLIP_stop_at_last_layers": 2}


def test_img2img_after_a_generation_refines_each_image_once() -> None:
    job = rich_job([TXT2IMG, IMG2IMG])
    body = request_for(plan_requests(job), IMG2IMG).body
    assert set(body) <= IMG2IMG_FIELDS
    assert (body["batch_size"], body["n_iter"]) == (1, 1)
    assert (body["denoising_strength"], body["resize_mode"], body["steps"]) == (0.3, 1, 20)


# The WebUI's img2img resize_mode: 0 just resize (its default, and the enum's UNSPECIFIED),
# 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale).
@pytest.mark.parametrize(("mode", "webui_number"), [
    (ResizeMode.UNSPECIFIED, 0), (ResizeMode.CROP_AND_RESIZE, 1),
    (ResizeMode.RESIZE_AND_FILL, 2), (ResizeMode.LATENT_UPSCALE, 3)])
def test_img2img_sends_the_webui_its_own_resize_mode_number(mode: ResizeMode,
                                                            webui_number: int) -> None:
    job = rich_job([TXT2IMG, IMG2IMG])
    job.img2img.resize_mode = mode
    requests = plan_requests(job)
    # The JSON body holds the plain number, as before the field became an enum.
    assert json.dumps(request_for(requests, IMG2IMG).body["resize_mode"]) == str(webui_number)
    assert executed_job(job, requests).img2img.resize_mode is mode
    assert hashes_match(job, requests)


def test_img2img_settings_left_at_zero_run_as_the_generation() -> None:
    job = rich_job([TXT2IMG, IMG2IMG], img2img=Img2ImgConfig(denoising_strength=0.5))
    body = request_for(plan_requests(job), IMG2IMG).body
    assert (body["steps"], body["cfg_scale"], body["sampler_name"], body["scheduler"]) == (
        30, 7.5, "DPM++ 2M", "Karras")
    assert body["denoising_strength"] == 0.5


# --- ADetailer ---------------------------------------------------------------------------------


def test_adetailer_runs_through_alwayson_scripts_with_only_known_keys() -> None:
    job = rich_job([TXT2IMG, ADETAILER])
    request = request_for(plan_requests(job), ADETAILER)
    assert request.endpoint == "img2img"
    assert [tab["ad_model"] for tab in request.adetailer_tabs] == [
        "face_yolov8n.pt", "hand_yolov8n.pt"]
    body = request.body
    assert set(body) <= IMG2IMG_FIELDS
    # One image at a time, and skip_img2img (args[1]) so only ADetailer changes it.
    assert (body["batch_size"], body["n_iter"], body["denoising_strength"]) == (1, 1, 0.0)
    # Each pass is a call of its own: one tab, after enable and skip_img2img.
    assert "alwayson_scripts" not in body
    first, second = request.adetailer_tabs
    assert adetailer_script(first) == {"ADetailer": {"args": [True, True, first]}}
    assert set(first) <= ADETAILER_KEYS and set(second) <= ADETAILER_KEYS
    assert first == {
        "ad_model": "face_yolov8n.pt", "ad_tab_enable": True, "ad_prompt": "detailed face",
        "ad_negative_prompt": "ugly", "ad_confidence": 0.35, "ad_mask_blur": 5,
        "ad_dilate_erode": 6, "ad_denoising_strength": 0.45, "ad_inpaint_only_masked": True,
        "ad_inpaint_only_masked_padding": 40}
    assert second == {
        "ad_model": "hand_yolov8n.pt", "ad_tab_enable": True, "ad_prompt": "",
        "ad_negative_prompt": "", "ad_confidence": 0.5, "ad_mask_blur": 4,
        "ad_dilate_erode": 4, "ad_denoising_strength": 0.3, "ad_inpaint_only_masked": False,
        "ad_inpaint_only_masked_padding": 0, "ad_use_steps": True, "ad_steps": 12,
        "ad_use_cfg_scale": True, "ad_cfg_scale": 5.0, "ad_use_sampler": True,
        "ad_sampler": "Euler a"}


# --- upscale -----------------------------------------------------------------------------------


def test_extras_upscale_sends_the_postprocessing_fields() -> None:
    job = rich_job([TXT2IMG, UPSCALE])
    request = request_for(plan_requests(job), UPSCALE)
    assert request.endpoint == "extra-single-image"
    assert set(request.body) <= EXTRAS_FIELDS
    assert request.body == {"resize_mode": 0, "upscaling_resize": 2.5,
                            "upscaler_1": "R-ESRGAN 4x+", "upscaler_2": "Lanczos",
                            "extras_upscaler_2_visibility": 0.3}


@pytest.mark.parametrize("mode", [UpscaleMode.EXTRAS, UpscaleMode.UNSPECIFIED])
def test_extras_upscale_without_a_second_upscaler_names_none(mode: UpscaleMode) -> None:
    job = rich_job([TXT2IMG, UPSCALE], upscale=UpscaleConfig(mode=mode, upscaler="Lanczos",
                                                             factor=2.0))
    request = request_for(plan_requests(job), UPSCALE)
    assert request.endpoint == "extra-single-image"
    assert request.body["upscaler_1"] == "Lanczos"
    assert request.body["upscaler_2"] == "None"
    assert request.body["extras_upscaler_2_visibility"] == 0.0


def test_img2img_upscale_resizes_by_the_factor_one_image_at_a_time() -> None:
    job = rich_job([TXT2IMG, UPSCALE], upscale=UpscaleConfig(
        mode=UpscaleMode.IMG2IMG, upscaler="R-ESRGAN 4x+", factor=1.5, denoising_strength=0.2))
    request = request_for(plan_requests(job), UPSCALE)
    assert (request.endpoint, request.scale) == ("img2img", 1.5)
    body = request.body
    assert set(body) <= IMG2IMG_FIELDS
    assert (body["denoising_strength"], body["resize_mode"], body["batch_size"],
            body["n_iter"]) == (0.2, 0, 1, 1)
    assert body["prompt"] == job.prompt


# --- the config-hash round trip ------------------------------------------------------------------


def test_the_requests_of_a_rich_job_hash_like_the_job() -> None:
    for stages in ([TXT2IMG], [TXT2IMG, IMG2IMG, ADETAILER, UPSCALE], [TXT2IMG, ADETAILER],
                   [TXT2IMG, UPSCALE]):
        job = rich_job(stages)
        assert hashes_match(job, plan_requests(job)), stages


def test_upscale_only_and_img2img_only_plans_hash_like_the_job() -> None:
    upscale_only = rich_job([UPSCALE], input_images=["a.png", "b.png"], batch_size=1, n_iter=1)
    assert hashes_match(upscale_only, plan_requests(upscale_only))
    as_generation = rich_job([IMG2IMG, ADETAILER], input_images=["a.png"],
                             img2img=Img2ImgConfig(denoising_strength=0.6,
                                                   resize_mode=ResizeMode.RESIZE_AND_FILL))
    assert hashes_match(as_generation, plan_requests(as_generation))


def test_img2img_first_stage_with_its_own_settings_hashes_like_the_job() -> None:
    job = rich_job([IMG2IMG], input_images=["a.png"])  # steps 30, img2img.steps 20
    assert hashes_match(job, plan_requests(job))


def test_a_literal_none_upscaler_cannot_be_told_from_no_upscaler() -> None:
    """upscaler "" and "None" both send upscaler_1 "None": the runner cannot prove which one
    was queued, so "None" is refused (this is how the e2e tests build a mismatch)."""
    job = rich_job([TXT2IMG, UPSCALE], upscale=UpscaleConfig(
        mode=UpscaleMode.EXTRAS, upscaler="None", factor=2.0))
    assert not hashes_match(job, plan_requests(job))


@pytest.mark.parametrize(("stage", "key", "value"), [
    (TXT2IMG, "steps", 31), (TXT2IMG, "prompt", "another prompt"), (TXT2IMG, "seed", 1235),
    (TXT2IMG, "hr_scale", 2.0), (TXT2IMG, "refiner_switch_at", 0.5),
    (TXT2IMG, "override_settings", {}), (IMG2IMG, "denoising_strength", 0.9),
    (IMG2IMG, "steps", 21), (UPSCALE, "upscaling_resize", 4.0), (UPSCALE, "upscaler_1", "Lanczos"),
], ids=lambda value: getattr(value, "name", str(value)).lower())
def test_a_corrupted_request_is_detected(stage: StageType, key: str, value: Any) -> None:
    job = rich_job([TXT2IMG, IMG2IMG, ADETAILER, UPSCALE])
    plan = plan_requests(job)
    request_for(plan, stage).body[key] = value
    assert not hashes_match(job, plan)


def test_a_corrupted_adetailer_tab_is_detected() -> None:
    job = rich_job([TXT2IMG, ADETAILER])
    plan = plan_requests(job)
    request_for(plan, ADETAILER).adetailer_tabs[1]["ad_confidence"] = 0.9
    assert not hashes_match(job, plan)


@pytest.mark.parametrize(("stage", "key", "value"), [
    (ADETAILER, "steps", 31), (ADETAILER, "prompt", "another prompt"),
    (UPSCALE, "cfg_scale", 3.0),
], ids=lambda value: getattr(value, "name", str(value)).lower())
def test_a_corrupted_generation_field_of_an_adetailer_or_img2img_upscale_is_detected(
        stage: StageType, key: str, value: Any) -> None:
    job = rich_job([TXT2IMG, ADETAILER, UPSCALE], upscale=UpscaleConfig(
        mode=UpscaleMode.IMG2IMG, factor=1.5, denoising_strength=0.2))
    plan = plan_requests(job)
    request_for(plan, stage).body[key] = value
    assert not hashes_match(job, plan)


# --- the same, for a variety of generated jobs -------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                max_size=12)
_fraction = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
_positive = st.floats(min_value=0.5, max_value=30.0, allow_nan=False)
_upscaler = st.sampled_from(["", "Lanczos", "R-ESRGAN 4x+", "Nearest"])
_sampler = st.sampled_from(["", "Euler a", "DPM++ 2M", "UniPC"])
_scheduler = st.sampled_from(["", "Karras", "Automatic", "exponential"])
_STAGES = (TXT2IMG, IMG2IMG, ADETAILER, UPSCALE)


@st.composite
def stage_plans(draw: st.DrawFn) -> list[StageType]:
    """Legal plans: a non-empty subset in the order txt2img, img2img, ADetailer, upscale, with
    a generation stage before ADetailer."""
    chosen = draw(st.lists(st.sampled_from(_STAGES), min_size=1, max_size=4, unique=True))
    plan = sorted(chosen)
    if ADETAILER in plan and not {TXT2IMG, IMG2IMG} & set(plan):
        plan.insert(0, draw(st.sampled_from([TXT2IMG, IMG2IMG])))
    return plan


@st.composite
def adetailer_passes(draw: st.DrawFn) -> AdetailerPass:
    return AdetailerPass(
        model=draw(st.sampled_from(["face_yolov8n.pt", "hand_yolov8n.pt",
                                    "mediapipe_face_full"])),
        prompt=draw(_text), negative_prompt=draw(_text), confidence=draw(_fraction),
        mask_blur=draw(st.integers(0, 64)), dilate_erode=draw(st.integers(-32, 32)),
        denoising_strength=draw(_fraction), inpaint_only_masked=draw(st.booleans()),
        inpaint_padding=draw(st.integers(0, 256)), steps=draw(st.integers(0, 50)),
        cfg_scale=draw(st.one_of(st.just(0.0), _positive)), sampler_name=draw(_sampler))


@st.composite
def normalized_jobs(draw: st.DrawFn) -> NormalizedJob:
    plan = draw(stage_plans())
    job = NormalizedJob(
        index=draw(st.integers(0, 100)), prompt=draw(_text), negative_prompt=draw(_text),
        stage_plan=plan, seed=draw(st.integers(0, 2**32 - 2)),
        subseed=draw(st.integers(0, 2**32 - 2)), subseed_strength=draw(_fraction),
        model=draw(st.sampled_from(["v1-5-pruned-emaonly", "dreamshaper_8", ""])),
        vae=draw(st.sampled_from(["", "Automatic", "sdxl_vae.safetensors"])),
        sampler_name=draw(_sampler.filter(bool)), scheduler=draw(_scheduler),
        width=draw(st.integers(8, 256)) * 8, height=draw(st.integers(8, 256)) * 8,
        steps=draw(st.integers(1, 150)), cfg_scale=draw(_positive),
        batch_size=draw(st.integers(1, 8)), n_iter=draw(st.integers(1, 8)),
        clip_skip=draw(st.integers(0, 12)))
    if draw(st.booleans()):
        job.hires_fix = HiresFixConfig(
            enabled=draw(st.booleans()), scale=draw(st.floats(1.0, 4.0)), upscaler=draw(_upscaler),
            second_pass_steps=draw(st.integers(0, 50)), resize_x=draw(st.integers(0, 2048)),
            resize_y=draw(st.integers(0, 2048)), denoising_strength=draw(_fraction),
            checkpoint=draw(st.sampled_from(["", "dreamshaper_8"])),
            sampler_name=draw(_sampler), scheduler=draw(_scheduler), prompt=draw(_text),
            negative_prompt=draw(_text))
    if draw(st.booleans()):
        job.refiner = RefinerConfig(enabled=draw(st.booleans()),
                                    checkpoint=draw(st.sampled_from(["", "sd_xl_refiner_1.0"])),
                                    switch_at=draw(_fraction))
    if IMG2IMG in plan or draw(st.booleans()):
        job.img2img = Img2ImgConfig(
            denoising_strength=draw(_fraction), resize_mode=draw(st.sampled_from(ResizeMode)),
            steps=draw(st.integers(0, 150)), cfg_scale=draw(st.one_of(st.just(0.0), _positive)),
            sampler_name=draw(_sampler), scheduler=draw(_scheduler))
    if ADETAILER in plan or draw(st.booleans()):
        job.adetailer_passes = draw(st.lists(adetailer_passes(), min_size=1, max_size=3))
    if UPSCALE in plan or draw(st.booleans()):
        job.upscale = UpscaleConfig(
            mode=draw(st.sampled_from(list(UpscaleMode))), upscaler=draw(_upscaler),
            factor=draw(st.floats(1.0, 4.0)), denoising_strength=draw(_fraction),
            upscaler_2=draw(_upscaler), upscaler_2_visibility=draw(_fraction))
    if plan[0] in (IMG2IMG, UPSCALE):
        job.input_images = draw(st.lists(st.sampled_from(["a.png", "dir/b.png"]), min_size=1,
                                         max_size=2))
    job.config_hash = config_hash(job)
    return job


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalized_jobs())
def test_executed_job_of_the_planned_requests_hashes_like_the_job(job: NormalizedJob) -> None:
    plan = plan_requests(job)
    executed = executed_job(job, plan)
    assert executed.stage_plan == job.stage_plan
    assert config_hash(comparable(executed)) == config_hash(comparable(job))


def _corrupt(plan: EntryPlan) -> None:
    """Change one value the WebUI would act on in the first request that carries it."""
    for request in plan.requests:
        if request.stage in (TXT2IMG, IMG2IMG):
            request.body["steps"] += 1
            return
    request = plan.requests[0]
    if request.endpoint == "extra-single-image":
        request.body["upscaling_resize"] += 0.5
    else:
        request.scale += 0.5


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalized_jobs())
def test_a_corrupted_request_never_hashes_like_the_job(job: NormalizedJob) -> None:
    plan = plan_requests(job)
    corrupted = copy.deepcopy(plan)
    _corrupt(corrupted)
    assert config_hash(comparable(executed_job(job, corrupted))) != config_hash(
        comparable(job))
    # The uncorrupted plan still matches: the change alone made the difference.
    assert hashes_match(job, plan)

"""What a reply says ran, compared with the request (webui_report.py), and the names checked
before anything is sent (preflight.py): without HTTP, on replies shaped as the WebUI's."""

from __future__ import annotations

from typing import Any

import pytest

from stablenew.contract.model import AdetailerPass, HiresFixConfig, StageType, UpscaleConfig
from stablenew.runner.domain import Capabilities
from stablenew.runner.payloads import adetailer_arguments, plan_requests
from stablenew.runner.preflight import unknown_names
from stablenew.runner.webui_errors import WebuiError
from stablenew.runner.webui_report import (
    Mismatch,
    Report,
    adetailer_mismatches,
    generation_mismatches,
    model_mismatches,
)
from stablenew.runner.webui_responses import GenerationResult
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.sdwebui.names import SchedulerEntry
from tests.runner.harness import ADETAILER, TXT2IMG, UPSCALE, face_pass, make_job

SCHEDULERS = [SchedulerEntry("automatic", "Automatic"), SchedulerEntry("karras", "Karras"),
              SchedulerEntry("sgm_uniform", "SGM Uniform", ("SGMUniform",))]
CAPABILITIES = Capabilities(
    samplers=["DPM++ 2M", "Euler a", "Euler"], schedulers=["automatic", "karras"],
    upscalers=["None", "Lanczos", "R-ESRGAN 4x+"], adetailer_models=["face_yolov8n.pt"],
    scheduler_entries=SCHEDULERS, latent_upscale_modes=["Latent"])
BODY = {"sampler_name": "Euler a", "steps": 20, "cfg_scale": 7.0, "width": 512,
        "height": 512, "seed": 42}


def reply(**info: Any) -> Report:
    base = {"sampler_name": "Euler a", "steps": 20, "cfg_scale": 7.0, "width": 512,
            "height": 512, "seed": 42, "sd_model_name": "v1-5-pruned-emaonly",
            "sd_model_hash": "6ce0161689", "extra_generation_params": {}}
    return Report.of(GenerationResult([], base | info, {}), "POST /sdapi/v1/txt2img")


def test_a_faithful_reply_has_no_mismatch() -> None:
    assert generation_mismatches(BODY, reply(), CAPABILITIES) == []


def test_each_substituted_value_is_named_with_both_values() -> None:
    found = generation_mismatches(BODY, reply(sampler_name="DPM++ 2M", steps=1, width=128,
                                              seed=7), CAPABILITIES)
    assert {str(m) for m in found} == {
        "sampler_name: asked for 'Euler a', the WebUI ran 'DPM++ 2M'",
        "steps: asked for 20, the WebUI ran 1", "width: asked for 512, the WebUI ran 128",
        "seed: asked for 42, the WebUI ran 7"}


def test_a_scheduler_at_the_end_of_the_sampler_name_is_split_off_as_the_webui_does() -> None:
    body = BODY | {"sampler_name": "Euler a Karras"}
    assert generation_mismatches(body, reply(extra_generation_params={
        "Schedule type": "Karras"}), CAPABILITIES) == []
    assert generation_mismatches(body, reply(), CAPABILITIES) == [
        Mismatch("scheduler", "karras", "Automatic")]
    # There an alias names its scheduler too.
    by_alias = BODY | {"sampler_name": "Euler a SGMUniform"}
    assert generation_mismatches(by_alias, reply(extra_generation_params={
        "Schedule type": "SGM Uniform"}), CAPABILITIES) == []


@pytest.mark.parametrize(("asked", "ran", "matches"), [
    ("karras", "Karras", True), ("Karras", "Karras", True), ("sgm_uniform", "SGM Uniform", True),
    # A request's scheduler is looked up by its exact name or label (sdwebui.names): an alias
    # only ends a sampler name, so as `scheduler` it means automatic, not SGM Uniform.
    ("SGMUniform", "SGM Uniform", False),
    ("karras", None, False),  # no named schedule ran: the model's own
    ("Automatic", None, True), ("", "Karras", True),  # left to the sampler
])
def test_the_scheduler_is_read_from_extra_generation_params(asked: str, ran: str | None,
                                                            matches: bool) -> None:
    extra = {"Schedule type": ran} if ran else {}
    found = generation_mismatches(BODY | {"scheduler": asked},
                                  reply(extra_generation_params=extra), CAPABILITIES)
    assert (found == []) is matches


def test_hires_keys_are_compared_when_sent() -> None:
    body = BODY | {"enable_hr": True, "hr_upscaler": "R-ESRGAN 4x+", "hr_second_pass_steps": 8}
    faithful = reply(extra_generation_params={"Hires upscaler": "R-ESRGAN 4x+",
                                              "Hires steps": 8})
    assert generation_mismatches(body, faithful, CAPABILITIES) == []
    assert generation_mismatches(body, reply(extra_generation_params={
        "Hires steps": 8}), CAPABILITIES) == [Mismatch("hr_upscaler", "R-ESRGAN 4x+", None)]


def test_the_model_is_compared_by_name_or_short_hash() -> None:
    model = ModelEntry("v1-5-pruned-emaonly.safetensors [6ce0161689]", "v1-5-pruned-emaonly",
                       "6ce0161689")
    assert model_mismatches(reply(), model) == []
    assert model_mismatches(reply(), None) == []
    other = reply(sd_model_name="dreamshaper_8", sd_model_hash="879db523c3")
    assert model_mismatches(other, model) == [
        Mismatch("model", model.title, "dreamshaper_8 [879db523c3]")]


def tab_reply(**params: Any) -> Report:
    return reply(steps=1, sampler_name="Euler", width=128, height=128,
                 extra_generation_params=params)


def test_an_adetailer_tab_is_checked_against_the_keys_the_extension_reports() -> None:
    tab = adetailer_arguments(face_pass())
    keys = {"ADetailer model": "face_yolov8n.pt", "ADetailer confidence": 0.3,
            "ADetailer dilate erode": 4, "ADetailer mask blur": 4,
            "ADetailer denoising strength": 0.4, "ADetailer inpaint only masked": True,
            "ADetailer inpaint padding": 32, "ADetailer version": "25.3.0"}
    assert adetailer_mismatches(tab, tab_reply(**keys)) == []
    # No keys: the extension did not take the tab (not installed, or the tab was invalid).
    assert adetailer_mismatches(tab, tab_reply()) == [Mismatch("ad_model", "face_yolov8n.pt",
                                                               None)]
    # "inpaint only masked" is left out when off, and its padding with it.
    off = keys.copy()
    del off["ADetailer inpaint only masked"], off["ADetailer inpaint padding"]
    assert adetailer_mismatches(tab, tab_reply(**off)) == [
        Mismatch("ad_inpaint_only_masked", True, False)]
    assert adetailer_mismatches(tab, tab_reply(**keys | {"ADetailer mask blur": 0})) == [
        Mismatch("ad_mask_blur", 4, 0)]


def test_an_adetailer_call_whose_img2img_was_not_skipped_is_a_mismatch() -> None:
    tab = adetailer_arguments(AdetailerPass(model="face_yolov8n.pt", confidence=0.3))
    keys = {"ADetailer model": "face_yolov8n.pt", "ADetailer confidence": 0.3,
            "ADetailer dilate erode": 0, "ADetailer mask blur": 0,
            "ADetailer denoising strength": 0.0}
    assert adetailer_mismatches(tab, tab_reply(**keys)) == []
    not_skipped = reply(extra_generation_params=keys)
    assert adetailer_mismatches(tab, not_skipped) == [
        Mismatch("skip_img2img", "1 step of Euler", "20 steps of Euler a")]


def test_a_reply_without_the_info_keys_is_a_bad_response() -> None:
    with pytest.raises(WebuiError, match='"info" has no "steps"'):
        Report.of(GenerationResult([], {"sampler_name": "Euler"}, {}), "POST /x")
    with pytest.raises(WebuiError, match="extra_generation_params"):
        Report.of(GenerationResult([], {"extra_generation_params": []}, {}), "POST /x")


# --- preflight ---------------------------------------------------------------------------------


def test_every_unknown_name_of_an_entry_is_named_with_the_closest_offered_one() -> None:
    entry = make_job(0, "names", (TXT2IMG, ADETAILER, UPSCALE), sampler_name="Eulr a",
                     scheduler="karas", adetailer_passes=[face_pass("face_yolov8m.pt")],
                     hires_fix=HiresFixConfig(enabled=True, scale=2.0, upscaler="Latnt",
                                              denoising_strength=0.5),
                     upscale=UpscaleConfig(upscaler="R-ESRGAN 4x", factor=2.0))
    assert unknown_names(plan_requests(entry), CAPABILITIES) == [
        "sampler 'Eulr a' is not offered by the WebUI: did you mean 'Euler a'?",
        "scheduler 'karas' is not offered by the WebUI: did you mean 'Karras'?",
        "hires upscaler 'Latnt' is not offered by the WebUI: did you mean 'Latent'?",
        "ADetailer model 'face_yolov8m.pt' is not offered by the WebUI: did you mean "
        "'face_yolov8n.pt'?",
        "upscaler 'R-ESRGAN 4x' is not offered by the WebUI: did you mean 'R-ESRGAN 4x+'?"]


def test_offered_names_pass_and_an_unreported_list_is_not_checked() -> None:
    entry = make_job(0, "fine", (TXT2IMG, ADETAILER), sampler_name="Euler a Karras")
    assert unknown_names(plan_requests(entry), CAPABILITIES) == []
    bare = Capabilities(adetailer_models=["face_yolov8n.pt"])
    assert unknown_names(plan_requests(make_job(0, "x", sampler_name="Anything")), bare) == []


@pytest.mark.parametrize("scheduler", ["karras", "Karras", "automatic", "Automatic", ""])
def test_a_scheduler_named_exactly_by_its_name_or_label_passes(scheduler: str) -> None:
    entry = make_job(0, "exact", sampler_name="DPM++ 2M", scheduler=scheduler)
    assert unknown_names(plan_requests(entry), CAPABILITIES) == []


@pytest.mark.parametrize(("scheduler", "suggested"), [("KARRAS", "Karras"),
                                                      ("AUTOMATIC", "Automatic"),
                                                      ("sgmuniform", "SGM Uniform")])
def test_a_scheduler_in_another_case_is_refused_with_its_spelling_suggested(
        scheduler: str, suggested: str) -> None:
    # The WebUI looks a scheduler up exactly: "KARRAS" would run as automatic, without a word.
    entry = make_job(0, "case", sampler_name="DPM++ 2M", scheduler=scheduler)
    assert unknown_names(plan_requests(entry), CAPABILITIES) == [
        f"scheduler {scheduler!r} is not offered by the WebUI: did you mean {suggested!r}?"]


def test_adetailer_without_the_extension_is_named() -> None:
    entry = make_job(0, "no extension", (TXT2IMG, ADETAILER))
    (problem,) = unknown_names(plan_requests(entry), Capabilities(samplers=["Euler a"]))
    assert "the WebUI has no ADetailer extension" in problem
    assert entry.stage_plan == [StageType.TXT2IMG, StageType.ADETAILER]

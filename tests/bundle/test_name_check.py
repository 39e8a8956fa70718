"""The names a draft's jobs use, checked against what the connected runners offer: a name none
of them offers is a row error naming the field, with the closest names they offer; names are
read the way the WebUI reads them; without runners the names are unchecked, never refused.

The offer is the WebUI emulator's catalog (what `stablenew serve emulator` lists)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stablenew.bundle.core import OfferCache
from stablenew.bundle.domain import (
    DraftPart,
    ManualPart,
    NameCheck,
    NormalizedBundle,
    PackRowPart,
    Reason,
)
from stablenew.bundle.name_check import (
    OfferedNames,
    closest_names,
    name_check_of,
    unoffered_names,
)
from stablenew.bundle.normalize import normalize_draft
from stablenew.bundle.seeds import DerivedSeedSource
from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.model import (
    HiresFixConfig,
    Img2ImgConfig,
    NormalizedJob,
    PipelineConfig,
    RefinerConfig,
    StageFlags,
    StageType,
    UpscaleConfig,
    UpscaleMode,
)
from stablenew.emulator import catalog
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.sdwebui.names import SchedulerEntry
from tests.bundle.helpers import FakePacks, face_pass, make_pack, txt2img_config, with_adetailer

SEEDS = DerivedSeedSource("draft-names")


def emulator_offer(**changes: Any) -> OfferedNames:
    """What one runner in front of the emulator announces."""
    offered = OfferedNames(
        runner_count=1,
        models=tuple(ModelEntry(c.title, c.model_name, c.shorthash) for c in catalog.CHECKPOINTS),
        vaes=tuple(vae.filename for vae in catalog.VAES),
        samplers=tuple(sampler.name for sampler in catalog.SAMPLERS),
        schedulers=tuple(SchedulerEntry(s.name, s.label, s.aliases) for s in catalog.SCHEDULERS),
        upscalers=tuple(upscaler.name for upscaler in catalog.UPSCALERS),
        latent_upscale_modes=catalog.LATENT_UPSCALE_MODES,
        adetailer_models=catalog.AD_MODELS, unchecked_reason="")
    return replace(offered, **changes)


OFFER = emulator_offer()


def normalize(config: PipelineConfig, offered: OfferedNames = OFFER) -> NormalizedBundle:
    return normalize_draft([ManualPart("m1", "a lighthouse", "", config)], SEEDS, FakePacks(),
                           offered=offered)


def upscale_config(**upscale: Any) -> PipelineConfig:
    config = txt2img_config()
    config.stages.upscale_enabled = True
    values: dict[str, Any] = {"upscaler": "R-ESRGAN 4x+", "factor": 2.0}
    config.upscale = UpscaleConfig(**(values | upscale))
    return config


def adetailer_config(**fields: Any) -> PipelineConfig:
    return with_adetailer(txt2img_config(), face_pass(**fields))


# --- the Done-when of the issue: each kind of name, misspelled ---------------------------------

MISSPELLED = [
    ("sampler", txt2img_config(sampler_name="Eulr a"), "txt2img.sampler_name", "Euler a"),
    ("scheduler", txt2img_config(scheduler="Karas"), "txt2img.scheduler", "Karras"),
    ("model", txt2img_config(model="v1-5-prunned-emaonly"), "txt2img.model",
     "v1-5-pruned-emaonly"),
    ("VAE", txt2img_config(vae="vae-ft-mse-84000-ema-pruned"), "txt2img.vae",
     "vae-ft-mse-840000-ema-pruned.safetensors"),
    ("upscaler", upscale_config(upscaler="R-ESRGAN 4x"), "upscale.upscaler", "R-ESRGAN 4x+"),
    ("ADetailer model", adetailer_config(model="face_yolo8n.pt"), "adetailer.passes[0].model",
     "face_yolov8n.pt"),
]


@pytest.mark.parametrize(("noun", "config", "field", "suggested"), MISSPELLED,
                         ids=[case[0] for case in MISSPELLED])
def test_a_misspelled_name_is_a_row_error_with_a_suggestion(noun: str, config: PipelineConfig,
                                                             field: str, suggested: str) -> None:
    bundle = normalize(config)

    assert bundle.jobs == []
    (error,) = bundle.errors
    assert (error.part_id, error.reason, error.config_field) == ("m1", Reason.INVALID_FIELD, field)
    assert error.suggestions[0] == suggested
    assert f"config.{field}: {noun} " in error.message
    assert "is not offered by any connected runner: did you mean" in error.message
    assert repr(suggested) in error.message
    assert bundle.unoffered_parts == ("m1",)
    assert bundle.summary.name_check == NameCheck(checked=True, runner_count=1)


def test_the_issue_example_eulr_a_suggests_euler_a_first() -> None:
    (error,) = normalize(txt2img_config(sampler_name="Eulr a")).errors
    assert error.message.endswith(": did you mean 'Euler a' or 'Euler'?")
    assert error.suggestions == ["Euler a", "Euler"]


def test_every_unoffered_name_of_a_part_is_reported_and_the_part_makes_no_job() -> None:
    config = adetailer_config(model="hand_yolo.pt", sampler_name="Heunn")
    config.txt2img.sampler_name = "DPM++ 2M"
    config.txt2img.scheduler = "karas"

    bundle = normalize(config)

    assert [error.config_field for error in bundle.errors] == [
        "txt2img.scheduler", "adetailer.passes[0].model", "adetailer.passes[0].sampler_name"]
    assert bundle.jobs == [] and bundle.summary.job_count == 0


def test_other_parts_still_make_their_jobs_and_a_pack_row_names_its_line() -> None:
    pack = make_pack("a castle", "a tower", pack_id="towers",
                     defaults=txt2img_config(sampler_name="Euler  a"))
    parts: list[DraftPart] = [ManualPart("m1", "a lighthouse", "", txt2img_config()),
                              PackRowPart("p1", "towers", 1)]

    bundle = normalize_draft(parts, SEEDS, FakePacks(pack), offered=OFFER)

    assert [job.prompt for job in bundle.jobs] == ["a lighthouse"]
    (error,) = bundle.errors
    assert (error.part_id, error.prompt_pack_id, error.row_index, error.line) == (
        "p1", "towers", 1, 2)
    assert error.message.startswith("towers row 1 (line 2): config.txt2img.sampler_name: ")
    assert bundle.unoffered_parts == ("p1",)


def test_no_suggestion_when_nothing_is_close_lists_what_they_offer() -> None:
    (error,) = normalize(adetailer_config(model="zzz")).errors
    assert error.suggestions == []
    assert "'zzz' is not offered by any connected runner; they offer 'face_yolov8n.pt', " in (
        error.message)
    assert error.message.endswith(", ... (10 in all)")


def test_a_runner_without_the_adetailer_extension_offers_no_detection_model() -> None:
    (error,) = normalize(adetailer_config(), emulator_offer(adetailer_models=())).errors
    assert error.message.endswith(
        "ADetailer model 'face_yolov8n.pt' is not offered by any connected runner; "
        "they offer no ADetailer model at all")


# --- names as the WebUI reads them ---------------------------------------------------------------

V15 = catalog.CHECKPOINTS[0]


@pytest.mark.parametrize("model", [
    V15.title, V15.filename, V15.model_name, V15.shorthash, f"{V15.filename} [0123456789]",
    f"  {V15.model_name} "])
def test_a_model_is_found_by_title_file_name_name_or_hash(model: str) -> None:
    assert normalize(txt2img_config(model=model)).errors == []


@pytest.mark.parametrize("vae", ["", "Automatic", "automatic", "None",
                                 "sdxl_vae.safetensors", "sdxl_vae"])
def test_a_vae_is_found_by_file_name_or_name_and_automatic_and_none_always_are(
        vae: str) -> None:
    assert normalize(txt2img_config(vae=vae)).errors == []


@pytest.mark.parametrize("scheduler", ["karras", "Karras", "sgm_uniform", "SGM Uniform",
                                       "automatic", ""])
def test_a_scheduler_is_found_by_its_name_or_its_label(scheduler: str) -> None:
    assert normalize(txt2img_config(scheduler=scheduler)).errors == []


@pytest.mark.parametrize(("scheduler", "suggested"), [("KARRAS", "Karras"),
                                                      ("SGMUniform", "SGM Uniform")])
def test_another_case_or_an_alias_is_no_scheduler_field_value(scheduler: str,
                                                              suggested: str) -> None:
    # The WebUI would run these as "automatic", without a word.
    (error,) = normalize(txt2img_config(scheduler=scheduler)).errors
    assert error.suggestions[0] == suggested


@pytest.mark.parametrize("sampler", ["DPM++ 2M Karras", "DPM++ 2M karras",
                                     "DPM++ 2M SGMUniform", "Euler a"])
def test_a_scheduler_may_end_a_sampler_name(sampler: str) -> None:
    assert normalize(txt2img_config(sampler_name=sampler)).errors == []


@pytest.mark.parametrize(("sampler", "suggested"), [("euler a", "Euler a"),
                                                    ("k_euler_a", "Euler a")])
def test_a_sampler_in_another_case_or_by_its_alias_is_refused_naming_it(sampler: str,
                                                                       suggested: str) -> None:
    # The WebUI's API looks samplers up by exact name: these would run as its first sampler.
    (error,) = normalize(txt2img_config(sampler_name=sampler)).errors
    assert error.suggestions[0] == suggested


def test_the_hires_fix_takes_latent_modes_and_use_same_and_a_loose_checkpoint() -> None:
    config = txt2img_config()
    config.txt2img.hires_fix = HiresFixConfig(
        enabled=True, upscaler="Latent (bicubic)", checkpoint="Use same checkpoint",
        sampler_name="Use same sampler", scheduler="Use same scheduler")
    assert normalize(config).errors == []
    config.txt2img.hires_fix = HiresFixConfig(enabled=True, upscaler="R-ESRGAN 4x+",
                                              checkpoint="dreamshaper", sampler_name="DDIM",
                                              scheduler="Exponential")
    assert normalize(config).errors == []


def test_the_hires_fix_names_are_checked_when_it_is_on() -> None:
    config = txt2img_config()
    config.txt2img.hires_fix = HiresFixConfig(upscaler="Latent (bicubc)", checkpoint="nope")
    assert normalize(config).errors == []  # off: nothing of it is sent
    config.txt2img.hires_fix.enabled = True
    errors = normalize(config).errors
    assert [(e.config_field, e.suggestions[:1]) for e in errors] == [
        ("txt2img.hires_fix.upscaler", ["Latent (bicubic)"]),
        ("txt2img.hires_fix.checkpoint", [])]


def test_the_refiner_checkpoint_is_found_as_the_webui_finds_it() -> None:
    config = txt2img_config()
    config.txt2img.refiner = RefinerConfig(enabled=True, checkpoint="sd_xl_refiner",
                                           switch_at=0.8)
    assert normalize(config).errors == []
    config.txt2img.refiner.checkpoint = "sd_xl_refiner_2.0"
    (error,) = normalize(config).errors
    assert error.config_field == "txt2img.refiner.checkpoint"


def test_an_img2img_upscale_names_no_upscaler_and_an_unused_second_upscaler_is_none() -> None:
    assert normalize(upscale_config(upscaler_2="")).errors == []
    assert normalize(upscale_config(upscaler_2="None", upscaler_2_visibility=0.5)).errors == []
    assert normalize(upscale_config(mode=UpscaleMode.IMG2IMG, upscaler="whatever",
                                    denoising_strength=0.3)).errors == []
    (error,) = normalize(upscale_config(upscaler_2="Lanczoz")).errors
    assert (error.config_field, error.suggestions[0]) == ("upscale.upscaler_2", "Lanczos")


def test_img2img_checks_its_own_sampler_and_as_the_generation_replaces_the_txt2img_one() -> None:
    config = PipelineConfig(stages=StageFlags(img2img_enabled=True),
                            img2img=Img2ImgConfig(denoising_strength=0.5, sampler_name="LMS",
                                                  scheduler="Karras"))
    config.txt2img.sampler_name = "not sent"
    part = ManualPart("m1", "a lighthouse", "", config, input_images=["in.png"])
    bundle = normalize_draft([part], SEEDS, FakePacks(), offered=OFFER)
    assert bundle.errors == []
    config.img2img.sampler_name = ""
    (error,) = normalize_draft([part], SEEDS, FakePacks(), offered=OFFER).errors
    assert error.config_field == "txt2img.sampler_name"


def test_an_upscale_only_plan_sends_no_sampler() -> None:
    job = NormalizedJob(stage_plan=[StageType.UPSCALE], sampler_name="not sent",
                        upscale=UpscaleConfig(upscaler="Lanczos", factor=2.0))
    assert unoffered_names(job, OFFER) == []
    job.upscale.mode = UpscaleMode.IMG2IMG
    assert [name.config_field for name in unoffered_names(job, OFFER)] == [
        "txt2img.sampler_name"]


# --- unchecked ----------------------------------------------------------------------------------


def test_without_runners_the_names_are_unchecked_and_the_jobs_made() -> None:
    bundle = normalize(txt2img_config(sampler_name="Eulr a"), OfferedNames())

    assert len(bundle.jobs) == 1 and bundle.errors == []
    assert bundle.summary.name_check == NameCheck(
        checked=False, runner_count=0, unchecked_reason="no runner is connected")


def test_two_runners_offer_what_either_offers() -> None:
    other = emulator_offer(models=(ModelEntry("anime.safetensors [aaaa]", "anime", "aaaa"),),
                           samplers=("Euler a", "Exotic"))
    both = OfferedNames.union([OFFER, other])
    assert both.runner_count == 2
    assert normalize(txt2img_config(model="anime", sampler_name="Exotic"), both).errors == []
    assert normalize(txt2img_config(model="anime"), OFFER).errors != []
    assert both.samplers.count("Euler a") == 1


def test_a_runner_that_does_not_say_what_it_offers_leaves_the_names_unchecked() -> None:
    silent = OfferedNames(unchecked_reason="runner 'old' does not say what its WebUI offers")
    either = OfferedNames.union([OFFER, silent])
    assert not either.checked
    assert name_check_of(either) == NameCheck(unchecked_reason=silent.unchecked_reason)
    assert normalize(txt2img_config(sampler_name="Eulr a"), either).errors == []
    assert OfferedNames.union([]) == OfferedNames()


def test_closest_names_ignore_case_and_put_the_same_name_in_another_case_first() -> None:
    assert closest_names("EULER A", ("Euler", "Euler a", "LMS"))[0] == "Euler a"
    assert closest_names("zzz", ("Euler", "LMS")) == []


# --- asking the queue ---------------------------------------------------------------------------


def test_the_offer_is_asked_once_per_period_or_on_every_read_with_zero() -> None:
    asked: list[OfferedNames] = []

    def ask() -> OfferedNames:
        asked.append(OFFER)
        return OFFER

    cached = OfferCache(ask, seconds=3600)
    assert cached.current() is cached.current() is OFFER
    assert len(asked) == 1
    uncached = OfferCache(ask, seconds=0)
    uncached.current()
    uncached.current()
    assert len(asked) == 3


def test_a_queue_that_cannot_be_asked_leaves_the_names_unchecked_saying_why() -> None:
    def ask() -> OfferedNames:
        raise ServiceError(Code.UNAVAILABLE, ErrorReason.DEPENDENCY_UNAVAILABLE,
                           "the queue did not answer (UNAVAILABLE)")

    offered = OfferCache(ask, seconds=3600).current()

    assert not offered.checked
    assert offered.unchecked_reason == ("the queue could not be asked what the runners offer: "
                                        "the queue did not answer (UNAVAILABLE)")

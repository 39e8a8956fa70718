"""Config merging, built-in defaults, the stage plan and the value checks, with field paths."""

from __future__ import annotations

import pytest

from stablenew.bundle.domain import FieldError, Reason
from stablenew.bundle.pipeline_rules import (
    check_config,
    check_input_images,
    check_stage_plan,
    describe_plan,
    merge_config,
    preset_problems,
    stage_plan,
)
from stablenew.contract.model import (
    AdetailerConfig,
    PipelineConfig,
    StageFlags,
    StageType,
    Txt2ImgConfig,
    UpscaleMode,
)
from stablenew.contract.pipeline_limits import with_builtin_defaults
from tests.bundle.helpers import face_pass, txt2img_config, with_adetailer

T, I2I, A, U = StageType.TXT2IMG, StageType.IMG2IMG, StageType.ADETAILER, StageType.UPSCALE


def paths(errors: list[FieldError]) -> list[str]:
    return [error.field for error in errors]


def test_overrides_replace_only_what_they_set() -> None:
    base = txt2img_config(steps=25, width=512, seed=-1)
    base.adetailer = AdetailerConfig([face_pass()])
    overrides = PipelineConfig(txt2img=Txt2ImgConfig(steps=40, sampler_name="DPM++ 2M"),
                               global_negative="bad hands")

    merged = merge_config(base, overrides)

    assert (merged.txt2img.steps, merged.txt2img.sampler_name) == (40, "DPM++ 2M")
    assert (merged.txt2img.width, merged.txt2img.seed, merged.txt2img.model) == (
        512, -1, "v1-5-pruned-emaonly")
    assert merged.global_negative == "bad hands"
    assert merged.adetailer.passes == base.adetailer.passes
    assert merged.adetailer.passes[0] is not base.adetailer.passes[0]  # a copy
    assert merged.stages == base.stages and merged.stages is not base.stages


def test_override_stage_flags_replace_the_pack_selection_as_a_whole() -> None:
    base = with_adetailer(txt2img_config())
    overrides = PipelineConfig(stages=StageFlags(txt2img_enabled=True, upscale_enabled=True))

    merged = merge_config(base, overrides)

    assert merged.stages == StageFlags(txt2img_enabled=True, upscale_enabled=True)


def test_builtin_defaults_fill_unset_values_and_never_enable_a_stage() -> None:
    config = PipelineConfig()
    config.txt2img.hires_fix.enabled = True

    filled = with_builtin_defaults(config)

    txt2img = filled.txt2img
    assert (txt2img.sampler_name, txt2img.steps, txt2img.cfg_scale) == ("Euler", 20, 7.0)
    assert (txt2img.width, txt2img.height, filled.batch_size, filled.n_iter) == (512, 512, 1, 1)
    assert (txt2img.hires_fix.scale, txt2img.hires_fix.denoising_strength) == (2.0, 0.75)
    assert (filled.upscale.mode, filled.upscale.factor) == (UpscaleMode.EXTRAS, 2.0)
    assert filled.stages == StageFlags()
    assert config.txt2img.steps == 0  # the input is not changed


def test_stage_plan_is_always_in_pipeline_order() -> None:
    flags = StageFlags(txt2img_enabled=True, img2img_enabled=True, adetailer_enabled=True,
                       upscale_enabled=True)

    assert stage_plan(flags) == [T, I2I, A, U]
    assert describe_plan([T, A, U]) == "txt2img → adetailer → upscale"


@pytest.mark.parametrize(("plan", "has_images", "path", "text"), [
    ([], False, "config.stages", "no stage is enabled"),
    ([A], False, "config.stages", "ADetailer needs a generation stage"),
    ([A, U], True, "config.stages", "ADetailer needs a generation stage"),
    ([U, T], False, "config.stages", "out of order"),
    ([T, T], False, "config.stages", "out of order or repeated"),
    ([StageType.UNSPECIFIED], False, "config.stages", "unknown stage"),
    ([U], False, "input_images", "an upscale-only plan runs on existing images"),
    ([I2I, A], False, "input_images", "a plan starting with img2img"),
])
def test_bad_stage_plans_are_refused(plan: list[StageType], has_images: bool, path: str,
                                     text: str) -> None:
    (error,) = check_stage_plan(plan, has_images)

    assert (error.field, error.reason) == (path, Reason.INVALID_STAGE_PLAN)
    assert text in error.message


@pytest.mark.parametrize(("plan", "has_images"), [
    ([T], False), ([T, A], False), ([T, I2I, A, U], False), ([I2I, A], True), ([U], True),
    ([I2I], True), ([T, U], False),
])
def test_good_stage_plans_pass(plan: list[StageType], has_images: bool) -> None:
    assert check_stage_plan(plan, has_images) == []


def test_input_images_must_be_relative_and_only_for_image_plans() -> None:
    assert paths(check_input_images(["a.png"], [T])) == ["input_images"]
    errors = check_input_images(["ok/a.png", "/etc/passwd", "../up.png", "", "C:\\x.png",
                                 "a\\..\\..\\b.png"], [U])
    assert paths(errors) == ["input_images[1]", "input_images[2]", "input_images[3]",
                             "input_images[4]", "input_images[5]"]
    assert all(error.reason == Reason.INVALID_FIELD for error in errors)


@pytest.mark.parametrize(("change", "path", "text"), [
    (lambda c: setattr(c.txt2img, "width", 513), "config.txt2img.width", "multiple of 8"),
    (lambda c: setattr(c.txt2img, "height", 8192), "config.txt2img.height", "64 to 4096"),
    (lambda c: setattr(c.txt2img, "width", -64), "config.txt2img.width", "got -64"),
    (lambda c: setattr(c.txt2img, "steps", 151), "config.txt2img.steps", "1..150"),
    (lambda c: setattr(c.txt2img, "cfg_scale", 31.0), "config.txt2img.cfg_scale", "1..30"),
    (lambda c: setattr(c.txt2img, "seed", -5), "config.txt2img.seed", "-1 (random)"),
    (lambda c: setattr(c, "batch_size", 9), "config.batch_size", "1..8"),
    (lambda c: setattr(c, "n_iter", -1), "config.n_iter", "1..100"),
    (lambda c: setattr(c.txt2img, "clip_skip", 13), "config.txt2img.clip_skip", "0..12"),
    (lambda c: setattr(c.txt2img, "subseed_strength", 1.5), "config.txt2img.subseed_strength",
     "0..1"),
])
def test_out_of_range_values_name_their_field(change: object, path: str, text: str) -> None:
    config = with_builtin_defaults(txt2img_config())
    change(config)  # type: ignore[operator]

    (error,) = check_config(config, stage_plan(config.stages))

    assert (error.field, error.reason) == (path, Reason.INVALID_FIELD)
    assert text in error.message
    assert str(error) == f"{path}: {error.message}"


def test_stage_settings_are_checked_only_when_the_stage_runs() -> None:
    config = with_builtin_defaults(txt2img_config())
    config.img2img.denoising_strength = 3.0
    config.upscale.factor = -2.0
    config.txt2img.hires_fix.scale = -1.0  # hires fix is off

    assert check_config(config, [T]) == []
    assert paths(check_config(config, [T, I2I, U])) == [
        "config.img2img.denoising_strength", "config.upscale.upscaler", "config.upscale.factor"]


def test_hires_refiner_adetailer_and_upscale_checks() -> None:
    config = with_adetailer(txt2img_config(), face_pass(model="", confidence=1.5),
                            face_pass(cfg_scale=0.5))
    config.txt2img.hires_fix.enabled = True
    config.txt2img.hires_fix.scale = 5.0
    config.txt2img.hires_fix.denoising_strength = 2.0
    config.txt2img.refiner.enabled = True
    config.stages.upscale_enabled = True
    config.upscale.upscaler = "R-ESRGAN 4x+"
    config.upscale.factor = 9.0
    config = with_builtin_defaults(config)

    assert paths(check_config(config, stage_plan(config.stages))) == [
        "config.txt2img.hires_fix.scale",
        "config.txt2img.hires_fix.denoising_strength",
        "config.txt2img.refiner.checkpoint",
        "config.txt2img.refiner.switch_at",
        "config.upscale.factor",
        "config.adetailer.passes[0].model",
        "config.adetailer.passes[0].confidence",
        "config.adetailer.passes[1].cfg_scale",
    ]


def test_adetailer_without_a_pass_is_refused() -> None:
    config = with_builtin_defaults(txt2img_config())
    config.stages.adetailer_enabled = True

    (error,) = check_config(config, stage_plan(config.stages))

    assert error.field == "config.adetailer.passes" and "no detection pass" in error.message


def test_an_empty_model_means_keep_the_loaded_one() -> None:
    config = with_builtin_defaults(txt2img_config(model=""))

    assert check_config(config, [T]) == []


def test_presets_are_judged_on_what_they_set_and_the_stages_they_switch_on() -> None:
    # No stage switched on: the pack leaves the plan to the config it is added with.
    assert preset_problems(PipelineConfig(txt2img=Txt2ImgConfig(steps=30))) == []
    # A value they set, and a setting a stage they switch on needs.
    presets = txt2img_config(width=500)
    presets.stages.upscale_enabled = True
    assert {error.field for error in preset_problems(presets)} == {
        "config.txt2img.width", "config.upscale.upscaler"}
    # An ADetailer-only plan is wrong whatever images come with the part.
    only_adetailer = with_adetailer(PipelineConfig(stages=StageFlags(adetailer_enabled=True)))
    assert [error.reason for error in preset_problems(only_adetailer)] == [
        Reason.INVALID_STAGE_PLAN]

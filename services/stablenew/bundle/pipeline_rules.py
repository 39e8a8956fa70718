"""Pipeline configs: overrides over pack defaults, built-in defaults, the stage plan and the
checks a config must pass before it becomes jobs.

Proto3 cannot tell "unset" from zero, so zero/empty means "not set" everywhere here:
- `merge_config`: a non-zero override replaces the base value; a non-empty ADetailer pass list
  replaces the base list. Stage flags are taken as a whole: when the overrides switch any stage
  on, their flags replace the base flags (so a GUI can switch a pack's ADetailer off by sending
  its own full selection); when they switch none on, the base flags stay.
- `with_builtin_defaults` (stablenew.contract.pipeline_limits) then fills what is still unset.

The value ranges and the defaults live in stablenew.contract.pipeline_limits: the queue checks a
directly submitted job's entries by the same rules.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Sequence
from typing import TypeVar

from stablenew.bundle.domain import FieldError, Reason
from stablenew.contract.model import GENERATION_STAGES, PipelineConfig, StageFlags, StageType
from stablenew.contract.pipeline_limits import (
    config_problems,
    image_path_problem,
    with_builtin_defaults,
)

T = TypeVar("T")

STAGE_NAMES = {
    StageType.TXT2IMG: "txt2img",
    StageType.IMG2IMG: "img2img",
    StageType.ADETAILER: "adetailer",
    StageType.UPSCALE: "upscale",
}
INPUT_STAGES = frozenset({StageType.IMG2IMG, StageType.UPSCALE})


# --- merging and defaults ---------------------------------------------------------------------


def merge_config(base: PipelineConfig, overrides: PipelineConfig) -> PipelineConfig:
    """A new config: `overrides` over `base` by the rules of the module docstring."""
    merged = _merge(base, overrides)
    chosen = overrides.stages if _any_stage(overrides.stages) else base.stages
    merged.stages = copy.copy(chosen)
    return merged


def _any_stage(flags: StageFlags) -> bool:
    return (flags.txt2img_enabled or flags.img2img_enabled or flags.adetailer_enabled
            or flags.upscale_enabled)


def _merge(base: T, overrides: T) -> T:
    values = {}
    for item in dataclasses.fields(base):  # type: ignore[arg-type]
        old, new = getattr(base, item.name), getattr(overrides, item.name)
        if dataclasses.is_dataclass(old):
            values[item.name] = _merge(old, new)
        elif isinstance(old, list):
            values[item.name] = [copy.copy(value) for value in (new or old)]
        else:
            values[item.name] = new if new else old
    return type(base)(**values)


# --- the stage plan ---------------------------------------------------------------------------


def stage_plan(flags: StageFlags) -> list[StageType]:
    """The enabled stages in the only order they run: txt2img, img2img, ADetailer, upscale."""
    enabled = (flags.txt2img_enabled, flags.img2img_enabled, flags.adetailer_enabled,
               flags.upscale_enabled)
    return [stage for stage, on in zip(STAGE_NAMES, enabled, strict=True) if on]


def describe_plan(plan: Sequence[StageType]) -> str:
    """"txt2img → adetailer → upscale"."""
    return " → ".join(STAGE_NAMES.get(stage, stage.name.lower()) for stage in plan)


def check_stage_plan(plan: Sequence[StageType], has_input_images: bool,
                     path: str = "config.stages") -> list[FieldError]:
    """Refuse an empty plan, unknown, repeated or out-of-order stages, ADetailer without a
    generation stage before it, and a plan that starts on images without any input images."""
    problem = _plan_problem(plan)
    if problem:
        return [FieldError(path, Reason.INVALID_STAGE_PLAN, problem)]
    if plan[0] in INPUT_STAGES and not has_input_images:
        what = ("an upscale-only plan" if plan[0] == StageType.UPSCALE
                else "a plan starting with img2img")
        return [FieldError("input_images", Reason.INVALID_STAGE_PLAN,
                           f"{what} runs on existing images: give at least one input image")]
    return []


def _plan_problem(plan: Sequence[StageType]) -> str:
    if not plan:
        return ("no stage is enabled; enable at least one of txt2img, img2img, adetailer,"
                " upscale")
    if any(stage not in STAGE_NAMES for stage in plan):
        return "the plan holds an unknown stage"
    if any(later <= earlier for earlier, later in itertools.pairwise(plan)):
        return (f"stages out of order or repeated ({describe_plan(plan)}); the order is"
                " txt2img → img2img → adetailer → upscale")
    if StageType.ADETAILER in plan and not GENERATION_STAGES.intersection(plan):
        return "ADetailer needs a generation stage (txt2img or img2img) before it"
    return ""


def check_input_images(images: Sequence[str], plan: Sequence[StageType],
                       path: str = "input_images") -> list[FieldError]:
    """Input images are relative paths under the runner's input root, used only by plans
    that start with img2img or upscale (given to a txt2img plan they would be ignored)."""
    if images and plan and plan[0] not in INPUT_STAGES:
        return [FieldError(path, Reason.INVALID_FIELD,
                           "input images are only used when the plan starts with img2img or"
                           " upscale")]
    return [FieldError(f"{path}[{index}]", Reason.INVALID_FIELD, problem)
            for index, image in enumerate(images)
            if (problem := image_path_problem(image))]


# --- value checks (their rules: stablenew.contract.pipeline_limits) ----------------------------


def preset_problems(presets: PipelineConfig) -> list[FieldError]:
    """What is wrong with a pack's presets by themselves: a value they set, or a setting a stage
    they switch on needs (upscale without an upscaler). Presets that switch no stage on leave
    the plan to the config the pack is added with, so that alone is no problem."""
    config = with_builtin_defaults(presets)
    plan = stage_plan(config.stages)
    if not plan:
        return []
    # Input images come with the part, not the pack.
    return check_stage_plan(plan, has_input_images=True) + check_config(config, plan)


def check_config(config: PipelineConfig, plan: Sequence[StageType],
                 path: str = "config") -> list[FieldError]:
    """Every out-of-range value of the stages in `plan` (the config has its defaults)."""
    return [FieldError(field, Reason.INVALID_FIELD, message)
            for field, message in config_problems(config, plan, path)]

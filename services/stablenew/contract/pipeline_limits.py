"""The limits of a pipeline config and the built-in defaults, shared by the bundle (which
checks the configs it makes jobs from) and the queue (which checks the entries a client submits
directly): both refuse the same values with the same messages.

Proto3 cannot tell "unset" from zero, so zero/empty means "not set": `with_builtin_defaults`
fills what is still unset with the WebUI API's own defaults (sampler "Euler", 512x512, cfg 7,
denoising 0.75, hires scale 2, upscale factor 2) except steps, which default to 20 rather than
the API's 50. It never switches a stage on.

Ranges (decided here; the WebUI itself accepts more but fails or runs out of memory):
width/height multiples of 8 in 64..4096; steps 1..150; cfg 1..30; batch_size 1..8 (what one
WebUI call holds on a consumer GPU); n_iter 1..100; denoising, subseed strength, confidence,
refiner switch 0..1; clip_skip 0..12; hires scale (0, 4]; upscale factor (0, 8]. NaN and the
infinities are outside every range.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from stablenew.contract.model import (
    AdetailerConfig,
    AdetailerPass,
    NormalizedJob,
    PipelineConfig,
    StageFlags,
    StageType,
    Txt2ImgConfig,
    UpscaleMode,
)

DEFAULT_SAMPLER = "Euler"
DEFAULT_STEPS = 20
DEFAULT_CFG_SCALE = 7.0
DEFAULT_SIZE = 512
DEFAULT_DENOISING = 0.75
DEFAULT_HIRES_SCALE = 2.0
DEFAULT_UPSCALE_FACTOR = 2.0
DEFAULT_ADETAILER_CONFIDENCE = 0.3
DEFAULT_ADETAILER_DENOISING = 0.4
# The ADetailer extension's own defaults of the pass fields that have presence in a config
# (AdetailerPass.mask_blur, ...): a pass that leaves one unset gets it, one that sets 0 or false
# keeps it. Filled where presence is still known (the pack's JSON, the request's message).
ADETAILER_PASS_DEFAULTS: dict[str, Any] = {"mask_blur": 4, "dilate_erode": 4,
                                           "inpaint_only_masked": True, "inpaint_padding": 32}

MIN_SIZE, MAX_SIZE = 64, 4096
MAX_STEPS = 150
MIN_CFG, MAX_CFG = 1.0, 30.0
MAX_BATCH_SIZE = 8
MAX_N_ITER = 100
MAX_CLIP_SKIP = 12
MAX_HIRES_SCALE = 4.0
MAX_UPSCALE_FACTOR = 8.0


def with_builtin_defaults(config: PipelineConfig) -> PipelineConfig:
    """A copy of `config` with unset values filled (see the module docstring)."""
    filled = copy.deepcopy(config)
    txt2img = filled.txt2img
    txt2img.sampler_name = txt2img.sampler_name or DEFAULT_SAMPLER
    txt2img.steps = txt2img.steps or DEFAULT_STEPS
    txt2img.cfg_scale = txt2img.cfg_scale or DEFAULT_CFG_SCALE
    txt2img.width = txt2img.width or DEFAULT_SIZE
    txt2img.height = txt2img.height or DEFAULT_SIZE
    filled.batch_size = filled.batch_size or 1
    filled.n_iter = filled.n_iter or 1
    hires = txt2img.hires_fix
    if hires.enabled:
        hires.denoising_strength = hires.denoising_strength or DEFAULT_DENOISING
        if not (hires.resize_x or hires.resize_y):
            hires.scale = hires.scale or DEFAULT_HIRES_SCALE
    filled.img2img.denoising_strength = filled.img2img.denoising_strength or DEFAULT_DENOISING
    filled.upscale.mode = filled.upscale.mode or UpscaleMode.EXTRAS
    filled.upscale.factor = filled.upscale.factor or DEFAULT_UPSCALE_FACTOR
    for adetailer_pass in filled.adetailer.passes:
        _fill_pass(adetailer_pass)
    return filled


def _fill_pass(adetailer_pass: AdetailerPass) -> None:
    # Zero confidence would detect everything and zero denoising would change nothing: both
    # mean "not set", so they get the extension's defaults. Other zeros are real values.
    adetailer_pass.confidence = adetailer_pass.confidence or DEFAULT_ADETAILER_CONFIDENCE
    adetailer_pass.denoising_strength = (adetailer_pass.denoising_strength
                                         or DEFAULT_ADETAILER_DENOISING)



def image_path_problem(image: str) -> str:
    """Why `image` is no input image path (relative, under the runner's input root), or ""."""
    if not image.strip():
        return "is empty"
    if any(ord(char) < 32 for char in image):
        return "contains a control character"
    if PurePosixPath(image).is_absolute() or PureWindowsPath(image).is_absolute() \
            or PureWindowsPath(image).drive:
        return f"{image!r} must be relative to the runner's input root"
    if ".." in PurePosixPath(image.replace("\\", "/")).parts:
        return f"{image!r} must not contain '..'"
    return ""



# --- value checks -----------------------------------------------------------------------------

Check = Callable[[Any], str]


@dataclass(frozen=True)
class Rule:
    """One value check: where the value is, how to read and check it, and when it applies."""

    path: str  # below the config, e.g. "txt2img.width"
    read: Callable[[PipelineConfig], Any]
    check: Check
    applies: Callable[[PipelineConfig, frozenset[StageType]], bool] = lambda _c, _p: True


def _between(low: float, high: float) -> Check:
    return lambda value: "" if low <= value <= high else f"must be {low:g}..{high:g}, got {value}"


def _zero_or_between(low: float, high: float) -> Check:
    inner = _between(low, high)
    return lambda value: "" if value == 0 else inner(value).replace(
        "must be", "must be 0 (same as the generation) or")


def _above_zero_up_to(high: float) -> Check:
    return lambda value: ("" if 0 < value <= high
                          else f"must be above 0 and at most {high:g}, got {value}")


def _size(value: int) -> str:
    if MIN_SIZE <= value <= MAX_SIZE and value % 8 == 0:
        return ""
    return f"must be a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}, got {value}"


def _optional_size(value: int) -> str:
    return "" if value == 0 else _size(value)


def _seed(value: int) -> str:
    return "" if value >= -1 else f"must be -1 (random) or a seed of 0 or more, got {value}"


def _named(value: str) -> str:
    return "" if value.strip() else "must name one (it is empty)"


def _hires_on(config: PipelineConfig, plan: frozenset[StageType]) -> bool:
    return StageType.TXT2IMG in plan and config.txt2img.hires_fix.enabled


def _refiner_on(config: PipelineConfig, plan: frozenset[StageType]) -> bool:
    return StageType.TXT2IMG in plan and config.txt2img.refiner.enabled


def _stage_on(stage: StageType) -> Callable[[PipelineConfig, frozenset[StageType]], bool]:
    return lambda _config, plan: stage in plan


RULES = (
    Rule("txt2img.width", lambda c: c.txt2img.width, _size),
    Rule("txt2img.height", lambda c: c.txt2img.height, _size),
    Rule("txt2img.steps", lambda c: c.txt2img.steps, _between(1, MAX_STEPS)),
    Rule("txt2img.cfg_scale", lambda c: c.txt2img.cfg_scale, _between(MIN_CFG, MAX_CFG)),
    Rule("txt2img.seed", lambda c: c.txt2img.seed, _seed),
    Rule("txt2img.subseed", lambda c: c.txt2img.subseed, _seed),
    Rule("txt2img.subseed_strength", lambda c: c.txt2img.subseed_strength, _between(0, 1)),
    Rule("txt2img.clip_skip", lambda c: c.txt2img.clip_skip, _between(0, MAX_CLIP_SKIP)),
    Rule("batch_size", lambda c: c.batch_size, _between(1, MAX_BATCH_SIZE)),
    Rule("n_iter", lambda c: c.n_iter, _between(1, MAX_N_ITER)),
    Rule("txt2img.hires_fix.scale", lambda c: c.txt2img.hires_fix.scale,
         lambda value: "" if value == 0 else _above_zero_up_to(MAX_HIRES_SCALE)(value),
         _hires_on),
    Rule("txt2img.hires_fix.resize_x", lambda c: c.txt2img.hires_fix.resize_x, _optional_size,
         _hires_on),
    Rule("txt2img.hires_fix.resize_y", lambda c: c.txt2img.hires_fix.resize_y, _optional_size,
         _hires_on),
    Rule("txt2img.hires_fix.second_pass_steps", lambda c: c.txt2img.hires_fix.second_pass_steps,
         _between(0, MAX_STEPS), _hires_on),
    Rule("txt2img.hires_fix.denoising_strength",
         lambda c: c.txt2img.hires_fix.denoising_strength, _between(0, 1), _hires_on),
    Rule("txt2img.refiner.checkpoint", lambda c: c.txt2img.refiner.checkpoint, _named,
         _refiner_on),
    Rule("txt2img.refiner.switch_at", lambda c: c.txt2img.refiner.switch_at,
         lambda value: "" if 0 < value < 1 else f"must be between 0 and 1, got {value}",
         _refiner_on),
    Rule("img2img.denoising_strength", lambda c: c.img2img.denoising_strength, _between(0, 1),
         _stage_on(StageType.IMG2IMG)),
    Rule("img2img.steps", lambda c: c.img2img.steps, _between(0, MAX_STEPS),
         _stage_on(StageType.IMG2IMG)),
    Rule("img2img.cfg_scale", lambda c: c.img2img.cfg_scale, _zero_or_between(MIN_CFG, MAX_CFG),
         _stage_on(StageType.IMG2IMG)),
    Rule("adetailer.passes", lambda c: len(c.adetailer.passes),
         lambda count: "" if count else "ADetailer is enabled but has no detection pass",
         _stage_on(StageType.ADETAILER)),
    Rule("upscale.upscaler", lambda c: c.upscale.upscaler, _named, _stage_on(StageType.UPSCALE)),
    Rule("upscale.factor", lambda c: c.upscale.factor, _above_zero_up_to(MAX_UPSCALE_FACTOR),
         _stage_on(StageType.UPSCALE)),
    Rule("upscale.denoising_strength", lambda c: c.upscale.denoising_strength, _between(0, 1),
         _stage_on(StageType.UPSCALE)),
    Rule("upscale.upscaler_2_visibility", lambda c: c.upscale.upscaler_2_visibility,
         _between(0, 1), _stage_on(StageType.UPSCALE)),
)

PASS_RULES: tuple[tuple[str, Callable[[AdetailerPass], Any], Check], ...] = (
    ("model", lambda p: p.model, _named),
    ("confidence", lambda p: p.confidence, _between(0, 1)),
    ("denoising_strength", lambda p: p.denoising_strength, _between(0, 1)),
    ("steps", lambda p: p.steps, _between(0, MAX_STEPS)),
    ("cfg_scale", lambda p: p.cfg_scale, _zero_or_between(MIN_CFG, MAX_CFG)),
    ("mask_blur", lambda p: p.mask_blur, _between(0, 256)),
    ("inpaint_padding", lambda p: p.inpaint_padding, _between(0, 1024)),
)



def config_problems(config: PipelineConfig, plan: Sequence[StageType],
                    path: str = "config") -> list[tuple[str, str]]:
    """(field path, problem) for every out-of-range value of the stages in `plan` (the config
    has its defaults)."""
    stages = frozenset(plan)
    problems = [(f"{path}.{rule.path}", message)
                for rule in RULES if rule.applies(config, stages)
                if (message := rule.check(rule.read(config)))]
    if StageType.ADETAILER in stages:
        problems += [(f"{path}.adetailer.passes[{index}].{name}", message)
                     for index, adetailer_pass in enumerate(config.adetailer.passes)
                     for name, read, check in PASS_RULES
                     if (message := check(read(adetailer_pass)))]
    return problems


def entry_problems(entry: NormalizedJob, path: str) -> list[tuple[str, str]]:
    """(field path, problem) for every value of a normalized job the bundle would have refused
    in its config or its input images; unset values count as their built-in defaults. `path`
    names the entry (e.g. `entries[3]`), the paths its own fields."""
    config = with_builtin_defaults(_config_of(entry))
    problems = [(_entry_path(field, path), message)
                for field, message in config_problems(config, entry.stage_plan, "")]
    return problems + _image_problems(entry.input_images, path)


def varying_problems(seed: int, subseed: int, input_images: Sequence[str],
                     path: str) -> list[tuple[str, str]]:
    """entry_problems of the fields in which the entries of one job differ (seeds, input
    images), for an entry whose other fields are those of an entry already checked."""
    problems = [(f"{path}.{name}", message) for name, value in (("seed", seed),
                                                               ("subseed", subseed))
                if (message := _seed(value))]
    return problems + _image_problems(input_images, path)


def _image_problems(images: Sequence[str], path: str) -> list[tuple[str, str]]:
    return [(f"{path}.input_images[{index}]", problem) for index, image in enumerate(images)
            if (problem := image_path_problem(image))]


def _config_of(entry: NormalizedJob) -> PipelineConfig:
    """The config an entry was made from, as far as the checks read it."""
    plan = set(entry.stage_plan)
    return PipelineConfig(
        stages=StageFlags(StageType.TXT2IMG in plan, StageType.IMG2IMG in plan,
                          StageType.ADETAILER in plan, StageType.UPSCALE in plan),
        txt2img=Txt2ImgConfig(
            model=entry.model, vae=entry.vae, sampler_name=entry.sampler_name,
            scheduler=entry.scheduler, steps=entry.steps, cfg_scale=entry.cfg_scale,
            width=entry.width, height=entry.height, seed=entry.seed, subseed=entry.subseed,
            subseed_strength=entry.subseed_strength, clip_skip=entry.clip_skip,
            hires_fix=copy.copy(entry.hires_fix), refiner=copy.copy(entry.refiner)),
        img2img=copy.copy(entry.img2img),
        adetailer=AdetailerConfig([copy.copy(p) for p in entry.adetailer_passes]),
        upscale=copy.copy(entry.upscale), batch_size=entry.batch_size, n_iter=entry.n_iter)


def _entry_path(config_path: str, entry_path: str) -> str:
    """A config field's path as the entry names it: txt2img's fields are the entry's own,
    ADetailer's passes are `adetailer_passes`."""
    field = config_path.removeprefix(".").removeprefix("txt2img.")
    field = field.replace("adetailer.passes", "adetailer_passes", 1)
    return f"{entry_path}.{field}"

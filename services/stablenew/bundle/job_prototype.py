"""What every job of one config shares, made ready once: the stage plan, the config's
problems, and the canonical prototype of its jobs with the hasher for them.

Canonical jobs: settings of stages outside the plan are reset to their defaults (hires fix and
the refiner when off, img2img/ADetailer/upscale when not in the plan), the subseed is 0 when the
subseed strength is 0, and plans that start with upscale have batch_size = n_iter = 1 (one output
per input image). Equal work therefore gets an equal config_hash.

Texts that are never expanded (global prompts, set hires-fix prompts, ADetailer prompts) must
hold no matrix or wildcard token. Set hires-fix prompts are whole prompts of their own, so they
get the global terms appended; ADetailer passes never do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from stablenew.bundle.domain import FieldError, Reason
from stablenew.bundle.pipeline_rules import check_config, check_stage_plan, stage_plan
from stablenew.bundle.prompt_text import first_token, join_prompt
from stablenew.contract.job_hasher import JobHasher
from stablenew.contract.model import (
    AdetailerPass,
    EntryOrigin,
    HiresFixConfig,
    Img2ImgConfig,
    NormalizedJob,
    PipelineConfig,
    PromptTag,
    RefinerConfig,
    StageType,
    UpscaleConfig,
)


@dataclass
class PreparedConfig:
    """A config made ready once and shared by every part that has an equal one: its plan and
    problems, its jobs' prototype and hasher, the global prompts and the seeds it asks for."""

    plan: list[StageType]
    errors: list[FieldError]
    prototype: NormalizedJob
    hasher: JobHasher | None
    global_positive: str
    global_negative: str
    globals_have_tags: bool
    seed: int
    subseed: int


def prepare_config(config: PipelineConfig, has_images: bool) -> PreparedConfig:
    """`config` (with its built-in defaults) made ready; `has_images`: the part has input images.
    A config with errors gets no hasher: it never makes a job."""
    plan = stage_plan(config.stages)
    errors = check_stage_plan(plan, has_images) + check_config(config, plan)
    errors += _constant_text_errors(config, plan)
    prototype = _prototype(config, plan)
    txt2img = config.txt2img
    return PreparedConfig(
        plan=plan,
        errors=errors,
        prototype=prototype,
        hasher=None if errors else JobHasher(prototype),
        global_positive=config.global_positive.strip(),
        global_negative=config.global_negative.strip(),
        globals_have_tags="<" in config.global_positive + config.global_negative,
        seed=txt2img.seed,
        subseed=txt2img.subseed if txt2img.subseed_strength else 0,
    )


def _constant_text_errors(config: PipelineConfig, plan: list[StageType]) -> list[FieldError]:
    """Tokens in texts that are never expanded (global, hires and ADetailer prompts)."""
    texts = {"config.global_positive": config.global_positive,
             "config.global_negative": config.global_negative}
    if StageType.TXT2IMG in plan and config.txt2img.hires_fix.enabled:
        texts["config.txt2img.hires_fix.prompt"] = config.txt2img.hires_fix.prompt
        texts["config.txt2img.hires_fix.negative_prompt"] = config.txt2img.hires_fix.negative_prompt
    if StageType.ADETAILER in plan:
        for index, adetailer_pass in enumerate(config.adetailer.passes):
            texts[f"config.adetailer.passes[{index}].prompt"] = adetailer_pass.prompt
            texts[f"config.adetailer.passes[{index}].negative_prompt"] = (
                adetailer_pass.negative_prompt)
    errors = []
    for path, text in texts.items():
        token = first_token(text)
        if token is not None:
            errors.append(FieldError(path, Reason.UNRESOLVED_TOKEN,
                                     f"{token.display} is not expanded here; write the text out"))
    return errors


def _prototype(config: PipelineConfig, plan: list[StageType]) -> NormalizedJob:
    """Everything the jobs of a config share, in canonical form (module docstring)."""
    stages = set(plan)
    txt2img = config.txt2img
    starts_on_images = bool(plan) and plan[0] == StageType.UPSCALE
    return NormalizedJob(
        stage_plan=list(plan),
        subseed_strength=txt2img.subseed_strength,
        model=txt2img.model,
        vae=txt2img.vae,
        sampler_name=txt2img.sampler_name,
        scheduler=txt2img.scheduler,
        width=txt2img.width,
        height=txt2img.height,
        steps=txt2img.steps,
        cfg_scale=txt2img.cfg_scale,
        batch_size=1 if starts_on_images else config.batch_size,
        n_iter=1 if starts_on_images else config.n_iter,
        clip_skip=txt2img.clip_skip,
        hires_fix=_hires_fix(config, stages),
        refiner=(copy.copy(txt2img.refiner)
                 if StageType.TXT2IMG in stages and txt2img.refiner.enabled else RefinerConfig()),
        img2img=copy.copy(config.img2img) if StageType.IMG2IMG in stages else Img2ImgConfig(),
        adetailer_passes=_passes(config, stages),
        upscale=copy.copy(config.upscale) if StageType.UPSCALE in stages else UpscaleConfig(),
    )


def _hires_fix(config: PipelineConfig, stages: set[StageType]) -> HiresFixConfig:
    hires = config.txt2img.hires_fix
    if StageType.TXT2IMG not in stages or not hires.enabled:
        return HiresFixConfig()
    # Set hires prompts are whole prompts of their own, so they get the global terms too.
    return replace(
        hires,
        prompt=join_prompt(hires.prompt.strip(), config.global_positive.strip())
        if hires.prompt.strip() else "",
        negative_prompt=join_prompt(hires.negative_prompt.strip(), config.global_negative.strip())
        if hires.negative_prompt.strip() else "",
    )


def _passes(config: PipelineConfig, stages: set[StageType]) -> list[AdetailerPass]:
    if StageType.ADETAILER not in stages:
        return []
    return [copy.copy(adetailer_pass) for adetailer_pass in config.adetailer.passes]


@dataclass(slots=True)
class JobText:
    """One variant's final prompts and the tags they hold."""

    variant_index: int
    positive: str
    negative: str
    tags: list[PromptTag]


def job_of(prototype: NormalizedJob, index: int, text: JobText, seed: int, subseed: int,
         images: list[str], origin: EntryOrigin, job_hash: str) -> NormalizedJob:
    """A job of `prototype` with its own place, text, seeds, images, origin and hash."""
    return NormalizedJob(
        index=index,
        prompt=text.positive,
        negative_prompt=text.negative,
        stage_plan=list(prototype.stage_plan),
        seed=seed,
        subseed=subseed,
        subseed_strength=prototype.subseed_strength,
        model=prototype.model,
        vae=prototype.vae,
        sampler_name=prototype.sampler_name,
        scheduler=prototype.scheduler,
        width=prototype.width,
        height=prototype.height,
        steps=prototype.steps,
        cfg_scale=prototype.cfg_scale,
        batch_size=prototype.batch_size,
        n_iter=prototype.n_iter,
        clip_skip=prototype.clip_skip,
        hires_fix=prototype.hires_fix,
        refiner=prototype.refiner,
        img2img=prototype.img2img,
        adetailer_passes=list(prototype.adetailer_passes),
        upscale=prototype.upscale,
        input_images=images,
        origin=origin,
        tags=text.tags,
        config_hash=job_hash,
    )

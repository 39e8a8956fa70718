"""Normalized job -> the WebUI requests of its stage plan, and back.

`plan_requests` builds every request of an entry before anything is sent (the images a stage
feeds to the next are filled in while running). `executed_job` reads those requests back into a
NormalizedJob, so the runner can recompute the config hash from what it actually sends and refuse
an entry whose requests would not make what was previewed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from stablenew.contract.model import (
    GENERATION_STAGES,
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

ADETAILER_SCRIPT = "ADetailer"


@dataclass
class StageRequest:
    """One WebUI call: which endpoint, and the JSON body without its input images."""

    stage: StageType
    endpoint: str  # "txt2img", "img2img" or "extra-single-image"
    body: dict[str, Any]
    # Only for the ADetailer stage: one ADetailer tab per pass, each sent in a call of its own.
    adetailer_tabs: list[dict[str, Any]] = field(default_factory=list)
    # Only for an img2img upscale: the factor the input size is multiplied by when it is sent.
    scale: float = 0.0


@dataclass
class EntryPlan:
    model: str
    vae: str
    requests: list[StageRequest]


def _generation_fields(job: NormalizedJob) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "seed": job.seed,
        "subseed": job.subseed,
        "subseed_strength": job.subseed_strength,
        "sampler_name": job.sampler_name,
        "steps": job.steps,
        "cfg_scale": job.cfg_scale,
        "width": job.width,
        "height": job.height,
        "batch_size": job.batch_size,
        "n_iter": job.n_iter,
        "send_images": True,
        "save_images": False,
        "override_settings": {},
        "override_settings_restore_afterwards": True,
    }
    if job.scheduler:
        body["scheduler"] = job.scheduler
    if job.clip_skip:
        body["override_settings"]["CLIP_stop_at_last_layers"] = job.clip_skip
    return body


# Text fields of the hires fix the WebUI reads as "not set" only when absent (null): "" is a
# value to it. hr_upscaler "" is "could not find upscaler named" (absent: the latent default),
# hr_scheduler "" runs Automatic (absent: the first pass's scheduler). So "" is never sent.
_HIRES_TEXT = (("hr_upscaler", "upscaler"), ("hr_checkpoint_name", "checkpoint"),
               ("hr_sampler_name", "sampler_name"), ("hr_scheduler", "scheduler"),
               ("hr_prompt", "prompt"), ("hr_negative_prompt", "negative_prompt"))


def _hires_fields(hires: HiresFixConfig) -> dict[str, Any]:
    if not hires.enabled:
        return {}
    body: dict[str, Any] = {
        "enable_hr": True, "hr_scale": hires.scale,
        "hr_second_pass_steps": hires.second_pass_steps, "hr_resize_x": hires.resize_x,
        "hr_resize_y": hires.resize_y, "denoising_strength": hires.denoising_strength,
    }
    for key, attribute in _HIRES_TEXT:
        if value := getattr(hires, attribute):
            body[key] = value
    return body


def _refiner_fields(refiner: RefinerConfig) -> dict[str, Any]:
    if not refiner.enabled:
        return {}
    return {"refiner_checkpoint": refiner.checkpoint, "refiner_switch_at": refiner.switch_at}


def txt2img_request(job: NormalizedJob) -> StageRequest:
    body = _generation_fields(job) | _hires_fields(job.hires_fix) | _refiner_fields(job.refiner)
    return StageRequest(StageType.TXT2IMG, "txt2img", body)


def img2img_request(job: NormalizedJob, first: bool) -> StageRequest:
    """img2img as the generation stage (batch per input image) or refining each image once."""
    settings = resolved_img2img(job)
    body = _generation_fields(job) | {
        "denoising_strength": settings.denoising_strength,
        "resize_mode": int(settings.resize_mode),  # the WebUI's own number
        "steps": settings.steps,
        "cfg_scale": settings.cfg_scale,
        "sampler_name": settings.sampler_name,
    }
    if settings.scheduler:
        body["scheduler"] = settings.scheduler
    if not first:
        body |= {"batch_size": 1, "n_iter": 1}
    return StageRequest(StageType.IMG2IMG, "img2img", body)


def resolved_img2img(job: NormalizedJob) -> Img2ImgConfig:
    """img2img settings left at 0/"" mean "as the generation"."""
    settings = job.img2img
    return Img2ImgConfig(
        denoising_strength=settings.denoising_strength, resize_mode=settings.resize_mode,
        steps=settings.steps or job.steps, cfg_scale=settings.cfg_scale or job.cfg_scale,
        sampler_name=settings.sampler_name or job.sampler_name,
        scheduler=settings.scheduler or job.scheduler)


def adetailer_arguments(detail: AdetailerPass) -> dict[str, Any]:
    """One ADetailer tab; only keys the extension knows (an unknown key voids the whole tab)."""
    arguments: dict[str, Any] = {
        "ad_model": detail.model,
        "ad_tab_enable": True,
        "ad_prompt": detail.prompt,
        "ad_negative_prompt": detail.negative_prompt,
        "ad_confidence": detail.confidence,
        "ad_mask_blur": detail.mask_blur,
        "ad_dilate_erode": detail.dilate_erode,
        "ad_denoising_strength": detail.denoising_strength,
        "ad_inpaint_only_masked": detail.inpaint_only_masked,
        "ad_inpaint_only_masked_padding": detail.inpaint_padding,
    }
    if detail.steps:
        arguments |= {"ad_use_steps": True, "ad_steps": detail.steps}
    if detail.cfg_scale:
        arguments |= {"ad_use_cfg_scale": True, "ad_cfg_scale": detail.cfg_scale}
    if detail.sampler_name:
        arguments |= {"ad_use_sampler": True, "ad_sampler": detail.sampler_name}
    return arguments


def adetailer_request(job: NormalizedJob) -> StageRequest:
    """img2img with skip_img2img: ADetailer details the input image and nothing else runs.

    Each pass is its own call (`adetailer_tabs`, one tab per call, in order, each on the image
    the previous pass returned): the extension changes the image only when its pass detected
    something, so one pass per call lets the runner tell, pass by pass, whether it detailed the
    image or found nothing. The extension applies several tabs in the same order to the same
    image, so the images are the same as with one call.
    """
    body = _generation_fields(job) | {"batch_size": 1, "n_iter": 1, "denoising_strength": 0.0}
    tabs = [adetailer_arguments(detail) for detail in job.adetailer_passes]
    return StageRequest(StageType.ADETAILER, "img2img", body, adetailer_tabs=tabs)


def adetailer_script(tab: dict[str, Any]) -> dict[str, Any]:
    """alwayson_scripts for one pass: enabled, skip_img2img, the tab."""
    return {ADETAILER_SCRIPT: {"args": [True, True, tab]}}


def upscale_request(job: NormalizedJob) -> StageRequest:
    upscale = job.upscale
    if upscale.mode == UpscaleMode.IMG2IMG:
        body = _generation_fields(job) | {
            "denoising_strength": upscale.denoising_strength, "batch_size": 1, "n_iter": 1,
            "resize_mode": 0,
        }
        return StageRequest(StageType.UPSCALE, "img2img", body, scale=upscale.factor)
    body = {
        "resize_mode": 0,
        "upscaling_resize": upscale.factor,
        "upscaler_1": upscale.upscaler or "None",
        "upscaler_2": upscale.upscaler_2 or "None",
        "extras_upscaler_2_visibility": upscale.upscaler_2_visibility,
    }
    return StageRequest(StageType.UPSCALE, "extra-single-image", body)


def _stage_request(job: NormalizedJob, stage: StageType, position: int) -> StageRequest:
    if stage == StageType.TXT2IMG:
        return txt2img_request(job)
    if stage == StageType.IMG2IMG:
        return img2img_request(job, first=position == 0)
    if stage == StageType.ADETAILER:
        return adetailer_request(job)
    return upscale_request(job)


def effective_generation(job: NormalizedJob) -> NormalizedJob:
    """The job as its calls run it: when img2img is the generation stage (no txt2img), its
    steps, CFG, sampler and scheduler are the generation's for every call."""
    if StageType.TXT2IMG in job.stage_plan or StageType.IMG2IMG not in job.stage_plan:
        return job
    settings = resolved_img2img(job)
    return replace(job, steps=settings.steps, cfg_scale=settings.cfg_scale,
                   sampler_name=settings.sampler_name, scheduler=settings.scheduler)


def plan_requests(job: NormalizedJob) -> EntryPlan:
    effective = effective_generation(job)
    requests = [_stage_request(effective, stage, i) for i, stage in enumerate(job.stage_plan)]
    return EntryPlan(job.model, job.vae, requests)


# --- reading the requests back ------------------------------------------------------------


def _read_generation(job: NormalizedJob, body: dict[str, Any]) -> NormalizedJob:
    overrides = body.get("override_settings", {})
    return replace(
        job, prompt=body["prompt"], negative_prompt=body["negative_prompt"], seed=body["seed"],
        subseed=body["subseed"], subseed_strength=body["subseed_strength"],
        sampler_name=body["sampler_name"], scheduler=body.get("scheduler", ""),
        steps=body["steps"], cfg_scale=body["cfg_scale"], width=body["width"],
        height=body["height"], batch_size=body["batch_size"], n_iter=body["n_iter"],
        clip_skip=overrides.get("CLIP_stop_at_last_layers", 0),
    )


def _read_txt2img(job: NormalizedJob, request: StageRequest) -> NormalizedJob:
    body = request.body
    job = _read_generation(job, body)
    if body.get("enable_hr"):
        job.hires_fix = HiresFixConfig(
            enabled=True, scale=body["hr_scale"], second_pass_steps=body["hr_second_pass_steps"],
            resize_x=body["hr_resize_x"], resize_y=body["hr_resize_y"],
            denoising_strength=body["denoising_strength"],
            **{attribute: body.get(key, "") for key, attribute in _HIRES_TEXT})
    if "refiner_checkpoint" in body:
        job.refiner = RefinerConfig(True, body["refiner_checkpoint"], body["refiner_switch_at"])
    return job


def _read_img2img(job: NormalizedJob, request: StageRequest, first: bool) -> NormalizedJob:
    body = request.body
    if first:
        # No txt2img before it: this call carries the generation settings.
        job = _read_generation(job, body)
    else:
        job = _read_repeated(job, {**body, "steps": job.steps, "cfg_scale": job.cfg_scale,
                                   "sampler_name": job.sampler_name,
                                   "scheduler": job.scheduler})
    job.img2img = Img2ImgConfig(
        denoising_strength=body["denoising_strength"],
        resize_mode=ResizeMode(body["resize_mode"]), steps=body["steps"],
        cfg_scale=body["cfg_scale"], sampler_name=body["sampler_name"],
        scheduler=body.get("scheduler", ""))
    return job


# Generation fields every later img2img call repeats; each copy must say the same.
REPEATED_FIELDS = ("prompt", "negative_prompt", "steps", "cfg_scale", "sampler_name")


def _read_repeated(job: NormalizedJob, body: dict[str, Any]) -> NormalizedJob:
    """A later call that sends other generation values than the generation stage makes the
    read-back plan invalid (an UNSPECIFIED stage), which no queued job can hash like."""
    clip_skip = body.get("override_settings", {}).get("CLIP_stop_at_last_layers", 0)
    consistent = (all(body[name] == getattr(job, name) for name in REPEATED_FIELDS)
                  and body.get("scheduler", "") == job.scheduler and clip_skip == job.clip_skip)
    if not consistent:
        job.stage_plan = [*job.stage_plan, StageType.UNSPECIFIED]
    return job


def _read_adetailer(job: NormalizedJob, request: StageRequest) -> NormalizedJob:
    job = _read_repeated(job, request.body)
    tabs = request.adetailer_tabs
    job.adetailer_passes = [AdetailerPass(
        model=tab["ad_model"], prompt=tab["ad_prompt"], negative_prompt=tab["ad_negative_prompt"],
        confidence=tab["ad_confidence"], mask_blur=tab["ad_mask_blur"],
        dilate_erode=tab["ad_dilate_erode"], denoising_strength=tab["ad_denoising_strength"],
        inpaint_only_masked=tab["ad_inpaint_only_masked"],
        inpaint_padding=tab["ad_inpaint_only_masked_padding"], steps=tab.get("ad_steps", 0),
        cfg_scale=tab.get("ad_cfg_scale", 0.0), sampler_name=tab.get("ad_sampler", ""))
        for tab in tabs]
    return job


def _read_upscale(job: NormalizedJob, request: StageRequest, generated: bool) -> NormalizedJob:
    body = request.body
    if request.endpoint == "img2img":
        # Upscale-only through img2img: this call carries the generation settings.
        job = _read_repeated(job, body) if generated else _read_generation(job, body)
        job.upscale = UpscaleConfig(mode=UpscaleMode.IMG2IMG, factor=request.scale,
                                    denoising_strength=body["denoising_strength"])
        return job
    job.upscale = UpscaleConfig(
        mode=UpscaleMode.EXTRAS, factor=body["upscaling_resize"],
        upscaler="" if body["upscaler_1"] == "None" else body["upscaler_1"],
        upscaler_2="" if body["upscaler_2"] == "None" else body["upscaler_2"],
        upscaler_2_visibility=body["extras_upscaler_2_visibility"])
    return job


def executed_job(queued: NormalizedJob, plan: EntryPlan) -> NormalizedJob:
    """The normalized job that `plan` would make, read from the requests alone.

    Starts from an empty job (only bookkeeping and input images copied), so a field the requests
    do not carry is left at its default and shows up as a hash mismatch.
    """
    job = NormalizedJob(index=queued.index, origin=queued.origin, tags=queued.tags,
                        input_images=list(queued.input_images), model=plan.model, vae=plan.vae)
    job.stage_plan = [request.stage for request in plan.requests]
    generated = False
    for request in plan.requests:
        if request.stage == StageType.TXT2IMG:
            job, generated = _read_txt2img(job, request), True
        elif request.stage == StageType.IMG2IMG:
            job, generated = _read_img2img(job, request, first=not generated), True
        elif request.stage == StageType.ADETAILER:
            job = _read_adetailer(job, request)
        else:
            job = _read_upscale(job, request, generated)
    return job


def comparable(job: NormalizedJob) -> NormalizedJob:
    """The job with only what its stage plan uses, and img2img defaults resolved.

    The runner compares comparable(queued) with comparable(executed): a setting of a stage that
    does not run cannot change the images, and "0 = as the generation" is one value, not two.
    """
    plan = set(job.stage_plan)
    result = replace(effective_generation(job),
                     img2img=resolved_img2img(job) if StageType.IMG2IMG in plan
                     else Img2ImgConfig())
    img2img_upscale = StageType.UPSCALE in plan and job.upscale.mode == UpscaleMode.IMG2IMG
    if not plan & GENERATION_STAGES and not img2img_upscale:
        generation = NormalizedJob()
        result = replace(result, prompt="", negative_prompt="", seed=0, subseed=0,
                         subseed_strength=0.0, sampler_name="", scheduler="", steps=0,
                         cfg_scale=0.0, width=0, height=0, batch_size=generation.batch_size,
                         n_iter=generation.n_iter, clip_skip=0)
    if job.stage_plan and job.stage_plan[0] == StageType.UPSCALE:
        result.batch_size = result.n_iter = 1  # one output per input image
    if StageType.TXT2IMG not in plan or not job.hires_fix.enabled:
        result.hires_fix = HiresFixConfig()
    if StageType.TXT2IMG not in plan or not job.refiner.enabled:
        result.refiner = RefinerConfig()
    if StageType.ADETAILER not in plan:
        result.adetailer_passes = []
    result.upscale = _comparable_upscale(job.upscale) if StageType.UPSCALE in plan else (
        UpscaleConfig())
    return result


def _comparable_upscale(upscale: UpscaleConfig) -> UpscaleConfig:
    """Unspecified runs as extras; each mode ignores the other mode's settings."""
    if upscale.mode == UpscaleMode.IMG2IMG:
        return UpscaleConfig(mode=UpscaleMode.IMG2IMG, factor=upscale.factor,
                             denoising_strength=upscale.denoising_strength)
    return replace(upscale, mode=UpscaleMode.EXTRAS, denoising_strength=0.0)

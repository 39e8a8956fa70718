"""txt2img and img2img: from a validated request to the WebUI's response.

A request is first planned (everything the WebUI checks or resolves before sampling: scripts,
sampler names, seeds, hires size, refiner and override models) and then run under the FIFO
generation lock: faults, model load, one simulated sampling loop per n_iter batch (then hires and
ADetailer passes), and the response with images, echoed parameters and the info JSON string.
"""

from __future__ import annotations

import json
import logging
import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from stablenew.emulator import adetailer, catalog, images, schema
from stablenew.emulator.catalog import Checkpoint, Sampler
from stablenew.emulator.errors import ApiError, exception, http_exception, out_of_memory
from stablenew.emulator.faults import FaultControl
from stablenew.emulator.progress import FifoLock, Progress
from stablenew.sdwebui.adetailer_tabs import (
    SKIPPED_IMG2IMG_SAMPLER,
    SKIPPED_IMG2IMG_SIZE,
    SKIPPED_IMG2IMG_STEPS,
    ordinal,
)
from stablenew.sdwebui.infotext import create_infotext

log = logging.getLogger("stablenew.emulator.generation")

MAX_SEED = 4294967294
# Emulated VRAM: more pixels than this in one batch (width x height x batch_size) runs out.
VRAM_PIXELS = 4096 * 4096
INJECTED_FAILURE = "Emulated failure injected by the StableNew emulator (fail_next)"


class Runtime(Protocol):
    """What a generation needs from the emulated WebUI."""

    lock: FifoLock
    progress: Progress
    faults: FaultControl

    def load_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def options_snapshot(self) -> dict[str, Any]: ...

    def record(self, endpoint: str, prompt: str, seed: int, images: int, status: int,
               received: float) -> None:
        ...


@dataclass(frozen=True)
class Hires:
    width: int
    height: int
    steps: int
    denoising_strength: float


@dataclass
class Plan:
    kind: str
    # The request as validated (echoed back as "parameters") and with null fields defaulted
    # (what the emulator computes with).
    echo: dict[str, Any]
    values: dict[str, Any]
    options: dict[str, Any]
    persist_options: dict[str, Any]
    checkpoint: Checkpoint
    sampler: Sampler
    schedule: str
    prompts: list[str]
    negatives: list[str]
    seeds: list[int]
    subseeds: list[int]
    hires: Hires | None
    refiner: Checkpoint | None
    detailer: adetailer.AdetailerPlan | None
    extra: dict[str, Any]
    task_id: str
    # Steps an ADetailer pass samples unless its tab says (skip_img2img reports 1 step).
    detail_steps: int = 0
    mask: Image.Image | None = None
    init_images: list[Image.Image] = field(default_factory=list)

    @property
    def width(self) -> int:
        return int(self.values["width"])

    @property
    def height(self) -> int:
        return int(self.values["height"])

    @property
    def steps(self) -> int:
        return int(self.values["steps"])

    @property
    def batch_size(self) -> int:
        return int(self.values["batch_size"])

    @property
    def n_iter(self) -> int:
        return int(self.values["n_iter"])

    @property
    def denoising_strength(self) -> float:
        return float(self.values["denoising_strength"])

    @property
    def clip_skip(self) -> int:
        return int(self.options.get("CLIP_stop_at_last_layers") or 1)

    @property
    def restore_faces(self) -> bool:
        value = self.values["restore_faces"]
        return bool(self.options["face_restoration"] if value is None else value)

    @property
    def vae(self) -> catalog.Vae | None:
        return catalog.find_vae(str(self.options.get("sd_vae") or ""))

    @property
    def sample_steps(self) -> int:
        """Steps the first pass samples: img2img only runs the denoised part."""
        if self.kind == "img2img":
            return max(1, int(self.steps * self.denoising_strength))
        return max(1, self.steps)


# ---------------------------------------------------------------- planning


def _check_scripts(kind: str, values: dict[str, Any]) -> None:
    """Unknown selectable or always-on scripts are a 422, as in the WebUI's script lookup."""
    script_name = values["script_name"]
    if script_name:
        known = {s.lower() for s in catalog.SELECTABLE_SCRIPTS[kind]}
        if script_name.lower() not in known:
            raise http_exception(422, f"Script '{script_name}' not found")
    alwayson = {s.lower() for s in catalog.ALWAYSON_SCRIPTS}
    for name in values["alwayson_scripts"]:
        if str(name).lower() not in alwayson:
            raise http_exception(422, f"Script '{name}' not found")


def _effective_options(values: dict[str, Any],
                       options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options with override_settings applied, and what to keep afterwards. An unknown
    override checkpoint is silently dropped; an unknown option key is the WebUI's KeyError."""
    overrides = dict(values["override_settings"] or {})
    if "sd_model_checkpoint" in overrides:
        checkpoint = catalog.find_checkpoint(str(overrides["sd_model_checkpoint"]))
        if checkpoint is None:
            overrides.pop("sd_model_checkpoint")
        else:
            overrides["sd_model_checkpoint"] = checkpoint.title
    for key in overrides:
        if key not in options:
            raise exception("KeyError", repr(key))
    keep = {} if values["override_settings_restore_afterwards"] is not False else overrides
    return {**options, **overrides}, keep


def _checkpoint_of(options: dict[str, Any]) -> Checkpoint:
    return catalog.find_checkpoint(options["sd_model_checkpoint"]) or catalog.DEFAULT_CHECKPOINT


def bind_options(plan: Plan, options: dict[str, Any]) -> None:
    """Re-read the options once the request holds the lock: the WebUI reads them there, so a
    request queued behind a model switch runs on the new model."""
    plan.options, plan.persist_options = _effective_options(plan.values, options)
    plan.checkpoint = _checkpoint_of(plan.options)


def _fixed_seed(seed: int | None) -> int:
    return random.randrange(MAX_SEED) if seed is None or seed == -1 else int(seed)


def _seeds(values: dict[str, Any], count: int) -> tuple[list[int], list[int]]:
    seed = _fixed_seed(values["seed"])
    subseed = _fixed_seed(values["subseed"])
    strength = values["subseed_strength"] or 0
    seeds = [seed + (i if strength == 0 else 0) for i in range(count)]
    return seeds, [subseed + i for i in range(count)]


def _checkpoint_named(name: str | None, ignore: str) -> Checkpoint | None:
    if name in (None, "", "None", "none", ignore):
        return None
    found = catalog.closest_checkpoint(str(name))
    if found is None:
        raise exception("Exception", f"Could not find checkpoint with name {name}")
    return found


def _hires_size(values: dict[str, Any]) -> tuple[int, int, str, object]:
    """Target size and how the infotext describes it ("Hires upscale" or "Hires resize")."""
    width, height = int(values["width"]), int(values["height"])
    resize_x, resize_y = int(values["hr_resize_x"] or 0), int(values["hr_resize_y"] or 0)
    if resize_x == 0 and resize_y == 0:
        scale = float(values["hr_scale"] or 2.0)
        return int(width * scale), int(height * scale), "Hires upscale", scale
    if resize_y == 0:
        resize_y = resize_x * height // max(width, 1)
    elif resize_x == 0:
        resize_x = resize_y * width // max(height, 1)
    return resize_x, resize_y, "Hires resize", f"{resize_x}x{resize_y}"


def _hires(values: dict[str, Any], sampler: Sampler, scheduler: catalog.Scheduler,
           extra: dict[str, Any]) -> Hires | None:
    if not values["enable_hr"]:
        return None
    upscaler = values["hr_upscaler"]
    if upscaler is not None and upscaler not in catalog.LATENT_UPSCALE_MODES \
            and catalog.find_upscaler(upscaler) is None:
        # "" too: only a missing (null) hr_upscaler means the latent default.
        raise exception("Exception", f"could not find upscaler named {upscaler}")
    extra["Denoising strength"] = values["denoising_strength"]
    hr_checkpoint = _checkpoint_named(values["hr_checkpoint_name"], "Use same checkpoint")
    if hr_checkpoint is not None:
        extra["Hires checkpoint"] = hr_checkpoint.short_title
    hr_sampler = values["hr_sampler_name"]
    if hr_sampler not in (None, "Use same sampler", sampler.name):
        extra["Hires sampler"] = hr_sampler
    if values["hr_prompt"] and values["hr_prompt"] != values["prompt"]:
        extra["Hires prompt"] = values["hr_prompt"]
    extra["Hires schedule type"] = _hires_schedule(values, sampler, scheduler, extra)
    width, height, label, described = _hires_size(values)
    extra[label] = described
    second_steps = int(values["hr_second_pass_steps"] or 0)
    if second_steps:
        extra["Hires steps"] = second_steps
    if upscaler is not None:
        extra["Hires upscaler"] = upscaler
    strength = float(extra["Denoising strength"])
    steps = max(1, int((second_steps or int(values["steps"])) * strength))
    return Hires(width, height, steps, strength)


def _hires_schedule(values: dict[str, Any], sampler: Sampler, scheduler: catalog.Scheduler,
                    extra: dict[str, Any]) -> str | None:
    """The hires pass's schedule when it differs from the first pass's. A missing hr_scheduler
    copies the first pass's scheduler; "" is Automatic: the hires sampler's own default."""
    requested = values["hr_scheduler"]
    hires_scheduler = scheduler if requested is None else (
        catalog.find_scheduler(requested) or catalog.AUTOMATIC)
    hires_sampler = catalog.find_sampler(values["hr_sampler_name"] or "") or sampler
    label = catalog.schedule_label(hires_sampler, hires_scheduler)
    first = catalog.schedule_label(sampler, scheduler)
    if label in (catalog.AUTOMATIC.label, first):
        return None  # the model's own schedule, or the same as the first pass: not written
    return label


def _refiner(values: dict[str, Any], extra: dict[str, Any]) -> Checkpoint | None:
    refiner = _checkpoint_named(values["refiner_checkpoint"], "None")
    if refiner is not None:
        extra["Refiner"] = refiner.short_title
        extra["Refiner switch at"] = values["refiner_switch_at"]
    return refiner


def _skip_img2img(values: dict[str, Any]) -> Sampler:
    """ADetailer's skip_img2img: the img2img it skips runs as 1 step of Euler at 128x128, and
    those are the values info and the infotext report."""
    values.update(steps=SKIPPED_IMG2IMG_STEPS, width=SKIPPED_IMG2IMG_SIZE,
                  height=SKIPPED_IMG2IMG_SIZE)
    euler = catalog.find_sampler(SKIPPED_IMG2IMG_SAMPLER)
    assert euler is not None
    return euler


def _schedule(requested: str | None, sampler: Sampler, scheduler: catalog.Scheduler,
              extra: dict[str, Any]) -> str:
    """What the infotext's "Schedule type" says. A known scheduler other than Automatic is
    also in extra_generation_params; an unknown one is written as sent, while the sampler runs
    the model's own schedule."""
    if requested and catalog.find_scheduler(requested) is None:
        return requested
    label = catalog.schedule_label(sampler, scheduler)
    if label != catalog.AUTOMATIC.label:
        extra["Schedule type"] = label
    return label


def new_task_id(kind: str, forced: str | None) -> str:
    if forced:
        return forced
    suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
    return f"task({kind}-{suffix})"


def _defaulted(kind: str, echo: dict[str, Any]) -> dict[str, Any]:
    fields = schema.TXT2IMG if kind == "txt2img" else schema.IMG2IMG
    values = dict(echo)
    for spec in fields:
        if values[spec.name] is None and spec.default is not None:
            values[spec.name] = schema.coerce_field(spec, False, None)
    return values


def plan_generation(kind: str, echo: dict[str, Any], options: dict[str, Any]) -> Plan:
    """Everything the WebUI resolves before it samples; raises the WebUI's errors."""
    values = _defaulted(kind, echo)
    _check_scripts(kind, values)
    if kind == "img2img" and values["init_images"] is None:
        raise http_exception(404, "Init image not found")
    mask = images.decode_image(values["mask"]) if kind == "img2img" and values["mask"] else None
    count = int(values["batch_size"]) * int(values["n_iter"])
    if count <= 0:
        raise exception("IndexError", "list index out of range")
    effective, keep = _effective_options(values, options)
    sampler, scheduler = catalog.resolve_sampler(values["sampler_name"] or
                                                 values["sampler_index"], values["scheduler"])
    extra: dict[str, Any] = {}
    if kind == "img2img":
        extra["Denoising strength"] = values["denoising_strength"]
        if mask is not None:
            extra["Mask blur"] = values["mask_blur"]
    hires = _hires(values, sampler, scheduler, extra) if kind == "txt2img" else None
    refiner = _refiner(values, extra)
    detailer = adetailer.plan(values["alwayson_scripts"])
    detail_steps = int(values["steps"])
    if detailer is not None:
        extra.update(detailer.extra_params())
        if kind == "img2img" and detailer.skip_img2img:
            sampler = _skip_img2img(values)
    schedule = _schedule(values["scheduler"], sampler, scheduler, extra)
    seeds, subseeds = _seeds(values, count)
    return Plan(
        kind=kind, echo=echo, values=values, options=effective, persist_options=keep,
        checkpoint=_checkpoint_of(effective), sampler=sampler, schedule=schedule,
        prompts=[values["prompt"] or ""] * count,
        negatives=[values["negative_prompt"] or ""] * count, seeds=seeds, subseeds=subseeds,
        hires=hires, refiner=refiner, detailer=detailer, extra=extra, detail_steps=detail_steps,
        task_id=new_task_id(kind, values["force_task_id"]), mask=mask,
    )


# ---------------------------------------------------------------- infotexts


def generation_params(plan: Plan, index: int) -> dict[str, object]:
    """The infotext's parameters for one image, in the WebUI's order."""
    options = plan.options
    vae = plan.vae
    strength = plan.values["subseed_strength"] or 0
    resize_w, resize_h = plan.values["seed_resize_from_w"], plan.values["seed_resize_from_h"]
    uses_ensd = plan.sampler.options.get("uses_ensd") and options["eta_noise_seed_delta"]
    return {
        "Steps": plan.steps,
        "Sampler": plan.sampler.name,
        "Schedule type": plan.schedule,
        "CFG scale": plan.values["cfg_scale"],
        "Seed": plan.seeds[index],
        "Face restoration": options["face_restoration_model"] if plan.restore_faces else None,
        "Size": f"{plan.width}x{plan.height}",
        "Model hash": plan.checkpoint.shorthash if options["add_model_hash_to_info"] else None,
        "Model": plan.checkpoint.model_name if options["add_model_name_to_info"] else None,
        "VAE hash": vae.sha256[:10] if vae and options["add_vae_hash_to_info"] else None,
        "VAE": vae.filename if vae and options["add_vae_name_to_info"] else None,
        "Variation seed": plan.subseeds[index] if strength else None,
        "Variation seed strength": strength or None,
        "Seed resize from": f"{resize_w}x{resize_h}"
        if (resize_w or 0) > 0 and (resize_h or 0) > 0 else None,
        "Denoising strength": plan.extra.get("Denoising strength"),
        "Conditional mask weight": 1.0 if _inpainting(plan) else None,
        "Clip skip": plan.clip_skip if plan.clip_skip > 1 else None,
        "ENSD": options["eta_noise_seed_delta"] if uses_ensd else None,
        "Tiling": "True" if plan.values["tiling"] else None,
        **plan.extra,
        "Version": catalog.VERSION if options["add_version_to_infotext"] else None,
    }


def _inpainting(plan: Plan) -> bool:
    return plan.kind == "img2img" and plan.checkpoint.is_inpainting


def infotext_for(plan: Plan, index: int) -> str:
    return create_infotext(plan.prompts[index], plan.negatives[index],
                           generation_params(plan, index))


# ---------------------------------------------------------------- running


def inject_fault(runtime: Runtime, endpoint: str, prompt: str) -> None:
    """Suffer the armed fault this request matches, if any (called holding the lock)."""
    fault = runtime.faults.take(endpoint, prompt)
    if fault is None:
        return
    log.warning("injecting fault %s", fault, extra={"endpoint": endpoint})
    if fault == "hang":
        runtime.faults.hang()
    elif fault == "oom":
        raise out_of_memory()
    else:
        raise exception("RuntimeError", INJECTED_FAILURE)


class Generation:
    """One planned request run to completion under the generation lock."""

    def __init__(self, plan: Plan, runtime: Runtime, endpoint: str) -> None:
        self.plan = plan
        self.runtime = runtime
        self.endpoint = endpoint
        self.progress = runtime.progress
        self.stopped = False

    def run(self) -> dict[str, Any]:
        plan = self.plan
        status = 500
        produced: list[Image.Image] = []
        received = time.time()
        try:
            with self.runtime.lock.held():
                job_count = plan.n_iter * (2 if plan.hires else 1)
                timestamp = self.progress.begin(f"scripts_{plan.kind}", job_count)
                try:
                    produced = self._generate()
                    response = self._response(produced, timestamp)
                finally:
                    self.progress.end()
            status = 200
            return response
        finally:
            self.runtime.record(self.endpoint, plan.prompts[0], plan.seeds[0], len(produced),
                                status, received)

    def _generate(self) -> list[Image.Image]:
        plan = self.plan
        bind_options(plan, self.runtime.options_snapshot())
        inject_fault(self.runtime, self.endpoint, plan.prompts[0])
        if plan.kind == "img2img":
            plan.init_images = self._decode_init_images()
        self.runtime.load_checkpoint(plan.checkpoint)
        self._check_memory()
        if self._skips_img2img():
            return self._skipped_img2img()
        latents: list[Image.Image] = []
        for iteration in range(plan.n_iter):
            if iteration and self.progress.interrupted:
                break
            latents.extend(self._iteration(iteration))
        if plan.refiner is not None:
            # The WebUI swaps the refiner's weights in mid-sampling; the next request swaps back.
            self.runtime.load_checkpoint(plan.refiner)
        return [images.to_pixels(latent) for latent in latents]

    def _decode_init_images(self) -> list[Image.Image]:
        decoded = [images.decode_image(str(x)) for x in self.plan.values["init_images"]]
        batch = self.plan.batch_size
        if not decoded:
            raise exception("IndexError", "list index out of range")
        if len(decoded) > batch and len(decoded) != 1:
            raise exception("RuntimeError", f"bad number of images passed: {len(decoded)}; "
                                            f"expecting {batch} or less")
        return decoded

    def _check_memory(self) -> None:
        plan = self.plan
        width, height = (plan.hires.width, plan.hires.height) if plan.hires else \
            (plan.width, plan.height)
        if max(width * height, plan.width * plan.height) * plan.batch_size > VRAM_PIXELS:
            raise out_of_memory()

    def _sample(self, steps: int, batch: int) -> float:
        """Simulated sampling; the fraction of steps done before an interrupt or skip."""
        for done in range(steps):
            if not self.progress.step(self.runtime.faults.step_seconds * batch):
                self.stopped = True
                return done / steps
        return 1.0

    def _iteration(self, iteration: int) -> list[Image.Image]:
        plan = self.plan
        self.progress.clear_skip()
        self.stopped = False
        indices = range(iteration * plan.batch_size, (iteration + 1) * plan.batch_size)
        first = [self._first_pass(i) for i in indices]
        self.progress.start_sampling(plan.sample_steps, _preview(first[0]))
        fraction = self._sample(plan.sample_steps, plan.batch_size)
        latents = [images.partial(latent, fraction) for latent in first]
        if plan.hires is not None and not self.stopped:
            latents = self._hires_pass(latents, indices)
        if plan.detailer is not None and not self.stopped:
            latents = [self._detail(latent, i) for latent, i in zip(latents, indices, strict=True)]
        self.progress.next_job()
        return latents

    def _skips_img2img(self) -> bool:
        detailer = self.plan.detailer
        return self.plan.kind == "img2img" and detailer is not None and detailer.skip_img2img

    def _skipped_img2img(self) -> list[Image.Image]:
        """ADetailer's skip_img2img: the 1-step img2img it throws away, then its passes on each
        input image as it is (pixel for pixel when no pass details it)."""
        plan = self.plan
        made: list[Image.Image] = []
        for iteration in range(plan.n_iter):
            if iteration and self.progress.interrupted:
                break
            self.progress.clear_skip()
            self.stopped = False
            indices = range(iteration * plan.batch_size, (iteration + 1) * plan.batch_size)
            sources = [plan.init_images[i % len(plan.init_images)].convert("RGB")
                       for i in indices]
            self.progress.start_sampling(plan.sample_steps, _preview(sources[0]))
            self._sample(plan.sample_steps, plan.batch_size)
            if not self.stopped:
                sources = [self._detail(image, i, pixels=True)
                           for image, i in zip(sources, indices, strict=True)]
            self.progress.next_job()
            made += sources
        return made

    def _digest(self, index: int, *more: object) -> bytes:
        plan, values = self.plan, self.plan.values
        strength = values["subseed_strength"] or 0
        return images.digest_of(
            plan.kind, plan.prompts[index], plan.negatives[index], plan.seeds[index],
            [plan.subseeds[index], strength] if strength else None, plan.width, plan.height,
            plan.sampler.name, plan.schedule, plan.steps, values["cfg_scale"],
            plan.checkpoint.sha256, plan.vae.filename if plan.vae else None, plan.clip_skip,
            bool(values["tiling"]), plan.restore_faces, values["eta"], *more)

    def _first_pass(self, index: int) -> Image.Image:
        plan = self.plan
        size = images.latent_size(plan.width, plan.height)
        if plan.kind == "txt2img":
            return images.pattern(self._digest(index), size)
        source = plan.init_images[index % len(plan.init_images)]
        base = images.fit(source, size, int(plan.values["resize_mode"] or 0))
        digest = self._digest(index, images.fingerprint(source), plan.denoising_strength)
        changed = images.rework(base, digest, plan.denoising_strength)
        if plan.mask is None:
            return changed
        return images.apply_mask(changed, base, plan.mask, int(plan.extra.get("Mask blur") or 0),
                                 bool(plan.values["inpainting_mask_invert"]))

    def _hires_pass(self, latents: list[Image.Image], indices: range) -> list[Image.Image]:
        hires = self.plan.hires
        assert hires is not None
        self.progress.next_job()
        size = images.latent_size(hires.width, hires.height)
        upscaled = [latent.resize(size, Image.Resampling.BICUBIC) for latent in latents]
        self.progress.start_sampling(hires.steps, _preview(upscaled[0]))
        fraction = self._sample(hires.steps, self.plan.batch_size)
        return [images.partial(images.rework(latent, self._digest(i, "hires", hires),
                                             hires.denoising_strength / 2), fraction)
                for latent, i in zip(upscaled, indices, strict=True)]

    def _detail(self, latent: Image.Image, index: int, pixels: bool = False) -> Image.Image:
        """ADetailer's passes on one image, as the extension runs them: a pass whose model is
        not installed raises, which ends the passes (the reply is still 200); a pass that
        detects nothing leaves the image as it is."""
        detailer = self.plan.detailer
        assert detailer is not None
        for detail_pass in detailer.passes:
            if self.stopped or self.progress.should_stop():
                break
            if not detail_pass.installed:
                log.warning("[-] ADetailer: Model %r not found.", detail_pass.model)
                break
            if self.runtime.faults.detects_nothing(detail_pass.model):
                log.info("[-] ADetailer: nothing detected on image %d with %s settings.",
                         index + 1, ordinal(detail_pass.position + 1))
                continue
            steps = detail_pass.steps(self.plan.detail_steps)
            self.progress.add_jobs(1)
            self.progress.next_job()
            self.progress.start_sampling(steps, _preview(latent))
            if self._sample(steps, 1) < 1:
                break
            latent = detail_pass.apply(latent, self.plan.seeds[index], self.plan.prompts[index],
                                       pixels)
        return latent

    def _response(self, produced: list[Image.Image], timestamp: str) -> dict[str, Any]:
        plan = self.plan
        infotexts = [infotext_for(plan, i) for i in range(len(produced))]
        outputs = list(produced)
        first_image = 0
        if self._wants_grid(len(produced)):
            outputs.insert(0, images.grid(produced))
            infotexts.insert(0, infotext_for(plan, 0))
            first_image = 1
        encoded = []
        if plan.values["send_images"] is not False:
            pnginfo = bool(plan.options["enable_pnginfo"])
            encoded = [images.encode_png(image, {"parameters": text} if pnginfo else None)
                       for image, text in zip(outputs, infotexts, strict=True)]
        info = self._info(infotexts, first_image, timestamp)
        return {"images": encoded, "parameters": self._echo(),
                "info": json.dumps(info, default=lambda _: None)}

    def _wants_grid(self, count: int) -> bool:
        options = self.plan.options
        return bool(self.plan.values["save_images"] and not self.plan.values["do_not_save_grid"]
                    and options["return_grid"]
                    and (count >= 2 or not options["grid_only_if_multiple"]) and count > 0)

    def _echo(self) -> dict[str, Any]:
        """parameters: the request as validated; img2img drops its (large) input images unless
        include_init_images is set."""
        echo = dict(self.plan.echo)
        if self.plan.kind == "img2img" and not echo["include_init_images"]:
            echo["init_images"] = None
            echo["mask"] = None
        return echo

    def _info(self, infotexts: list[str], first_image: int, timestamp: str) -> dict[str, Any]:
        plan = self.plan
        vae = plan.vae
        return {
            "prompt": plan.prompts[0], "all_prompts": plan.prompts,
            "negative_prompt": plan.negatives[0], "all_negative_prompts": plan.negatives,
            "seed": plan.seeds[0], "all_seeds": plan.seeds,
            "subseed": plan.subseeds[0], "all_subseeds": plan.subseeds,
            "subseed_strength": plan.values["subseed_strength"],
            "width": plan.width, "height": plan.height, "sampler_name": plan.sampler.name,
            "cfg_scale": plan.values["cfg_scale"], "steps": plan.steps,
            "batch_size": plan.batch_size, "restore_faces": plan.restore_faces,
            "face_restoration_model": plan.options["face_restoration_model"]
            if plan.restore_faces else None,
            "sd_model_name": plan.checkpoint.model_name,
            "sd_model_hash": plan.checkpoint.shorthash,
            "sd_vae_name": vae.filename if vae else None,
            "sd_vae_hash": vae.sha256[:10] if vae else None,
            "seed_resize_from_w": plan.values["seed_resize_from_w"],
            "seed_resize_from_h": plan.values["seed_resize_from_h"],
            "denoising_strength": plan.values["denoising_strength"],
            "extra_generation_params": plan.extra,
            "index_of_first_image": first_image, "infotexts": infotexts,
            "styles": plan.values["styles"] or [], "job_timestamp": timestamp,
            "clip_skip": plan.clip_skip,
            "is_using_inpainting_conditioning": _inpainting(plan),
            "version": catalog.VERSION,
        }


def _preview(latent: Image.Image) -> Callable[[float], Image.Image]:
    """The live preview /sdapi/v1/progress shows: the latent so far, at latent size."""
    return lambda fraction: images.partial(latent, fraction)


def run_generation(kind: str, values: dict[str, Any], options: dict[str, Any],
                   runtime: Runtime) -> tuple[dict[str, Any], Plan]:
    """Plan and run one request; returns the response body and the plan (for its options)."""
    started = time.monotonic()
    plan = plan_generation(kind, values, options)
    try:
        response = Generation(plan, runtime, kind).run()
    except ApiError as error:
        log.info("generation failed", extra={"endpoint": kind, "error": error.error,
                                             "task_id": plan.task_id})
        raise
    log.info("generation finished", extra={
        "endpoint": kind, "task_id": plan.task_id, "images": len(response["images"]),
        "seconds": round(time.monotonic() - started, 3)})
    return response, plan

"""What the WebUI reports it ran, compared with what the runner asked for.

The WebUI answers 200 to requests it did not run as asked: an unknown sampler runs as its first
sampler, an unknown scheduler as the model's own schedule, an ADetailer tab it cannot validate
is dropped. The truth is in each reply's `info`: the sampler, steps, CFG, size, seeds and model
the images were made with, and in `extra_generation_params` the schedule that ran ("Schedule
type", set only when a named schedule ran), the hires settings and one group of "ADetailer ..."
keys per valid tab. The infotext is not used: it repeats the scheduler as it was sent even when
the WebUI did not know it. Every value the runner asked for is compared with the one reported;
a difference is a Mismatch naming the request key and both values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stablenew.runner.domain import Capabilities
from stablenew.runner.webui_errors import bad_response
from stablenew.runner.webui_responses import GenerationResult
from stablenew.sdwebui.adetailer_tabs import (
    ARG_LABELS,
    SKIPPED_IMG2IMG_SAMPLER,
    SKIPPED_IMG2IMG_STEPS,
)
from stablenew.sdwebui.model_matching import ModelEntry
from stablenew.sdwebui.names import AUTOMATIC_SCHEDULER, find_scheduler, split_sampler

# The label of the schedule that ran, in extra_generation_params only when one was named.
SCHEDULE_TYPE = "Schedule type"
AUTOMATIC_LABEL = "Automatic"
# Request keys whose reported value is in info under the same name.
_INFO_KEYS = ("steps", "cfg_scale", "width", "height")
# Hires request keys and the extra_generation_params entry that reports each (when sent).
_HIRES_KEYS = (("hr_upscaler", "Hires upscaler"), ("hr_second_pass_steps", "Hires steps"),
               ("hr_checkpoint_name", "Hires checkpoint"))
# The ADetailer arguments a reply reports back and the runner checks. Prompts are left out:
# the extension rewrites them ([PROMPT], [SEP]) before it reports them.
_CHECKED_TAB_KEYS = ("ad_model", "ad_confidence", "ad_dilate_erode", "ad_mask_blur",
                     "ad_denoising_strength", "ad_inpaint_only_masked")
# Reported only while their switch ("ad_use_steps", ...) is on.
_SWITCHED_TAB_KEYS = (("ad_inpaint_only_masked", "ad_inpaint_only_masked_padding"),
                      ("ad_use_steps", "ad_steps"), ("ad_use_cfg_scale", "ad_cfg_scale"),
                      ("ad_use_sampler", "ad_sampler"))


@dataclass(frozen=True)
class Mismatch:
    """One value the WebUI ran differently from the request."""

    key: str
    asked: Any
    ran: Any

    def __str__(self) -> str:
        return f"{self.key}: asked for {self.asked!r}, the WebUI ran {self.ran!r}"


@dataclass(frozen=True)
class Report:
    """One txt2img/img2img reply's account of what it ran."""

    info: dict[str, Any]
    # extra_generation_params without its unset (null) entries.
    params: dict[str, Any]

    @classmethod
    def of(cls, result: GenerationResult, endpoint: str) -> Report:
        info = result.info
        extra = info.get("extra_generation_params")
        extra = {} if extra is None else extra
        if not isinstance(extra, dict):
            raise bad_response(endpoint, '"extra_generation_params" is not an object')
        params = {key: value for key, value in extra.items() if value is not None}
        for key in ("sampler_name", *_INFO_KEYS):
            if key not in info:
                raise bad_response(endpoint, f'"info" has no "{key}"')
        return cls(info, params)

    @property
    def seed(self) -> int | None:
        seed = self.info.get("seed")
        return int(seed) if isinstance(seed, int | float) else None


def generation_mismatches(body: dict[str, Any], report: Report,
                          capabilities: Capabilities | None) -> list[Mismatch]:
    """What a txt2img/img2img call ran differently: sampler, scheduler, steps, CFG, size, seed,
    and the hires fix's settings."""
    entries = capabilities.scheduler_entries if capabilities else []
    info = report.info
    asked_sampler, named_scheduler = split_sampler(str(body["sampler_name"]), entries)
    found = [Mismatch(key, body[key], info[key]) for key in _INFO_KEYS
             if not _same(body[key], info[key])]
    if asked_sampler != info["sampler_name"]:
        found.append(Mismatch("sampler_name", body["sampler_name"], info["sampler_name"]))
    scheduler = body.get("scheduler") or (named_scheduler.name if named_scheduler else "")
    found += _scheduler_mismatches(scheduler, report, capabilities)
    if int(body["seed"]) >= 0 and report.seed is not None and report.seed != int(body["seed"]):
        found.append(Mismatch("seed", body["seed"], report.seed))
    if body.get("enable_hr"):
        found += _hires_mismatches(body, report)
    return found


def _scheduler_mismatches(scheduler: str, report: Report,
                          capabilities: Capabilities | None) -> list[Mismatch]:
    """A scheduler left on Automatic is the sampler's own choice: nothing to compare."""
    if not scheduler or scheduler.casefold() == AUTOMATIC_SCHEDULER:
        return []
    entries = capabilities.scheduler_entries if capabilities else []
    wanted = find_scheduler(entries, scheduler)
    spellings = {name.casefold() for name in (wanted.names() if wanted else (scheduler,))}
    ran = str(report.params.get(SCHEDULE_TYPE, AUTOMATIC_LABEL))
    return [] if ran.casefold() in spellings else [Mismatch("scheduler", scheduler, ran)]


def _hires_mismatches(body: dict[str, Any], report: Report) -> list[Mismatch]:
    found = []
    for key, label in _HIRES_KEYS:
        if body.get(key):
            ran = report.params.get(label)
            if key == "hr_checkpoint_name":
                # Reported as the checkpoint's short title: "name [hash]".
                ran_name = str(ran or "").split(" [", 1)[0]
                if ran_name != str(body[key]).split(" [", 1)[0].rsplit(".", 1)[0]:
                    found.append(Mismatch(key, body[key], ran))
            elif ran is None or not _same(body[key], ran):
                found.append(Mismatch(key, body[key], ran))
    sampler = body.get("hr_sampler_name")
    if sampler and sampler != body["sampler_name"]:
        ran = report.params.get("Hires sampler", report.info["sampler_name"])
        if ran != sampler:
            found.append(Mismatch("hr_sampler_name", sampler, ran))
    return found


def model_mismatches(report: Report, model: ModelEntry | None) -> list[Mismatch]:
    """The checkpoint the call ran with, when the entry names one."""
    if model is None:
        return []
    name, short_hash = report.info.get("sd_model_name"), report.info.get("sd_model_hash")
    if name == model.model_name or (model.hash and short_hash == model.hash):
        return []
    return [Mismatch("model", model.title, f"{name} [{short_hash}]")]


def adetailer_mismatches(tab: dict[str, Any], report: Report) -> list[Mismatch]:
    """A one-tab ADetailer call: the tab's reported arguments (the first tab's keys, without a
    suffix), and the trace skip_img2img leaves (1 step of Euler)."""
    params, info = report.params, report.info
    if ARG_LABELS["ad_model"] not in params:
        return [Mismatch("ad_model", tab["ad_model"], None)]
    found = []
    for key in _CHECKED_TAB_KEYS:
        ran = params.get(ARG_LABELS[key], False if key == "ad_inpaint_only_masked" else None)
        if not _same(tab[key], ran):
            found.append(Mismatch(key, tab[key], ran))
    differing = {mismatch.key for mismatch in found}
    for switch, key in _SWITCHED_TAB_KEYS:
        # A switch that is off where it should be on leaves its value out: one mismatch.
        if tab.get(switch) and switch not in differing and not _same(
                tab[key], params.get(ARG_LABELS[key])):
            found.append(Mismatch(key, tab[key], params.get(ARG_LABELS[key])))
    skipped = (info["steps"], info["sampler_name"])
    if skipped != (SKIPPED_IMG2IMG_STEPS, SKIPPED_IMG2IMG_SAMPLER):
        found.append(Mismatch("skip_img2img", f"{SKIPPED_IMG2IMG_STEPS} step of "
                              f"{SKIPPED_IMG2IMG_SAMPLER}", f"{skipped[0]} steps of {skipped[1]}"))
    return found


def _same(asked: Any, ran: Any) -> bool:
    """Equal as the WebUI means it: numbers by value (5 == 5.0), booleans strictly."""
    if isinstance(asked, bool) or isinstance(ran, bool):
        return asked is ran or (isinstance(ran, str) and str(asked) == ran)
    if isinstance(asked, int | float):
        try:
            return math.isclose(float(asked), float(ran), rel_tol=1e-9, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return bool(asked == ran)

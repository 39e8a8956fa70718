"""The ADetailer extension (v25.3) as the WebUI runs it through alwayson_scripts.

    "alwayson_scripts": {"ADetailer": {"args": [enable, skip_img2img, {tab 1}, {tab 2}, ...]}}

The dicts are the detection passes (a list of dicts alone also works). ADetailer never fails the
HTTP request, and what it reports is not proof that a pass ran:

- A tab with an unknown key or a bad value is skipped (logged) and the tabs after it are
  renumbered: the third tab of three, after a bad second one, reports as "... 2nd".
- Every valid tab reports its keys in info.extra_generation_params ("ADetailer model",
  "ADetailer confidence", ..., "ADetailer model 2nd" for the next tab, "ADetailer version")
  before anything is detected. A pass whose model is not installed then raises inside the
  extension: that pass and the passes after it do nothing, and the reply is still 200 with the
  model in the infotext. A pass that detects nothing leaves the image as it was, keys included.
- With skip_img2img (the second argument) the img2img itself runs as 1 step of Euler at
  128x128, which stays in info and the infotext; the passes work on the input image, which
  comes back unchanged when no pass detected anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from stablenew.emulator import catalog, images
from stablenew.emulator.schema import Field, collect
from stablenew.sdwebui.adetailer_tabs import ARG_LABELS, ordinal, ordinal_suffix

log = logging.getLogger("stablenew.emulator.adetailer")

# The extension's script takes 2 flags + one dict per tab, ad_max_models (4) tabs by default;
# the WebUI hands it at most that many arguments.
MAX_ARGS = 2 + 4

# Field specs with the extension's defaults and bounds, in the extension's order (the
# infotext lists them in this order).
_SPECS: tuple[Field, ...] = (
    Field("ad_model", "str", "None"),
    Field("ad_model_classes", "str", ""),
    Field("ad_tab_enable", "bool", True),
    Field("ad_prompt", "str", ""),
    Field("ad_negative_prompt", "str", ""),
    Field("ad_confidence", "float", 0.3, ge=0, le=1),
    Field("ad_mask_filter_method", "str", "Area", permitted=("Area", "Confidence")),
    Field("ad_mask_k", "int", 0, ge=0),
    Field("ad_mask_min_ratio", "float", 0.0, ge=0, le=1),
    Field("ad_mask_max_ratio", "float", 1.0, ge=0, le=1),
    Field("ad_x_offset", "int", 0),
    Field("ad_y_offset", "int", 0),
    Field("ad_dilate_erode", "int", 4),
    Field("ad_mask_merge_invert", "str", "None",
          permitted=("None", "Merge", "Merge and Invert")),
    Field("ad_mask_blur", "int", 4, ge=0),
    Field("ad_denoising_strength", "float", 0.4, ge=0, le=1),
    Field("ad_inpaint_only_masked", "bool", True),
    Field("ad_inpaint_only_masked_padding", "int", 32, ge=0),
    Field("ad_use_inpaint_width_height", "bool", False),
    Field("ad_inpaint_width", "int", 512, ge=64, le=2048),
    Field("ad_inpaint_height", "int", 512, ge=64, le=2048),
    Field("ad_use_steps", "bool", False),
    Field("ad_steps", "int", 28, ge=1),
    Field("ad_use_cfg_scale", "bool", False),
    Field("ad_cfg_scale", "float", 7.0, ge=0),
    Field("ad_use_checkpoint", "bool", False),
    Field("ad_checkpoint", "str"),
    Field("ad_use_vae", "bool", False),
    Field("ad_vae", "str"),
    Field("ad_use_sampler", "bool", False),
    Field("ad_sampler", "str", "DPM++ 2M"),
    Field("ad_scheduler", "str", "Use same scheduler"),
    Field("ad_use_noise_multiplier", "bool", False),
    Field("ad_noise_multiplier", "float", 1.0, ge=0.5, le=1.5),
    Field("ad_use_clip_skip", "bool", False),
    Field("ad_clip_skip", "int", 1, ge=1, le=12),
    Field("ad_restore_face", "bool", False),
    Field("ad_controlnet_model", "str", "None"),
    Field("ad_controlnet_module", "str", "None"),
    Field("ad_controlnet_weight", "float", 1.0, ge=0, le=1),
    Field("ad_controlnet_guidance_start", "float", 0.0, ge=0, le=1),
    Field("ad_controlnet_guidance_end", "float", 1.0, ge=0, le=1),
)
# (argument, infotext label, field spec)
_ARGS: tuple[tuple[str, str, Field], ...] = tuple(
    (spec.name, ARG_LABELS[spec.name], spec) for spec in _SPECS)
_FIELDS = (*(spec for _, _, spec in _ARGS), Field("is_api", "bool", True))
_KNOWN_KEYS = {spec.name for spec in _FIELDS}

_CN = "ADetailer ControlNet"
# Infotext entries the extension leaves out: (switch, entries dropped with it, the switch's
# "off" value; None means any falsy value).
_DROPPED_WHEN_OFF: tuple[tuple[str, tuple[str, ...], object], ...] = (
    ("ADetailer model classes", (), None),
    ("ADetailer prompt", (), None),
    ("ADetailer negative prompt", (), None),
    ("ADetailer mask only top k", ("ADetailer method to decide top k masks",), None),
    ("ADetailer mask min ratio", (), None),
    ("ADetailer mask max ratio", (), 1.0),
    ("ADetailer x offset", (), None),
    ("ADetailer y offset", (), None),
    ("ADetailer mask merge invert", (), "None"),
    ("ADetailer inpaint only masked", ("ADetailer inpaint padding",), None),
    ("ADetailer use inpaint width height", ("ADetailer inpaint width",
                                            "ADetailer inpaint height"), None),
    ("ADetailer use separate steps", ("ADetailer steps",), None),
    ("ADetailer use separate CFG scale", ("ADetailer CFG scale",), None),
    ("ADetailer use separate checkpoint", ("ADetailer checkpoint",), None),
    ("ADetailer use separate VAE", ("ADetailer VAE",), None),
    ("ADetailer use separate sampler", ("ADetailer sampler", "ADetailer scheduler"), None),
    ("ADetailer use separate noise multiplier", ("ADetailer noise multiplier",), None),
    ("ADetailer use separate CLIP skip", ("ADetailer CLIP skip",), None),
    ("ADetailer restore face", (), None),
    (f"{_CN} model", (f"{_CN} module", f"{_CN} weight", f"{_CN} guidance start",
                      f"{_CN} guidance end"), "None"),
)


def _is_off(value: object, off: object) -> bool:
    return not value if off is None else value == off


@dataclass(frozen=True)
class DetailPass:
    position: int
    args: Mapping[str, Any]

    @property
    def installed(self) -> bool:
        """Whether the extension has this detection model (an unknown one raises)."""
        return self.model in catalog.AD_MODELS

    @property
    def model(self) -> str:
        return str(self.args["ad_model"])

    def steps(self, steps: int) -> int:
        """Inpainting steps actually sampled: the pass's steps times its denoising strength."""
        wanted = int(self.args["ad_steps"]) if self.args["ad_use_steps"] else steps
        return max(1, int(wanted * float(self.args["ad_denoising_strength"])))

    def extra_params(self) -> dict[str, Any]:
        params = {label: self.args[name] for name, label, _ in _ARGS}
        params.pop("ADetailer tab enable")
        for switch, dependents, off in _DROPPED_WHEN_OFF:
            if switch in params and _is_off(params[switch], off):
                for key in (switch, *dependents):
                    params.pop(key, None)
        if params.get("ADetailer scheduler") == "Use same scheduler":
            params.pop("ADetailer scheduler")
        suffix = ordinal_suffix(self.position)
        return {f"{key}{suffix}": value for key, value in params.items()}

    def apply(self, latent: Image.Image, seed: int, prompt: str,
              pixels: bool = False) -> Image.Image:
        """Repaint the detected region, deterministically from the pass and the image's seed
        (`pixels`: the image is at full size, not latent size)."""
        digest = images.digest_of("adetailer", self.model, self.args["ad_prompt"] or prompt,
                                  seed, self.position)
        strength = 0.4 + 0.6 * float(self.args["ad_denoising_strength"])
        blur = int(self.args["ad_mask_blur"]) * (images.LATENT_FACTOR if pixels else 1)
        return images.paint_region(latent, _region(self.model), images.colour_of(digest),
                                   strength, blur)


def _region(model: str) -> tuple[float, float, float, float]:
    """Where the emulated detector "finds" things, by model family (left, top, right, bottom)."""
    if model.startswith("hand"):
        return 0.55, 0.6, 0.85, 0.9
    if model.startswith("person"):
        return 0.25, 0.1, 0.75, 0.95
    if model.startswith(("face", "mediapipe")):
        return 0.33, 0.15, 0.67, 0.5
    return 0.3, 0.3, 0.7, 0.7


@dataclass(frozen=True)
class AdetailerPlan:
    # The enabled passes with a model, by their position among the valid tabs.
    passes: tuple[DetailPass, ...]
    skip_img2img: bool
    # What the valid tabs report, whether or not their pass will run.
    params: dict[str, Any]

    def extra_params(self) -> dict[str, Any]:
        return dict(self.params)


def _script_args(alwayson: Mapping[str, Any]) -> list[Any] | None:
    for name, value in alwayson.items():
        if name.lower() == "adetailer" and isinstance(value, Mapping):
            args = value.get("args")
            return list(args[:MAX_ARGS]) if isinstance(args, list) else None
    return None


def _validated(tabs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The valid tabs with defaults filled in. A tab the extension's pydantic model rejects
    (an unknown key, a value out of range) is logged and left out; the rest move up."""
    result = []
    for number, tab in enumerate(tabs, 1):
        unknown = sorted(set(tab) - _KNOWN_KEYS)
        values, problems = collect(dict(tab), _FIELDS)
        if unknown or problems:
            log.warning("[-] ADetailer: ValidationError when validating %s arguments",
                        ordinal(number),
                        extra={"unknown_keys": unknown,
                               "invalid": [".".join(map(str, p.loc)) for p in problems]})
            continue
        result.append(values)
    return result


def plan(alwayson: Mapping[str, Any]) -> AdetailerPlan | None:
    """What the extension will report and try, or None when it does nothing."""
    args = _script_args(alwayson)
    if not args:
        return None
    tabs = [arg for arg in args if isinstance(arg, Mapping)]
    enabled = args[0] if isinstance(args[0], bool) else True
    wanted = any(t.get("ad_model", "None") != "None" and t.get("ad_tab_enable", True)
                 for t in tabs)
    validated = _validated(tabs) if tabs and enabled and wanted else []
    passes = tuple(DetailPass(position, values) for position, values in enumerate(validated)
                   if values["ad_model"] != "None" and values["ad_tab_enable"])
    if not passes:
        return None
    params: dict[str, Any] = {}
    for detail_pass in passes:
        params.update(detail_pass.extra_params())
    params["ADetailer version"] = catalog.ADETAILER_VERSION
    skip_img2img = len(args) > 1 and args[1] is True
    return AdetailerPlan(passes, skip_img2img, params)

"""`preset_data` of a JSON pack -> the pack's default `PipelineConfig`.

Keys are the ones the desktop app wrote (see docs/PROMPT_PACKS.md) plus the WebUI's own names
for txt2img options. A key this module does not know, in any section, is refused with its JSON
path rather than ignored: a misspelt setting would otherwise silently not apply. An unknown
`<stage>_enabled` in `pipeline` gets its own message (hires fix and the refiner are txt2img
options, not stages).

Decisions for settings a pack leaves out:
- Stages: a pack that names none of `txt2img_enabled`, `img2img_enabled`, `adetailer_enabled`,
  `upscale_enabled` (a `.txt`/`.tsv` without a `.json`, or a `.json` whose `pipeline` says
  nothing about stages) runs txt2img: prompts written in a file are meant to be generated. A
  pack that names any stage flag runs exactly the stages it switches on.
- Seeds: a pack that names no seed asks for random seeds (-1): a fixed 0 for every row is never
  what a pack author meant.
- ADetailer passes: mask blur, dilate/erode, inpaint only masked and its padding left out are
  the extension's defaults (4, 4, true, 32); a pass that writes 0 or false keeps it.
Everything else left out gets the built-in defaults when the pack is normalised
(`pipeline_rules.with_builtin_defaults`); an empty model means the checkpoint the runner's
WebUI has loaded.
"""

from __future__ import annotations

from typing import Any

from stablenew.bundle.packs.json_values import (
    JsonShapeError,
    Reader,
    as_bool,
    as_float,
    as_int,
    as_list,
    as_object,
    as_str,
    refuse_unknown_keys,
)
from stablenew.contract.model import (
    AdetailerPass,
    PipelineConfig,
    ResizeMode,
    StageFlags,
    Txt2ImgConfig,
    UpscaleMode,
)
from stablenew.contract.pipeline_limits import ADETAILER_PASS_DEFAULTS

_UPSCALE_MODES = {"extras": UpscaleMode.EXTRAS, "img2img": UpscaleMode.IMG2IMG}


def _upscale_mode(value: Any, path: str) -> UpscaleMode:
    text = as_str(value, path).strip().lower()
    if text not in _UPSCALE_MODES:
        raise JsonShapeError(path, f"unknown upscale mode {value!r}; use 'extras' or 'img2img'")
    return _UPSCALE_MODES[text]


_NO_DETECTION = {"allow": False, "error": True}


def _fails_on_no_detection(value: Any, path: str) -> bool:
    """`no_detection`: "allow" (recorded as an outcome) or "error" (fails the entry)."""
    text = as_str(value, path).strip().lower()
    if text not in _NO_DETECTION:
        raise JsonShapeError(path, f"unknown no_detection {value!r}; use 'allow' or 'error'")
    return _NO_DETECTION[text]


def _resize_mode(value: Any, path: str) -> ResizeMode:
    """The WebUI's img2img resize_mode number, as the desktop app wrote it."""
    number = as_int(value, path)
    if number not in ResizeMode._value2member_map_:
        raise JsonShapeError(path, f"unknown resize mode {number}; use 0 (just resize), 1 (crop"
                                   " and resize), 2 (resize and fill) or 3 (latent upscale)")
    return ResizeMode(number)


# JSON key -> (attribute path inside PipelineConfig, reader).
FieldTable = dict[str, tuple[str, Reader[Any]]]

TXT2IMG_FIELDS: FieldTable = {
    "model": ("txt2img.model", as_str),
    "sd_model_checkpoint": ("txt2img.model", as_str),
    "vae": ("txt2img.vae", as_str),
    "sampler_name": ("txt2img.sampler_name", as_str),
    "scheduler": ("txt2img.scheduler", as_str),
    "steps": ("txt2img.steps", as_int),
    "cfg_scale": ("txt2img.cfg_scale", as_float),
    "width": ("txt2img.width", as_int),
    "height": ("txt2img.height", as_int),
    "seed": ("txt2img.seed", as_int),
    "subseed": ("txt2img.subseed", as_int),
    "subseed_strength": ("txt2img.subseed_strength", as_float),
    "clip_skip": ("txt2img.clip_skip", as_int),
    "enable_hr": ("txt2img.hires_fix.enabled", as_bool),
    "hr_scale": ("txt2img.hires_fix.scale", as_float),
    "hr_upscaler": ("txt2img.hires_fix.upscaler", as_str),
    "hr_second_pass_steps": ("txt2img.hires_fix.second_pass_steps", as_int),
    "hr_resize_x": ("txt2img.hires_fix.resize_x", as_int),
    "hr_resize_y": ("txt2img.hires_fix.resize_y", as_int),
    "denoising_strength": ("txt2img.hires_fix.denoising_strength", as_float),
    "hr_checkpoint_name": ("txt2img.hires_fix.checkpoint", as_str),
    "hr_sampler_name": ("txt2img.hires_fix.sampler_name", as_str),
    "hr_scheduler": ("txt2img.hires_fix.scheduler", as_str),
    "hr_prompt": ("txt2img.hires_fix.prompt", as_str),
    "hr_negative_prompt": ("txt2img.hires_fix.negative_prompt", as_str),
    "refiner_enabled": ("txt2img.refiner.enabled", as_bool),
    "refiner_checkpoint": ("txt2img.refiner.checkpoint", as_str),
    "refiner_switch_at": ("txt2img.refiner.switch_at", as_float),
}

IMG2IMG_FIELDS: FieldTable = {
    "denoising_strength": ("img2img.denoising_strength", as_float),
    "resize_mode": ("img2img.resize_mode", _resize_mode),
    "steps": ("img2img.steps", as_int),
    "cfg_scale": ("img2img.cfg_scale", as_float),
    "sampler_name": ("img2img.sampler_name", as_str),
    "scheduler": ("img2img.scheduler", as_str),
}

UPSCALE_FIELDS: FieldTable = {
    "upscaler": ("upscale.upscaler", as_str),
    "upscaling_resize": ("upscale.factor", as_float),
    "upscale_mode": ("upscale.mode", _upscale_mode),
    "denoising_strength": ("upscale.denoising_strength", as_float),
    "upscaler_2": ("upscale.upscaler_2", as_str),
    "extras_upscaler_2_visibility": ("upscale.upscaler_2_visibility", as_float),
}

STAGE_FIELDS: FieldTable = {
    "txt2img_enabled": ("stages.txt2img_enabled", as_bool),
    "img2img_enabled": ("stages.img2img_enabled", as_bool),
    "adetailer_enabled": ("stages.adetailer_enabled", as_bool),
    "upscale_enabled": ("stages.upscale_enabled", as_bool),
}

PIPELINE_FIELDS: FieldTable = STAGE_FIELDS | {
    "images_per_prompt": ("batch_size", as_int),
    "batch_size": ("batch_size", as_int),
    "n_iter": ("n_iter", as_int),
}

# `adetailer_<x>` keys of the `adetailer` section -> fields of its one AdetailerPass.
ADETAILER_PASS_FIELDS: FieldTable = {
    "adetailer_model": ("model", as_str),
    "adetailer_prompt": ("prompt", as_str),
    "adetailer_negative_prompt": ("negative_prompt", as_str),
    "adetailer_confidence": ("confidence", as_float),
    "adetailer_mask_blur": ("mask_blur", as_int),
    "adetailer_dilate_erode": ("dilate_erode", as_int),
    "adetailer_denoising_strength": ("denoising_strength", as_float),
    "adetailer_inpaint_only_masked": ("inpaint_only_masked", as_bool),
    "adetailer_inpaint_padding": ("inpaint_padding", as_int),
    "adetailer_steps": ("steps", as_int),
    "adetailer_cfg_scale": ("cfg_scale", as_float),
    "adetailer_sampler_name": ("sampler_name", as_str),
    "adetailer_no_detection": ("fail_on_no_detection", _fails_on_no_detection),
}

# A pass written out in full (`"passes": [{...}]`) uses the AdetailerPass field names.
ADETAILER_PASS_LIST_FIELDS: FieldTable = {
    key.removeprefix("adetailer_"): target for key, target in ADETAILER_PASS_FIELDS.items()
}

SECTIONS = ("txt2img", "img2img", "adetailer", "upscale", "pipeline")


def default_pack_config() -> PipelineConfig:
    """What a pack asks for before its preset says anything: txt2img with random seeds."""
    return PipelineConfig(stages=StageFlags(txt2img_enabled=True),
                          txt2img=Txt2ImgConfig(seed=-1))


def read_preset(preset: Any, path: str = "preset_data") -> PipelineConfig:
    """The pack's defaults from its `preset_data` object (raises JsonShapeError)."""
    config = default_pack_config()
    sections = as_object(preset, path)
    refuse_unknown_keys(sections, SECTIONS, path, path)
    _apply_table(config, _section(sections, "txt2img", path), TXT2IMG_FIELDS, f"{path}.txt2img")
    _apply_table(config, _section(sections, "img2img", path), IMG2IMG_FIELDS, f"{path}.img2img")
    _apply_table(config, _section(sections, "upscale", path), UPSCALE_FIELDS, f"{path}.upscale")
    pipeline = _section(sections, "pipeline", path)
    _refuse_unknown_stages(pipeline, f"{path}.pipeline")
    if any(pipeline.get(key) is not None for key in STAGE_FIELDS):
        config.stages = StageFlags()  # the pack names its stages: only those it switches on
    _apply_table(config, pipeline, PIPELINE_FIELDS, f"{path}.pipeline")
    config.adetailer.passes = _adetailer_passes(_section(sections, "adetailer", path),
                                                f"{path}.adetailer")
    return config


def _section(sections: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = sections.get(name)
    return {} if value is None else as_object(value, f"{path}.{name}")


def _apply_table(target: object, values: dict[str, Any], table: FieldTable, path: str,
                 extra_keys: tuple[str, ...] = ()) -> None:
    """Each known, non-null value onto `target`; `extra_keys` are read by the caller."""
    refuse_unknown_keys(values, (*table, *extra_keys), path, path)
    for key, value in values.items():
        if key in table and value is not None:
            attribute_path, read = table[key]
            _assign(target, attribute_path, read(value, f"{path}.{key}"))


def _assign(target: object, attribute_path: str, value: Any) -> None:
    *parents, name = attribute_path.split(".")
    for parent in parents:
        target = getattr(target, parent)
    setattr(target, name, value)


def _refuse_unknown_stages(pipeline: dict[str, Any], path: str) -> None:
    for key in pipeline:
        if key.endswith("_enabled") and key not in PIPELINE_FIELDS:
            stage = key.removesuffix("_enabled")
            raise JsonShapeError(
                f"{path}.{key}",
                f"unknown stage {stage!r}; the stages are txt2img, img2img, adetailer, upscale"
                " (hires fix and the refiner are txt2img options)",
            )


def _adetailer_passes(section: dict[str, Any], path: str) -> list[AdetailerPass]:
    # The section is one pass written with `adetailer_` keys, a list of `passes`, or both.
    refuse_unknown_keys(section, (*ADETAILER_PASS_FIELDS, "passes"), path, path)
    passes: list[AdetailerPass] = []
    if any(key in ADETAILER_PASS_FIELDS for key in section):
        passes.append(_read_pass(section, ADETAILER_PASS_FIELDS, path, extra_keys=("passes",)))
    listed = section.get("passes")
    if listed is not None:
        for index, item in enumerate(as_list(listed, f"{path}.passes")):
            item_path = f"{path}.passes[{index}]"
            passes.append(_read_pass(as_object(item, item_path), ADETAILER_PASS_LIST_FIELDS,
                                     item_path))
    return passes


def _read_pass(values: dict[str, Any], table: FieldTable, path: str,
               extra_keys: tuple[str, ...] = ()) -> AdetailerPass:
    # What the pass does not say is the extension's default, what it says (even 0) is kept.
    adetailer_pass = AdetailerPass(**ADETAILER_PASS_DEFAULTS)
    _apply_table(adetailer_pass, values, table, path, extra_keys)
    return adetailer_pass


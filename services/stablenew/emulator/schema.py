"""Request models: every field optional with the WebUI's default, unknown keys ignored, values
coerced the way pydantic v1 (the WebUI's FastAPI stack) coerces them, and anything that cannot be
coerced reported as FastAPI's 422 body with the field's location."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from stablenew.emulator.errors import validation_failed

Kind = Literal["str", "int", "float", "bool", "list", "dict", "str_list", "file_list", "any"]
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    default: Any = None
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    permitted: tuple[Any, ...] | None = None
    required: bool = False


class InvalidValueError(Exception):
    """One field that cannot be coerced; becomes one item of the 422 detail list."""

    def __init__(self, msg: str, kind: str, ctx: dict[str, Any] | None = None,
                 loc: Location = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.kind = kind
        self.ctx = ctx
        self.loc = loc

    def item(self, prefix: Location) -> dict[str, Any]:
        entry: dict[str, Any] = {"loc": [*prefix, *self.loc], "msg": self.msg, "type": self.kind}
        if self.ctx is not None:
            entry["ctx"] = self.ctx
        return entry


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def to_int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    try:
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        if isinstance(value, str):
            return int(value)
    except ValueError:
        pass
    raise InvalidValueError("value is not a valid integer", "type_error.integer")


def to_float(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise InvalidValueError("value is not a valid float", "type_error.float")


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise InvalidValueError("value could not be parsed to a boolean", "type_error.bool")


def to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise InvalidValueError("str type expected", "type_error.str")


def to_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise InvalidValueError("value is not a valid list", "type_error.list")


def to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    raise InvalidValueError("value is not a valid dict", "type_error.dict")


def to_str_list(value: Any) -> list[str]:
    items = to_list(value)
    result = []
    for index, item in enumerate(items):
        try:
            result.append(to_str(item))
        except InvalidValueError as error:
            error.loc = (index,)
            raise
    return result


def to_file_list(value: Any) -> list[dict[str, str]]:
    """extra-batch-images' imageList: [{"data": base64, "name": str}], both required."""
    result = []
    for index, item in enumerate(to_list(value)):
        entry = to_dict(item)
        for key in ("data", "name"):
            if entry.get(key) is None:
                raise InvalidValueError("field required", "value_error.missing", loc=(index, key))
            try:
                entry[key] = to_str(entry[key])
            except InvalidValueError as error:
                error.loc = (index, key)
                raise
        result.append({"data": entry["data"], "name": entry["name"]})
    return result


_COERCE: dict[str, Callable[[Any], Any]] = {
    "str": to_str, "int": to_int, "float": to_float, "bool": to_bool, "list": to_list,
    "dict": to_dict, "str_list": to_str_list, "file_list": to_file_list, "any": lambda v: v,
}


def _check_bounds(spec: Field, value: Any) -> None:
    if spec.permitted is not None and value not in spec.permitted:
        allowed = ", ".join(repr(p) for p in spec.permitted)
        raise InvalidValueError(f"unexpected value; permitted: {allowed}", "value_error.const",
                      {"given": value, "permitted": list(spec.permitted)})
    if spec.gt is not None and value <= spec.gt:
        raise InvalidValueError(f"ensure this value is greater than {spec.gt:g}",
                                "value_error.number.not_gt", {"limit_value": spec.gt})
    if spec.ge is not None and value < spec.ge:
        raise InvalidValueError(f"ensure this value is greater than or equal to {spec.ge:g}",
                      "value_error.number.not_ge", {"limit_value": spec.ge})
    if spec.le is not None and value > spec.le:
        raise InvalidValueError(f"ensure this value is less than or equal to {spec.le:g}",
                      "value_error.number.not_le", {"limit_value": spec.le})


def coerce_field(spec: Field, present: bool, value: Any) -> Any:
    """One field's value: the default when absent, None when null (every WebUI field is
    Optional), else the coerced value within its bounds."""
    if not present:
        if spec.required:
            raise InvalidValueError("field required", "value_error.missing")
        return copy.deepcopy(spec.default)
    if value is None:
        if spec.required:
            raise InvalidValueError("none is not an allowed value", "type_error.none.not_allowed")
        return None
    coerced = _COERCE[spec.kind](value)
    _check_bounds(spec, coerced)
    return coerced


def collect(body: dict[str, Any], fields: Sequence[Field]) -> tuple[dict[str, Any],
                                                                     list[InvalidValueError]]:
    """All fields in declaration order, and every field that failed."""
    values: dict[str, Any] = {}
    problems: list[InvalidValueError] = []
    for spec in fields:
        try:
            values[spec.name] = coerce_field(spec, spec.name in body, body.get(spec.name))
        except InvalidValueError as error:
            error.loc = (spec.name, *error.loc)
            problems.append(error)
    return values, problems


def validate_body(body: Any, fields: Sequence[Field]) -> dict[str, Any]:
    """A request body as the WebUI's pydantic model sees it, or a 422."""
    if body is None:
        missing = InvalidValueError("field required", "value_error.missing")
        raise validation_failed([missing.item(("body",))])
    if not isinstance(body, dict):
        not_dict = InvalidValueError("value is not a valid dict", "type_error.dict")
        raise validation_failed([not_dict.item(("body",))])
    values, problems = collect(body, fields)
    if problems:
        raise validation_failed([problem.item(("body",)) for problem in problems])
    return values


def parse_json(raw: bytes) -> Any:
    """The body as JSON (None when empty), or FastAPI's 422 for a JSON decode error."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        position = getattr(error, "pos", 0)
        message = getattr(error, "msg", str(error))
        raise validation_failed([{
            "loc": ["body", position], "msg": str(error), "type": "value_error.jsondecode",
            "ctx": {"msg": message, "pos": position,
                    "lineno": getattr(error, "lineno", 1), "colno": getattr(error, "colno", 1)},
        }]) from None


_COMMON: tuple[Field, ...] = (
    Field("prompt", "str", ""),
    Field("negative_prompt", "str", ""),
    Field("styles", "str_list", []),
    Field("seed", "int", -1),
    Field("subseed", "int", -1),
    Field("subseed_strength", "float", 0.0),
    Field("seed_resize_from_h", "int", -1),
    Field("seed_resize_from_w", "int", -1),
    Field("sampler_name", "str"),
    Field("scheduler", "str"),
    Field("batch_size", "int", 1),
    Field("n_iter", "int", 1),
    Field("steps", "int", 50),
    Field("cfg_scale", "float", 7.0),
    Field("width", "int", 512),
    Field("height", "int", 512),
    Field("restore_faces", "bool"),
    Field("tiling", "bool"),
    Field("do_not_save_samples", "bool", False),
    Field("do_not_save_grid", "bool", False),
    Field("eta", "float"),
    Field("denoising_strength", "float", 0.75),
    Field("s_min_uncond", "float"),
    Field("s_churn", "float"),
    Field("s_tmax", "float"),
    Field("s_tmin", "float"),
    Field("s_noise", "float"),
    Field("override_settings", "dict", {}),
    Field("override_settings_restore_afterwards", "bool", True),
    Field("refiner_checkpoint", "str"),
    Field("refiner_switch_at", "float"),
    Field("disable_extra_networks", "bool", False),
    Field("firstpass_image", "str"),
    Field("comments", "dict"),
)

_API_ONLY: tuple[Field, ...] = (
    Field("sampler_index", "str", "Euler"),
    Field("script_name", "str"),
    Field("script_args", "list", []),
    Field("send_images", "bool", True),
    Field("save_images", "bool", False),
    Field("alwayson_scripts", "dict", {}),
    Field("infotext", "str"),
)

TXT2IMG: tuple[Field, ...] = (
    *_COMMON,
    Field("enable_hr", "bool", False),
    Field("firstphase_width", "int", 0),
    Field("firstphase_height", "int", 0),
    Field("hr_scale", "float", 2.0),
    Field("hr_upscaler", "str"),
    Field("hr_second_pass_steps", "int", 0),
    Field("hr_resize_x", "int", 0),
    Field("hr_resize_y", "int", 0),
    Field("hr_checkpoint_name", "str"),
    Field("hr_sampler_name", "str"),
    Field("hr_scheduler", "str"),
    Field("hr_prompt", "str", ""),
    Field("hr_negative_prompt", "str", ""),
    Field("force_task_id", "str"),
    *_API_ONLY,
)

IMG2IMG: tuple[Field, ...] = (
    *_COMMON,
    Field("init_images", "list"),
    Field("resize_mode", "int", 0),
    Field("image_cfg_scale", "float"),
    Field("mask", "str"),
    Field("mask_blur_x", "int", 4),
    Field("mask_blur_y", "int", 4),
    Field("mask_blur", "int", 4),
    Field("inpainting_fill", "int", 0),
    Field("inpaint_full_res", "bool", True),
    Field("inpaint_full_res_padding", "int", 0),
    Field("inpainting_mask_invert", "int", 0),
    Field("initial_noise_multiplier", "float"),
    Field("latent_mask", "str"),
    Field("force_task_id", "str"),
    Field("include_init_images", "bool", False),
    *_API_ONLY,
)

_EXTRAS: tuple[Field, ...] = (
    Field("resize_mode", "int", 0, permitted=(0, 1)),
    Field("show_extras_results", "bool", True),
    Field("gfpgan_visibility", "float", 0.0, ge=0, le=1),
    Field("codeformer_visibility", "float", 0.0, ge=0, le=1),
    Field("codeformer_weight", "float", 0.0, ge=0, le=1),
    Field("upscaling_resize", "float", 2.0, gt=0),
    Field("upscaling_resize_w", "int", 512, ge=1),
    Field("upscaling_resize_h", "int", 512, ge=1),
    Field("upscaling_crop", "bool", True),
    Field("upscaler_1", "str", "None"),
    Field("upscaler_2", "str", "None"),
    Field("extras_upscaler_2_visibility", "float", 0.0, ge=0, le=1),
    Field("upscale_first", "bool", False),
)

EXTRAS_SINGLE: tuple[Field, ...] = (*_EXTRAS, Field("image", "str", ""))
EXTRAS_BATCH: tuple[Field, ...] = (*_EXTRAS, Field("imageList", "file_list", required=True))

PNG_INFO: tuple[Field, ...] = (Field("image", "str", required=True),)

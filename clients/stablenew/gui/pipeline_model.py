"""The pipeline panel's logic: the pack picker (prepend text, row selection), the prompt and
negative prompt, and the pipeline settings, with the names the runner's WebUI offers.

A setting left empty is not set: the service fills it (a manual part gets the built-in
defaults, a pack row its pack's presets, then the defaults), which is exactly what zero means
in a `PipelineConfig`. So "Add to Job" sends the settings that are filled in, and "Add Pack"
sends them as overrides of the pack's presets. "Load pack settings" copies a pack's presets into
the form for tuning. The seed is the exception: empty means a random seed (-1) for a manual part
and the pack's own seed for a pack. Stage toggles replace a pack's stages only when "Use the
pack's stages" is off or the pack sets no stages (the service takes the stage set whole, see
`pipeline_rules.merge_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from stablenew.gui.backend import is_connection_lost
from stablenew.gui.context import Context
from stablenew.gui.signals import Signal
from stablenew.sdk import AsyncClient, Capabilities, Pack, PackSummary, PipelineConfig

RANDOM_SEED = -1
SEED_KEY = "txt2img.seed"
RETRY_SECONDS = 5.0


class Kind(Enum):
    """How a setting is entered and read."""

    INT = "int"
    FLOAT = "float"
    TEXT = "text"
    FLAG = "flag"
    CHOICE = "choice"


@dataclass(frozen=True)
class FieldSpec:
    """One setting of the form.

    Attributes:
        key: Its dotted path in `PipelineConfig` (`adetailer.passes.0.model`: the first pass).
        label: What the form calls it.
        kind: How it is entered.
        section: The group it is shown in.
        choices: For a CHOICE, the `Capabilities` list it picks from.
    """

    key: str
    label: str
    kind: Kind
    section: str
    choices: str = ""


STAGES, GENERATION, HIRES, IMG2IMG, ADETAILER, UPSCALE, GLOBAL = (
    "Stages", "Generation", "Hires fix", "img2img", "ADetailer", "Upscale", "Global")

FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("stages.txt2img_enabled", "txt2img", Kind.FLAG, STAGES),
    FieldSpec("stages.img2img_enabled", "img2img", Kind.FLAG, STAGES),
    FieldSpec("stages.adetailer_enabled", "ADetailer", Kind.FLAG, STAGES),
    FieldSpec("stages.upscale_enabled", "Upscale", Kind.FLAG, STAGES),
    FieldSpec("txt2img.model", "Model", Kind.CHOICE, GENERATION, "models"),
    FieldSpec("txt2img.vae", "VAE", Kind.CHOICE, GENERATION, "vaes"),
    FieldSpec("txt2img.sampler_name", "Sampler", Kind.CHOICE, GENERATION, "samplers"),
    FieldSpec("txt2img.scheduler", "Scheduler", Kind.CHOICE, GENERATION, "schedulers"),
    FieldSpec("txt2img.steps", "Steps", Kind.INT, GENERATION),
    FieldSpec("txt2img.cfg_scale", "CFG scale", Kind.FLOAT, GENERATION),
    FieldSpec("txt2img.width", "Width", Kind.INT, GENERATION),
    FieldSpec("txt2img.height", "Height", Kind.INT, GENERATION),
    FieldSpec(SEED_KEY, "Seed", Kind.INT, GENERATION),
    FieldSpec("batch_size", "Batch size", Kind.INT, GENERATION),
    FieldSpec("n_iter", "Batch count", Kind.INT, GENERATION),
    FieldSpec("txt2img.hires_fix.enabled", "Enabled", Kind.FLAG, HIRES),
    FieldSpec("txt2img.hires_fix.scale", "Scale", Kind.FLOAT, HIRES),
    FieldSpec("txt2img.hires_fix.upscaler", "Upscaler", Kind.CHOICE, HIRES, "upscalers"),
    FieldSpec("txt2img.hires_fix.second_pass_steps", "Steps", Kind.INT, HIRES),
    FieldSpec("txt2img.hires_fix.denoising_strength", "Denoising", Kind.FLOAT, HIRES),
    FieldSpec("img2img.denoising_strength", "Denoising", Kind.FLOAT, IMG2IMG),
    FieldSpec("img2img.steps", "Steps", Kind.INT, IMG2IMG),
    FieldSpec("adetailer.passes.0.model", "Detector", Kind.CHOICE, ADETAILER,
              "adetailer_models"),
    FieldSpec("adetailer.passes.0.confidence", "Confidence", Kind.FLOAT, ADETAILER),
    FieldSpec("adetailer.passes.0.prompt", "Prompt", Kind.TEXT, ADETAILER),
    FieldSpec("adetailer.passes.0.negative_prompt", "Negative", Kind.TEXT, ADETAILER),
    FieldSpec("upscale.upscaler", "Upscaler", Kind.CHOICE, UPSCALE, "upscalers"),
    FieldSpec("upscale.factor", "Factor", Kind.FLOAT, UPSCALE),
    FieldSpec("global_negative", "Global negative", Kind.TEXT, GLOBAL),
)
FIELD_BY_KEY = {spec.key: spec for spec in FIELDS}
SECTIONS = tuple(dict.fromkeys(spec.section for spec in FIELDS))

Value = str | bool


@dataclass(frozen=True)
class ManualPart:
    """What "Add to Job" adds: a prompt with the form's settings."""

    prompt: str
    negative: str
    config: dict[str, Any]


@dataclass(frozen=True)
class PackParts:
    """What "Add Pack" adds: rows of a pack (empty: every row), with overrides."""

    pack_id: str
    rows: list[int]
    prepend: str
    overrides: dict[str, Any]


class InvalidFormError(ValueError):
    """Settings that cannot be sent; `errors` maps each field's key to why."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        listed = "; ".join(f"{FIELD_BY_KEY[key].section} {FIELD_BY_KEY[key].label}: {why}"
                           if key in FIELD_BY_KEY else f"{key}: {why}"
                           for key, why in self.errors.items())
        super().__init__(listed)


def nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested mappings; a level whose keys are all numbers becomes a list
    (`adetailer.passes.0.model` -> {"adetailer": {"passes": [{"model": ...}]}})."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        *path, last = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    result: dict[str, Any] = _lists(tree)
    return result


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(key.isdigit() for key in node):
        return [_lists(node[key]) for key in sorted(node, key=int)]
    return {key: _lists(value) for key, value in node.items()}


def read_setting(config: PipelineConfig, key: str) -> Any:
    """A setting of a config by its dotted key (None where a list has no such element)."""
    value: Any = config
    for part in key.split("."):
        if part.isdigit():
            index = int(part)
            if index >= len(value):
                return None
            value = value[index]
        else:
            value = getattr(value, part)
    return value


def _parse(spec: FieldSpec, value: Value, offered: list[str] | None) -> tuple[Any, str]:
    """The value to send (None: not set) and an error ("" when fine)."""
    if spec.kind == Kind.FLAG:
        return (True if value else None), ""
    text = str(value).strip()
    if not text:
        return None, ""
    if spec.kind == Kind.INT:
        try:
            return int(text), ""
        except ValueError:
            return None, f"{text!r} is not a whole number"
    if spec.kind == Kind.FLOAT:
        try:
            return float(text), ""
        except ValueError:
            return None, f"{text!r} is not a number"
    if spec.kind == Kind.CHOICE and offered is not None and text not in offered:
        return None, f"{text!r} is not offered by the runner's WebUI"
    return text, ""


class PipelineModel:
    """Packs, the selected pack and rows, the prompts, the settings and the runner's names.

    Attributes:
        changed: Emitted when packs, the pack, the capabilities, values or errors changed.
    """

    def __init__(self, context: Context) -> None:
        self._context = context
        self.packs: list[PackSummary] = []
        self.pack: Pack | None = None
        self.selected_rows: list[int] = []
        self.prepend = ""
        self.use_pack_stages = True
        self.prompt = ""
        self.negative = ""
        self.capabilities: Capabilities | None = None
        self.values: dict[str, Value] = {
            spec.key: (spec.key == "stages.txt2img_enabled") if spec.kind == Kind.FLAG else ""
            for spec in FIELDS}
        self.errors: dict[str, str] = {}
        self.changed: Signal[None] = Signal()
        context.connection.restored_signal.connect(self._on_restored)

    # --- loading --------------------------------------------------------------------------

    def start(self) -> None:
        """Read the pack library and the runner's capabilities."""
        self.load_packs()
        self.load_capabilities()

    def load_packs(self) -> None:
        """Read the pack library again."""
        self._context.backend.call(
            "bundle", _all_packs, self._packs_loaded,
            lambda error: self._failed("Reading the packs", error, self.load_packs))

    def _packs_loaded(self, packs: list[PackSummary]) -> None:
        self.packs = packs
        self.changed.emit(None)

    def load_capabilities(self, refresh: bool = False) -> None:
        """Read what the runner's WebUI offers (`refresh`: ask the WebUI again)."""
        self._context.backend.call(
            "runner", lambda client: client.runner.capabilities(refresh=refresh),
            self._capabilities_loaded,
            lambda error: self._failed("Reading the runner's models", error,
                                       self.load_capabilities))

    def _capabilities_loaded(self, capabilities: Capabilities) -> None:
        self.capabilities = capabilities
        self.changed.emit(None)

    def _failed(self, action: str, error: Exception, again: Callable[[], None]) -> None:
        if is_connection_lost(error):
            return  # the banner says it; `_on_restored` reads again
        self._context.status.error(action, error)
        self._context.backend.after(RETRY_SECONDS, again)

    def _on_restored(self, service: str) -> None:
        if service == "bundle":
            self.load_packs()
        elif service == "runner" and self.capabilities is None:
            self.load_capabilities()

    # --- the pack -------------------------------------------------------------------------

    def select_pack(self, pack_id: str) -> None:
        """Show a pack's rows (every row selected until the user picks some)."""
        if not pack_id:
            self.pack, self.selected_rows = None, []
            self.changed.emit(None)
            return
        self._context.backend.call(
            "bundle", lambda client: client.packs.get(pack_id), self._pack_loaded,
            lambda error: self._context.status.error(f"Opening pack {pack_id}", error))

    def _pack_loaded(self, pack: Pack) -> None:
        self.pack = pack
        self.selected_rows = []
        self.changed.emit(None)
        if pack.errors:
            self._context.status.info(f"Pack {pack.pack_id}: {len(pack.errors)} problem(s): "
                                      f"{pack.errors[0].message}")

    def select_rows(self, rows: list[int]) -> None:
        """The rows "Add Pack" adds (empty: every row)."""
        self.selected_rows = sorted(rows)

    def load_pack_settings(self) -> None:
        """Copy the selected pack's presets into the form (the settings it sets)."""
        if self.pack is None:
            self._context.status.error("Load pack settings", "pick a pack first")
            return
        for spec in FIELDS:
            value = read_setting(self.pack.defaults, spec.key)
            if spec.kind == Kind.FLAG:
                if spec.section != STAGES or any(read_setting(self.pack.defaults, s.key)
                                                 for s in FIELDS if s.section == STAGES):
                    self.values[spec.key] = bool(value)
            elif value:
                self.values[spec.key] = str(value)
        self.errors = {}
        self.changed.emit(None)
        self._context.status.info(f"Loaded the settings of pack {self.pack.pack_id}")

    # --- the form -------------------------------------------------------------------------

    def set_value(self, key: str, value: Value) -> None:
        """A setting the user changed (the widgets call this on every edit)."""
        self.values[key] = value
        if self.errors.pop(key, None) is not None:
            self.changed.emit(None)

    def choices(self, spec: FieldSpec) -> list[str]:
        """The names a CHOICE setting offers (empty first: not set)."""
        offered = self._offered(spec)
        return ["", *(offered or [])]

    def _offered(self, spec: FieldSpec) -> list[str] | None:
        if self.capabilities is None or not spec.choices:
            return None
        if spec.choices == "models":
            return [model.model_name for model in self.capabilities.models]
        names: list[str] = getattr(self.capabilities, spec.choices)
        return list(names)

    def _settings(self, include_stages: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """The filled-in settings by dotted key, and the errors of those that cannot be sent."""
        settings: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for spec in FIELDS:
            if spec.section == STAGES and not include_stages:
                continue
            value, error = _parse(spec, self.values[spec.key], self._offered(spec))
            if error:
                errors[spec.key] = error
            elif value is not None:
                settings[spec.key] = value
        return settings, errors

    def _checked(self, errors: dict[str, str]) -> None:
        """Show `errors` on the form; InvalidFormError when there are any."""
        self.errors = errors
        self.changed.emit(None)
        if errors:
            raise InvalidFormError(errors)

    def manual_part(self) -> ManualPart:
        """The prompt and settings for "Add to Job"; InvalidFormError when they cannot be
        sent (the errors are also in `errors`, for the form to show)."""
        settings, errors = self._settings(include_stages=True)
        if not self.prompt.strip():
            errors["prompt"] = "write a prompt first"
        self._checked(errors)
        settings.setdefault(SEED_KEY, RANDOM_SEED)
        return ManualPart(self.prompt, self.negative, nested(settings))

    def pack_parts(self) -> PackParts:
        """The pack, rows, prepend text and overrides for "Add Pack"; InvalidFormError as
        `manual_part`."""
        pack = self.pack
        # A pack whose presets enable no stage runs with the form's stages.
        own_stages = pack is not None and any(read_setting(pack.defaults, spec.key)
                                              for spec in FIELDS if spec.section == STAGES)
        settings, errors = self._settings(include_stages=not (self.use_pack_stages
                                                              and own_stages))
        if pack is None:
            errors["pack"] = "pick a pack first"
        self._checked(errors)
        assert pack is not None  # _checked raised otherwise
        return PackParts(pack.pack_id, list(self.selected_rows), self.prepend,
                         nested(settings))


async def _all_packs(client: AsyncClient) -> list[PackSummary]:
    return [pack async for pack in client.packs.list()]

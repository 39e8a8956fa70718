"""What the emulated WebUI has installed: checkpoints, VAEs, samplers, schedulers, upscalers,
scripts, ADetailer models and default options, with the WebUI's name-resolution rules."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from stablenew.emulator.options import OPTION_DEFAULTS

VERSION = "v1.10.1"
ADETAILER_VERSION = "25.3.0"
CHECKPOINT_DIR = "models/Stable-diffusion"
VAE_DIR = "models/VAE"


@dataclass(frozen=True)
class Checkpoint:
    filename: str
    sha256: str

    @property
    def model_name(self) -> str:
        return self.filename.rsplit(".", 1)[0]

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def title(self) -> str:
        return f"{self.filename} [{self.shorthash}]"

    @property
    def short_title(self) -> str:
        return f"{self.model_name} [{self.shorthash}]"

    @property
    def is_inpainting(self) -> bool:
        return "inpainting" in self.filename

    def aliases(self) -> set[str]:
        """Every name the WebUI's checkpoint_aliases accepts for this checkpoint."""
        return {self.title, self.filename, self.model_name, self.shorthash, self.sha256,
                self.short_title}

    def api_item(self) -> dict[str, Any]:
        return {"title": self.title, "model_name": self.model_name, "hash": self.shorthash,
                "sha256": self.sha256, "filename": f"{CHECKPOINT_DIR}/{self.filename}",
                "config": None}


def _fictional_sha256(name: str, prefix: str = "") -> str:
    """A stable made-up hash; known models keep their real short hash as the prefix."""
    digest = hashlib.sha256(f"stablenew-emulator:{name}".encode()).hexdigest()
    return prefix + digest[len(prefix):]


CHECKPOINTS: tuple[Checkpoint, ...] = (
    Checkpoint("v1-5-pruned-emaonly.safetensors",
               "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"),
    Checkpoint("sd_xl_base_1.0.safetensors",
               "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"),
    Checkpoint("sd_xl_refiner_1.0.safetensors",
               "7440042bbdc8a24813002c09b6b69b64dc90fded4472613437b7f55f9b7d9c5f"),
    Checkpoint("dreamshaper_8.safetensors", _fictional_sha256("dreamshaper_8", "879db523c3")),
    Checkpoint("realisticVisionV60B1_v51VAE.safetensors",
               _fictional_sha256("realisticVisionV60B1_v51VAE")),
    Checkpoint("sd-v1-5-inpainting.ckpt", _fictional_sha256("sd-v1-5-inpainting", "c6bbc15e32")),
)
DEFAULT_CHECKPOINT = CHECKPOINTS[0]


def find_checkpoint(name: str | None) -> Checkpoint | None:
    """Exact lookup, as for options and override_settings (checkpoint_aliases)."""
    if not name:
        return None
    return next((c for c in CHECKPOINTS if name in c.aliases()), None)


def closest_checkpoint(name: str) -> Checkpoint | None:
    """The WebUI's fuzzy lookup for refiner and hires checkpoints: an alias, else the shortest
    title containing the text."""
    exact = find_checkpoint(name)
    if exact is not None:
        return exact
    found = sorted((c for c in CHECKPOINTS if name in c.title), key=lambda c: len(c.title))
    return found[0] if found else None


@dataclass(frozen=True)
class Vae:
    filename: str
    sha256: str

    def api_item(self) -> dict[str, Any]:
        return {"model_name": self.filename, "filename": f"{VAE_DIR}/{self.filename}"}


VAES: tuple[Vae, ...] = (
    Vae("vae-ft-mse-840000-ema-pruned.safetensors",
        _fictional_sha256("vae-ft-mse-840000-ema-pruned", "735e4c3a44")),
    Vae("sdxl_vae.safetensors", _fictional_sha256("sdxl_vae", "235745af8d")),
)


def find_vae(name: str) -> Vae | None:
    return next((v for v in VAES if name in (v.filename, v.filename.rsplit(".", 1)[0])), None)


@dataclass(frozen=True)
class Sampler:
    name: str
    aliases: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)

    def api_item(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "options": dict(self.options)}


_KARRAS = {"scheduler": "karras"}
_EXPONENTIAL = {"scheduler": "exponential", "brownian_noise": True}

# The WebUI's order matters: an unknown sampler name falls back to the first one.
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", ("k_dpmpp_2m",), _KARRAS),
    Sampler("DPM++ SDE", ("k_dpmpp_sde",), {**_KARRAS, "second_order": True,
                                            "brownian_noise": True}),
    Sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), _EXPONENTIAL),
    Sampler("DPM++ 2M SDE Heun", ("k_dpmpp_2m_sde_heun",), {**_EXPONENTIAL,
                                                             "solver_type": "heun"}),
    Sampler("DPM++ 2S a", ("k_dpmpp_2s_a",), {"uses_ensd": True, "second_order": True}),
    Sampler("DPM++ 3M SDE", ("k_dpmpp_3m_sde",), {**_EXPONENTIAL,
                                                   "discard_next_to_last_sigma": True}),
    Sampler("Euler a", ("k_euler_a", "k_euler_ancestral"), {"uses_ensd": True}),
    Sampler("Euler", ("k_euler",)),
    Sampler("LMS", ("k_lms",)),
    Sampler("Heun", ("k_heun",), {"second_order": True}),
    Sampler("DPM2", ("k_dpm_2",), {**_KARRAS, "discard_next_to_last_sigma": True,
                                   "second_order": True}),
    Sampler("DPM2 a", ("k_dpm_2_a",), {**_KARRAS, "discard_next_to_last_sigma": True,
                                       "uses_ensd": True, "second_order": True}),
    Sampler("DPM fast", ("k_dpm_fast",), {"uses_ensd": True}),
    Sampler("DPM adaptive", ("k_dpm_ad",), {"uses_ensd": True}),
    Sampler("Restart", ("restart",), {**_KARRAS, "second_order": True}),
    Sampler("DDIM", ("ddim",), {"default_eta_is_0": True, "uses_ensd": True}),
    Sampler("DDIM CFG++", ("ddim_cfgpp",)),
    Sampler("PLMS", ("plms",)),
    Sampler("UniPC", ("unipc",)),
    Sampler("LCM", ("k_lcm",)),
)
_SAMPLER_BY_NAME = {s.name: s for s in SAMPLERS}


@dataclass(frozen=True)
class Scheduler:
    name: str
    label: str
    aliases: tuple[str, ...] = ()
    default_rho: float = -1
    need_inner_model: bool = False

    def api_item(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label,
                "aliases": list(self.aliases) or None, "default_rho": self.default_rho,
                "need_inner_model": self.need_inner_model}


SCHEDULERS: tuple[Scheduler, ...] = (
    Scheduler("automatic", "Automatic"),
    Scheduler("uniform", "Uniform", need_inner_model=True),
    Scheduler("karras", "Karras", default_rho=7.0),
    Scheduler("exponential", "Exponential"),
    Scheduler("polyexponential", "Polyexponential", default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", ("SGMUniform",), need_inner_model=True),
    Scheduler("kl_optimal", "KL Optimal"),
    Scheduler("align_your_steps", "Align Your Steps"),
    Scheduler("simple", "Simple", need_inner_model=True),
    Scheduler("normal", "Normal", need_inner_model=True),
    Scheduler("ddim", "DDIM", need_inner_model=True),
    Scheduler("beta", "Beta", need_inner_model=True),
)
AUTOMATIC = SCHEDULERS[0]
_SCHEDULER_BY_KEY = {**{s.name: s for s in SCHEDULERS}, **{s.label: s for s in SCHEDULERS}}


def resolve_sampler(name: str | None, scheduler: str | None) -> tuple[Sampler, Scheduler]:
    """The WebUI's get_sampler_and_scheduler: a trailing scheduler label, name or alias is split
    off the sampler name; unknown samplers fall back to the first sampler, unknown schedulers
    to automatic. Both silently."""
    found = _SCHEDULER_BY_KEY.get(scheduler or "", AUTOMATIC)
    text = name or SAMPLERS[0].name
    for candidate in SCHEDULERS:
        for option in (candidate.label, candidate.name, *candidate.aliases):
            if text.endswith(" " + option):
                found = candidate
                text = text[: -(len(option) + 1)]
                break
    return _SAMPLER_BY_NAME.get(text, SAMPLERS[0]), found


def find_scheduler(name: str) -> Scheduler | None:
    """A scheduler by its name or label, as the WebUI's schedulers_map looks it up."""
    return _SCHEDULER_BY_KEY.get(name)


def find_sampler(name: str) -> Sampler | None:
    return _SAMPLER_BY_NAME.get(name)


def schedule_label(sampler: Sampler, scheduler: Scheduler) -> str:
    """What the infotext reports: an automatic scheduler is the sampler's own default."""
    if scheduler is not AUTOMATIC:
        return scheduler.label
    default = _SCHEDULER_BY_KEY.get(str(sampler.options.get("scheduler", "")))
    return default.label if default else AUTOMATIC.label


@dataclass(frozen=True)
class Upscaler:
    name: str
    model_path: str | None = None
    scale: float = 4
    # Model upscalers take GPU time; plain resamplers do not.
    is_model: bool = True

    def api_item(self) -> dict[str, Any]:
        return {"name": self.name, "model_name": self.name if self.model_path else None,
                "model_path": self.model_path, "model_url": None, "scale": self.scale}


_GH = "https://github.com"
UPSCALERS: tuple[Upscaler, ...] = (
    Upscaler("None", is_model=False),
    Upscaler("Lanczos", is_model=False),
    Upscaler("Nearest", is_model=False),
    Upscaler("DAT x2", f"{_GH}/zhengchen1999/DAT/releases/download/v0.1/DAT_x2.pth", 2),
    Upscaler("DAT x4", f"{_GH}/zhengchen1999/DAT/releases/download/v0.1/DAT_x4.pth", 4),
    Upscaler("ESRGAN_4x", f"{_GH}/cszn/KAIR/releases/download/v1.0/ESRGAN.pth"),
    Upscaler("LDSR", "https://heibox.uni-heidelberg.de/f/578df07c8fc04ffbadf3/?dl=1"),
    Upscaler("R-ESRGAN 4x+",
             f"{_GH}/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"),
    Upscaler("R-ESRGAN 4x+ Anime6B", f"{_GH}/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/"
             "RealESRGAN_x4plus_anime_6B.pth"),
    Upscaler("ScuNET GAN", f"{_GH}/cszn/KAIR/releases/download/v1.0/scunet_color_real_gan.pth"),
    Upscaler("SwinIR 4x", f"{_GH}/JingyunLiang/SwinIR/releases/download/v0.0/"
             "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
)
LATENT_UPSCALE_MODES = (
    "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
    "Latent (nearest)", "Latent (nearest-exact)",
)


def find_upscaler(name: str) -> Upscaler | None:
    return next((u for u in UPSCALERS if u.name == name), None)


FACE_RESTORERS = (
    {"name": "CodeFormer", "cmd_dir": "models/Codeformer"},
    {"name": "GFPGAN", "cmd_dir": None},
)

AD_MODELS = (
    "face_yolov8n.pt", "face_yolov8s.pt", "hand_yolov8n.pt", "person_yolov8n-seg.pt",
    "person_yolov8s-seg.pt", "yolov8x-worldv2.pt", "mediapipe_face_full", "mediapipe_face_short",
    "mediapipe_face_mesh", "mediapipe_face_mesh_eyes_only",
)

# Script titles as /sdapi/v1/scripts lists them; lookups are case-insensitive like the WebUI's.
ALWAYSON_SCRIPTS = ("ADetailer", "Comments", "Extra options", "Hypertile", "Refiner", "Sampler",
                    "Seed")
SELECTABLE_SCRIPTS = {
    "txt2img": ("Prompt matrix", "Prompts from file or textbox", "X/Y/Z plot"),
    "img2img": ("img2img alternative test", "Loopback", "Outpainting mk2",
                "Poor man's outpainting", "Prompt matrix", "Prompts from file or textbox",
                "SD upscale", "X/Y/Z plot"),
}


def script_info() -> list[dict[str, Any]]:
    """GET /sdapi/v1/script-info: every script of both tabs (their UI arguments left out)."""
    return [{"name": name.lower(), "is_alwayson": name in ALWAYSON_SCRIPTS,
             "is_img2img": kind == "img2img", "args": []}
            for kind, selectable in SELECTABLE_SCRIPTS.items()
            for name in (*selectable, *ALWAYSON_SCRIPTS)]


def realesrgan_models() -> list[dict[str, Any]]:
    """GET /sdapi/v1/realesrgan-models: the Real-ESRGAN upscalers."""
    return [{"name": u.name, "path": u.model_path, "scale": u.scale}
            for u in UPSCALERS if u.name.startswith("R-ESRGAN")]


# GET /sdapi/v1/extensions lists the extensions installed from a repository (built-in ones have
# no remote and are left out): here ADetailer.
ADETAILER_EXTENSION: dict[str, Any] = {
    "name": "adetailer", "remote": "https://github.com/Bing-su/adetailer.git",
    "branch": "main", "commit_hash": _fictional_sha256("adetailer")[:40],
    "commit_date": 1740000000, "version": _fictional_sha256("adetailer")[:8], "enabled": True,
}


def scripts_list() -> dict[str, list[str]]:
    return {kind: sorted(s.lower() for s in (*selectable, *ALWAYSON_SCRIPTS))
            for kind, selectable in SELECTABLE_SCRIPTS.items()}


def default_options(checkpoint: Checkpoint) -> dict[str, Any]:
    """Every WebUI option at its default, with `checkpoint` loaded (options.py)."""
    return {**OPTION_DEFAULTS, "sd_model_checkpoint": checkpoint.title,
            "sd_checkpoint_hash": checkpoint.sha256}

"""What the connected runners offer (`OfferedNames`), and the names a job sends to the WebUI
checked against it.

The WebUI does not refuse most unknown names: an unknown sampler runs as its first sampler, an
unknown scheduler as "automatic", an unknown ADetailer model skips its pass (stablenew.sdwebui).
So the bundle checks every name a job uses against the names some connected runner offers, as
the WebUI resolves them, and a name none of them offers makes the part a row error naming the
config field and the closest names they do offer ("did you mean 'Euler a'?").

Checked, for the stages the job runs (settings of other stages are cleared in a prototype):
txt2img.model and .vae (as the runner loads them: title, file name, name, hash), the samplers
and schedulers of the generation, img2img, the hires fix and each ADetailer pass, the hires-fix
upscaler (an upscaler or a latent upscale mode) and checkpoint, the refiner checkpoint (the
WebUI's loose lookup for those two), each ADetailer pass's model, and the upscale stage's
upscalers (unless it upscales through img2img, which names none). An empty name is not checked:
it means the WebUI's default, or "as the generation".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from stablenew.bundle.domain import NameCheck
from stablenew.contract.model import NormalizedJob, StageType, UpscaleMode
from stablenew.sdwebui import names as sdwebui_names
from stablenew.sdwebui.model_matching import ModelEntry, closest_model, find_model, match_vae
from stablenew.sdwebui.names import (
    USE_SAME_CHECKPOINT,
    USE_SAME_SAMPLER,
    USE_SAME_SCHEDULER,
    SchedulerEntry,
    find_scheduler,
    split_sampler,
)

T = TypeVar("T")

# At most this many suggestions.
SUGGESTIONS = 3
# How many offered names a message lists when none is close.
LISTED = 8


@dataclass(frozen=True)
class OfferedNames:
    """The names the connected runners' WebUIs offer together: what a job may name. Without
    them (`runner_count` 0) the names cannot be checked, and `unchecked_reason` says why.

    Frozen and hashable: a normalised draft is cached per draft and per offer.
    """

    runner_count: int = 0
    models: tuple[ModelEntry, ...] = ()
    vaes: tuple[str, ...] = ()
    samplers: tuple[str, ...] = ()
    schedulers: tuple[SchedulerEntry, ...] = ()
    upscalers: tuple[str, ...] = ()
    latent_upscale_modes: tuple[str, ...] = ()
    adetailer_models: tuple[str, ...] = ()
    unchecked_reason: str = "no runner is connected"

    @property
    def checked(self) -> bool:
        """Whether there is something to check names against."""
        return self.runner_count > 0

    @staticmethod
    def union(offers: Sequence[OfferedNames]) -> OfferedNames:
        """What any of `offers` (one per connected runner) offers, each name once, in
        first-seen order. Unchecked when there is none, or when one of them cannot say what it
        offers (a name only that runner has would be refused)."""
        if not offers:
            return OfferedNames()
        silent = next((offer for offer in offers if not offer.checked), None)
        if silent is not None:
            return silent
        return OfferedNames(
            runner_count=sum(offer.runner_count for offer in offers),
            models=_merged(offer.models for offer in offers),
            vaes=_merged(offer.vaes for offer in offers),
            samplers=_merged(offer.samplers for offer in offers),
            schedulers=_merged(offer.schedulers for offer in offers),
            upscalers=_merged(offer.upscalers for offer in offers),
            latent_upscale_modes=_merged(offer.latent_upscale_modes for offer in offers),
            adetailer_models=_merged(offer.adetailer_models for offer in offers),
            unchecked_reason="")


def _merged(lists: Iterable[tuple[T, ...]]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(item for items in lists for item in items))


def name_check_of(offered: OfferedNames) -> NameCheck:
    """How names checked against `offered` were checked, as a summary reports it."""
    if offered.checked:
        return NameCheck(checked=True, runner_count=offered.runner_count)
    return NameCheck(unchecked_reason=offered.unchecked_reason)


@dataclass(frozen=True)
class UnofferedName:
    """A name of a job that no connected runner offers."""

    config_field: str  # where the config sets it: "txt2img.sampler_name"
    message: str  # "sampler 'Eulr a' is not offered by any connected runner: did you mean ..."
    suggestions: tuple[str, ...]


@dataclass(frozen=True)
class _Kind:
    """A kind of name: how the WebUI finds one among the offered names, and which offered names
    to suggest instead of one it does not find."""

    noun: str
    offers: Callable[[OfferedNames, str], bool]
    candidates: Callable[[OfferedNames], tuple[str, ...]]


_MODEL = _Kind("model", lambda o, name: find_model(list(o.models), name) is not None,
               lambda o: tuple(model.model_name for model in o.models))
# The hires fix and the refiner pick a checkpoint more loosely (closest_model).
_CHECKPOINT = _Kind("checkpoint", lambda o, name: closest_model(list(o.models), name) is not None,
                    _MODEL.candidates)
_VAE = _Kind("VAE", lambda o, name: match_vae(list(o.vaes), name) is not None,
             lambda o: o.vaes)
_SAMPLER = _Kind("sampler",
                 lambda o, name: split_sampler(name, list(o.schedulers))[0] in o.samplers,
                 lambda o: o.samplers)
_SCHEDULER = _Kind("scheduler",
                   lambda o, name: find_scheduler(list(o.schedulers), name) is not None,
                   lambda o: tuple(scheduler.label or scheduler.name
                                   for scheduler in o.schedulers))
_UPSCALER = _Kind("upscaler", lambda o, name: name in o.upscalers, lambda o: o.upscalers)
_HIRES_UPSCALER = _Kind("upscaler",
                        lambda o, name: name in o.latent_upscale_modes or name in o.upscalers,
                        lambda o: o.latent_upscale_modes + o.upscalers)
_ADETAILER_MODEL = _Kind("ADetailer model", lambda o, name: name in o.adetailer_models,
                         lambda o: o.adetailer_models)


def unoffered_names(job: NormalizedJob, offered: OfferedNames) -> list[UnofferedName]:
    """Every name `job` uses that no runner of `offered` offers, in config order; none when
    `offered` has no runner to check against. `job` is a prototype (or any job of it): the names
    are the same for every job of one config."""
    if not offered.checked:
        return []
    return [_unoffered(path, kind, name, offered) for path, kind, name in _names_of(job)
            if not kind.offers(offered, name)]


def _names_of(job: NormalizedJob) -> Iterator[tuple[str, _Kind, str]]:
    """(config field, kind, name) for every name `job` sends, left out when empty."""
    stages = set(job.stage_plan)
    named: list[tuple[str, _Kind, str]] = [
        ("txt2img.model", _MODEL, job.model), ("txt2img.vae", _VAE, job.vae)]
    if stages != {StageType.UPSCALE} or job.upscale.mode == UpscaleMode.IMG2IMG:
        # img2img as the generation stage runs with its own sampler and scheduler when set.
        own = job.img2img if StageType.TXT2IMG not in stages else None
        if not (own and own.sampler_name):
            named.append(("txt2img.sampler_name", _SAMPLER, job.sampler_name))
        if not (own and own.scheduler):
            named.append(("txt2img.scheduler", _SCHEDULER, job.scheduler))
    named += [("img2img.sampler_name", _SAMPLER, job.img2img.sampler_name),
              ("img2img.scheduler", _SCHEDULER, job.img2img.scheduler)]
    hires = job.hires_fix
    if hires.enabled:
        named += [("txt2img.hires_fix.upscaler", _HIRES_UPSCALER, hires.upscaler),
                  ("txt2img.hires_fix.checkpoint", _CHECKPOINT,
                   _unless(hires.checkpoint, USE_SAME_CHECKPOINT)),
                  ("txt2img.hires_fix.sampler_name", _SAMPLER,
                   _unless(hires.sampler_name, USE_SAME_SAMPLER)),
                  ("txt2img.hires_fix.scheduler", _SCHEDULER,
                   _unless(hires.scheduler, USE_SAME_SCHEDULER))]
    if job.refiner.enabled:
        named.append(("txt2img.refiner.checkpoint", _CHECKPOINT, job.refiner.checkpoint))
    for index, detail in enumerate(job.adetailer_passes):
        path = f"adetailer.passes[{index}]"
        named += [(f"{path}.model", _ADETAILER_MODEL, detail.model),
                  (f"{path}.sampler_name", _SAMPLER, detail.sampler_name)]
    if StageType.UPSCALE in stages and job.upscale.mode != UpscaleMode.IMG2IMG:
        named += [("upscale.upscaler", _UPSCALER, job.upscale.upscaler),
                  ("upscale.upscaler_2", _UPSCALER, job.upscale.upscaler_2)]
    return ((path, kind, name) for path, kind, name in named if name)


def _unless(name: str, meaning_the_same: str) -> str:
    return "" if name == meaning_the_same else name


def _unoffered(path: str, kind: _Kind, name: str, offered: OfferedNames) -> UnofferedName:
    candidates = kind.candidates(offered)
    close = closest_names(name, candidates)
    if close:
        hint = f": did you mean {_alternatives(close)}?"
    elif candidates:
        listed = ", ".join(repr(candidate) for candidate in candidates[:LISTED])
        more = f", ... ({len(candidates)} in all)" if len(candidates) > LISTED else ""
        hint = f"; they offer {listed}{more}"
    else:
        hint = f"; they offer no {kind.noun} at all"
    message = f"{kind.noun} {name!r} is not offered by any connected runner{hint}"
    return UnofferedName(path, message, tuple(close))


def closest_names(name: str, candidates: tuple[str, ...]) -> list[str]:
    """The candidates closest to `name`, closest first, ignoring case (so a name written in
    another case comes first)."""
    return sdwebui_names.closest_names(name, candidates, SUGGESTIONS)


def _alternatives(names: list[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]

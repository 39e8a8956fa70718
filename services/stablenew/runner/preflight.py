"""The names an entry's requests use, checked against what the WebUI offers before anything is
sent.

The WebUI does not refuse a name it does not know: an unknown sampler runs as its first sampler,
an unknown scheduler as the model's own schedule, an unknown ADetailer model leaves the image as
it was; only an unknown upscaler fails (a 500, after the first pass has been paid for). So an
entry that names something the WebUI does not offer fails here, naming the closest names it
does offer. Models and VAEs are resolved (and their lists refreshed once) when they are loaded.
"""

from __future__ import annotations

from collections.abc import Iterator

from stablenew.runner.domain import Capabilities
from stablenew.runner.payloads import EntryPlan, StageRequest
from stablenew.sdwebui.names import (
    AUTOMATIC_SCHEDULER,
    closest_names,
    find_scheduler,
    split_sampler,
)

# An extras upscaler slot that is not used.
NO_UPSCALER = "None"
# How many offered names a message lists when none is close.
LISTED_NAMES = 8


def unknown_names(plan: EntryPlan, capabilities: Capabilities) -> list[str]:
    """One message per name the WebUI does not offer, in request order, each once."""
    problems: list[str] = []
    for request in plan.requests:
        for problem in _request_problems(request, capabilities):
            if problem not in problems:
                problems.append(problem)
    return problems


def suggestion(name: str, offered: list[str]) -> str:
    """"did you mean 'Euler a'?" (case ignored, like the bundle's suggestions), or the start
    of the list when nothing is close."""
    close = closest_names(name, offered, 1)
    if close:
        return f"did you mean {close[0]!r}?"
    listed = ", ".join(offered[:LISTED_NAMES]) + (", ..." if len(offered) > LISTED_NAMES else "")
    return f"it offers: {listed or 'none'}"


def _request_problems(request: StageRequest, capabilities: Capabilities) -> Iterator[str]:
    body = request.body
    if request.endpoint == "extra-single-image":
        for key in ("upscaler_1", "upscaler_2"):
            if body[key] != NO_UPSCALER:
                yield from _check("upscaler", body[key], capabilities.upscalers)
        return
    yield from _sampler_problems(body["sampler_name"], capabilities)
    yield from _scheduler_problems(body.get("scheduler", ""), capabilities)
    if "hr_sampler_name" in body:
        yield from _sampler_problems(body["hr_sampler_name"], capabilities)
    yield from _scheduler_problems(body.get("hr_scheduler", ""), capabilities)
    if "hr_upscaler" in body:
        yield from _check("hires upscaler", body["hr_upscaler"],
                          capabilities.latent_upscale_modes + capabilities.upscalers)
    for tab in request.adetailer_tabs:
        yield from _adetailer_problems(tab, capabilities)


def _sampler_problems(sampler: str, capabilities: Capabilities) -> Iterator[str]:
    name, _ = split_sampler(sampler, capabilities.scheduler_entries)
    yield from _check("sampler", name, capabilities.samplers)


def _scheduler_problems(scheduler: str, capabilities: Capabilities) -> Iterator[str]:
    entries = capabilities.scheduler_entries
    # Exactly as the WebUI looks it up (sdwebui.names): "KARRAS" would run as automatic.
    if not scheduler or scheduler == AUTOMATIC_SCHEDULER or not entries:
        return
    if find_scheduler(entries, scheduler) is None:
        yield from _check("scheduler", scheduler, [entry.label for entry in entries])


def _adetailer_problems(tab: dict[str, object], capabilities: Capabilities) -> Iterator[str]:
    model = str(tab["ad_model"])
    if not capabilities.adetailer_models:
        yield (f"ADetailer model {model!r}: the WebUI has no ADetailer extension "
               "(GET /adetailer/v1/ad_model lists no model)")
        return
    yield from _check("ADetailer model", model, capabilities.adetailer_models)
    if tab.get("ad_use_sampler"):
        yield from _sampler_problems(str(tab["ad_sampler"]), capabilities)


def _check(what: str, name: str, offered: list[str]) -> Iterator[str]:
    """A message when `offered` (an empty list: not reported, so not checked) lacks `name`."""
    if offered and name not in offered:
        yield f"{what} {name!r} is not offered by the WebUI: {suggestion(name, offered)}"

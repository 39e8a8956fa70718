"""How the WebUI reads the sampler, scheduler and upscaler names of a request (checkpoints and
VAEs: model_matching.py).

The WebUI (AUTOMATIC1111 v1.10, and the forks that keep its API) refuses few of these names:
- a sampler is looked up by its exact name, after a scheduler written at its end is split off
  ("DPM++ 2M Karras": a scheduler's label, name or alias); an unknown sampler runs as the first
  one the WebUI lists. Its aliases ("k_euler_a") are not looked up by the API.
- a request's `scheduler` is looked up by its exact name or label; anything else runs as
  "automatic".
- an upscaler is looked up by its exact name (the hires fix also takes the latent upscale
  modes); an unknown one fails the request, after the first pass has run.
So whoever sends a name checks it against the lists first, with these rules.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

# Values of the hires fix's own checkpoint, sampler and scheduler that mean "as the first pass".
USE_SAME_CHECKPOINT = "Use same checkpoint"
USE_SAME_SAMPLER = "Use same sampler"
USE_SAME_SCHEDULER = "Use same scheduler"
# The scheduler that leaves the schedule to the sampler (labelled "Automatic").
AUTOMATIC_SCHEDULER = "automatic"
# A name is close to another from this difflib ratio on (compared ignoring case).
CLOSE_ENOUGH = 0.6


@dataclass(frozen=True)
class SchedulerEntry:
    """One scheduler as GET /sdapi/v1/schedulers lists it: "karras", labelled "Karras"."""

    name: str
    label: str
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """The spellings that may end a sampler name: label, name, aliases."""
        return (self.label, self.name, *self.aliases)


def find_scheduler(entries: list[SchedulerEntry], wanted: str) -> SchedulerEntry | None:
    """The scheduler a request's `scheduler` names: by its name or its label, exactly."""
    return next((entry for entry in entries if wanted in (entry.name, entry.label)), None)


def split_sampler(sampler: str,
                  entries: list[SchedulerEntry]) -> tuple[str, SchedulerEntry | None]:
    """"DPM++ 2M Karras" -> ("DPM++ 2M", karras): the sampler name the WebUI looks up, and the
    scheduler written at its end, if any."""
    for entry in entries:
        for name in entry.names():
            if name and sampler.endswith(" " + name):
                return sampler[: -len(name) - 1], entry
    return sampler, None


def closest_names(name: str, candidates: Sequence[str], limit: int) -> list[str]:
    """At most `limit` candidates close to `name`, closest first, ignoring case (so a name
    written in another case comes first): the suggestions for a name the WebUI would not
    find, alike in the bundle and the runner."""
    folded = {candidate.casefold(): candidate for candidate in reversed(candidates)}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=limit,
                                      cutoff=CLOSE_ENOUGH)
    return [folded[match] for match in close]

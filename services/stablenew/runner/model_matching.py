"""Which of the WebUI's checkpoints, VAEs, samplers and schedulers a requested name means.

A job names its model the way people do: a title with its short hash ("x.safetensors
[6ce0161689]"), a path relative to the models folder, the file name with or without its
extension, a hash. The WebUI lists each checkpoint under all of these; a name is matched rank by
rank over the whole list, so the most specific form always wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTOMATIC_VAE = "Automatic"
AUTOMATIC_SCHEDULER = "automatic"
NO_VAE = "None"
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]+\]$")


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint as GET /sdapi/v1/sd-models lists it."""

    title: str
    model_name: str
    hash: str
    filename: str = ""
    sha256: str = ""

    @property
    def name(self) -> str:
        """The checkpoint's path relative to the models folder ("sub/x.safetensors")."""
        return _HASH_SUFFIX.sub("", self.title)

    def aliases(self) -> tuple[str, str, str, str, str, str, str]:
        """The names the WebUI accepts for this checkpoint, most specific first: title,
        relative file name, model_name, file name, file name without extension, short hash,
        sha256 (the hashes are "" until the WebUI has computed them)."""
        base = _basename(self.name)
        return (self.title, self.name, self.model_name, base, _stem(base), self.hash,
                self.sha256)


# The length of ModelEntry.aliases() (its return type pins it).
_ALIAS_RANKS = 7


def find_model(entries: list[ModelEntry], name: str) -> ModelEntry | None:
    """The checkpoint `name` means. Aliases are tried rank by rank over all entries, so an
    exact title always wins over another folder's checkpoint with the same file name."""
    wanted = name.strip()
    if not wanted:
        return None
    table = [(entry, entry.aliases()) for entry in entries]
    for rank in range(_ALIAS_RANKS):
        for entry, aliases in table:
            if aliases[rank] == wanted:
                return entry
    # A title with another hash than the listed one (the file was replaced): match the name.
    bare = _HASH_SUFFIX.sub("", wanted)
    return find_model(entries, bare) if bare != wanted else None


def queue_model_name(title: str, entries: list[ModelEntry]) -> str:
    """The checkpoint loaded under `title` as the queue names models (its model_name); derived
    from the title (no hash, no extension) when the list does not have it."""
    for entry in entries:
        if title in (entry.title, entry.model_name):
            return entry.model_name
    return title.split(" [", maxsplit=1)[0].rsplit(".", 1)[0] if title else ""


def match_vae(names: list[str], wanted: str) -> str | None:
    """The sd_vae option value for `wanted`: Automatic ("" too) or None, or a listed VAE by its
    name, file name or name without extension."""
    value = wanted.strip()
    if value.lower() in ("", AUTOMATIC_VAE.lower()):
        return AUTOMATIC_VAE
    if value.lower() == NO_VAE.lower():
        return NO_VAE
    for name in names:
        if value in (name, _basename(name), _stem(_basename(name))):
            return name
    return None


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name)[-1]


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


@dataclass(frozen=True)
class SchedulerEntry:
    """One scheduler as GET /sdapi/v1/schedulers lists it: "karras", labelled "Karras"."""

    name: str
    label: str
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every spelling the WebUI accepts for it."""
        return (self.name, self.label, *self.aliases)


def find_scheduler(entries: list[SchedulerEntry], wanted: str) -> SchedulerEntry | None:
    """The scheduler `wanted` names (its name, label or an alias, in any case)."""
    folded = wanted.strip().casefold()
    return next((entry for entry in entries
                 if folded in (name.casefold() for name in entry.names())), None)


def split_sampler(sampler: str, entries: list[SchedulerEntry]) -> tuple[str, SchedulerEntry | None]:
    """"DPM++ 2M Karras" -> ("DPM++ 2M", karras): the WebUI reads a scheduler written at the
    end of a sampler name (an older way of naming both) and runs the sampler without it."""
    for entry in entries:
        for name in entry.names():
            if sampler.endswith(" " + name):
                return sampler[: -len(name) - 1], entry
    return sampler, None

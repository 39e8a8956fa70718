"""Which of the WebUI's checkpoints and VAEs a requested name means (samplers, schedulers and
upscalers: names.py).

A job names its model the way people do: a title with its short hash ("x.safetensors
[6ce0161689]"), a path relative to the models folder, the file name with or without its
extension, a hash. The WebUI lists each checkpoint under all of these; a name is matched rank by
rank over the whole list, so the most specific form always wins.

The runner resolves the names it sends with these rules; the queue (which runner can run a job)
and the bundle (which names no connected runner offers) apply the same ones to the lists the
runners announce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTOMATIC_VAE = "Automatic"
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


def closest_model(entries: list[ModelEntry], name: str) -> ModelEntry | None:
    """The checkpoint the WebUI picks for a hires-fix or refiner checkpoint name: the one
    `find_model` finds, else the one with the shortest title containing the name (its hash left
    out). The WebUI refuses the request when there is none."""
    found = find_model(entries, name)
    if found is not None or not name.strip():
        return found
    part = _HASH_SUFFIX.sub("", name.strip())
    containing = [entry for entry in entries if part in entry.title]
    return min(containing, key=lambda entry: len(entry.title), default=None)


def checkpoint_names(entries: list[ModelEntry]) -> frozenset[str]:
    """Every name `find_model` knows these checkpoints by, for `has_checkpoint`."""
    return frozenset(alias for entry in entries for alias in entry.aliases() if alias)


def has_checkpoint(names: frozenset[str], name: str) -> bool:
    """Whether `find_model` finds a checkpoint for `name` among the entries whose
    `checkpoint_names` are `names`: one set lookup instead of a scan of the list."""
    wanted = name.strip()
    if not wanted or wanted in names:
        return bool(wanted)
    return wanted.endswith("]") and _HASH_SUFFIX.sub("", wanted) in names


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


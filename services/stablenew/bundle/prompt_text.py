"""Prompt text: LoRA/embedding tags, matrix and wildcard tokens, and how pieces are joined.

Tags (`<lora:name:0.6>`, `<embedding:name>`, `(<embedding:name>:0.8)`) stay in the text exactly as
written, because the WebUI understands them; they are only *listed* so a preview can show them.

Tokens are what expansion replaces:
- `[[name]]` is a matrix slot (name: any text without brackets or newlines, trimmed);
- `__name__` is a wildcard (name: a letter or digit, then letters, digits, `_ . / -`). It only
  counts when no letter, digit or underscore comes right before it, and never inside an
  extra-network tag, so `<lora:add__detail__:1>` and `snake__case__` stay plain text.
A `[[...]]` inside a tag is still a token (`<lora:[[style]]:0.7>` varies the LoRA).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from stablenew.contract.model import PromptTag, PromptTagKind

# One scanner for tags and tokens, so a wildcard-looking name inside a tag is consumed by the
# tag alternative first. A tag containing `[[` is not taken as a tag, so its slot is found.
_TAG = r"<(?:lora|lyco|embedding|hypernet):(?:(?!\[\[)[^<>\n])*>"
_SLOT = r"\[\[(?P<slot>[^\[\]\n]*)\]\]"
_WILDCARD = r"(?<!\w)__(?P<wildcard>[A-Za-z0-9][\w./-]*?)__"
TOKEN_SCANNER = re.compile(f"(?P<tag>{_TAG})|{_SLOT}|{_WILDCARD}", re.IGNORECASE)

_TAG_PATTERN = re.compile(
    r"\(\s*<embedding:(?P<weighted>[^<>:]+)>\s*:\s*(?P<weight>[^()]*?)\s*\)"
    r"|<embedding:(?P<embedding>[^<>:]+)>"
    r"|<lora:(?P<lora>[^<>:]+)(?::(?P<lora_weight>[^<>:]*))?(?::[^<>]*)?>",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Token:
    """A matrix slot or wildcard reference found in prompt text."""

    kind: str  # "slot" or "wildcard"
    name: str
    start: int
    end: int

    @property
    def display(self) -> str:
        """The token as written: `[[name]]` or `__name__`."""
        return f"[[{self.name}]]" if self.kind == "slot" else f"__{self.name}__"


SLOT = "slot"
WILDCARD = "wildcard"


def iter_tokens(text: str) -> Iterator[Token]:
    """Every slot and wildcard token in `text`, in order; tags are skipped."""
    if "[[" not in text and "__" not in text:
        return
    for match in TOKEN_SCANNER.finditer(text):
        slot = match.group("slot")
        if slot is not None:
            yield Token(SLOT, slot.strip(), match.start(), match.end())
        elif match.group("wildcard") is not None:
            yield Token(WILDCARD, match.group("wildcard"), match.start(), match.end())


def undefined_token_message(display: str) -> str:
    """Why the token `display` cannot be resolved."""
    kind = "matrix slot" if display.startswith("[[") else "wildcard"
    return (f"{display} is not defined: no {kind} of that name is available (they come from"
            " the pack; a matrix that is off defines none)")


def has_token(text: str) -> bool:
    """True when `text` still holds a `[[slot]]` or `__wildcard__` token."""
    return next(iter_tokens(text), None) is not None


def first_token(*texts: str) -> Token | None:
    """The first token of the first text that has one, or None."""
    for text in texts:
        token = next(iter_tokens(text), None)
        if token is not None:
            return token
    return None


@dataclass(slots=True)
class TagScan:
    """The tags found in some texts, and the problems of tags that cannot be read."""

    tags: list[PromptTag]
    problems: list[str]


def scan_tags(*texts: str) -> TagScan:
    """The LoRA and embedding tags of `texts` in order (exact repeats listed once), and a
    message for each tag whose weight is not a number.

    The PromptTag objects are shared between calls (tags repeat across thousands of variants):
    treat them as read-only."""
    tags: list[PromptTag] = []
    seen: set[tuple[PromptTagKind, str, float]] = set()
    problems: list[str] = []
    for text in texts:
        if "<" not in text:
            continue
        for match in _TAG_PATTERN.finditer(text):
            tag, problem = _parse_tag(match.group(0))
            if problem:
                problems.append(problem)
            key = (tag.kind, tag.name, tag.weight)
            if key not in seen:
                seen.add(key)
                tags.append(tag)
    return TagScan(tags, problems)


@functools.lru_cache(maxsize=4096)
def _parse_tag(text: str) -> tuple[PromptTag, str]:
    """A tag as written -> (the tag, a problem message or "")."""
    match = _TAG_PATTERN.fullmatch(text)
    assert match is not None  # `text` is a match of the same pattern
    if match.group("lora") is not None:
        weight, problem = _weight(match.group("lora_weight"), text)
        return PromptTag(PromptTagKind.LORA, match.group("lora").strip(), weight), problem
    if match.group("weighted") is not None:
        weight, problem = _weight(match.group("weight"), text)
        return PromptTag(PromptTagKind.EMBEDDING, match.group("weighted").strip(), weight), problem
    return PromptTag(PromptTagKind.EMBEDDING, match.group("embedding").strip(), 1.0), ""


def _weight(text: str | None, tag: str) -> tuple[float, str]:
    # A missing weight means 1.0, as in the WebUI.
    if text is None or not text.strip():
        return 1.0, ""
    try:
        return float(text), ""
    except ValueError:
        return 1.0, f"tag {tag} has a weight that is not a number"


def join_prompt(*parts: str) -> str:
    """Non-empty parts joined with ", " (the separator every pack format uses)."""
    if len(parts) == 2:  # the hot path: text plus a global prompt
        first, second = parts
        return f"{first}, {second}" if first and second else first or second
    return ", ".join([part for part in parts if part])


def lora_tag(name: str, weight: float) -> str:
    """`<lora:name:weight>` as a user would write it."""
    return f"<lora:{name}:{_format_weight(weight)}>"


def embedding_tag(name: str, weight: float = 1.0) -> str:
    """`<embedding:name>`, or `(<embedding:name>:weight)` for another weight."""
    if weight == 1.0:
        return f"<embedding:{name}>"
    return f"(<embedding:{name}>:{_format_weight(weight)})"


def _format_weight(weight: float) -> str:
    # 0.6 stays "0.6", 1.0 becomes "1": what a user would have typed.
    return f"{weight:g}"

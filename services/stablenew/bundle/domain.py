"""The bundle's domain: drafts and their parts, what normalising a draft yields, and the problems
the bundle reports. Plain values and rules: no gRPC, no SQL, no use case.

- A draft (`DraftRecord`) is an ordered list of parts (`DraftPart`): a manual prompt with its own
  config (`ManualPart`) or one row of a prompt pack with config overrides (`PackRowPart`).
- Normalising the parts (normalize.py) yields a `NormalizedBundle`: the normalized jobs, what each
  part became (`PartOutcome`) and the `BundleSummary` every draft response carries. A `Draft` is
  a record together with its bundle.
- Problems: a rejected field (`FieldError`), a row or part that makes no job (`RowError`, built
  from the `Problem` a step reports), and a pack that cannot be read at all (`PackError`, the
  bundle's domain exception).
- How the names a draft's jobs use were checked against what the connected runners offer
  (`NameCheck`; the check itself is name_check.py).

Reason codes are the `ErrorReason` names of errors.proto without their prefix, so a `RowError`
carries them as the wire does and a client can match on them.
The prompt-pack entities (`Pack`, `PackRow`, ...) live with the pack reader in `packs/model.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from stablenew.contract.errors import Code, ErrorReason, ServiceError
from stablenew.contract.model import NormalizedJob, PipelineConfig

# --- problems --------------------------------------------------------------------------------


class Reason(IntEnum):
    """The reasons the bundle domain produces: the twin of bundle_service.proto `RowErrorReason`
    (same numbers), named as the errors.proto `ErrorReason` of the same meaning."""

    UNSPECIFIED = 0
    INVALID_FIELD = 1
    INVALID_STAGE_PLAN = 2
    UNRESOLVED_TOKEN = 3
    TOO_MANY_VARIANTS = 4
    PACK_INVALID = 5
    PACK_NOT_FOUND = 6


@dataclass(frozen=True)
class Problem:
    """Why a row or part produces no job; the caller adds where (pack, row, part)."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class FieldError:
    """One rejected field of a draft part, e.g. `config.txt2img.width`.

    `field` is the path a google.rpc.BadRequest field violation carries.
    """

    field: str
    reason: Reason
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def row_label(pack_id: str, row_index: int, line: int = 0) -> str:
    """How messages name a pack row: "castles row 2 (line 9)"."""
    label = f"{pack_id} row {row_index}"
    return f"{label} (line {line})" if line else label


@dataclass
class RowError:
    """A problem with one row of one pack or one part: the twin of the proto `RowError`.

    The row produces no job; the problem is shown instead of sending bad text to the WebUI.
    """

    part_id: str = ""
    prompt_pack_id: str = ""
    row_index: int = 0
    # Line number in the pack file, from 1; 0 when unknown (JSON packs, manual prompts).
    line: int = 0
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    # The config field the problem is in ("txt2img.sampler_name"); "" when not one field.
    config_field: str = ""
    # For a name no connected runner offers: the closest names they offer, closest first.
    suggestions: list[str] = field(default_factory=list)


class PackError(ServiceError):
    """A pack that cannot be read at all: names the file, the place in it and the reason.

    NOT_FOUND PACK_NOT_FOUND when the library has no such pack, otherwise INVALID_ARGUMENT
    PACK_INVALID (an id that could leave the library included); `metadata` names the pack.
    `line`/`column` count from 1 (0 when unknown); `field` is a JSON path such as
    `pack_data.slots[2].text` when the problem is a JSON value. `detail` is the bare problem,
    `message` (and `str()`) the problem with where it is: "castles.json (pack_data.name): ...".
    """

    def __init__(self, pack_id: str, file: str, detail: str, *, line: int = 0, column: int = 0,
                 field: str = "", not_found: bool = False) -> None:
        self.pack_id, self.file, self.detail = pack_id, file, detail
        self.line, self.column, self.field = line, column, field
        self.not_found = not_found
        code, reason = ((Code.NOT_FOUND, ErrorReason.PACK_NOT_FOUND) if not_found
                        else (Code.INVALID_ARGUMENT, ErrorReason.PACK_INVALID))
        super().__init__(code, reason, f"{self._where()}: {detail}",
                         metadata={"pack_id": pack_id})

    def _where(self) -> str:
        where = self.file or self.pack_id or "pack"
        if self.line:
            where += f" line {self.line}"
            if self.column:
                where += f" column {self.column}"
        if self.field:
            where += f" ({self.field})"
        return where

    def __str__(self) -> str:
        return self.message

    def fresh(self) -> PackError:
        """An equal, new exception: re-raising one stored instance would grow its traceback."""
        return PackError(self.pack_id, self.file, self.detail, line=self.line,
                         column=self.column, field=self.field, not_found=self.not_found)


# --- drafts and their parts ------------------------------------------------------------------


@dataclass
class ManualPart:
    """A prompt typed by the user, run with the config it came with."""

    part_id: str
    prompt: str
    negative_prompt: str = ""
    config: PipelineConfig = field(default_factory=PipelineConfig)
    input_images: list[str] = field(default_factory=list)


@dataclass
class PackRowPart:
    """One row of a prompt pack, read from the pack each time the draft is normalised."""

    part_id: str
    pack_id: str
    row_index: int
    prepend_text: str = ""
    # Non-zero fields replace the pack's defaults (pipeline_rules.merge_config).
    config_overrides: PipelineConfig = field(default_factory=PipelineConfig)
    input_images: list[str] = field(default_factory=list)


DraftPart = ManualPart | PackRowPart


@dataclass
class DraftRecord:
    """A draft as stored: its parts in order and the revision they make."""

    draft_id: str
    display_name: str
    revision: int
    create_time: float
    update_time: float
    parts: list[DraftPart] = field(default_factory=list)
    # What this revision makes: the versions of the pack files it read and the parts that name
    # something no connected runner offers; "" until it is first read (see BundleCore._draft).
    pack_stamp: str = ""


# --- how names were checked -----------------------------------------------------------------


@dataclass
class NameCheck:
    """Whether a summary's names were checked against what the connected runners offer: the
    twin of the proto `NameCheck`."""

    checked: bool = False
    runner_count: int = 0
    unchecked_reason: str = ""


# --- what a draft normalises to --------------------------------------------------------------


@dataclass
class BundleSummary:
    """The summary shown on every draft response: the twin of the proto `BundleSummary`."""

    part_count: int = 0
    job_count: int = 0
    # Sum over jobs of batch_size * n_iter = sum over rows of variants * batch * n_iter.
    estimated_images: int = 0
    # The first job's prompts, in full (what the WebUI will get first).
    positive_preview: str = ""
    negative_preview: str = ""
    # "txt2img → adetailer → upscale"; distinct plans joined with "; " in order of first use.
    stage_summary: str = ""
    batch_summary: str = ""
    errors: list[RowError] = field(default_factory=list)
    name_check: NameCheck = field(default_factory=NameCheck)


@dataclass(slots=True)
class PartOutcome:
    """What one part became: its jobs' count and images, or why it made none."""

    part_id: str
    job_count: int = 0
    estimated_images: int = 0
    errors: list[RowError] = field(default_factory=list)
    # The config problems among `errors`, with their field paths (for a BadRequest).
    field_errors: list[FieldError] = field(default_factory=list)


@dataclass(eq=False)  # compared and cached by identity: one object per normalisation
class NormalizedBundle:
    """The normalized jobs of a draft in order, what each part became, and the summary."""

    jobs: list[NormalizedJob]
    parts: list[PartOutcome]
    summary: BundleSummary
    # The parts that make no job because they name something no connected runner offers: what
    # the runners' offer changes about the draft (everything else follows from its parts).
    unoffered_parts: tuple[str, ...] = ()

    @property
    def errors(self) -> list[RowError]:
        """The row errors of every part, in part order."""
        return self.summary.errors


@dataclass(frozen=True)
class Draft:
    """A draft as it is now, with the jobs it normalises to."""

    record: DraftRecord
    bundle: NormalizedBundle
    # Changes with the revision and with any pack file the draft uses: what a preview page
    # token is bound to, so pages never mix two versions of a pack.
    version: str

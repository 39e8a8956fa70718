"""The domain twins of the shared contract: plain dataclasses the services work with in the
middle, between the generated protobuf types at the gRPC edge and the SQLite rows in the stores.

Field names equal the proto field names, and enum values equal the proto numbers, so that
`stablenew.contract.proto_mapping` converts both ways without a hand-written line per field; the
round-trip tests check every twin against its message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum


class StageType(IntEnum):
    UNSPECIFIED = 0
    TXT2IMG = 1
    IMG2IMG = 2
    ADETAILER = 3
    UPSCALE = 4


# The stages that generate images (from a prompt, or from input images with img2img).
GENERATION_STAGES = frozenset({StageType.TXT2IMG, StageType.IMG2IMG})


class UpscaleMode(IntEnum):
    UNSPECIFIED = 0
    EXTRAS = 1
    IMG2IMG = 2


class ResizeMode(IntEnum):
    """How img2img fits an input image: the numbers are the WebUI's own `resize_mode`."""

    UNSPECIFIED = 0  # "just resize", the WebUI's 0 and default
    CROP_AND_RESIZE = 1
    RESIZE_AND_FILL = 2
    LATENT_UPSCALE = 3


class PromptSource(IntEnum):
    UNSPECIFIED = 0
    MANUAL = 1
    PACK = 2


class PromptTagKind(IntEnum):
    UNSPECIFIED = 0
    LORA = 1
    EMBEDDING = 2


class JobState(IntEnum):
    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class RunMode(IntEnum):
    UNSPECIFIED = 0
    DIRECT = 1
    QUEUE = 2


class JobSource(IntEnum):
    UNSPECIFIED = 0
    RUN = 1
    RUN_NOW = 2
    ADD_TO_QUEUE = 3


class Priority(IntEnum):
    UNSPECIFIED = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3


class EntryStatus(IntEnum):
    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5
    SKIPPED = 6


class AdetailerOutcomeKind(IntEnum):
    UNSPECIFIED = 0
    DETAILED = 1
    NOTHING_DETECTED = 2


class WebuiState(IntEnum):
    """A runner's view of its WebUI (stablenew.v1.WebuiState): the runner reports it, the queue
    keeps what its runners announce."""

    UNSPECIFIED = 0
    DISCONNECTED = 1
    STARTING = 2
    READY = 3
    BUSY = 4
    ERROR = 5


# --- pipeline -------------------------------------------------------------------------------


@dataclass
class StageFlags:
    txt2img_enabled: bool = False
    img2img_enabled: bool = False
    adetailer_enabled: bool = False
    upscale_enabled: bool = False


@dataclass
class HiresFixConfig:
    enabled: bool = False
    scale: float = 0.0
    upscaler: str = ""
    second_pass_steps: int = 0
    resize_x: int = 0
    resize_y: int = 0
    denoising_strength: float = 0.0
    checkpoint: str = ""
    sampler_name: str = ""
    scheduler: str = ""
    prompt: str = ""
    negative_prompt: str = ""


@dataclass
class RefinerConfig:
    enabled: bool = False
    checkpoint: str = ""
    switch_at: float = 0.0


@dataclass
class Txt2ImgConfig:
    model: str = ""
    vae: str = ""
    sampler_name: str = ""
    scheduler: str = ""
    steps: int = 0
    cfg_scale: float = 0.0
    width: int = 0
    height: int = 0
    seed: int = 0
    subseed: int = 0
    subseed_strength: float = 0.0
    clip_skip: int = 0
    hires_fix: HiresFixConfig = field(default_factory=HiresFixConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)


@dataclass
class Img2ImgConfig:
    denoising_strength: float = 0.0
    resize_mode: ResizeMode = ResizeMode.UNSPECIFIED
    steps: int = 0
    cfg_scale: float = 0.0
    sampler_name: str = ""
    scheduler: str = ""


@dataclass
class AdetailerPass:
    model: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    confidence: float = 0.0
    mask_blur: int = 0
    dilate_erode: int = 0
    denoising_strength: float = 0.0
    inpaint_only_masked: bool = False
    inpaint_padding: int = 0
    steps: int = 0
    cfg_scale: float = 0.0
    sampler_name: str = ""
    fail_on_no_detection: bool = False


@dataclass
class AdetailerConfig:
    passes: list[AdetailerPass] = field(default_factory=list)


@dataclass
class UpscaleConfig:
    mode: UpscaleMode = UpscaleMode.UNSPECIFIED
    upscaler: str = ""
    factor: float = 0.0
    denoising_strength: float = 0.0
    upscaler_2: str = ""
    upscaler_2_visibility: float = 0.0


@dataclass
class PipelineConfig:
    stages: StageFlags = field(default_factory=StageFlags)
    txt2img: Txt2ImgConfig = field(default_factory=Txt2ImgConfig)
    img2img: Img2ImgConfig = field(default_factory=Img2ImgConfig)
    adetailer: AdetailerConfig = field(default_factory=AdetailerConfig)
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)
    batch_size: int = 0
    n_iter: int = 0
    global_positive: str = ""
    global_negative: str = ""


@dataclass
class PromptTag:
    kind: PromptTagKind = PromptTagKind.UNSPECIFIED
    name: str = ""
    weight: float = 0.0


@dataclass
class EntryOrigin:
    part_id: str = ""
    prompt_source: PromptSource = PromptSource.UNSPECIFIED
    prompt_pack_id: str = ""
    pack_name: str = ""
    row_index: int = 0
    variant_index: int = 0


@dataclass
class NormalizedJob:
    """A fully resolved unit of work; `config_hash` identifies what it makes."""

    index: int = 0
    prompt: str = ""
    negative_prompt: str = ""
    stage_plan: list[StageType] = field(default_factory=list)
    seed: int = 0
    subseed: int = 0
    subseed_strength: float = 0.0
    model: str = ""
    vae: str = ""
    sampler_name: str = ""
    scheduler: str = ""
    width: int = 0
    height: int = 0
    steps: int = 0
    cfg_scale: float = 0.0
    batch_size: int = 0
    n_iter: int = 0
    clip_skip: int = 0
    hires_fix: HiresFixConfig = field(default_factory=HiresFixConfig)
    refiner: RefinerConfig = field(default_factory=RefinerConfig)
    img2img: Img2ImgConfig = field(default_factory=Img2ImgConfig)
    adetailer_passes: list[AdetailerPass] = field(default_factory=list)
    upscale: UpscaleConfig = field(default_factory=UpscaleConfig)
    input_images: list[str] = field(default_factory=list)
    origin: EntryOrigin = field(default_factory=EntryOrigin)
    tags: list[PromptTag] = field(default_factory=list)
    config_hash: str = ""

    @property
    def image_count(self) -> int:
        return image_count(self.batch_size, self.n_iter)


def image_count(batch_size: int, n_iter: int) -> int:
    """Images one normalized job makes (an unset batch size or count means 1)."""
    return max(batch_size, 1) * max(n_iter, 1)


# --- jobs -----------------------------------------------------------------------------------


@dataclass
class JobOrigin:
    run_mode: RunMode = RunMode.UNSPECIFIED
    source: JobSource = JobSource.UNSPECIFIED
    prompt_source: PromptSource = PromptSource.UNSPECIFIED
    prompt_pack_id: str = ""
    draft_id: str = ""
    draft_revision: int = 0
    retry_of_job_id: str = ""


@dataclass
class ImageRef:
    path: str = ""
    sha256: str = ""
    width: int = 0
    height: int = 0
    seed: int = 0
    stage: StageType = StageType.UNSPECIFIED
    size_bytes: int = 0
    runner_id: str = ""


@dataclass
class AdetailerOutcome:
    """What one ADetailer pass did to one image of an entry."""

    pass_index: int = 0
    model: str = ""
    image_index: int = 0
    outcome: AdetailerOutcomeKind = AdetailerOutcomeKind.UNSPECIFIED


@dataclass
class EntryResult:
    entry_index: int = 0
    prompt_pack_id: str = ""
    pack_name: str = ""
    row_index: int = 0
    prompt: str = ""
    stage_plan: list[StageType] = field(default_factory=list)
    status: EntryStatus = EntryStatus.UNSPECIFIED
    error_message: str = ""
    images: list[ImageRef] = field(default_factory=list)
    executed_config_hash: str = ""
    duration: timedelta | None = None
    adetailer_outcomes: list[AdetailerOutcome] = field(default_factory=list)


@dataclass
class JobProgress:
    entry_index: int = 0
    entry_count: int = 0
    stage: StageType = StageType.UNSPECIFIED
    step: int = 0
    steps: int = 0
    fraction: float = 0.0
    eta: timedelta | None = None
    # The newest image the job has written so far; an empty path until the first.
    latest_image: ImageRef = field(default_factory=ImageRef)


@dataclass
class Job:
    """The job record: the same shape in the queue, the runner and the history."""

    job_id: str = ""
    state: JobState = JobState.UNSPECIFIED
    origin: JobOrigin = field(default_factory=JobOrigin)
    priority: Priority = Priority.UNSPECIFIED
    label: str = ""
    stage_count: int = 0
    has_adetailer: bool = False
    has_upscale: bool = False
    config_hash: str = ""
    create_time: datetime | None = None
    start_time: datetime | None = None
    complete_time: datetime | None = None
    error_message: str = ""
    payload_summary: str = ""
    runner_id: str = ""
    attempt: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    entry_count: int = 0
    estimated_images: int = 0
    entries: list[NormalizedJob] = field(default_factory=list)
    results: list[EntryResult] = field(default_factory=list)
    progress: JobProgress = field(default_factory=JobProgress)
    queue_position: int = 0
    cancel_requested: bool = False
    bookmarked: bool = False
    update_time: datetime | None = None
    waiting_reason: str = ""
    # History only: the images the results hold, also in the basic view.
    image_count: int = 0


@dataclass
class JobTransition:
    sequence: int = 0
    from_state: JobState = JobState.UNSPECIFIED
    to_state: JobState = JobState.UNSPECIFIED
    time: datetime | None = None
    reason: str = ""
    runner_id: str = ""
    attempt: int = 0

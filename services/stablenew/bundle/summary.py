"""The bundle summary shown on every draft response: the twin of the proto `BundleSummary`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stablenew.bundle.pipeline_rules import describe_plan
from stablenew.bundle.problems import RowError
from stablenew.contract.model import NormalizedJob


@dataclass
class BundleSummary:
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


def summarize(part_count: int, jobs: Sequence[NormalizedJob],
              errors: Sequence[RowError]) -> BundleSummary:
    first = jobs[0] if jobs else NormalizedJob()
    images = sum(job.image_count for job in jobs)
    return BundleSummary(
        part_count=part_count,
        job_count=len(jobs),
        estimated_images=images,
        positive_preview=first.prompt,
        negative_preview=first.negative_prompt,
        stage_summary=stage_summary(jobs),
        batch_summary=batch_summary(jobs, images),
        errors=list(errors),
    )


def stage_summary(jobs: Sequence[NormalizedJob]) -> str:
    plans = dict.fromkeys(tuple(job.stage_plan) for job in jobs)
    return "; ".join(describe_plan(plan) for plan in plans)


def batch_summary(jobs: Sequence[NormalizedJob], images: int) -> str:
    """"12 jobs, batch 2, 1 iteration each: 24 images", or the totals when jobs differ
    (`images`: what the jobs make in all)."""
    if not jobs:
        return "no jobs"
    shapes = {(job.batch_size, job.n_iter) for job in jobs}
    if len(shapes) > 1:
        return f"{_count(len(jobs), 'job')}, {_count(images, 'image')} (mixed batch sizes)"
    batch_size, n_iter = shapes.pop()
    return (f"{_count(len(jobs), 'job')}, batch {batch_size},"
            f" {_count(n_iter, 'iteration')} each: {_count(images, 'image')}")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")

"""The `BundleSummary` of a draft's normalized jobs: counts, previews, stages and batches."""

from __future__ import annotations

from collections.abc import Sequence

from stablenew.bundle.domain import BundleSummary, NameCheck, RowError
from stablenew.bundle.pipeline_rules import describe_plan
from stablenew.contract.model import NormalizedJob


def summarize(part_count: int, jobs: Sequence[NormalizedJob], errors: Sequence[RowError],
              name_check: NameCheck) -> BundleSummary:
    """The summary of a draft of `part_count` parts that normalised to `jobs` and `errors`,
    its names checked as `name_check` says."""
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
        name_check=name_check,
    )


def stage_summary(jobs: Sequence[NormalizedJob]) -> str:
    """The distinct stage plans of `jobs` in order of first use, joined with "; "."""
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

"""`stablenew draft ...`: build a draft bundle, look at its preview, enqueue it.

The CLI keeps a current draft: created on first use (`draft add`, `draft add-pack`) or by
`draft new`, remembered in `<data dir>/cli/current_draft`; `--draft ID` works on another one.
A remembered draft that the bundle service no longer has is replaced by a new one on the next
`add`. `draft enqueue` refuses a draft with row errors unless `--skip-bad-rows`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

from stablenew.cli import local, overrides, text
from stablenew.cli.output import CliError, print_json, table
from stablenew.sdk import (
    Client,
    Draft,
    DraftNotFoundError,
    Job,
    JobPart,
    JobSource,
    NameCheck,
    NormalizedJob,
    Priority,
    PromptSource,
    RowError,
    RowErrorsError,
    RunMode,
)

T = TypeVar("T")
DEFAULT_DRAFT_NAME = "stablenew cli"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `draft` to the command parser."""
    draft = commands.add_parser("draft", help="build, preview and enqueue a draft bundle",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = argparse.ArgumentParser(add_help=False)
    which.add_argument("--draft", metavar="ID", help="this draft instead of the current one")
    which.add_argument("--json", action="store_true", help="one JSON object on stdout")
    actions = draft.add_subparsers(dest="draft_action", required=True, metavar="ACTION")

    new = actions.add_parser("new", help="start a new draft and make it the current one")
    new.add_argument("name", nargs="?", default=DEFAULT_DRAFT_NAME, help="a name to show")
    new.add_argument("--json", action="store_true", help="one JSON object on stdout")
    new.set_defaults(run=run_new)

    listing = actions.add_parser("list", help="every draft (* marks the current one)")
    listing.add_argument("--json", action="store_true", help="one JSON object on stdout")
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", parents=[which], help="the preview: every normalized "
                              "job's prompt, seed, stages and config hash, and the row errors")
    show.set_defaults(run=run_show)

    add = actions.add_parser("add", parents=[which], help="add a prompt (runs as txt2img "
                             "unless --set stages.* says otherwise)")
    add.add_argument("prompt", help="the positive prompt")
    add.add_argument("--negative", default="", help="the negative prompt")
    add.add_argument("--input-image", action="append", default=[], metavar="PATH",
                     help="an image under the runner's input root (img2img/upscale plans)")
    _add_set_option(add)
    add.set_defaults(run=run_add)

    add_pack = actions.add_parser("add-pack", parents=[which],
                                  help="add all or some rows of a pack, one part per row")
    add_pack_options(add_pack)
    add_pack.set_defaults(run=run_add_pack)

    remove = actions.add_parser("remove", parents=[which], help="remove one part")
    remove.add_argument("part", help="the part id (see `draft show`)")
    remove.set_defaults(run=run_remove)

    clear = actions.add_parser("clear", parents=[which], help="remove every part")
    clear.set_defaults(run=run_clear)

    enqueue = actions.add_parser("enqueue", parents=[which],
                                 help="submit the draft's jobs to the queue as one job")
    enqueue_options(enqueue)
    enqueue.set_defaults(run=run_enqueue)


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="settings", help="a pipeline setting, e.g. txt2img.steps=30 or "
                        "stages.upscale_enabled=true (repeatable)")


def add_pack_options(parser: argparse.ArgumentParser) -> None:
    """The pack, rows, prepend and settings options (`draft add-pack`, `run`)."""
    parser.add_argument("pack", help="the pack id (its file name without the extension)")
    parser.add_argument("--rows", type=parse_rows, metavar="LIST",
                        help="only these rows, from 0: e.g. 0,2,5-7 (default: every row)")
    parser.add_argument("--prepend", default="", metavar="TEXT",
                        help="text put before each row's prompt")
    _add_set_option(parser)


def enqueue_options(parser: argparse.ArgumentParser) -> None:
    """How a draft is queued (`draft enqueue`, `run`)."""
    parser.add_argument("--run-now", action="store_true",
                        help="run next, ahead of the queue and even while it is paused")
    parser.add_argument("--priority", choices=("low", "normal", "high"), default="normal")
    parser.add_argument("--label", default="", help="a label for the job")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="queue the good rows of a draft with row errors")


def parse_rows(value: str) -> list[int]:
    """"0,2,5-7" -> [0, 2, 5, 6, 7]."""
    rows: list[int] = []
    try:
        for item in value.split(","):
            first, dash, last = item.strip().partition("-")
            rows.extend(range(int(first), int(last) + 1) if dash else [int(first)])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a list of row numbers like 0,2,5-7") from None
    return rows


# --- the current draft ----------------------------------------------------------------------


def _remembered() -> local.CurrentDraft:
    return local.CurrentDraft(local.data_dir())


def _existing_draft(args: argparse.Namespace) -> str:
    """The draft to read or change: --draft, else the current one."""
    draft_id = args.draft or _remembered().get()
    if not draft_id:
        raise CliError("no current draft: add a part with `stablenew draft add` or "
                       "`draft add-pack`, or start one with `draft new`")
    return draft_id


def _new_draft(client: Client, name: str = DEFAULT_DRAFT_NAME) -> Draft:
    draft = client.drafts.create(name)
    _remembered().set(draft.draft_id)
    print(f"draft {draft.draft_id} is now the current draft", file=sys.stderr)
    return draft


def _adding(client: Client, args: argparse.Namespace, add: Callable[[str], T]) -> T:
    """Run `add` on --draft, else on the current draft, created on first use (or again when
    the bundle service no longer has it)."""
    if args.draft:
        return add(args.draft)
    current = _remembered().get()
    if current:
        try:
            return add(current)
        except DraftNotFoundError:
            print(f"stablenew: the current draft {current} is gone; starting a new one",
                  file=sys.stderr)
    return add(_new_draft(client).draft_id)


# --- commands -------------------------------------------------------------------------------


def run_new(args: argparse.Namespace) -> int:
    """Create a draft and make it the current one."""
    with Client() as client:
        draft = _new_draft(client, args.name)
    if args.json:
        print_json({"draft": draft})
    else:
        print(draft.draft_id)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Every draft, the current one marked."""
    with Client() as client:
        drafts = list(client.drafts.list())
    if args.json:
        print_json({"drafts": drafts, "current_draft_id": _remembered().get() or ""})
        return 0
    current = _remembered().get()
    table(([("* " if d.draft_id == current else "  ") + d.draft_id, d.display_name,
            d.revision, d.summary.part_count, d.summary.job_count, len(d.summary.errors),
            text.moment(d.update_time)] for d in drafts),
          ["  DRAFT", "NAME", "REVISION", "PARTS", "JOBS", "ROW ERRORS", "CHANGED"])
    return 0


def run_show(args: argparse.Namespace) -> int:
    """The draft's parts and its preview; row errors on stdout and standard error."""
    draft_id = _existing_draft(args)
    with Client() as client:
        draft = client.drafts.get(draft_id)
        preview = client.drafts.preview(draft_id)
        jobs = list(preview.jobs)
    if args.json:
        print_json({"draft": draft, "draft_revision": preview.draft_revision, "jobs": jobs})
        return 0
    summary = preview.summary
    print(f"draft {draft.draft_id} {draft.display_name!r}, revision {preview.draft_revision}: "
          f"{summary.part_count} parts, {summary.job_count} jobs, "
          f"{summary.estimated_images} images")
    print(_name_check_text(summary.name_check))
    for part in draft.parts:
        print(f"  part {part.part_id}: {_part_text(part)}")
    for job in jobs:
        _print_job(job)
    # The preview's own row errors: the draft read a moment earlier may have been checked
    # against another offer of the runners.
    _report_row_errors(draft.draft_id, summary.errors, loud=True)
    return 0


def _name_check_text(check: NameCheck) -> str:
    """Whether a wrong model, sampler, ... name would have been caught here."""
    if check.checked:
        return f"names checked against what {check.runner_count} connected runner(s) offer"
    return (f"names NOT checked ({check.unchecked_reason}): a model, VAE, sampler, scheduler, "
            "upscaler or ADetailer model no runner offers is found only when a runner runs it")


def _part_text(part: JobPart) -> str:
    if part.prompt_source == PromptSource.PACK:
        prepend = f", prepend {part.prepend_text!r}" if part.prepend_text else ""
        return f"pack {part.prompt_pack_id} row {part.row_index}{prepend}"
    return f"prompt {part.prompt!r}"


def _print_job(job: NormalizedJob) -> None:
    print(f"#{job.index} seed {job.seed} {text.stages(job.stage_plan)} {job.width}x"
          f"{job.height} {job.model or '(loaded model)'} hash {job.config_hash}")
    print(f"    {job.prompt}")
    if job.negative_prompt:
        print(f"    neg: {job.negative_prompt}")


def _report_row_errors(draft_id: str, errors: list[RowError], loud: bool) -> None:
    """Rows that make no job: listed on stdout (loud) and summed up on standard error."""
    if not errors:
        return
    if loud:
        print(f"ROW ERRORS: {len(errors)} row(s) make no job and would be dropped:")
        for error in errors:
            print(f"  ! {text.row_error(error)}")
    print(f"stablenew: warning: draft {draft_id}: {len(errors)} row(s) make no job: "
          + "; ".join(text.row_error(e) for e in errors), file=sys.stderr)


def _print_changed(draft: Draft, args: argparse.Namespace) -> None:
    if args.json:
        print_json({"draft": draft})
    else:
        summary = draft.summary
        print(f"draft {draft.draft_id}: {summary.part_count} parts, {summary.job_count} jobs, "
              f"{summary.estimated_images} images")
    _report_row_errors(draft.draft_id, draft.summary.errors, loud=False)


def run_add(args: argparse.Namespace) -> int:
    """Add a manual prompt."""
    # A typed prompt is meant to make an image, with a new seed each time: txt2img and seed
    # -1 (random, resolved once by the bundle) unless the settings say otherwise.
    config = {"txt2img.seed": -1} | overrides.parse(args.settings)
    if not any(key.startswith("stages.") for key in config):
        config["stages.txt2img_enabled"] = True
    with Client() as client:
        draft = _adding(client, args, lambda draft_id: client.drafts.add_part(
            draft_id, args.prompt, args.negative, config, args.input_image))
    _print_changed(draft, args)
    return 0


def run_add_pack(args: argparse.Namespace) -> int:
    """Add a pack's rows."""
    settings = overrides.parse(args.settings) or None
    with Client() as client:
        draft = _adding(client, args, lambda draft_id: client.drafts.add_pack(
            draft_id, args.pack, args.rows, args.prepend, settings))
    _print_changed(draft, args)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Remove one part."""
    with Client() as client:
        draft = client.drafts.remove_part(_existing_draft(args), args.part)
    _print_changed(draft, args)
    return 0


def run_clear(args: argparse.Namespace) -> int:
    """Remove every part."""
    with Client() as client:
        draft = client.drafts.clear(_existing_draft(args))
    _print_changed(draft, args)
    return 0


def enqueue(client: Client, draft_id: str, args: argparse.Namespace,
            source: JobSource | None = None) -> Job:
    """Queue the draft as the options say (`source`: the user action recorded, by default
    from the run mode); row errors refuse it unless --skip-bad-rows."""
    if args.skip_bad_rows:
        _report_row_errors(draft_id, client.drafts.get(draft_id).summary.errors, loud=False)
    try:
        return client.drafts.enqueue(
            draft_id, run_mode=RunMode.DIRECT if args.run_now else RunMode.QUEUE,
            priority=Priority[args.priority.upper()], label=args.label,
            skip_bad_rows=args.skip_bad_rows, source=None if args.run_now else source)
    except RowErrorsError as error:
        rows = "; ".join(text.row_error(row) for row in error.row_errors)
        raise CliError(f"draft {draft_id} not queued: {len(error.row_errors)} row(s) make no "
                       f"job and would be dropped: {rows}. Fix them, or enqueue with "
                       "--skip-bad-rows to queue the other rows") from None


def describe_queued(job: Job) -> str:
    """"queued job J: 8 entries, 8 images, position 2"."""
    how = "run-now" if job.origin.run_mode == RunMode.DIRECT else "queued"
    return (f"{how} job {job.job_id}: {text.count(job.entry_count, 'entry')}, "
            f"{text.count(job.estimated_images, 'image')},"
            f" position {job.queue_position}")


def run_enqueue(args: argparse.Namespace) -> int:
    """Enqueue the draft; it stays the current draft, empty, for the next bundle."""
    draft_id = _existing_draft(args)
    with Client() as client:
        job = enqueue(client, draft_id, args)
    if args.json:
        print_json({"job": job})
    else:
        print(describe_queued(job))
    return 0

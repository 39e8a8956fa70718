"""`stablenew packs list` and `stablenew packs show PACK`: the prompt-pack library."""

from __future__ import annotations

import argparse
import sys

from stablenew.cli import text
from stablenew.cli.output import print_json, table
from stablenew.sdk import Client, Pack, PipelineConfig


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `packs` to the command parser."""
    packs = commands.add_parser("packs", help="the prompt-pack library")
    actions = packs.add_subparsers(dest="packs_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every pack: id, format, rows, problems")
    listing.add_argument("--json", action="store_true", help="one JSON object on stdout")
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="a pack's rows, matrix, default stages, problems")
    show.add_argument("pack", help="the pack id (its file name without the extension)")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.set_defaults(run=run_show)


def run_list(args: argparse.Namespace) -> int:
    """List the library; a pack that cannot be parsed is listed with the reason."""
    with Client() as client:
        packs = list(client.packs.list())
    if args.json:
        print_json({"packs": packs})
        return 0
    if not packs:
        print("no packs (put .txt, .tsv or .json files in STABLENEW_PACKS_DIR, "
              "by default <data dir>/packs)")
        return 0
    table(([p.pack_id, text.name(p.format), p.row_count, p.name,
            f"BROKEN: {p.error_message}" if p.error_message else ""] for p in packs),
          ["PACK", "FORMAT", "ROWS", "NAME", "PROBLEM"])
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Show one pack; its problems go to standard error too, so they are not missed."""
    with Client() as client:
        pack = client.packs.get(args.pack)
    if args.json:
        print_json({"pack": pack})
        return 0
    _print_pack(pack)
    for error in pack.errors:
        print(f"stablenew: warning: {args.pack}: {text.row_error(error)}", file=sys.stderr)
    return 0


def _print_pack(pack: Pack) -> None:
    print(f"{pack.pack_id} ({text.name(pack.format)}): {pack.name}, {len(pack.rows)} rows, "
          f"changed {text.moment(pack.modify_time)}")
    print(f"stages:   {_enabled_stages(pack.defaults)}")
    if pack.matrix.enabled:
        slots = "; ".join(f"[[{s.name}]] = {' | '.join(s.values)}" for s in pack.matrix.slots)
        print(f"matrix:   {text.name(pack.matrix.mode)}, limit {pack.matrix.limit or '-'}: "
              f"{slots}")
    if pack.wildcards:
        cards = "; ".join(f"__{w.name}__ = {' | '.join(w.values)}" for w in pack.wildcards)
        print(f"wildcards: {text.name(pack.wildcard_mode)}: {cards}")
    for row in pack.rows:
        line = f" (line {row.line})" if row.line else ""
        print(f"row {row.index}{line}: {row.positive}")
        if row.negative:
            print(f"    neg: {row.negative}")
    if pack.errors:
        print(f"PROBLEMS ({len(pack.errors)}):")
        for error in pack.errors:
            print(f"  ! {text.row_error(error)}")


def _enabled_stages(config: PipelineConfig) -> str:
    flags = config.stages
    enabled = [stage for stage, on in (("txt2img", flags.txt2img_enabled),
                                       ("img2img", flags.img2img_enabled),
                                       ("adetailer", flags.adetailer_enabled),
                                       ("upscale", flags.upscale_enabled)) if on]
    return ">".join(enabled) or "none set by the pack"

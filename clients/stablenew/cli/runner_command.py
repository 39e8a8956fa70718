"""`stablenew runner status` and `stablenew runner capabilities`: the configured runner."""

from __future__ import annotations

import argparse

from stablenew.cli import text
from stablenew.cli.output import print_json
from stablenew.sdk import Client


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `runner` to the command parser."""
    runner = commands.add_parser("runner", help="the runner (STABLENEW_RUNNER_ADDR) and its "
                                 "WebUI")
    actions = runner.add_subparsers(dest="runner_action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="the WebUI's state, the loaded model, the job")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.set_defaults(run=run_status)
    capabilities = actions.add_parser(
        "capabilities", help="models, VAEs, samplers, schedulers, upscalers the WebUI offers")
    capabilities.add_argument("--refresh", action="store_true",
                              help="ask the WebUI again instead of the cached answer")
    capabilities.add_argument("--json", action="store_true", help="one JSON object on stdout")
    capabilities.set_defaults(run=run_capabilities)


def run_status(args: argparse.Namespace) -> int:
    """The runner's status (an unreachable WebUI is a state, not an error)."""
    with Client() as client:
        status = client.runner.status()
    if args.json:
        print_json({"status": status})
        return 0
    reason = f" ({status.reason})" if status.reason else ""
    owned = ", started by the runner" if status.owns_webui_process else ""
    print(f"runner {status.runner_id}: WebUI {text.name(status.webui_state)}{reason}")
    print(f"  webui   {status.webui_url}{owned}")
    print(f"  model   {status.loaded_model or '-'}")
    job = status.current_job_id
    print(f"  job     {job + ', ' + text.progress(status.progress) if job else 'idle'}")
    return 0


def run_capabilities(args: argparse.Namespace) -> int:
    """What the WebUI offers."""
    with Client() as client:
        offered = client.runner.capabilities(refresh=args.refresh)
    if args.json:
        print_json({"capabilities": offered})
        return 0
    print(f"as of {text.moment(offered.fetch_time)}")
    print("models:")
    for model in offered.models:
        print(f"  {model.title}")
    for label, names in (("vaes", offered.vaes), ("samplers", offered.samplers),
                         ("schedulers", offered.schedulers), ("upscalers", offered.upscalers),
                         ("adetailer models", offered.adetailer_models)):
        print(f"{label}: {', '.join(names) or '-'}")
    return 0

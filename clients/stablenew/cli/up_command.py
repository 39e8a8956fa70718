"""`stablenew up`: the four services (and the WebUI emulator when no WebUI is there) on this
machine, on the configured addresses and data directory, until Ctrl-C or SIGTERM.

The services run as `stablenew serve NAME` children, which stop when `up` ends, however it
ends. The emulator is started unless STABLENEW_WEBUI_URL is set or a WebUI
already answers where the runner would look; the runner is then pointed at it. `up` waits until
every service is SERVING, prints the addresses, and stops everything when a child exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from stablenew.cli import health, local
from stablenew.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, print_json
from stablenew.cli.supervisor import ChildFailedError, Supervisor
from stablenew.contract.endpoints import SERVICE_NAMES
from stablenew.sdk import ClientConfig

# The queue first: the history follows it, the runner leases from it, the bundle submits to it.
FOUNDATION = ("queue",)
FOLLOWERS = ("history", "runner", "bundle")
READY_SECONDS = 60.0
WEBUI_PROBE_SECONDS = 1.0
HEALTH_PROBE_SECONDS = 1.0
WATCH_SECONDS = 0.5


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `up` to the command parser."""
    up = commands.add_parser(
        "up", help="run the four services (and the WebUI emulator) until Ctrl-C",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("--data-dir", help="databases, packs and images (default: "
                    "STABLENEW_DATA_DIR, else .stablenew)")
    up.add_argument("--timeout", type=float, default=READY_SECONDS,
                    help="seconds to wait for the services to be ready (default: %(default)s)")
    up.add_argument("--json", action="store_true",
                    help="once ready, print the addresses as one JSON object")
    up.set_defaults(run=run)


@dataclass(frozen=True)
class Deployment:
    """Where everything runs: the services' addresses, the WebUI, the data directory."""

    addresses: Mapping[str, str]
    webui_url: str
    emulator: bool
    data_dir: Path
    packs_dir: Path

    @property
    def logs(self) -> Path:
        """Where each child's output goes (`NAME.log`)."""
        return self.data_dir / "logs"

    def describe(self) -> dict[str, object]:
        """The JSON form `up --json` prints."""
        return {"data_dir": str(self.data_dir), "packs_dir": str(self.packs_dir),
                "logs": str(self.logs),
                "services": dict(self.addresses),
                "webui": {"url": self.webui_url, "emulator": self.emulator}}


class StopRequestedError(Exception):
    """SIGTERM or SIGHUP arrived: stop everything and exit 0."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise StopRequestedError(signal.Signals(signum).name)


@contextmanager
def stop_signals() -> Iterator[None]:
    """For the block: SIGTERM and SIGHUP raise StopRequestedError, SIGINT KeyboardInterrupt
    (set explicitly: a shell that starts a command in the background hands it SIGINT
    ignored)."""
    handlers = {signal.SIGTERM: _raise_stop, signal.SIGHUP: _raise_stop,
                signal.SIGINT: signal.default_int_handler}
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def plan(env: dict[str, str], data_dir: Path) -> Deployment:
    """Decide the WebUI and complete `env` (for the children) with the data directory and, when
    the emulator runs, the runner's STABLENEW_WEBUI_URL."""
    env["STABLENEW_DATA_DIR"] = str(data_dir)
    # The bundle's library: STABLENEW_PACKS_DIR, by default <data dir>/packs (docs/API.md).
    packs_dir = Path(env.get("STABLENEW_PACKS_DIR") or data_dir / "packs").resolve()
    addresses = ClientConfig.load(env=env).addresses
    if env.get("STABLENEW_WEBUI_URL"):
        return Deployment(addresses, env["STABLENEW_WEBUI_URL"], False, data_dir, packs_dir)
    emulator_address = env.get("STABLENEW_EMULATOR_ADDR") or local.DEFAULT_EMULATOR_ADDRESS
    url = f"http://{emulator_address.strip()}"
    env["STABLENEW_WEBUI_URL"] = url
    return Deployment(addresses, url, not health.webui_answers(url, WEBUI_PROBE_SECONDS),
                      data_dir, packs_dir)


def _serving(config: ClientConfig, service: str) -> bool:
    return health.check(config, service, HEALTH_PROBE_SECONDS).serving


@contextmanager
def services_running(deployment: Deployment, env: Mapping[str, str],
                     timeout: float) -> Iterator[Supervisor]:
    """The children started and ready for the `with` block, stopped after it."""
    config = ClientConfig.load(env=env)
    with Supervisor(env, deployment.logs) as supervisor:
        # Two groups, stopped in the reverse order: the followers (a runner hands its job
        # back to the queue) before the queue and the WebUI they use.
        supervisor.start(*FOUNDATION, *(["emulator"] if deployment.emulator else []))
        supervisor.start(*FOLLOWERS)
        for child in supervisor.children:
            ready = (partial(health.webui_answers, deployment.webui_url, WEBUI_PROBE_SECONDS)
                     if child.name == "emulator"
                     else partial(_serving, config, child.name))
            supervisor.wait_ready(child, ready, timeout)
        yield supervisor


def print_deployment(deployment: Deployment) -> None:
    """The addresses, the WebUI and the data directory, for a person."""
    for service in SERVICE_NAMES:
        print(f"  {service:<8} {deployment.addresses[service]}")
    webui = "the built-in emulator" if deployment.emulator else "already running"
    print(f"  webui    {deployment.webui_url} ({webui})")
    print(f"  data     {deployment.data_dir}")
    print(f"  packs    {deployment.packs_dir}")
    print(f"  logs     {deployment.logs}")


def run(args: argparse.Namespace) -> int:
    """Start, report, and supervise until a signal or a child's exit."""
    env = dict(os.environ)
    deployment = plan(env, local.data_dir(env, args.data_dir))
    try:
        with stop_signals(), services_running(deployment, env, args.timeout) as supervisor:
            if args.json:
                print_json(deployment.describe())
            else:
                print("StableNew is up:")
                print_deployment(deployment)
                print("Ctrl-C stops everything.")
            sys.stdout.flush()
            while True:
                supervisor.check()
                time.sleep(WATCH_SECONDS)
    except ChildFailedError as failure:
        print(f"stablenew: {failure}; stopped everything", file=sys.stderr)
        return EXIT_FAILED
    except StopRequestedError:
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED

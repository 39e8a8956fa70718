"""`stablenew serve emulator`: the WebUI emulator in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from stablenew.emulator.config import SETTINGS, EmulatorConfig
from stablenew.emulator.server import EmulatorServer, StartupError
from stablenew.runtime import json_logging

log = logging.getLogger("stablenew.emulator")

EXIT_STARTUP_ERROR = 1

DESCRIPTION = """\
Run an emulated Stable Diffusion WebUI (AUTOMATIC1111 v1.10.1 API with the ADetailer
extension) on HTTP: txt2img, img2img, extra-single-image, extra-batch-images, progress,
interrupt, skip, options and model switching, the model/sampler/scheduler/upscaler lists.
Images are deterministic PNGs with the WebUI's `parameters` infotext chunk.

Every flag can also be set with the variable shown in [brackets]; a flag wins."""

EPILOG = """\
faults (set by the flags above at start, or at run time through the admin endpoint):
  fail      the next N generation requests (txt2img, img2img, extra-*) answer 500
            {"error": "RuntimeError", "detail": "", "body": "", "errors": "..."}
  oom       the next N answer 500 {"error": "OutOfMemoryError", ...,
            "errors": "CUDA out of memory. Tried to allocate ..."}
  hang      the next N never answer (holding the generation lock, so later requests
            queue behind) until released by the admin endpoint or the client times out
  refuse    close the listening socket for S seconds (connections refused), then reopen
  late      --start-delay-seconds: the process starts, waits, then opens the port
  slow load --model-load-seconds: each checkpoint load holds the generation lock this long
  N = -1 means every matching request. A *-match TEXT limits a fault to requests whose
  prompt contains TEXT, or whose endpoint is TEXT (e.g. img2img). Sizes beyond the
  emulated VRAM (width*height*batch_size > 4096*4096) always answer OutOfMemoryError.

admin endpoint (never behind --api-auth):
  GET  /emulator/v1/faults   the current faults and timings
  POST /emulator/v1/faults   a partial update, any of:
       {"fail_next": 1, "fail_match": "entry 2", "oom_next": 0, "oom_match": "",
        "hang_next": 0, "hang_match": "", "refuse_seconds": 2.0,
        "model_load_seconds": 0.5, "step_seconds": 0.02,
        "release_hung": true, "clear": true}
       "clear" resets every fault and timing to the start values and releases hung
       requests; "release_hung" only releases them (they then complete normally).
  GET  /emulator/v1/stats    request counts, queue depth, loaded model, recent generations
                             (each with its "received" and "answered" epoch seconds)

example:
  stablenew serve emulator --address 127.0.0.1:7860 --step-seconds 0.01 --fail-next 1 \\
      --fail-match "entry 2"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stablenew serve emulator", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for setting in SETTINGS:
        parser.add_argument(setting.flag, dest=setting.name, metavar=setting.metavar,
                            help=f"{setting.help} [{setting.variable}]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the emulator's flags and serve; a bad setting raises ConfigError (exit 2)."""
    args = build_parser().parse_args(argv)
    config = EmulatorConfig.load(vars(args))
    return serve(config)


def run_from_serve(args: argparse.Namespace) -> int:
    """`stablenew serve [--address A] [--log-level L] emulator`: the generic serve flags."""
    argv = []
    if getattr(args, "address", None):
        argv += ["--address", args.address]
    if getattr(args, "log_level", None):
        argv += ["--log-level", args.log_level]
    return main(argv)


def serve(config: EmulatorConfig) -> int:
    json_logging.configure("emulator", config.log_level)
    server = EmulatorServer(config)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop_requested.set()
        server.abort_start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server.start()
    except StartupError as error:
        print(f"stablenew: emulator could not start: {error}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    # A timed wait: a signal delivered to another thread still gets handled promptly.
    while not stop_requested.wait(0.5):
        pass
    server.stop()
    return 0

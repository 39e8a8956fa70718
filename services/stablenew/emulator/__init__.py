"""A Stable Diffusion WebUI emulator: a real HTTP server speaking the AUTOMATIC1111 v1.10.1 API
subset the runner uses (see the project's sdwebui-api reference), with the ADetailer extension.

It renders deterministic PNGs (the same request gives byte-identical images) carrying the
`parameters` infotext chunk, simulates per-step progress at a configurable step time, serialises
generations behind a FIFO lock like the WebUI's queue lock, and can inject faults.

Start it with `stablenew serve emulator` or, in tests, `EmulatorServer(config).start()`.

Faults
------
Every fault can be set at start (flags / STABLENEW_EMULATOR_* variables) and changed at run time
with `POST /emulator/v1/faults` (JSON, partial update; `GET` reads the state back). The admin
routes under /emulator/ are never protected by --api-auth and are not part of the WebUI API.

- fail_next N (+ fail_match TEXT): the next N generation requests answer 500
  {"error": "RuntimeError", "detail": "", "body": "", "errors": "..."}.
- oom_next N (+ oom_match TEXT): the next N generation requests answer 500 with
  "error": "OutOfMemoryError" and "errors": "CUDA out of memory. Tried to allocate ...".
- hang_next N (+ hang_match TEXT): the next N generation requests hang while holding the
  generation lock (so everything queued behind them waits too, as with a stuck GPU) until
  {"release_hung": true} or {"clear": true} is posted, or the server stops; released requests
  then complete normally. /sdapi/v1/interrupt does not release a hung request.
- refuse_seconds S: close the listening socket now and reopen it S seconds later; new
  connections are refused meanwhile (requests already accepted finish). 0 reopens at once.
- start delay (--start-delay-seconds S, start only): the process starts, waits S seconds, then
  binds the port.
- slow model load (model_load_seconds S): every checkpoint load (start-up, an options switch, an
  override_settings or refiner model, a reload after unload) holds the generation lock for S
  seconds.
- step_seconds S: the simulated time per sampling step and image (a run-time knob).
- adetailer_detect_nothing TEXT (run time only): every ADetailer pass whose ad_model contains
  TEXT detects nothing and leaves the image as it was ("*": every pass; "": off), as a real
  detector does on an image without faces or hands.

N = -1 means "every matching request until changed". A *_match text restricts the fault to
requests whose prompt contains it, or whose endpoint is exactly that name (txt2img, img2img,
extra-single-image, extra-batch-images); empty matches every generation request. A request uses
at most one fault, checked in the order hang, oom, fail, once it holds the generation lock.

Beyond injected faults the emulator fails the way the WebUI does: sizes beyond the emulated
VRAM (width x height x batch_size above 16,777,216 pixels, hires size included) answer
OutOfMemoryError.
"""

from stablenew.emulator.config import EmulatorConfig
from stablenew.emulator.faults import FaultControl, FaultSettings
from stablenew.emulator.server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer", "FaultControl", "FaultSettings"]

"""The emulated WebUI: its options, loaded checkpoint, queue lock, progress, and one method per
API endpoint. The HTTP layer (server.py) only routes, authenticates and serialises."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from typing import Any

from stablenew.emulator import catalog, extras, generation, images, schema
from stablenew.emulator.catalog import Checkpoint
from stablenew.emulator.config import EmulatorConfig
from stablenew.emulator.errors import exception, validation_failed
from stablenew.emulator.faults import FaultControl
from stablenew.emulator.progress import FifoLock, Progress
from stablenew.sdwebui import infotext

log = logging.getLogger("stablenew.emulator.webui")

RECENT_LIMIT = 200


class WebUI:
    def __init__(self, config: EmulatorConfig, faults: FaultControl) -> None:
        self.config = config
        self.faults = faults
        self.lock = FifoLock()
        self.progress = Progress()
        self._state_lock = threading.Lock()
        initial = catalog.find_checkpoint(config.checkpoint) or catalog.DEFAULT_CHECKPOINT
        self._initial = initial
        self._options = catalog.default_options(initial)
        self._loaded: Checkpoint | None = None
        self._model_loads = 0
        self._requests: Counter[str] = Counter()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_LIMIT)

    # ------------------------------------------------------------ runtime for generations

    def load_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Swap weights in (the caller holds the generation lock); free when already loaded."""
        with self._state_lock:
            if self._loaded == checkpoint:
                return
        seconds = self.faults.model_load_seconds
        log.info("loading checkpoint", extra={"checkpoint": checkpoint.title,
                                              "seconds": seconds})
        self.progress.wait(seconds)
        with self._state_lock:
            self._loaded = checkpoint
            self._model_loads += 1

    def record(self, endpoint: str, prompt: str, seed: int, images: int, status: int,
               received: float) -> None:
        """A finished request, with its wall-clock times (epoch seconds): `received` before it
        waited for the generation lock, `answered` once its reply was made, so that a benchmark
        can tell when a client's request reached the WebUI and when its reply left it."""
        answered = time.time()
        with self._state_lock:
            self._recent.append({"endpoint": endpoint, "prompt": prompt, "seed": seed,
                                 "images": images, "status": status, "received": received,
                                 "answered": answered})

    def load_initial_checkpoint(self) -> None:
        """Start-up: the WebUI keeps loading its checkpoint after the port opens, so the first
        generation waits behind it."""
        with self.lock.held():
            self.load_checkpoint(self.current_checkpoint())

    def current_checkpoint(self) -> Checkpoint:
        with self._state_lock:
            title = self._options["sd_model_checkpoint"]
        return catalog.find_checkpoint(title) or self._initial

    def count(self, endpoint: str) -> None:
        with self._state_lock:
            self._requests[endpoint] += 1

    def shutdown(self) -> None:
        self.progress.stop_all()
        self.faults.shutdown()
        self.lock.close()

    # ------------------------------------------------------------ generation endpoints

    def options_snapshot(self) -> dict[str, Any]:
        with self._state_lock:
            return dict(self._options)

    def _generate(self, kind: str, body: Any, fields: tuple[schema.Field, ...]) -> Any:
        values = schema.validate_body(body, fields)
        response, plan = generation.run_generation(kind, values, self.options_snapshot(), self)
        if plan.persist_options:
            with self._state_lock:
                self._options.update(plan.persist_options)
        return response

    def txt2img(self, body: Any) -> Any:
        return self._generate("txt2img", body, schema.TXT2IMG)

    def img2img(self, body: Any) -> Any:
        return self._generate("img2img", body, schema.IMG2IMG)

    def extra_single_image(self, body: Any) -> Any:
        values = schema.validate_body(body, schema.EXTRAS_SINGLE)
        source = images.decode_image(values["image"])
        results = self._upscale("extra-single-image", values, [source])
        image, infotext = results[0]
        return {"html_info": extras.html_info(infotext),
                "image": extras.encode_result(source, image, infotext)}

    def extra_batch_images(self, body: Any) -> Any:
        values = schema.validate_body(body, schema.EXTRAS_BATCH)
        sources = [images.decode_image(item["data"]) for item in values["imageList"]]
        results = self._upscale("extra-batch-images", values, sources)
        infotext = results[-1][1] if results else ""
        return {"html_info": extras.html_info(infotext),
                "images": [extras.encode_result(source, image, text)
                           for source, (image, text) in zip(sources, results, strict=True)]}

    def _upscale(self, endpoint: str, values: dict[str, Any],
                 sources: list[Any]) -> list[tuple[Any, str]]:
        request = extras.plan_upscale(values)
        status, results = 500, []
        received = time.time()
        try:
            with self.lock.held():
                self.progress.begin("extras", len(sources))
                try:
                    generation.inject_fault(self, endpoint, "")
                    for source in sources:
                        self.progress.start_sampling(request.gpu_steps, None)
                        for _ in range(request.gpu_steps):
                            self.progress.step(self.faults.step_seconds)
                        results.append(extras.upscale_one(request, source))
                        self.progress.next_job()
                finally:
                    self.progress.end()
            status = 200
            return results
        finally:
            self.record(endpoint, "", -1, len(results), status, received)

    def png_info(self, body: Any) -> dict[str, Any]:
        """POST /sdapi/v1/png-info: an image's infotext, its other text chunks, and the
        infotext's parameters."""
        values = schema.validate_body(body, schema.PNG_INFO)
        image = images.decode_image(values["image"].strip())
        items = images.text_chunks(image)
        info = items.pop("parameters", "")
        return {"info": info, "items": items, "parameters": infotext.parse_infotext(info)}

    # ------------------------------------------------------------ options and models

    def get_options(self) -> dict[str, Any]:
        return self.options_snapshot()

    def set_options(self, body: Any) -> None:
        """POST /sdapi/v1/options: a model switch blocks (under the generation lock) until the
        weights are loaded; unknown models and unknown keys are 500s, as in the WebUI."""
        if not isinstance(body, dict):
            raise validation_failed([{"loc": ["body"], "msg": "value is not a valid dict",
                                      "type": "type_error.dict"}])
        wanted = body.get("sd_model_checkpoint")
        checkpoint = catalog.find_checkpoint(str(wanted)) if wanted is not None else None
        if wanted is not None and checkpoint is None:
            raise exception("RuntimeError", f"model {wanted!r} not found")
        for key, value in body.items():
            if key not in self._options:
                raise exception("KeyError", repr(key))
            with self._state_lock:
                unchanged = self._options[key] == value
            if unchanged:
                continue  # the WebUI's opts.set returns early: no lock, no reload
            if key == "sd_model_checkpoint" and checkpoint is not None:
                self._switch_checkpoint(checkpoint)
            else:
                with self._state_lock:
                    self._options[key] = value

    def _switch_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.lock.held():
            self.load_checkpoint(checkpoint)
            with self._state_lock:
                self._options["sd_model_checkpoint"] = checkpoint.title
                self._options["sd_checkpoint_hash"] = checkpoint.sha256

    def refresh_checkpoints(self) -> None:
        with self.lock.held():
            return None

    def unload_checkpoint(self) -> dict[str, Any]:
        with self._state_lock:
            self._loaded = None
        return {}

    def reload_checkpoint(self) -> dict[str, Any]:
        with self.lock.held():
            self.load_checkpoint(self.current_checkpoint())
        return {}

    # ------------------------------------------------------------ control and lists

    def progress_report(self, skip_current_image: bool) -> dict[str, Any]:
        return self.progress.snapshot(skip_current_image)

    def interrupt(self) -> dict[str, Any]:
        self.progress.interrupt()
        return {}

    def skip(self) -> None:
        self.progress.skip()

    @staticmethod
    def memory() -> dict[str, Any]:
        return {"ram": _ram(), "cuda": {"error": "unavailable"}}

    def stats(self) -> dict[str, Any]:
        """GET /emulator/v1/stats: what the emulator has seen (for tests and benchmarks)."""
        with self._state_lock:
            loaded = self._loaded.title if self._loaded else None
            return {"requests": dict(self._requests), "queue_depth": self.lock.depth(),
                    "loaded_checkpoint": loaded, "model_loads": self._model_loads,
                    "recent": list(self._recent)}


def _ram() -> dict[str, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        free = os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return {"free": 0, "used": 0, "total": 0}
    return {"free": free, "used": total - free, "total": total}

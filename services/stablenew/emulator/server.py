"""The emulator's HTTP server: routing, HTTP Basic auth, JSON serialisation, the admin routes,
and the listening socket's life (late start, refusal windows, graceful stop).

Built on the standard library's ThreadingHTTPServer: one thread per connection, so
/sdapi/v1/progress and /sdapi/v1/interrupt answer while a generation holds the queue lock.
Responses close the connection (HTTP/1.0), which also makes a refusal window bite at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import secrets
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from stablenew.emulator import catalog, schema
from stablenew.emulator.config import EmulatorConfig
from stablenew.emulator.errors import (
    ApiError,
    PlainError,
    exception,
    http_exception,
    method_not_allowed,
    not_found,
)
from stablenew.emulator.faults import FaultControl, FaultUpdateError
from stablenew.emulator.progress import ServerStoppingError
from stablenew.emulator.webui import WebUI
from stablenew.runtime.json_logging import request_id_var

log = logging.getLogger("stablenew.emulator")

# Polled often: a refusal window or a stop closes the socket within this time.
_POLL_SECONDS = 0.05
_QUIET_PATHS = frozenset({"/sdapi/v1/progress", "/emulator/v1/faults", "/emulator/v1/stats"})


class StartupError(RuntimeError):
    """The port could not be bound; the message says why."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    raw: bytes

    def json(self) -> Any:
        return schema.parse_json(self.raw)


@dataclass
class Response:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Any]


class App:
    """Routes requests to the WebUI and turns its exceptions into the WebUI's error bodies."""

    def __init__(self, webui: WebUI, faults: FaultControl,
                 credentials: tuple[tuple[str, str], ...]) -> None:
        self.webui = webui
        self.faults = faults
        self.credentials = dict(credentials)
        self.routes: dict[str, dict[str, Handler]] = {}
        self._add_sdapi_routes()
        self._add_list_routes()
        self._add_extension_and_admin_routes()

    def _route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.setdefault(path, {})[method] = handler

    def _add_sdapi_routes(self) -> None:
        webui, v1 = self.webui, "/sdapi/v1"
        for path, call in ((f"{v1}/txt2img", webui.txt2img), (f"{v1}/img2img", webui.img2img),
                           (f"{v1}/extra-single-image", webui.extra_single_image),
                           (f"{v1}/extra-batch-images", webui.extra_batch_images),
                           (f"{v1}/png-info", webui.png_info),
                           (f"{v1}/options", webui.set_options)):
            self._route("POST", path, _with_body(call))
        self._route("GET", f"{v1}/options", lambda _: webui.get_options())
        self._route("GET", f"{v1}/progress", self._progress)
        for path, action in ((f"{v1}/interrupt", webui.interrupt), (f"{v1}/skip", webui.skip),
                             (f"{v1}/refresh-checkpoints", webui.refresh_checkpoints),
                             (f"{v1}/refresh-vae", lambda: None),
                             # Rescanning waits for the generation lock, like a checkpoint rescan.
                             (f"{v1}/refresh-embeddings", webui.refresh_checkpoints),
                             (f"{v1}/unload-checkpoint", webui.unload_checkpoint),
                             (f"{v1}/reload-checkpoint", webui.reload_checkpoint)):
            self._route("POST", path, _without_body(action))

    def _add_list_routes(self) -> None:
        lists: dict[str, Callable[[], Any]] = {
            "sd-models": lambda: [c.api_item() for c in catalog.CHECKPOINTS],
            "samplers": lambda: [s.api_item() for s in catalog.SAMPLERS],
            "schedulers": lambda: [s.api_item() for s in catalog.SCHEDULERS],
            "upscalers": lambda: [u.api_item() for u in catalog.UPSCALERS],
            "latent-upscale-modes": lambda: [{"name": m} for m in catalog.LATENT_UPSCALE_MODES],
            "sd-vae": lambda: [v.api_item() for v in catalog.VAES],
            "face-restorers": lambda: list(catalog.FACE_RESTORERS),
            "scripts": catalog.scripts_list,
            "script-info": catalog.script_info,
            "hypernetworks": lambda: [],
            "realesrgan-models": catalog.realesrgan_models,
            "prompt-styles": lambda: [],
            "embeddings": lambda: {"loaded": {}, "skipped": {}},
            "extensions": lambda: [catalog.ADETAILER_EXTENSION],
            "memory": self.webui.memory,
            "cmd-flags": lambda: {"api": True, "nowebui": False, "listen": False,
                                  "api_auth": None, "api_log": False},
        }
        for name, produce in lists.items():
            self._route("GET", f"/sdapi/v1/{name}", _without_body(produce))

    def _add_extension_and_admin_routes(self) -> None:
        self._route("GET", "/adetailer/v1/ad_model",
                    lambda _: {"ad_model": list(catalog.AD_MODELS)})
        self._route("GET", "/adetailer/v1/version",
                    lambda _: {"version": catalog.ADETAILER_VERSION})
        self._route("GET", "/emulator/v1/faults", lambda _: self.faults.snapshot())
        self._route("POST", "/emulator/v1/faults", self._update_faults)
        self._route("GET", "/emulator/v1/stats", lambda _: self.webui.stats())

    def _progress(self, request: Request) -> Any:
        try:
            skip = schema.to_bool(request.query.get("skip_current_image", "false"))
        except schema.InvalidValueError as error:
            raise schema_error(error, ("query", "skip_current_image")) from None
        return self.webui.progress_report(skip)

    def _update_faults(self, request: Request) -> Any:
        try:
            changes = json.loads(request.raw or b"{}")
        except ValueError as error:
            raise PlainError(400, {"detail": f"body is not JSON: {error}"}) from None
        if not isinstance(changes, dict):
            raise PlainError(400, {"detail": "body must be a JSON object"})
        try:
            return self.faults.update(changes)
        except FaultUpdateError as error:
            raise PlainError(400, {"detail": str(error)}) from None

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """FastAPI's HTTPBasic, then the WebUI's credential check."""
        challenge = {"WWW-Authenticate": "Basic"}
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise http_exception(401, "Not authenticated", challenge)
        try:
            user, sep, password = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise http_exception(401, "Invalid authentication credentials", challenge) from None
        expected = self.credentials.get(user)
        if not sep or expected is None or not secrets.compare_digest(password, expected):
            raise http_exception(401, "Incorrect username or password", challenge)

    def handle(self, request: Request) -> Response:
        try:
            return Response(200, self._dispatch(request))
        except ApiError as error:
            return Response(error.status, error.body(), error.headers)
        except PlainError as error:
            return Response(error.status, error.payload)
        except ServerStoppingError as error:
            return Response(503, exception("ServerStoppingError", str(error)).body())
        except Exception as error:  # the WebUI answers any other exception the same way
            log.exception("API error: %s: %s", request.method, request.path)
            return Response(500, exception(type(error).__name__, str(error)).body())

    def _dispatch(self, request: Request) -> Any:
        methods = self.routes.get(request.path)
        if methods is None:
            raise not_found()
        handler = methods.get(request.method)
        if handler is None:
            raise method_not_allowed()
        if self.credentials and request.path.startswith("/sdapi/"):
            self._authenticate(request.headers)
        if not request.path.startswith("/emulator/"):
            self.webui.count(request.path.rsplit("/", 1)[-1])
        return handler(request)


def schema_error(error: schema.InvalidValueError, location: tuple[str, ...]) -> PlainError:
    return PlainError(422, {"detail": [error.item(location)]})


def _with_body(call: Callable[[Any], Any]) -> Handler:
    return lambda request: call(request.json())


def _without_body(call: Callable[[], Any]) -> Handler:
    return lambda _request: call()


def encode_json(payload: Any) -> bytes:
    """Like FastAPI's JSONResponse: compact, UTF-8, no NaN."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.active = 0
        self.active_lock = threading.Condition()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS lookup that can stall start-up).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self.active_lock:
            self.active += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.active_lock:
                self.active -= 1
                self.active_lock.notify_all()


class _RequestHandler(BaseHTTPRequestHandler):
    server_version = "uvicorn"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        started = time.monotonic()
        url = urlsplit(self.path)
        request = Request(method, url.path, dict(parse_qsl(url.query)),
                          cast(Mapping[str, str], self.headers), self._read_body())
        request_id_var.set(self.headers.get("X-Request-Id") or uuid.uuid4().hex[:12])
        response = cast(_HttpServer, self.server).app.handle(request)
        try:
            body = encode_json(response.payload)
        except ValueError as error:
            response = Response(500, exception("ValueError", str(error)).body())
            body = encode_json(response.payload)
        seconds = time.monotonic() - started
        self._write(response, body, seconds)
        level = logging.DEBUG if url.path in _QUIET_PATHS else logging.INFO
        log.log(level, "%s %s %s", method, url.path, response.status,
                extra={"method": method, "path": url.path, "status": response.status,
                       "seconds": round(seconds, 4)})

    def _write(self, response: Response, body: bytes, seconds: float) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Process-Time", str(round(seconds, 4)))
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout on a hung or slow generation); nothing to answer.
            log.debug("client went away before the response", extra={"path": self.path})

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests are logged once, as JSON, by _serve."""


class EmulatorServer:
    """The emulator in-process: `port = EmulatorServer(config).start()`, then `.stop()`.

    `faults` changes faults at run time exactly as POST /emulator/v1/faults does.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.faults = FaultControl(self.config.faults, self.config.step_seconds,
                                   self.config.model_load_seconds)
        self.webui = WebUI(self.config, self.faults)
        self.app = App(self.webui, self.faults, self.config.api_auth)
        self.port = 0
        self._httpd: _HttpServer | None = None
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._supervisor: threading.Thread | None = None
        self.faults.on_refuse = self._on_refuse

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> int:
        """Wait out the start delay, bind, serve in the background; returns the bound port
        (0 if stopped during the delay)."""
        delay = self.config.start_delay_seconds
        if delay > 0:
            log.info("delaying start", extra={"seconds": delay})
            if self._stopping.wait(delay):
                return 0
        self._open()
        log.info("emulator listening", extra={"url": self.url, "port": self.port,
                                              "auth": bool(self.config.api_auth)})
        threading.Thread(target=self._load_initial_checkpoint, name="emulator-model-load",
                         daemon=True).start()
        self._supervisor = threading.Thread(target=self._supervise, name="emulator-listener",
                                            daemon=True)
        self._supervisor.start()
        if self.faults.initial_refuse_seconds > 0:
            self.faults.set_refuse(self.faults.initial_refuse_seconds)
        return self.port

    def stop(self, grace: float = 3.0) -> None:
        """Stop accepting, end running generations early (they still answer), release hung
        and queued requests, and wait up to `grace` seconds for responses to be written."""
        self._stopping.set()
        self.webui.shutdown()
        with self._wake:
            self._wake.notify_all()
        if self._supervisor is not None:
            self._supervisor.join(timeout=grace)
        httpd = self._httpd
        self._close()
        if httpd is not None:
            with httpd.active_lock:
                httpd.active_lock.wait_for(lambda: httpd.active == 0, timeout=grace)
        log.info("emulator stopped")

    def abort_start(self) -> None:
        """Make a start() still in its start delay return at once (for signal handlers)."""
        self._stopping.set()

    def _load_initial_checkpoint(self) -> None:
        with contextlib.suppress(ServerStoppingError):
            self.webui.load_initial_checkpoint()

    def _open(self) -> None:
        host, port = self.config.host, self.port or self.config.port
        try:
            httpd = _HttpServer((host, port), self.app)
        except OSError as error:
            raise StartupError(f"cannot listen on {host}:{port}: {error.strerror or error}") \
                from None
        self.port = int(httpd.server_address[1])
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": _POLL_SECONDS},
                         name="emulator-http", daemon=True).start()
        self._httpd = httpd

    def _close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def _on_refuse(self, _seconds: float) -> None:
        with self._wake:
            self._wake.notify_all()

    def _supervise(self) -> None:
        """Owns the listening socket after start: closed while a refusal window is open."""
        with self._wake:
            while not self._stopping.is_set():
                self._wake.wait(timeout=self._apply_refusal())

    def _apply_refusal(self) -> float | None:
        """Open or close the socket as the refusal window says; how long to sleep."""
        remaining = self.faults.refusing_for()
        if remaining > 0:
            if self._httpd is not None:
                log.warning("refusing connections", extra={"seconds": round(remaining, 3)})
                self._close()
            return remaining
        if self._httpd is None:
            try:
                self._open()
            except StartupError as error:
                log.error("cannot reopen the port, retrying", extra={"error": str(error)})
                return _POLL_SECONDS
            log.info("accepting connections again", extra={"port": self.port})
        return None

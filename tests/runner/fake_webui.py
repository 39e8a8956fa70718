"""A fake HTTP layer for the WebUI client's tests: a requests transport adapter that answers from
routes with the reference-shaped responses in fixtures/ and records every call, so a test sees
exactly what the client sent (body, query, timeouts, headers, thread) and how often.

The client's own session is used (mounted with this adapter): everything above the transport
runs for real. The same behaviours are checked against the emulator over real HTTP in each
test file's last section.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from stablenew.runner.webui_client import WebuiClient

FIXTURES = Path(__file__).parent / "fixtures"
BASE_URL = "http://webui.test:7860"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless it is already str/bytes
    raw: bool = False  # send `body` as is (for non-JSON answers)
    delay: float = 0.0
    error: Exception | None = None  # raised instead of answering (connection refused, ...)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    timeout: Any
    headers: dict[str, str]
    thread: int


Handler = Callable[[Call], Reply]


@dataclass
class FakeWebui(BaseAdapter):
    """A requests transport answering from routes; records every call."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def on(self, method: str, path: str, *replies: Reply | Handler) -> None:
        """Answer with the replies in turn (the last one repeats), or with a handler."""
        queue = list(replies)

        def answer(call: Call) -> Reply:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            return item(call) if callable(item) else item

        self.routes[(method, path)] = answer

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if (c.method, c.path) == (method, path))

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        url = urlsplit(request.url or "")
        body = json.loads(request.body) if request.body else None
        call = Call(request.method or "", url.path, dict(parse_qsl(url.query)), body, timeout,
                    dict(request.headers), threading.get_ident())
        with self._lock:
            self.calls.append(call)
        handler = self.routes.get((call.method, call.path))
        reply = handler(call) if handler else Reply(404, {"detail": "Not Found"})
        time.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        return _response(request, reply)

    def close(self) -> None:
        self.closed = True


def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
    response = requests.Response()
    response.status_code = reply.status
    if reply.raw:
        data = reply.body.encode() if isinstance(reply.body, str) else bytes(reply.body or b"")
    else:
        data = json.dumps(reply.body).encode()
    response._content = data
    response.headers = CaseInsensitiveDict({"content-type": "application/json"})
    response.encoding = "utf-8"
    response.url = request.url or ""
    response.request = request
    return response


def json_reply(name: str, status: int = 200) -> Reply:
    return Reply(status, fixture(name))


def refused() -> Reply:
    return Reply(error=requests.ConnectionError("[Errno 111] Connection refused"))


def reference_webui() -> FakeWebui:
    """A fake answering every list, the options, an idle progress and the control routes with
    the reference fixtures; generation routes are added by each test."""
    webui = FakeWebui()
    for name in ("sd-models", "samplers", "schedulers", "upscalers", "options"):
        webui.on("GET", f"/sdapi/v1/{name}", json_reply(f"{name.replace('-', '_')}.json"))
    webui.on("GET", "/sdapi/v1/sd-vae", json_reply("sd_vae.json"))
    webui.on("GET", "/sdapi/v1/progress", json_reply("progress_idle.json"))
    webui.on("GET", "/adetailer/v1/ad_model", json_reply("adetailer_ad_model.json"))
    for action in ("interrupt", "skip", "refresh-checkpoints", "refresh-vae"):
        webui.on("POST", f"/sdapi/v1/{action}", Reply(200, {} if action == "interrupt" else None))
    return webui


@dataclass
class Harness:
    client: WebuiClient
    fake: FakeWebui
    sleeps: list[float]


def make_client(fake: FakeWebui, **options: Any) -> Harness:
    session = requests.Session()
    session.mount("http://", fake)
    client = WebuiClient(BASE_URL, session=session, **options)
    sleeps: list[float] = []
    client._sleep = sleeps.append  # backoff is observed, not waited for
    return Harness(client, fake, sleeps)

"""Fixtures for the simulator's own tests: one real server per module, a clean world per test.

`sim` is a `SimServer` on a free port (uvicorn in a thread) reset before each test, with flood
limits off unless a test turns them on. `api` calls the Bot API over real HTTP the way clients do
(JSON, form, query, multipart or GET). `receiver` is a real webhook endpoint (Starlette under
uvicorn) whose answers a test scripts. httpx logs each request URL at INFO and Bot API URLs carry
the token, so the test's own httpx loggers are held at WARNING while a test runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from telegram_sim.server import SimServer
from tests.support import simulator_fixtures


def pytest_configure(config: pytest.Config) -> None:
    # declared by tests/token_guard.py too; repeated so this directory runs on its own
    config.addinivalue_line("markers", "token_guard_allow: do not scan this test's captured sections")


@pytest.fixture(autouse=True)
def _quiet_request_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


sim_server, sim = simulator_fixtures(
    bots=2, seed=7, webhook_retry_base=0.02, webhook_retry_max=0.2, webhook_timeout=2.0
)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    def json(self) -> Any:
        return self.body


class BotApiClient:
    """Calls `/bot<token>/<method>` over HTTP in the transport a test chooses."""

    def __init__(self, base_url: str, token: str, http: httpx.Client | None = None) -> None:
        self.base_url = base_url
        self.token = token
        # plain-http only: skipping TLS setup saves ~0.1-0.5 s per client on a loaded machine
        self.http = http or httpx.Client(timeout=10, trust_env=False, verify=False)

    def url(self, method: str, token: str | None = None) -> str:
        return f"{self.base_url}/bot{token or self.token}/{method}"

    def __call__(self, method: str, *, via: str = "json", token: str | None = None, **params: Any) -> Answer:
        url = self.url(method, token)
        if via == "json":
            response = self.http.post(url, json=params)
        elif via == "form":
            response = self.http.post(url, data={k: _form_value(v) for k, v in params.items()})
        elif via == "query":
            response = self.http.post(url, params={k: _form_value(v) for k, v in params.items()})
        elif via == "get":
            response = self.http.get(url, params={k: _form_value(v) for k, v in params.items()})
        elif via == "multipart":
            files = {k: v for k, v in params.items() if isinstance(v, tuple)}
            data = {k: _form_value(v) for k, v in params.items() if not isinstance(v, tuple)}
            response = self.http.post(url, data=data, files=files or {"_": ("x.bin", b"", "text/plain")})
        else:
            raise ValueError(via)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Answer(response.status_code, body, dict(response.headers))

    def ok(self, method: str, **params: Any) -> Any:
        answer = self(method, **params)
        assert answer.status == 200 and answer.body["ok"] is True, (method, answer.status, answer.body)
        return answer.body["result"]

    def error(self, method: str, **params: Any) -> tuple[int, str, dict[str, Any] | None]:
        """(error_code, description, parameters) of a call that must fail, checking the envelope."""
        answer = self(method, **params)
        body = answer.body
        assert body["ok"] is False, (method, body)
        assert answer.status == body["error_code"], "HTTP status must equal error_code"
        assert set(body) <= {"ok", "error_code", "description", "parameters"}
        if "parameters" in body:
            assert body["parameters"], "parameters only when non-empty"
        return body["error_code"], body["description"], body.get("parameters")


def _form_value(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.fixture(scope="module")
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False, verify=False) as client:
        yield client


@pytest.fixture
def api(sim: SimServer, http_client: httpx.Client) -> BotApiClient:
    return BotApiClient(sim.base_url, sim.token, http_client)


@pytest.fixture
def api2(sim: SimServer, http_client: httpx.Client) -> BotApiClient:
    return BotApiClient(sim.base_url, sim.bots[1].token, http_client)


# --- a real webhook receiver ---------------------------------------------------------------------


@dataclass
class Delivery:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    query: str = ""


@dataclass
class Receiver:
    """A webhook endpoint: records each POST, answers with `script` entries first, then 200.

    A script entry is (status, headers, delay seconds before answering).
    """

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    delay: float = 0.0
    reply_body: bytes = b""
    in_flight: int = 0
    max_in_flight: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)

    async def endpoint(self, request: Request) -> Response:
        body = json.loads(await request.body())
        with self.condition:
            self.deliveries.append(Delivery(time.monotonic(), dict(request.headers), body, request.url.query))
            status, headers, delay = self.script.pop(0) if self.script else (200, {}, self.delay)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.condition.notify_all()
        try:
            if delay:
                await asyncio.sleep(delay)
        finally:
            with self.condition:
                self.in_flight -= 1
                self.condition.notify_all()
        content = self.reply_body if status == 200 else b"nope"
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 5.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self.condition:
            while not predicate(self.deliveries):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out; received {[d.body for d in self.deliveries]}"
                self.condition.wait(remaining)
            return list(self.deliveries)

    def wait_count(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        return self.wait_for(lambda ds: len(ds) >= count, timeout)

    def updates(self) -> list[dict[str, Any]]:
        with self.condition:
            return [d.body for d in self.deliveries]

    def kinds(self) -> list[str]:
        return [next(k for k in update if k != "update_id") for update in self.updates()]


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    receiver.url = f"http://127.0.0.1:{port}/hook"
    yield receiver
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    # answers still being slept on by an earlier test (e.g. a timed-out delivery) must not count here
    receiver_server.wait_for(lambda _: receiver_server.in_flight == 0, timeout=10)
    with receiver_server.condition:
        receiver_server.deliveries.clear()
        receiver_server.script.clear()
        receiver_server.reply_body = b""
        receiver_server.delay = 0.0
        receiver_server.max_in_flight = 0
    return receiver_server

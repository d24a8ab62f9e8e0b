"""`SimServer`: the simulator under uvicorn on a free 127.0.0.1 port, in a background thread.

For tests, the demo and benchmarks: `with SimServer() as sim:` (or `async with`) gives `.base_url`
(use it as TELEGRAM_API_BASE: clients call `{base_url}/bot{token}/{method}`), `.control_url`,
`.control` (a SimControl), `.state` (the live SimState, safe to use from the test's thread) and
`.token` (the first bot's token). Running in its own thread with its own event loop keeps the
simulator responsive while the code under test blocks or runs its own loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import uvicorn

from telegram_sim.app import create_app
from telegram_sim.config import SimConfig
from telegram_sim.control import SimControl
from telegram_sim.model import Bot
from telegram_sim.state import SimState
from telegram_sim.webhooks import WebhookDispatcher


class SimServer:
    def __init__(self, state: SimState | None = None, *, config: SimConfig | None = None,
                 bots: int | Iterable[str] = 1, host: str = "127.0.0.1", port: int = 0,
                 seed: int | None = None, log_level: str = "warning") -> None:  # fmt: skip
        """`bots`: how many bots to create, or their tokens (only when `state` has no bots yet)."""
        self.state = state if state is not None else SimState(config, seed=seed)
        if not self.state.bots:
            if isinstance(bots, int):
                for _ in range(bots):
                    self.state.add_bot()
            else:
                for token in bots:
                    self.state.add_bot(token)
        self.app = create_app(self.state)
        self.host = host
        self._port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._control: SimControl | None = None

    # --- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_sim"

    @property
    def control(self) -> SimControl:
        if self._control is None:
            self._control = SimControl(self.base_url)
        return self._control

    @property
    def bots(self) -> list[Bot]:
        with self.state.lock:
            return list(self.state.bots.values())

    @property
    def bot(self) -> Bot:
        return self.bots[0]

    @property
    def token(self) -> str:
        return self.bot.token

    @property
    def dispatcher(self) -> WebhookDispatcher:
        dispatcher: WebhookDispatcher = self.app.state.dispatcher
        return dispatcher

    def api_url(self, method: str, token: str | None = None) -> str:
        return f"{self.base_url}/bot{token or self.token}/{method}"

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SimServer:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self._log_level, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"telegram-sim-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("telegram_sim server failed to start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    async def __aenter__(self) -> SimServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await asyncio.to_thread(self.stop)

"""The Bot API simulator over HTTPS, with a throwaway certificate authority made for the run.

`make_certificates` uses the `openssl` command (no Python crypto package is needed): a CA, and a
server certificate it signs for the IP address 127.0.0.1 only, so a client that trusts the CA can
reach `https://127.0.0.1:PORT` while `https://localhost:PORT` fails the host name check.
`ServedApp` runs any ASGI app (the simulator) under uvicorn in a thread, over TLS when given
certificates, and records the client address of every request: one address per TCP connection,
which is how tests count the connections a transport opened.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from telegram_sim.app import create_app
from telegram_sim.config import SimConfig
from telegram_sim.state import SimState

ASGIApp = Any  # the simulator's Starlette app, or the recorder wrapping it


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the authority a client must trust
    cert: Path  # the server's certificate (subjectAltName IP:127.0.0.1), signed by `ca`
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this run's CA, with httpx's default checks."""
        return ssl.create_default_context(cafile=str(self.ca))


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def make_certificates(directory: Path) -> Certificates:
    """A fresh CA and a server certificate for 127.0.0.1 under `directory` (needs `openssl`)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_extensions = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]
    _openssl("req", "-x509", *ec, *ca_extensions, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=TGMS CA")
    _openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", extensions)  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)


def _openssl(*args: str | Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def simulator(tokens: list[str]) -> tuple[SimState, ASGIApp]:
    """A simulator with `tokens` as its bots and flood limits off, and its app."""
    state = SimState(SimConfig(enforce_flood_limits=False))
    for token in tokens:
        state.add_bot(token)
    return state, create_app(state)


class ServedApp:
    """`app` under uvicorn on 127.0.0.1 in a thread; HTTPS when `certs` is given."""

    def __init__(self, app: ASGIApp, *, certs: Certificates | None = None, keep_alive: int = 5) -> None:
        self.clients: list[tuple[str, int]] = []  # the client address of each request, in order
        self._app = app
        self._certs = certs
        self._keep_alive = keep_alive
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"{'https' if self._certs else 'http'}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Distinct TCP connections that carried a request so far."""
        return len(set(self.clients))

    async def _recording(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("client"):
            host, port = scope["client"]
            self.clients.append((host, port))
        await self._app(scope, receive, send)

    def start(self, timeout: float = 10.0) -> ServedApp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        tls: dict[str, Any] = {}
        if self._certs is not None:
            tls = {"ssl_certfile": str(self._certs.cert), "ssl_keyfile": str(self._certs.key)}
        config = uvicorn.Config(self._recording, interface="asgi3", log_level="warning", access_log=False,
                                lifespan="on", timeout_keep_alive=self._keep_alive, timeout_graceful_shutdown=1,
                                **tls)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the served app failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Raw HTTP/1.1 over a socket, for what an HTTP client library will not do: stream a body far past the
server's limit and stop as soon as the server answers, counting what it took in first.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK = 64 * 1024


@dataclass
class StreamResult:
    status: int | None
    sent: int  # body bytes the server accepted from us before answering (or closing)
    seconds: float


def _status(data: bytes) -> int | None:
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit() else None


def post_streaming(host: str, port: int, path: str, headers: dict[str, str], total: int, *,
                   declare_length: bool = False, timeout: float = 60.0) -> StreamResult:  # fmt: skip
    """POST a body of `total` bytes: chunked, or with its Content-Length declared up front; stop sending
    when the server answers or closes. Each send waits for socket space, so `sent` counts only what the
    server (or the kernel buffers in between) took in."""
    started = time.monotonic()
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {total}" if declare_length else "Transfer-Encoding: chunked")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sent = 0
    answer = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(head)
        if declare_length:
            # A server that judges by the declared length answers before the body: give it the chance.
            select.select([sock], [], [], 5.0)
        chunk = b"[" * CHUNK
        framed = chunk if declare_length else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while sent < total:
                readable, writable, _ = select.select([sock], [sock], [], timeout)
                if readable:
                    break
                if writable:
                    sock.sendall(framed)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return StreamResult(_status(answer), sent, time.monotonic() - started)


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")

"""Transport benchmark: CPU per Bot API call, the lean transport vs httpx's default one, same run.

tgms_tui/backend/lean_transport.py exists because httpx's default transport (httpcore + anyio) costs a worker
far more CPU per Bot API call than the call needs. This measures that claim the way a worker pays it:
the workers' own HTTP client (`workers.bots.bot_api_http`, with TGMS_HTTP_TRANSPORT=lean or httpx)
under the Bot API client (`TelegramClient`), making the same calls (getMe, sendMessage, getChat,
getChatMemberCount in turn) to the same simulator, over plain HTTP and over TLS (a CA made for the
run, trusted through SSL_CERT_FILE as an operator would). The simulator runs in another process, so
the CPU counted (time.process_time of this process) is the client side's alone.

Baseline: httpx's default transport. Also shown, as a floor: the client layers with no transport at
all (httpx.MockTransport answering from memory): what any transport costs is the difference to it.
Connections are opened (and TLS handshakes done) in an unmeasured warm-up: a worker keeps them alive.
Rounds alternate lean and httpx so that background load hits both alike; medians are reported.

Usage: ./dev.sh bench transport_bench [--calls 2000] [--rounds 3] [--concurrency 1,16]
Needs the `openssl` command for the TLS rows (they are skipped without it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.workers.tls_sim import Certificates, ServedApp, make_certificates, openssl_available, simulator
from tgms_tui.backend.config import load_settings
from workers.bots import bot_api_http
from workers.telegram_api import TelegramClient

TOKEN = "7000000009:AAbench_transport_token_xxxxxxxx"
WARMUP_CALLS = 200
TRANSPORTS = ("lean", "httpx")


def _serve(certs: Certificates | None, out: Any) -> None:
    """Child process: the simulator (one bot, one group, flood limits off) until terminated."""
    state, app = simulator([TOKEN])
    chat = state.create_chat("supergroup", "Bench group", members=5)
    served = ServedApp(app, certs=certs).start()
    out.put((served.base_url, chat.id))
    while True:
        time.sleep(3600)


@dataclass
class Cell:
    scheme: str
    concurrency: int
    transport: str
    cpu_us: list[float] = field(default_factory=list)  # per round
    rate: list[float] = field(default_factory=list)  # calls/s, per round


async def run_calls(tg: TelegramClient, chat_id: int, calls: int, concurrency: int) -> None:
    async def one(i: int) -> None:
        match i % 4:
            case 0:
                await tg.get_me()
            case 1:
                await tg.send_message(chat_id, f"bench {i}")
            case 2:
                await tg.get_chat(chat_id)
            case _:
                await tg.get_chat_member_count(chat_id)

    async def lane(start: int) -> None:
        for i in range(start, calls, concurrency):
            await one(i)

    await asyncio.gather(*(lane(k) for k in range(concurrency)))


async def measure(
    http: httpx.AsyncClient, base_url: str, chat_id: int, calls: int, concurrency: int
) -> tuple[float, float]:
    """(CPU µs per call, calls per second) of `calls` calls after a warm-up on the same client."""
    async with http:
        tg = TelegramClient(TOKEN, api_base=base_url, http_client=http)
        await run_calls(tg, chat_id, WARMUP_CALLS, concurrency)
        cpu, wall = time.process_time(), time.perf_counter()
        await run_calls(tg, chat_id, calls, concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, calls / wall


def canned(request: httpx.Request) -> httpx.Response:
    """The floor: a plausible Bot API answer from memory, no network."""
    result: Any = {"id": 1, "is_bot": True, "first_name": "Bench"}
    if request.url.path.endswith("/sendMessage"):
        result = {"message_id": 1, "date": 0, "chat": {"id": -1, "type": "supergroup"}, "text": "bench"}
    elif request.url.path.endswith("/getChatMemberCount"):
        result = 5
    return httpx.Response(200, content=json.dumps({"ok": True, "result": result}).encode())


def client_for(transport: str) -> httpx.AsyncClient:
    return bot_api_http(load_settings({"TGMS_HTTP_TRANSPORT": transport}, dotenv=None))


async def bench(servers: dict[str, tuple[str, int]], args: argparse.Namespace) -> list[Cell]:
    cells: dict[tuple[str, int, str], Cell] = {}

    def cell(scheme: str, concurrency: int, transport: str) -> Cell:
        return cells.setdefault((scheme, concurrency, transport), Cell(scheme, concurrency, transport))

    for n in range(args.rounds):
        order = TRANSPORTS if n % 2 == 0 else TRANSPORTS[::-1]
        for concurrency in args.concurrency:
            floor = cell("none", concurrency, "no transport")
            cpu, rate = await measure(httpx.AsyncClient(transport=httpx.MockTransport(canned)), "http://bench", -1,
                                      args.calls, concurrency)  # fmt: skip
            floor.cpu_us.append(cpu)
            floor.rate.append(rate)
            for scheme, (base_url, chat_id) in servers.items():
                for transport in order:
                    c = cell(scheme, concurrency, transport)
                    cpu, rate = await measure(client_for(transport), base_url, chat_id, args.calls, concurrency)
                    c.cpu_us.append(cpu)
                    c.rate.append(rate)
                    print(f"  round {n + 1} {scheme} c={concurrency} {transport}: {cpu:.0f} us/call", file=sys.stderr)
    return list(cells.values())


def start_simulators(certs: Certificates | None) -> tuple[dict[str, tuple[str, int]], list[Any]]:
    ctx = mp.get_context("spawn")
    servers: dict[str, tuple[str, int]] = {}
    procs: list[Any] = []
    for scheme, cert in (("http", None), ("https", certs)):
        if scheme == "https" and cert is None:
            continue
        out = ctx.Queue()
        proc = ctx.Process(target=_serve, args=(cert, out), daemon=True)
        proc.start()
        procs.append(proc)
        servers[scheme] = out.get(timeout=60)
    return servers, procs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per cell and round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the order (default 3)")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[1, 16],
        help="comma-separated calls in flight at once (default 1,16)",
    )
    args = parser.parse_args()

    certs: Certificates | None = None
    if openssl_available():
        certs = make_certificates(Path(tempfile.mkdtemp(prefix="tgms-transport-bench-")))
        os.environ["SSL_CERT_FILE"] = str(certs.ca)  # both transports trust it the way an operator would
    else:
        print("openssl not found: TLS rows skipped", file=sys.stderr)
    servers, procs = start_simulators(certs)
    try:
        cells = asyncio.run(bench(servers, args))
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(10)

    print(
        f"\n{args.calls} calls per cell, median of {args.rounds} rounds; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}, {platform.python_implementation()} {platform.python_version()}, "
        f"httpx {httpx.__version__}"
    )
    print(f"{'scheme':<7} {'in flight':>9} {'transport':<13} {'CPU us/call':>11} {'calls/s':>8}")
    print("-" * 52)
    median: Callable[[list[float]], float] = statistics.median
    for c in sorted(cells, key=lambda c: (c.scheme != "none", c.scheme, c.concurrency)):
        print(f"{c.scheme:<7} {c.concurrency:>9} {c.transport:<13} {median(c.cpu_us):>11.0f} {median(c.rate):>8.0f}")
    by_key = {(c.scheme, c.concurrency, c.transport): c for c in cells}
    print("\nratio httpx default transport / lean, CPU per call (per round; median):")
    for scheme in servers:
        for concurrency in args.concurrency:
            lean, base = by_key[(scheme, concurrency, "lean")], by_key[(scheme, concurrency, "httpx")]
            floor = median(by_key[("none", concurrency, "no transport")].cpu_us)
            ratios = [b / m for b, m in zip(base.cpu_us, lean.cpu_us, strict=True)]
            print(
                f"  {scheme:<5} {concurrency:>2} in flight: {', '.join(f'{r:.2f}' for r in ratios)}; "
                f"median {median(ratios):.2f}x  (transport alone, above the {floor:.0f} us floor: "
                f"httpx {median(base.cpu_us) - floor:.0f} us, lean {median(lean.cpu_us) - floor:.0f} us)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

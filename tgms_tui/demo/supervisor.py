"""`tgms demo`: the whole system, live, from one command, with nothing installed or configured.

One process tree: this process runs the embedded PostgreSQL (a demo cluster in `<data dir>/demo`, a
fresh database per run, so the user's data is never touched), the traffic script and the TUI; its
children are the real commands — `tgms sim` (the Bot API simulator), `tgms webhook` (registered with
the simulator through setWebhook, secret set, as `tgms set-webhook` does) and `tgms worker main|tgms`;
with `--intake poll`, `tgms poll` (long polling, no webhook server) takes the webhook's place.
Ports are picked free. Groups reach TGMS the production way (both bots added as administrators →
`my_chat_member` → the main worker registers them). Quitting (q, Ctrl-C, SIGTERM) stops every child,
drops the run's database and stops the server; `--headless --duration S` runs the same without the
TUI and prints what happened, from TGMS's tables and from the simulator's record (`--json` for tests).

Event webhooks: a local receiver (hook_receiver.py) runs in this process, subscribed to every event
type before the workers start, so the groups' registration, member counts, broadcasts and the
rest arrive there signed (the TUI's W screen shows the deliveries; the summary counts them). Its
address is loopback, so the workers get TGMS_HOOKS_ALLOW_PRIVATE=true: the demo only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import psycopg

from tgms_tui.backend import analytics, fleet, hooks
from tgms_tui.backend.config import ENV_NAMES, ConfigError, Settings, load_settings
from tgms_tui.backend.redaction import install_log_redaction, redact

from .database import DemoDatabase
from .hook_receiver import HookReceiver
from .processes import Child, ChildFailed, Supervisor, pid_alive, port_is_listening
from .summary import collect_database, collect_simulator, database_busy, format_text, progress_line, sim_busy
from .traffic import DemoWorld, Traffic, build_world, plan_groups

if TYPE_CHECKING:
    from .app import DemoApp

log = logging.getLogger(__name__)

MAIN_BOT_ID = 7100000001
TGMS_BOT_ID = 7100000002

# Demo pacing: the seed's 5 msg/s per bot, but 0.5 s between groups (not 3) so a broadcast visibly
# walks through 25 groups in seconds, and member counts every 10 s instead of hourly.
DEMO_SETTINGS = {
    "TGMS_RATE_PER_SECOND": "5",
    "TGMS_GROUP_DELAY_SECONDS": "0.5",
    "TGMS_MEMBER_COUNT_INTERVAL_SECONDS": "10",
    "TGMS_MAX_CONSECUTIVE_FAILURES": "3",
    "TGMS_WORKER_CONCURRENCY": "8",
    "TGMS_LOG_LEVEL": "INFO",
}
WORKERS = ("worker-main", "worker-tgms")
DRAIN_SECONDS = 30.0
PROGRESS_EVERY = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated world and traffic (default 1)")
    parser.add_argument("--groups", type=int, default=25, help="simulated groups, at least 4 (default 25)")
    parser.add_argument("--headless", action="store_true", help="no TUI: run, then print a summary")
    parser.add_argument(
        "--intake",
        choices=["webhook", "poll"],
        default="webhook",
        help="how updates reach TGMS: the webhook server (default) or `tgms poll` (long polling, no server)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="with --headless: seconds of traffic before stopping (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --headless: print the summary as JSON on stdout (the text goes to stderr)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the demo keeps its PostgreSQL and logs: <dir>/demo (default: TGMS_DATA_DIR's demo/ subdirectory)",
    )


def run(args: argparse.Namespace) -> int:
    if args.groups < 4:
        raise ConfigError("--groups", "the demo needs at least 4 groups")
    if (args.duration is not None or args.json) and not args.headless:
        raise ConfigError("--duration/--json", "only with --headless (the TUI runs until you quit)")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration", "must be > 0 seconds")
    return Demo(args).run()


def _user_data_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit.expanduser()
    try:
        return load_settings().data_dir
    except ConfigError:  # a broken .env must not stop the demo, which does not use it
        raw = os.environ.get("TGMS_DATA_DIR", "").strip()
        return Path(raw).expanduser() if raw else Settings().data_dir


def _say(text: str) -> None:
    log.info("%s", text)
    print(f"tgms demo: {text}", file=sys.stderr, flush=True)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed: int = args.seed
        self.demo_dir = (_user_data_dir(args.data_dir) / "demo").resolve()
        self.run_dir = self.demo_dir / "logs" / f"run-{os.getpid()}"
        self.tokens = {
            "main": f"{MAIN_BOT_ID}:{secrets.token_urlsafe(27)}",
            "tgms": f"{TGMS_BOT_ID}:{secrets.token_urlsafe(27)}",
        }
        self.webhook_secret = secrets.token_urlsafe(24)
        self.admin_key = secrets.token_urlsafe(24)
        self.db = DemoDatabase(self.demo_dir)
        self.supervisor = Supervisor(self.run_dir, self._child_env(), self.demo_dir, on_exit=self._child_exited)
        self.sim: Child | None = None
        self.webhook: Child | None = None
        self.poller: Child | None = None
        self.world: DemoWorld | None = None
        self.traffic: Traffic | None = None
        self.url: str | None = None
        self.settings: Settings | None = None
        self.app: DemoApp | None = None
        self.deaths: list[str] = []
        self.errors: list[str] = []
        self.postmaster_pid: int | None = None
        self.traffic_seconds = 0.0
        self.receiver: HookReceiver | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ configuration
    def _child_env(self) -> dict[str, str]:
        """The user's environment minus every TGMS variable (a DATABASE_URL or a real token there must
        never reach the demo), plus the demo's. Children run in the demo directory, away from .env."""
        env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
        env.update(DEMO_SETTINGS)
        env.update(
            {
                "BOT_TOKEN": self.tokens["main"],
                "TGMS_BOT_TOKEN": self.tokens["tgms"],
                "TGMS_WEBHOOK_SECRET": self.webhook_secret,
                "ADMIN_API_KEY": self.admin_key,
                "TGMS_DATA_DIR": str(self.demo_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _roles_env(self) -> dict[str, str]:
        assert self.url is not None and self.sim is not None
        return {"DATABASE_URL": self.url, "TELEGRAM_API_BASE": f"http://127.0.0.1:{self.sim.port}"}

    def _setup_logging(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.run_dir / "demo.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        for noisy in ("httpx", "httpcore", "pgserver", "psycopg.pool"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        install_log_redaction([*self.tokens.values(), self.webhook_secret, self.admin_key])

    def _prune_old_logs(self) -> None:
        logs = self.demo_dir / "logs"
        if not logs.is_dir():
            return
        for run in logs.glob("run-*"):
            suffix = run.name[4:]
            if run != self.run_dir and suffix.isdigit() and not pid_alive(int(suffix)):
                shutil.rmtree(run, ignore_errors=True)

    # ------------------------------------------------------------------ run
    def run(self) -> int:
        self.demo_dir.mkdir(parents=True, exist_ok=True)
        self._prune_old_logs()
        self._setup_logging()
        code = 1
        summary: dict[str, Any] = {}
        try:
            self._start()
            code = self._run_headless() if self.args.headless else self._run_tui()
        except ChildFailed as exc:
            self.errors.append(str(exc))
            _say(f"could not start: {exc}")
        finally:
            summary = self._shutdown()
        if self.deaths:
            code = 1
        log.info("demo finished (exit code %d)", code)
        text = format_text(summary)
        if self.args.headless and self.args.json:
            print(text, file=sys.stderr, flush=True)
            print(json.dumps(summary, indent=2, default=str), flush=True)
        else:
            print(text, flush=True)
        return code

    def _start(self) -> None:
        started = time.monotonic()
        _say(f"seed {self.seed}, {self.args.groups} groups; logs in {self.run_dir}")
        with ThreadPoolExecutor(max_workers=1) as pool:
            # PostgreSQL (initdb on the very first run) and the simulator start side by side.
            database = pool.submit(self.db.start)
            self.sim = self.supervisor.start_http(
                "sim",
                lambda port: ["sim", "--port", str(port), "--groups", "0", "--seed", str(self.seed)],
                "/_sim/health",
            )
            self.url = database.result()
        self.postmaster_pid = self.db.postmaster_pid
        env = self._roles_env()
        self.settings = load_settings(environ={**self.supervisor.env, **env}, dotenv=None)
        _say(f"PostgreSQL ready (database {self.db.dbname}), simulator on :{self.sim.port}")
        self._subscribe_receiver()
        env = {**env, "TGMS_HOOKS_ALLOW_PRIVATE": "true"}
        # The workers start while the webhook starts: groups register only once both run.
        self.supervisor.start("worker-main", ["worker", "main", "--grace", "5"], env=env)
        self.supervisor.start("worker-tgms", ["worker", "tgms", "--grace", "5"], env=env)
        if self.args.intake == "poll":
            self.poller = self.supervisor.start("poller", ["poll"], env=env)
            _say(f"`tgms poll` long-polling both bots (no webhook server); creating {self.args.groups} groups")
        else:
            self.webhook = self.supervisor.start_http(
                "webhook", lambda port: ["webhook", "--port", str(port)], "/healthz", env=env
            )
            self._set_webhooks()
            _say(f"webhook on :{self.webhook.port} registered for both bots; creating {self.args.groups} groups")
        from telegram_sim.control import SimControl

        with SimControl(f"http://127.0.0.1:{self.sim.port}") as ctl:
            self.world = build_world(
                ctl, plan_groups(self.args.groups, self.seed), {"main": MAIN_BOT_ID, "tgms": TGMS_BOT_ID}, self.seed
            )
        registered = self._wait_registered(30.0)
        seeded = self._seed_history()  # before the line below: once it is out, the demo counts as started
        _say(
            f"{registered} of {self.args.groups} groups registered by the main worker "
            f"({time.monotonic() - started:.1f} s since start)"
        )
        _say(f"seeded {analytics.DEMO_DAYS} days of DEMO history for the charts (C): {seeded} hours rolled up")
        self.traffic = Traffic(
            f"http://127.0.0.1:{self.sim.port}",
            f"http://127.0.0.1:{self.webhook.port}" if self.webhook else None,
            self.admin_key,
            self.world,
            self.seed,
            on_event=self._event,
            db_url=self.url,
        )

    def _seed_history(self) -> int:
        """30 days of made-up history, so the charts (C) have a past on the first start."""
        assert self.world is not None and self.url is not None
        sizes = {g.chat_id: len(g.members) + 3 for g in self.world.groups}  # + the owner and both bots
        url = self.url

        async def seed() -> int:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await analytics.seed_demo_history(conn, sizes)

        return asyncio.run(seed())

    def _subscribe_receiver(self) -> None:
        """Start the local event receiver and subscribe it to every event type (join requests too)."""
        assert self.url is not None
        self.receiver = HookReceiver().start()
        url = self.receiver.url

        async def subscribe() -> str:
            async with await psycopg.AsyncConnection.connect(self.url or "") as conn:
                events = [*hooks.DEFAULT_EVENTS, *hooks.OPT_IN_EVENTS]
                _sub_id, secret = await hooks.add(conn, url, events, "demo", allow_private=True)
                await conn.commit()
                return secret

        self.receiver.secret = asyncio.run(subscribe())
        _say(f"event webhooks: a local receiver on {url} is subscribed to every event (press W in the TUI)")

    def hooks_summary(self) -> dict[str, Any]:
        """What the local receiver got: deliveries by event type, and how many were signed correctly."""
        if self.receiver is None:
            return {}
        got = self.receiver.accepted()
        by_type: dict[str, int] = {}
        for r in got:
            by_type[r.event_type] = by_type.get(r.event_type, 0) + 1
        return {
            "url": self.receiver.url,
            "received": len(got),
            "verified": sum(1 for r in got if r.verified),
            "by_type": dict(sorted(by_type.items())),
        }

    def _set_webhooks(self) -> None:
        """What `tgms set-webhook --url ...` does: main bot → /api/webhook, tgms bot → /api/webhook/tgms."""
        from tgms_tui.commands.set_webhook import configure_webhooks

        assert self.settings is not None and self.webhook is not None
        options = argparse.Namespace(
            url=f"http://127.0.0.1:{self.webhook.port}",
            delete=False,
            info=False,
            bot="all",
            drop_pending_updates=False,
            max_connections=None,
        )
        _lines, failures = asyncio.run(configure_webhooks(self.settings, options))
        if failures:
            raise ChildFailed("setWebhook failed: " + "; ".join(failures))

    def _wait_registered(self, timeout: float) -> int:
        assert self.world is not None and self.url is not None
        ids = self.world.group_ids()
        deadline = time.monotonic() + timeout
        count = 0
        with psycopg.connect(self.url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                count = fleet.active_among(conn, ids)
                if count >= len(ids) or self.supervisor.dead():
                    break
                time.sleep(0.2)
        return count

    # ------------------------------------------------------------------ reporting
    def _child_exited(self, child: Child, code: int) -> None:
        text = f"{child.name} (pid {child.pid}) exited with code {code}; log: {child.log_path}"
        tail = redact(child.log_tail(2))  # children redact their logs; a raw traceback might not be
        self.deaths.append(text)
        if self.app is not None:
            self.app.report_dead(child.name, text + (f"\n{tail}" if tail else ""))
        else:
            _say(f"PROCESS DIED: {text}" + (f" — {tail}" if tail else ""))

    def _event(self, text: str) -> None:
        if self.app is not None:
            self.app.post_notice(text)
        elif self.args.headless:
            elapsed = self.traffic.elapsed if self.traffic else 0.0
            _say(f"[+{elapsed:4.0f}s] {text}")

    # ------------------------------------------------------------------ modes
    def _run_tui(self) -> int:
        from .app import DemoApp

        assert self.url is not None and self.traffic is not None and self.sim
        intake = f"webhook :{self.webhook.port}" if self.webhook else "long polling (tgms poll)"
        banner = (
            f"Seed {self.seed}: {self.args.groups} simulated groups, simulator :{self.sim.port}, "
            f"{intake}, 2 workers. b: broadcast · ?: help · q: quit"
        )
        self.app = DemoApp(url=self.url, settings=self.settings, refresh_period=2.0, min_refresh_gap=0.5, banner=banner)
        for death in self.deaths:  # anything that died before the screen existed
            self.app.report_dead("?", death)
        started = time.monotonic()
        self.traffic.start()
        try:
            self.app.run()
        finally:
            self.traffic_seconds = time.monotonic() - started
            self.app = None
        return 0

    def _run_headless(self) -> int:
        assert self.url is not None and self.traffic is not None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            started = time.monotonic()
            self.traffic.start()
            next_progress = PROGRESS_EVERY
            duration = self.args.duration
            while not self._stop.wait(0.25):
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    break
                if elapsed >= next_progress:
                    next_progress += PROGRESS_EVERY
                    with contextlib.suppress(psycopg.Error):
                        received = self.receiver.accepted() if self.receiver else []
                        _say(f"[+{elapsed:4.0f}s] {progress_line(self.url)} · {len(received)} events received")
            self.traffic_seconds = time.monotonic() - started
            self.traffic.stop()
            self._drain(DRAIN_SECONDS)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():
            _say("stopping, please wait (the children are being stopped)")
        self._stop.set()

    def _drain(self, timeout: float) -> None:
        """Let the work already asked for finish (updates delivered, jobs done), so the summary adds up."""
        from telegram_sim.control import SimControl

        assert self.url is not None and self.sim is not None
        _say("traffic stopped; letting queued work finish")
        deadline = time.monotonic() + timeout
        with SimControl(f"http://127.0.0.1:{self.sim.port}") as ctl:
            while time.monotonic() < deadline and not self.supervisor.dead():
                try:
                    if sim_busy(ctl) == 0 and database_busy(self.url) == 0:
                        return
                except (psycopg.Error, OSError) as exc:
                    log.warning("drain check failed: %s", exc)
                time.sleep(0.5)
        _say(f"work still under way after {timeout:g} s; stopping anyway")

    # ------------------------------------------------------------------ stopping
    def _shutdown(self) -> dict[str, Any]:
        """Stop everything in order and return the run's summary: traffic, then the webhook (nothing new
        comes in) and the workers (they finish their jobs), then read both sides, then the simulator
        and PostgreSQL."""
        if self.traffic is not None:
            self.traffic.stop()
        _say("stopping the webhook server and the workers")
        self.supervisor.stop(["webhook", "poller", *WORKERS], grace=8.0)
        log.info("webhook and workers stopped: %s", self.supervisor.exit_codes())
        summary: dict[str, Any] = {
            "seed": self.seed,
            "groups": self.args.groups,
            "intake": self.args.intake,
            "duration_seconds": round(self.traffic_seconds, 1),
            "traffic": self.traffic.stats.as_dict() if self.traffic is not None else {},
            "world": self._world_info(),
            "hooks": self.hooks_summary(),
            "errors": self.errors,
        }
        if self.url is not None:
            try:
                summary["db"] = collect_database(self.url)
            except psycopg.Error as exc:
                self.errors.append(f"reading the database: {exc}")
        if self.sim is not None and self.sim.process.poll() is None:
            from telegram_sim.control import SimControl, SimControlError

            try:
                with SimControl(f"http://127.0.0.1:{self.sim.port}") as ctl:
                    kicked = self.world.fault_kicked.chat_id if self.world else 0
                    summary["sim"] = collect_simulator(ctl, TGMS_BOT_ID, kicked)
            except (SimControlError, OSError) as exc:
                self.errors.append(f"reading the simulator: {exc}")
        log.info("summary collected")
        if self.receiver is not None:
            self.receiver.stop()
        self.supervisor.stop_all(grace=5.0)
        postgres = "not stopped (error)"
        try:
            postgres = self.db.stop()
        except Exception as exc:  # never leave without reporting what is still running
            self.errors.append(f"stopping PostgreSQL: {type(exc).__name__}: {exc}")
        log.info("simulator stopped; PostgreSQL %s", postgres)
        summary["processes"] = {
            "children": {
                c.name: {"pid": c.pid, "port": c.port, "exit_code": c.process.poll()} for c in self.supervisor.children
            },
            "postmaster_pid": self.postmaster_pid,
            "postgres": postgres,
            "postgres_stopped": postgres == "stopped",
            "database": self.db.dbname,
            "died": list(self.deaths),
            "still_running": [c.name for c in self.supervisor.children if pid_alive(c.pid)],
            "ports_listening": [c.port for c in self.supervisor.children if c.port and port_is_listening(c.port)],
            "demo_dir": str(self.demo_dir),
            "logs": str(self.run_dir),
        }
        return summary

    def _world_info(self) -> dict[str, Any]:
        if self.world is None:
            return {}
        w = self.world
        return {
            "group_ids": w.group_ids(),
            "fault_kicked": w.fault_kicked.chat_id,
            "fault_kicked_title": w.fault_kicked.title,
            "owner_kicked": w.owner_kicked.chat_id,
            "owner_kicked_title": w.owner_kicked.title,
            "upgraded_title": w.upgraded.title,
            "upgraded_from": self.traffic.stats.upgraded_from if self.traffic else None,
            "upgraded_to": self.traffic.stats.upgraded_to if self.traffic else None,
            "bots": dict(w.bot_ids),
        }

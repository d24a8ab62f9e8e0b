"""What the fleet benches (broadcast, follow-up, photo, ban: one action over N groups under Telegram's
flood limits) share: their arguments, the stack on a fresh database with the simulator enforcing the
limits, the N managed groups with the TGMS workers started, and waiting for a broadcast to end.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_database

from telegram_sim.config import SimConfig
from tests.workers.harness import Stack


def fleet_parser(doc: str | None, workers: int) -> argparse.ArgumentParser:
    """--groups, --rate (TGMS_RATE_PER_SECOND) and --workers; a bench adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=30.0, help="TGMS_RATE_PER_SECOND (default 30)")
    parser.add_argument("--workers", type=int, default=workers, help=f"TGMS worker processes (default {workers})")
    return parser


def sender_env(rate: float) -> dict[str, str]:
    """The sender at `rate`, no delay between groups, Telegram's 20 messages a minute per group."""
    return {"TGMS_RATE_PER_SECOND": str(rate), "TGMS_GROUP_DELAY_SECONDS": "0", "TGMS_GROUP_MESSAGES_PER_MINUTE": "20"}


@contextlib.contextmanager
def flood_limited_stack(database: str, env: dict[str, str]) -> Iterator[Stack]:
    """A running stack on a fresh database `database`; the simulator answers 429 beyond Telegram's limits."""
    with (
        bench_database(database) as url,
        tempfile.TemporaryDirectory() as tmp,
        Stack(url, Path(tmp), sim_config=SimConfig(enforce_flood_limits=True), env=env) as stack,
    ):
        yield stack


def add_fleet(
    stack: Stack, groups: int, workers: int, *, members: int | list[int] = 3, title: str = "Bench group"
) -> list[int]:
    """`groups` supergroups with the TGMS bot in them, managed, and `workers` TGMS workers started; the
    start-up jobs are done and the simulator's call log and flood counters cleared, so that what is
    measured next starts from nothing. The groups' ids."""
    print(f"creating {groups} groups, starting webhook and {workers} TGMS worker(s) ...", file=sys.stderr)
    state = stack.sim.state
    chats = [state.create_chat("supergroup", f"{title} {i}", bots=[stack.tgms_bot_id], members=members)
             for i in range(groups)]  # fmt: skip
    ids = [c.id for c in chats]
    stack.sql("INSERT INTO managed_groups (group_id, title, chat_type, bot_can_invite) "
              "SELECT g, t, 'supergroup', true FROM unnest(%s::bigint[], %s::text[]) AS u(g, t)",
              (ids, [c.title for c in chats]))  # fmt: skip
    for _ in range(workers):
        stack.start_worker("tgms")
    stack.wait_jobs_idle(timeout=120)  # start-up periodic jobs (member counts) out of the way
    stack.ctl.clear_calls()
    state.flood.reset()
    return ids


def wait_broadcast(stack: Stack, broadcast_id: int, timeout: float) -> None:
    """Until the broadcast is neither pending nor running."""
    stack.wait_for(
        lambda: stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN "
                             "('pending', 'running')", (broadcast_id,)),
        timeout=timeout, what=f"broadcast {broadcast_id} finished", interval=0.2,
    )  # fmt: skip

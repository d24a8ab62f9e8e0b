"""Setting up many simulator chats and their managed-group rows quickly (one statement for all rows).

`Stack.add_group` opens a connection per group; at 200+ groups that alone takes seconds on a busy
machine, so scenarios with many groups register them in bulk. Chats are created through the
simulator's state (the same effect as its control API; docs/simulator.md offers it to tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from tests.workers.harness import Stack

# The `make_stack` fixture: make_stack(db_url, sim_config=, env=, webhook=True) -> a started Stack.
StackFactory = Callable[..., Stack]


def add_groups(stack: Stack, chats: list[dict[str, Any]], **columns: Any) -> list[int]:
    """Register simulator chats (`{"id", "title", "type"}`) as managed, active groups in one INSERT."""
    if not chats:
        return []
    values = {"phase": "growth", "is_active": True, "bot_can_invite": True, **columns}
    names = ["group_id", "title", "chat_type", *values]
    rows = [(c["id"], c["title"], c["type"], *values.values()) for c in chats]
    marks = ", ".join(["%s"] * len(names))
    with psycopg.connect(stack.db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO managed_groups ({', '.join(names)}) VALUES ({marks})", rows)
    return [int(c["id"]) for c in chats]


def tgms_chats(stack: Stack, n: int, kind: str = "supergroup", **spec: Any) -> list[dict[str, Any]]:
    """`n` simulator chats where only the TGMS bot is (an administrator allowed to invite and post)."""
    state = stack.sim.state
    chats = [state.create_chat(kind, bots=[stack.tgms_bot_id], **spec) for _ in range(n)]
    return [{"id": c.id, "title": c.title, "type": c.type} for c in chats]


def managed_chats(stack: Stack, n: int, kind: str = "supergroup", **columns: Any) -> list[int]:
    """`n` TGMS-bot chats, all registered as managed active groups; their ids."""
    return add_groups(stack, tgms_chats(stack, n, kind), **columns)

"""What an A/B (or click-tracked) broadcast does when it starts, and what each copy carries.

Called by `broadcasts.start` in the transaction that flips the broadcast to running, so the held-back
groups, each group's variant and each copy's tracked links are fixed once, together with the
`sent_messages` rows; a restarted or concurrent starter finds them already there. A broadcast with
no `broadcast_ab` row is untouched (no extra statement beyond one lookup).

Assignment: the groups in a random order (an OS-seeded generator), the first `holdout` share held
back, the rest dealt variant 1, 2, ..., V, 1, 2, ... so that the variants' counts differ by at most one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from . import link_tracking

SQL_SETTINGS = "SELECT holdout, track_clicks, public_base_url FROM broadcast_ab WHERE broadcast_id = %(b)s"

SQL_VARIANTS = "SELECT variant, body, buttons FROM broadcast_variants WHERE broadcast_id = %(b)s ORDER BY variant"

SQL_HOLD = """
INSERT INTO broadcast_holdout (broadcast_id, chat_id)
SELECT %(b)s, unnest(%(ids)s::bigint[]) ON CONFLICT DO NOTHING
"""

SQL_ROWS = "SELECT message_id FROM sent_messages WHERE broadcast_id = %(b)s AND variant IS NULL ORDER BY message_id"

SQL_SET_VARIANTS = """
UPDATE sent_messages AS s SET variant = t.v
  FROM unnest(%(ids)s::bigint[], %(vs)s::smallint[]) AS t(id, v)
 WHERE s.message_id = t.id
"""

SQL_LINKS = """
INSERT INTO tracked_links (token, broadcast_id, message_id, variant, url)
SELECT t.token, %(b)s, t.id, t.v, t.url
  FROM unnest(%(tokens)s::text[], %(ids)s::bigint[], %(vs)s::smallint[], %(urls)s::text[]) AS t(token, id, v, url)
ON CONFLICT DO NOTHING
"""

# Everything one copy needs, in one round trip: its variant's body and buttons (none: the broadcast's
# own text and top-level buttons), whether and where its links are tracked, and its tokens by URL.
SQL_COPY = """
SELECT s.variant, v.body, coalesce(v.buttons, k.rows), ab.track_clicks, ab.public_base_url,
       (SELECT coalesce(jsonb_object_agg(l.url, l.token), '{}'::jsonb)
          FROM tracked_links AS l WHERE l.message_id = s.message_id)
  FROM sent_messages AS s
  JOIN broadcast_ab AS ab ON ab.broadcast_id = s.broadcast_id
  LEFT JOIN broadcast_variants AS v ON v.broadcast_id = s.broadcast_id AND v.variant = s.variant
  LEFT JOIN broadcast_buttons AS k ON k.broadcast_id = s.broadcast_id
 WHERE s.message_id = %(id)s
"""

SQL_TOP_BUTTONS = "SELECT rows FROM broadcast_buttons WHERE broadcast_id = %(b)s"

SQL_HAS_AB = "SELECT EXISTS (SELECT 1 FROM broadcast_ab WHERE broadcast_id = %(b)s)"
SQL_VARIANT_COUNT = "SELECT count(*) FROM broadcast_variants WHERE broadcast_id = %(b)s"
SQL_TRACKING_BASE = "SELECT public_base_url FROM broadcast_ab WHERE broadcast_id = %(b)s AND track_clicks"
SQL_HAS_VARIANTS = "SELECT EXISTS (SELECT 1 FROM broadcast_variants WHERE broadcast_id = %(b)s)"


@dataclass(frozen=True)
class CopyContent:
    """One copy of an A/B or tracked broadcast: `body` None means the broadcast's own text/caption."""

    variant: int | None
    body: str | None
    buttons: link_tracking.Buttons | None
    tokens: dict[str, str]
    base: str | None


def deal(count: int, variants: int, rng: random.Random | None = None) -> list[int]:
    """Variant numbers (1-based) for `count` groups in a random order; counts differ by at most one."""
    rng = rng or random.SystemRandom()
    order = list(range(count))
    rng.shuffle(order)
    dealt = [0] * count
    for position, index in enumerate(order):
        dealt[index] = position % variants + 1
    return dealt


def held_count(total: int, share: float, variants: int) -> int:
    """How many of `total` groups to hold back: the share, leaving at least one group per variant."""
    held = int(total * share)
    return max(0, min(held, total - max(1, variants)))


async def hold_out(conn: AsyncConnection[Any], broadcast_id: int, ids: list[int]) -> list[int]:
    """Hold back the broadcast's share of `ids` (recorded); the groups to send to now."""
    cur = await conn.execute(SQL_SETTINGS, {"b": broadcast_id})
    row = await cur.fetchone()
    if row is None or not row[0] or not ids:
        return ids
    cur = await conn.execute(SQL_VARIANTS, {"b": broadcast_id})
    variants = len(await cur.fetchall())
    shuffled = list(ids)
    random.SystemRandom().shuffle(shuffled)
    held = held_count(len(ids), float(row[0]), variants)
    await conn.execute(SQL_HOLD, {"b": broadcast_id, "ids": shuffled[:held]})
    keep = set(shuffled[held:])
    return [g for g in ids if g in keep]


async def assign(conn: AsyncConnection[Any], broadcast_id: int) -> None:
    """Give each unassigned row a variant and each copy's URLs their tokens (A/B or tracked broadcasts)."""
    cur = await conn.execute(SQL_SETTINGS, {"b": broadcast_id})
    settings = await cur.fetchone()
    if settings is None:
        return
    _holdout, track, _base = settings
    cur = await conn.execute(SQL_VARIANTS, {"b": broadcast_id})
    variants = {int(v): (body, buttons) for v, body, buttons in await cur.fetchall()}
    cur = await conn.execute(SQL_ROWS, {"b": broadcast_id})
    ids = [int(r[0]) for r in await cur.fetchall()]
    if not ids:
        return
    numbers = sorted(variants)
    dealt = [numbers[d - 1] for d in deal(len(ids), len(numbers))] if numbers else [0] * len(ids)
    if numbers:
        await conn.execute(SQL_SET_VARIANTS, {"ids": ids, "vs": dealt})
    if not track:
        return
    plain = await _plain_body(conn, broadcast_id)
    cur = await conn.execute(SQL_TOP_BUTTONS, {"b": broadcast_id})
    top = await cur.fetchone()
    top_buttons = top[0] if top else None
    links: dict[str, list[Any]] = {"tokens": [], "ids": [], "vs": [], "urls": []}
    for message_id, number in zip(ids, dealt, strict=True):
        body, buttons = variants.get(number, (plain[0], None))
        for url in link_tracking.urls_in(body, plain[1], buttons or top_buttons):
            links["tokens"].append(link_tracking.new_token())
            links["ids"].append(message_id)
            links["vs"].append(number or None)
            links["urls"].append(url)
    if links["ids"]:
        await conn.execute(SQL_LINKS, {"b": broadcast_id, **links})


SQL_PLAIN = """
SELECT CASE WHEN photo_url IS NULL THEN text ELSE caption END, parse_mode FROM broadcasts WHERE broadcast_id = %(b)s
"""


async def _plain_body(conn: AsyncConnection[Any], broadcast_id: int) -> tuple[str | None, str | None]:
    cur = await conn.execute(SQL_PLAIN, {"b": broadcast_id})
    row = await cur.fetchone()
    return (None, None) if row is None else (row[0], row[1])


async def has_ab(conn: AsyncConnection[Any], broadcast_id: int) -> bool:
    cur = await conn.execute(SQL_HAS_AB, {"b": broadcast_id})
    row = await cur.fetchone()
    return bool(row and row[0])


async def variant_count(conn: AsyncConnection[Any], broadcast_id: int) -> int:
    cur = await conn.execute(SQL_VARIANT_COUNT, {"b": broadcast_id})
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def tracking_base(conn: AsyncConnection[Any], broadcast_id: int) -> str | None:
    """Where a click-tracked broadcast's links point (None: its links are not tracked)."""
    cur = await conn.execute(SQL_TRACKING_BASE, {"b": broadcast_id})
    row = await cur.fetchone()
    return None if row is None else row[0]


async def has_variants(conn: AsyncConnection[Any], broadcast_id: int) -> bool:
    cur = await conn.execute(SQL_HAS_VARIANTS, {"b": broadcast_id})
    row = await cur.fetchone()
    return bool(row and row[0])


async def copy_content(conn: AsyncConnection[Any], message_id: int) -> CopyContent | None:
    """What this copy carries; None for a copy of a plain broadcast."""
    cur = await conn.execute(SQL_COPY, {"id": message_id})
    row = await cur.fetchone()
    if row is None:
        return None
    variant, body, buttons, track, base, tokens = row
    return CopyContent(
        variant=None if variant is None else int(variant),
        body=body,
        buttons=buttons,
        tokens=dict(tokens or {}) if track else {},
        base=base if track else None,
    )

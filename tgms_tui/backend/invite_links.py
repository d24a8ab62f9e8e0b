"""Named invite links (`invite_links`) and who joined through them (`invite_link_members`).

An operator names a source ("ads-june", "partner-x"); `create` adds one row per chosen group and the
job that creates each link with `creates_join_request` (workers/invite_links.py). Join requests
record the link they came through (`join_requests.invite_link`), and the main worker records joins
and leaves that `chat_member` updates attribute to a link. `stats` puts it together per link.

A bot sees the whole URL only of links it created; another administrator bot gets the first half
of the hash and "..." (Bot API). Both forms are matched: a truncated link belongs to the link of the
same group whose URL starts with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from . import queue

JOB_TYPE = "tgms_invite_links"
MAX_NAME = 32  # Telegram's limit for a link's name


class LinkError(ValueError):
    """A link request that cannot be carried out; the message says why."""


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LinkError("name is required: the source the link is for, e.g. ads-june")
    name = value.strip()
    if len(name) > MAX_NAME:
        raise LinkError(f"name is longer than {MAX_NAME} characters (Telegram's limit for a link's name)")
    return name


SQL_UNKNOWN_GROUPS = """
SELECT g FROM unnest(%(groups)s::bigint[]) AS g
 WHERE NOT EXISTS (SELECT 1 FROM managed_groups WHERE group_id = g AND is_active)
"""

SQL_ADD = """
INSERT INTO invite_links (name, group_id, created_by)
SELECT %(name)s, group_id, %(by)s FROM managed_groups
 WHERE is_active AND (%(groups)s::bigint[] IS NULL OR group_id = ANY(%(groups)s::bigint[]))
ON CONFLICT (name, group_id) WHERE status IN ('pending', 'active', 'revoking') DO NOTHING
RETURNING group_id
"""

SQL_REVOKE = """
UPDATE invite_links SET status = 'revoking', error = NULL, claimed_at = NULL, updated_at = now()
 WHERE name = %(name)s AND status = 'active'
   AND (%(groups)s::bigint[] IS NULL OR group_id = ANY(%(groups)s::bigint[]))
RETURNING group_id
"""


async def create(conn: AsyncConnection[Any], name: str, group_ids: list[int] | None, created_by: str) -> int:
    """Rows for a link named `name` in the chosen active groups (all when None), and the job that
    creates them, in one transaction. Groups that already have a live link of that name are left
    alone. Returns how many links are to be created. LinkError for unknown or inactive groups."""
    async with conn.transaction():
        if group_ids is not None:
            cur = await conn.execute(SQL_UNKNOWN_GROUPS, {"groups": group_ids})
            unknown = [int(r[0]) for r in await cur.fetchall()]
            if unknown:
                raise LinkError(f"not managed, active groups: {', '.join(map(str, unknown))}")
        cur = await conn.execute(SQL_ADD, {"name": name, "by": created_by, "groups": group_ids})
        added = len(await cur.fetchall())
        if added:
            await queue.enqueue(conn, JOB_TYPE, {"name": name, "action": "create"}, priority=-5)
    return added


async def revoke(conn: AsyncConnection[Any], name: str, group_ids: list[int] | None = None) -> int:
    """Revoke every active link named `name` (or those in the listed groups): a job does it."""
    async with conn.transaction():
        cur = await conn.execute(SQL_REVOKE, {"name": name, "groups": group_ids})
        todo = len(await cur.fetchall())
        if todo:
            await queue.enqueue(conn, JOB_TYPE, {"name": name, "action": "revoke"}, priority=-5)
    return todo


# ------------------------------------------------------------------ the job's statements

SQL_CLAIM = """
UPDATE invite_links SET claimed_at = now(), updated_at = now()
 WHERE link_id = (SELECT link_id FROM invite_links
                   WHERE name = %(name)s AND status = %(status)s
                     AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => %(stale)s))
                   ORDER BY link_id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING link_id, group_id, invite_link
"""

SQL_CREATED = """
UPDATE invite_links SET status = 'active', invite_link = %(url)s, bot = %(bot)s, error = NULL,
       group_id = %(group)s, claimed_at = NULL, updated_at = now()
 WHERE link_id = %(id)s
"""

SQL_FAILED = """
UPDATE invite_links SET status = %(status)s, error = %(error)s, claimed_at = NULL, updated_at = now()
 WHERE link_id = %(id)s
"""

SQL_REVOKED = """
UPDATE invite_links SET status = 'revoked', revoked_at = now(), error = %(error)s, claimed_at = NULL,
       updated_at = now()
 WHERE link_id = %(id)s
"""


async def claim(conn: AsyncConnection[Any], name: str, status: str, stale: float) -> tuple[int, int, str | None] | None:
    cur = await conn.execute(SQL_CLAIM, {"name": name, "status": status, "stale": stale})
    row = await cur.fetchone()
    return (int(row[0]), int(row[1]), row[2]) if row else None


async def created(conn: AsyncConnection[Any], link_id: int, url: str, bot: str, group_id: int) -> None:
    await conn.execute(SQL_CREATED, {"id": link_id, "url": url, "bot": bot, "group": group_id})


async def failed(conn: AsyncConnection[Any], link_id: int, status: str, error: str) -> None:
    await conn.execute(SQL_FAILED, {"id": link_id, "status": status, "error": error})


async def revoked(conn: AsyncConnection[Any], link_id: int, error: str | None = None) -> None:
    await conn.execute(SQL_REVOKED, {"id": link_id, "error": error})


# ------------------------------------------------------------------ joins and leaves (main worker)

SQL_JOINED = """
INSERT INTO invite_link_members (chat_id, user_id, invite_link, joined_at)
VALUES (%(chat)s, %(user)s, %(link)s, to_timestamp(%(date)s))
ON CONFLICT DO NOTHING
"""

SQL_LEFT = """
UPDATE invite_link_members SET left_at = to_timestamp(%(date)s)
 WHERE chat_id = %(chat)s AND user_id = %(user)s AND left_at IS NULL
"""


async def record_join(conn: AsyncConnection[Any], chat_id: int, user_id: int, invite_link: str, date: int) -> None:
    await conn.execute(SQL_JOINED, {"chat": chat_id, "user": user_id, "link": invite_link, "date": date})


async def record_leave(conn: AsyncConnection[Any], chat_id: int, user_id: int, date: int) -> None:
    """One indexed UPDATE (a partial index on open rows); nothing happens for a member who did not
    come through a link."""
    await conn.execute(SQL_LEFT, {"chat": chat_id, "user": user_id, "date": date})


# ------------------------------------------------------------------ figures

# `x` is the link as received; `l` the link as created. A whole URL matches itself, a truncated one
# ("https://t.me/+abcd...") the created URL it starts.
SAME_LINK = (
    "({x}.invite_link = l.invite_link OR (right({x}.invite_link, 3) = '...' "
    "AND starts_with(l.invite_link, left({x}.invite_link, -3))))"
)

SQL_STATS = f"""
SELECT l.link_id, l.name, l.group_id, g.title, l.invite_link, l.status, l.error, l.bot, l.created_by,
       l.created_at, l.revoked_at,
       COALESCE(r.requests, 0), COALESCE(r.approved, 0), COALESCE(r.declined, 0),
       COALESCE(m.joined, 0), COALESCE(m.d7_base, 0), COALESCE(m.d7, 0), COALESCE(m.d30_base, 0),
       COALESCE(m.d30, 0), COALESCE(m.members, 0), COALESCE(m.active, 0)
  FROM invite_links l
  LEFT JOIN managed_groups g ON g.group_id = l.group_id
  LEFT JOIN LATERAL (
      SELECT count(*) AS requests,
             count(*) FILTER (WHERE jr.status = 'approved') AS approved,
             count(*) FILTER (WHERE jr.status IN ('declined', 'banned', 'verification_failed')) AS declined
        FROM join_requests jr
       WHERE jr.chat_id = l.group_id AND l.invite_link IS NOT NULL AND {SAME_LINK.format(x="jr")}
  ) r ON true
  LEFT JOIN LATERAL (
      SELECT count(*) AS joined,
             count(*) FILTER (WHERE m.joined_at <= now() - interval '7 days') AS d7_base,
             count(*) FILTER (WHERE m.joined_at <= now() - interval '7 days'
                                AND (m.left_at IS NULL OR m.left_at >= m.joined_at + interval '7 days')) AS d7,
             count(*) FILTER (WHERE m.joined_at <= now() - interval '30 days') AS d30_base,
             count(*) FILTER (WHERE m.joined_at <= now() - interval '30 days'
                                AND (m.left_at IS NULL OR m.left_at >= m.joined_at + interval '30 days')) AS d30,
             count(*) FILTER (WHERE m.left_at IS NULL) AS members,
             count(*) FILTER (WHERE m.left_at IS NULL AND EXISTS (
                 SELECT 1 FROM member_activity a
                  WHERE a.chat_id = m.chat_id AND a.user_id = m.user_id
                    AND a.last_seen_at >= now() - make_interval(days => %(active_days)s))) AS active
        FROM invite_link_members m
       WHERE m.chat_id = l.group_id AND l.invite_link IS NOT NULL AND {SAME_LINK.format(x="m")}
  ) m ON true
 WHERE %(name)s::text IS NULL OR l.name = %(name)s::text
 ORDER BY l.name, l.group_id, l.link_id
"""

ACTIVE_DAYS = 7


@dataclass(slots=True)
class LinkFigures:
    """Counts for one link, or summed over a name's links."""

    requests: int = 0
    approved: int = 0
    declined: int = 0
    joined: int = 0
    joined_7d_ago: int = 0  # joined at least 7 days ago (the base of the 7-day figure)
    stayed_7d: int = 0  # of those, still members 7 days after joining
    joined_30d_ago: int = 0
    stayed_30d: int = 0
    members: int = 0  # joined through the link and still in the group
    active: int = 0  # of those, seen in the last ACTIVE_DAYS days

    def add(self, other: LinkFigures) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @staticmethod
    def rate(part: int, whole: int) -> str:
        return f"{100 * part / whole:.0f}%" if whole else "-"

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class GroupLink:
    link_id: int
    name: str
    group_id: int
    title: str | None
    invite_link: str | None
    status: str
    error: str | None
    bot: str | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    figures: LinkFigures

    def as_json(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "group_id": self.group_id,
            "title": self.title,
            "invite_link": self.invite_link,
            "status": self.status,
            "error": self.error,
            "bot": self.bot,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            **self.figures.as_json(),
        }


@dataclass(slots=True)
class SourceLinks:
    """Every link of one name, with the figures summed."""

    name: str
    links: list[GroupLink] = field(default_factory=list)
    figures: LinkFigures = field(default_factory=LinkFigures)

    @property
    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for link in self.links:
            out[link.status] = out.get(link.status, 0) + 1
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": len(self.links),
            "statuses": self.statuses,
            **self.figures.as_json(),
            "links": [link.as_json() for link in self.links],
        }


async def stats(conn: AsyncConnection[Any], name: str | None = None) -> list[SourceLinks]:
    """Per source name: its links (one per group) with requests, approvals, declines, joins,
    7- and 30-day retention, members and active members."""
    cur = await conn.execute(SQL_STATS, {"name": name, "active_days": ACTIVE_DAYS})
    sources: dict[str, SourceLinks] = {}
    for row in await cur.fetchall():
        figures = LinkFigures(*(int(v) for v in row[11:21]))
        link = GroupLink(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], figures
        )
        source = sources.setdefault(link.name, SourceLinks(link.name))
        source.links.append(link)
        source.figures.add(figures)
    return list(sources.values())

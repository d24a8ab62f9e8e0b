"""The A/B side of broadcasts: variants, click tracking, the winner, and sending it to held-back groups.

A broadcast payload (admin API, CLI, composer) may add to the fields `validate_broadcast` knows:

- `variants`: 2-4 of {"text": ...} (or {"caption": ...} with a photo) with optional
  `"buttons": [[{"text", "url"}, ...], ...]` (checked by buttons.validate as the top-level `buttons`
  are, named `variants[i].buttons`); a variant without its own buttons gets the broadcast's;
- `track_clicks`: true to rewrite the http(s) links in buttons (the variant's or the broadcast's
  top-level `buttons`) and text to `<TGMS_PUBLIC_BASE_URL>/r/<token>`;
- `holdout`: the share of the target's groups held back for the winner (0-0.9, or "50%").

`split_request` takes these out and checks them; the rest goes through `validate_broadcast` once per
variant (each variant's text is checked exactly like a broadcast's, named `variants[i].text`).
`create` stores the broadcast (`broadcasts.create_broadcast`) and its A/B rows in one transaction,
then checks every variant as it will be sent (tracked URLs and the longest debug code): a refusal
rolls everything back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from . import ab_stats, broadcasts, buttons, debug_code, link_tracking
from .broadcasts import BroadcastNotFound, BroadcastStateError
from .groups import targets as resolve_targets
from .message_validation import BroadcastRequest, ValidationError, validate_broadcast

MIN_VARIANTS = 2
MAX_VARIANTS = 4
MAX_HOLDOUT = 0.9
# Clicks counted per tracked link per minute: a link hammered by a script adds no more rows.
CLICKS_PER_LINK_PER_MINUTE = 60
AB_FIELDS = ("variants", "track_clicks", "holdout")


@dataclass(frozen=True)
class Variant:
    body: str
    buttons: link_tracking.Buttons | None = None


@dataclass(frozen=True)
class AbRequest:
    variants: list[Variant] = field(default_factory=list)
    track_clicks: bool = False
    holdout: float = 0.0
    public_base_url: str | None = None
    winner_of: int | None = None
    winner_variant: int | None = None


# ---------------------------------------------------------------- the request


def split_request(data: Mapping[str, Any], public_base_url: str | None) -> tuple[BroadcastRequest, AbRequest | None]:
    """Validate a payload that may carry variants; (the broadcast, its A/B part or None)."""
    if not isinstance(data, Mapping):
        raise ValidationError("body", "expected a JSON object")
    base = {k: v for k, v in data.items() if k not in AB_FIELDS}
    raw_variants = data.get("variants")
    track = data.get("track_clicks", False)
    if track is None:
        track = False
    if not isinstance(track, bool):
        raise ValidationError("track_clicks", "must be true or false")
    holdout = parse_holdout(data.get("holdout"))
    if raw_variants is None:
        if holdout:
            raise ValidationError("holdout", "holding groups back for a winner needs variants")
        req = validate_broadcast(base)
        if not track:
            return req, None
        return req, AbRequest(track_clicks=True, public_base_url=_base_url(public_base_url))
    if not isinstance(raw_variants, list) or not MIN_VARIANTS <= len(raw_variants) <= MAX_VARIANTS:
        raise ValidationError("variants", f"give {MIN_VARIANTS} to {MAX_VARIANTS} variants")
    photo = base.get("photo_url") not in (None, "")
    body_key = "caption" if photo else "text"
    if base.get(body_key) not in (None, ""):
        raise ValidationError(body_key, f"give the {body_key} in each variant, not beside them")
    variants = []
    first: BroadcastRequest | None = None
    for i, raw in enumerate(raw_variants):
        where = f"variants[{i}]"
        if not isinstance(raw, Mapping):
            raise ValidationError(where, 'expected an object such as {"text": "...", "buttons": [...]}')
        unknown = set(raw) - {"text", "caption", "buttons"}
        if unknown:
            raise ValidationError(f"{where}.{sorted(unknown)[0]}", "unknown field")
        body = raw.get(body_key)
        other = "text" if photo else "caption"
        if raw.get(other) not in (None, ""):
            raise ValidationError(
                f"{where}.{other}", f"a {'photo' if photo else 'text'} broadcast's variants give {body_key}"
            )
        try:
            checked = validate_broadcast({**base, body_key: body})
        except ValidationError as exc:
            name = f"{where}.{exc.field}" if exc.field in ("text", "caption") else exc.field
            raise ValidationError(name, exc.message) from None
        first = first or checked
        variants.append(
            Variant(
                body=(checked.text if not photo else checked.caption) or "",
                buttons=buttons.validate(raw.get("buttons"), f"{where}.buttons"),
            )
        )
    assert first is not None
    req = replace(first, text=variants[0].body) if not photo else replace(first, caption=variants[0].body)
    ab = AbRequest(
        variants=variants,
        track_clicks=track,
        holdout=holdout,
        public_base_url=_base_url(public_base_url) if track else None,
    )
    return req, ab


def _base_url(public_base_url: str | None) -> str:
    if not public_base_url:
        raise ValidationError(
            "track_clicks", "TGMS_PUBLIC_BASE_URL is not set: tracked links need the address the webhook server has"
        )
    return public_base_url


def parse_holdout(value: Any) -> float:
    """0-0.9 from a number (0.5) or a percentage string ("50%"); ValidationError("holdout")."""
    if value is None or value == "" or value == 0:
        return 0.0
    share: float
    if isinstance(value, bool):
        raise ValidationError("holdout", 'a share such as 0.5 or "50%"')
    if isinstance(value, int | float):
        share = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValidationError("holdout", f'a share such as 0.5 or "50%", got {value!r:.40}') from None
    else:
        raise ValidationError("holdout", 'a share such as 0.5 or "50%"')
    if not 0 <= share <= MAX_HOLDOUT:
        raise ValidationError("holdout", f"must be 0-{int(MAX_HOLDOUT * 100)}% of the groups")
    return share


# ---------------------------------------------------------------- storing

SQL_INSERT_AB = """
INSERT INTO broadcast_ab (broadcast_id, track_clicks, public_base_url, holdout, winner_of, winner_variant)
VALUES (%(b)s, %(track)s, %(base)s, %(holdout)s, %(winner_of)s, %(winner_variant)s)
"""

SQL_INSERT_VARIANT = """
INSERT INTO broadcast_variants (broadcast_id, variant, body, buttons) VALUES (%(b)s, %(v)s, %(body)s, %(buttons)s)
"""


async def create(
    conn: AsyncConnection[Any], req: BroadcastRequest, ab: AbRequest | None, created_by: str
) -> tuple[int, int]:
    """Store the broadcast, its job and its A/B rows in one transaction; (broadcast_id, groups now)."""
    if ab is None:
        return await broadcasts.create_broadcast(conn, req, created_by)
    async with conn.transaction():
        broadcast_id, groups = await broadcasts.create_broadcast(conn, req, created_by)
        await conn.execute(
            SQL_INSERT_AB,
            {
                "b": broadcast_id,
                "track": ab.track_clicks,
                "base": ab.public_base_url,
                "holdout": ab.holdout,
                "winner_of": ab.winner_of,
                "winner_variant": ab.winner_variant,
            },
        )
        for number, variant in enumerate(ab.variants, start=1):
            await conn.execute(
                SQL_INSERT_VARIANT,
                {
                    "b": broadcast_id,
                    "v": number,
                    "body": variant.body,
                    "buttons": Jsonb(variant.buttons) if variant.buttons else None,
                },
            )
        code = debug_code.longest(broadcast_id, broadcasts.ordinal_bound(req.target, groups))
        check_rendered(req, ab, code)
    return broadcast_id, groups


def check_rendered(req: BroadcastRequest, ab: AbRequest, code: str) -> None:
    """Each variant as it will go out (tracked URLs, the debug code) passes Telegram's checks."""
    photo = req.photo_url is not None
    plain = Variant(body=(req.caption if photo else req.text) or "")
    for i, variant in enumerate(ab.variants or [plain]):
        body = variant.body
        if ab.track_clicks and ab.public_base_url:
            urls = link_tracking.urls_in(body, req.parse_mode, variant.buttons)
            tokens = {url: link_tracking.sample_token() for url in urls}
            body = link_tracking.render(body, req.parse_mode, variant.buttons, tokens, ab.public_base_url)[0] or ""
        refused = debug_code.refusal(
            None if photo else body, req.photo_url, body if photo else None, req.parse_mode, code
        )
        if refused is not None:
            name = f"variants[{i}].{refused.field}" if ab.variants else refused.field
            raise ValidationError(name, refused.message + (" (with tracked links)" if ab.track_clicks else ""))


# ---------------------------------------------------------------- clicks

SQL_RESOLVE = "SELECT url FROM tracked_links WHERE token = %(t)s"

# Count a click (bounded per link per minute) and return where it goes, in one round trip.
SQL_CLICK = """
WITH link AS (
    SELECT l.token, l.url, l.broadcast_id, l.variant, s.chat_id
      FROM tracked_links AS l JOIN sent_messages AS s ON s.message_id = l.message_id
     WHERE l.token = %(t)s
), counted AS (
    INSERT INTO clicks (token, broadcast_id, variant, chat_id)
    SELECT token, broadcast_id, variant, chat_id FROM link
     WHERE (SELECT count(*) FROM clicks AS c
             WHERE c.token = %(t)s AND c.clicked_at > now() - interval '1 minute') < %(cap)s
    RETURNING 1
)
SELECT url, (SELECT count(*) FROM counted) FROM link
"""


async def resolve(conn: AsyncConnection[Any], token: str) -> str | None:
    """The URL behind a token (nothing counted), or None for an unknown token."""
    if not link_tracking.TOKEN_RE.match(token):
        return None
    cur = await conn.execute(SQL_RESOLVE, {"t": token})
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def record_click(conn: AsyncConnection[Any], token: str) -> str | None:
    """Count one click on `token` and return its URL; None for an unknown token."""
    if not link_tracking.TOKEN_RE.match(token):
        return None
    cur = await conn.execute(SQL_CLICK, {"t": token, "cap": CLICKS_PER_LINK_PER_MINUTE})
    row = await cur.fetchone()
    return None if row is None else str(row[0])


# ---------------------------------------------------------------- results

SQL_RESULTS = """
SELECT v.variant, v.body, v.buttons,
       count(s.message_id) AS groups,
       count(s.message_id) FILTER (WHERE s.status = 'sent') AS delivered,
       COALESCE(sum(GREATEST(COALESCE(g.member_count, 1), 1)) FILTER (WHERE s.status = 'sent'), 0) AS reach,
       (SELECT count(*) FROM clicks AS c WHERE c.broadcast_id = v.broadcast_id AND c.variant = v.variant) AS clicks
  FROM broadcast_variants AS v
  LEFT JOIN sent_messages AS s ON s.broadcast_id = v.broadcast_id AND s.variant = v.variant
  LEFT JOIN managed_groups AS g ON g.group_id = s.chat_id
 WHERE v.broadcast_id = %(b)s
 GROUP BY v.broadcast_id, v.variant, v.body, v.buttons
 ORDER BY v.variant
"""

SQL_AB = """
SELECT track_clicks, holdout, winner_of, winner_variant,
       (SELECT count(*) FROM broadcast_holdout AS h WHERE h.broadcast_id = ab.broadcast_id),
       (SELECT w.broadcast_id FROM broadcast_ab AS w WHERE w.winner_of = ab.broadcast_id),
       (SELECT count(*) FROM clicks AS c WHERE c.broadcast_id = ab.broadcast_id)
  FROM broadcast_ab AS ab WHERE ab.broadcast_id = %(b)s
"""


@dataclass(frozen=True)
class AbReport:
    broadcast_id: int
    track_clicks: bool
    holdout: float
    held_back: int
    winner_of: int | None
    winner_variant: int | None
    winner_broadcast_id: int | None
    clicks: int
    variants: list[ab_stats.VariantResult]
    bodies: dict[int, str]
    verdict: ab_stats.Verdict | None


async def report(conn: AsyncConnection[Any], broadcast_id: int) -> AbReport | None:
    """The variant table and the verdict of a broadcast with variants or tracked links; None otherwise."""
    cur = await conn.execute(SQL_AB, {"b": broadcast_id})
    row = await cur.fetchone()
    if row is None:
        return None
    track, holdout, winner_of, winner_variant, held, winner_broadcast, clicks = row
    cur = await conn.execute(SQL_RESULTS, {"b": broadcast_id})
    results = []
    bodies = {}
    for variant, body, _buttons, groups, delivered, reach, variant_clicks in await cur.fetchall():
        results.append(
            ab_stats.VariantResult(int(variant), int(groups), int(delivered), int(reach), int(variant_clicks))
        )
        bodies[int(variant)] = str(body)
    verdict = ab_stats.decide(results) if len(results) >= 2 else None
    return AbReport(
        broadcast_id,
        bool(track),
        float(holdout),
        int(held),
        winner_of,
        winner_variant,
        winner_broadcast,
        int(clicks),
        results,
        bodies,
        verdict,
    )


def report_json(r: AbReport) -> dict[str, Any]:
    return {
        "track_clicks": r.track_clicks,
        "holdout": r.holdout,
        "held_back_groups": r.held_back,
        "clicks": r.clicks,
        "winner_of": r.winner_of,
        "winner_variant": None if r.winner_variant is None else ab_stats.label(r.winner_variant),
        "winner_broadcast_id": r.winner_broadcast_id,
        "variants": [
            {
                "variant": v.label,
                "text": r.bodies.get(v.variant),
                "groups": v.groups,
                "delivered": v.delivered,
                "reach": v.reach,
                "clicks": v.clicks,
                "click_rate": round(v.rate, 6),
            }
            for v in r.variants
        ],
        "winner": None if r.verdict is None or r.verdict.winner is None else ab_stats.label(r.verdict.winner),
        "evidence": None if r.verdict is None else r.verdict.statement,
    }


def report_lines(r: AbReport) -> list[str]:
    """The variant table and the verdict as `tgms broadcast show` prints them."""
    lines = []
    if r.winner_of is not None:
        lines.append(f"  winner of: broadcast {r.winner_of} (variant {ab_stats.label(r.winner_variant or 0)})")
    extra = f"; {r.held_back} group(s) held back for the winner" if r.held_back else ""
    lines.append(
        f"  tracking:  {'links tracked' if r.track_clicks else 'links not tracked'}, {r.clicks} click(s){extra}"
    )
    if r.variants:
        lines.append(
            f"\n  {'variant':<8} {'groups':>7} {'delivered':>10} {'reach':>8} {'clicks':>7} {'click rate':>11}  text"
        )
        for v in r.variants:
            body = (r.bodies.get(v.variant) or "").splitlines()[0] if r.bodies.get(v.variant) else ""
            lines.append(
                f"  {v.label:<8} {v.groups:>7} {v.delivered:>10} {v.reach:>8} {v.clicks:>7} "
                f"{100 * v.rate:>10.2f}%  {body[:40]}"
            )
    if r.verdict is not None:
        lines.append(f"\n  verdict:   {r.verdict.statement}")
    if r.winner_broadcast_id is not None:
        lines.append(f"  the winner went to the held-back groups as broadcast {r.winner_broadcast_id}")
    return lines


# ---------------------------------------------------------------- the winner to the held-back groups

SQL_HELD = "SELECT chat_id FROM broadcast_holdout WHERE broadcast_id = %(b)s ORDER BY chat_id"
SQL_BUTTONS = "SELECT buttons FROM broadcast_variants WHERE broadcast_id = %(b)s AND variant = %(v)s"
SQL_BASE_URL = "SELECT public_base_url FROM broadcast_ab WHERE broadcast_id = %(b)s"
SQL_LOCK_AB = "SELECT 1 FROM broadcast_ab WHERE broadcast_id = %(b)s FOR UPDATE"


async def send_winner(
    conn: AsyncConnection[Any], broadcast_id: int, by: str, variant: int | None = None
) -> tuple[int, int]:
    """Send the winning variant (or `variant`, the operator's choice) to the groups held back, as a
    new broadcast; (its id, groups). BroadcastStateError when it does not apply (not finished, no
    held-back groups, no winner and no choice, already sent)."""
    async with conn.transaction():
        b = await broadcasts.get_broadcast(conn, broadcast_id)
        cur = await conn.execute(SQL_LOCK_AB, {"b": broadcast_id})
        if await cur.fetchone() is None:
            raise BroadcastStateError(f"broadcast {broadcast_id} has no variants")
        r = await report(conn, broadcast_id)
        assert r is not None
        if r.winner_broadcast_id is not None:
            raise BroadcastStateError(f"the winner already went out as broadcast {r.winner_broadcast_id}")
        if b.status != "done":
            raise BroadcastStateError(f"broadcast {broadcast_id} is {b.status}: send the winner once it is done")
        if variant is None:
            if r.verdict is None or r.verdict.winner is None:
                why = r.verdict.statement if r.verdict else "no variants"
                raise BroadcastStateError(f"no winner ({why}); choose a variant to send it anyway")
            variant = r.verdict.winner
        if variant not in r.bodies:
            raise ValidationError("variant", f"broadcast {broadcast_id} has no variant {ab_stats.label(variant)}")
        cur = await conn.execute(SQL_HELD, {"b": broadcast_id})
        held = [int(row[0]) for row in await cur.fetchall()]
        reachable = await resolve_targets(conn, {"kind": "groups", "group_ids": held}, b.is_final) if held else []
        if not reachable:
            raise BroadcastStateError(f"broadcast {broadcast_id} has no held-back group to send the winner to")
        cur = await conn.execute(SQL_BUTTONS, {"b": broadcast_id, "v": variant})
        buttons_row = await cur.fetchone()
        body = r.bodies[variant]
        photo = b.photo_url is not None
        req = BroadcastRequest(
            text=None if photo else body,
            photo_url=b.photo_url,
            caption=body if photo else None,
            parse_mode=b.parse_mode,
            target={"kind": "groups", "group_ids": reachable},
            is_final=b.is_final,
            paid=b.paid,  # the winner goes out as the test did
        )
        cur = await conn.execute(
            "SELECT public_base_url FROM broadcast_ab WHERE broadcast_id = %(b)s", {"b": broadcast_id}
        )
        base_row = await cur.fetchone()
        ab = AbRequest(
            variants=[Variant(body, buttons_row[0] if buttons_row else None)],
            track_clicks=r.track_clicks,
            public_base_url=base_row[0] if base_row else None,
            winner_of=broadcast_id,
            winner_variant=variant,
        )
        created = await create(conn, req, ab, by)
        # the original's top-level buttons go with the winner too (a variant without its own has them)
        await buttons.attach(conn, created[0], await buttons.of(conn, broadcast_id))
        return created


__all__ = [
    "AbReport",
    "AbRequest",
    "BroadcastNotFound",
    "BroadcastStateError",
    "Variant",
    "create",
    "record_click",
    "report",
    "resolve",
    "send_winner",
    "split_request",
]

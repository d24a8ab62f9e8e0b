"""`tgms stats [--group ID] [--window 24h|7d|30d] [--json|--csv] [--at TIME]`: the analytics screen's
figures in the shell (the same backend calls): member count, join requests by outcome, broadcast
deliveries and failures, and active members per bucket, for one group or the whole fleet."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

import psycopg

from tgms_tui.backend import analytics
from tgms_tui.backend.bootstrap import prepare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", type=int, default=None, metavar="ID", help="one managed group (default: the fleet)")
    parser.add_argument(
        "--window",
        choices=list(analytics.WINDOWS),
        default="7d",
        help="24h (hourly buckets), 7d (6-hour buckets, the default) or 30d (daily buckets); UTC",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document: totals and every bucket")
    out.add_argument("--csv", action="store_true", help="CSV, one row per bucket, with a header")
    parser.add_argument(
        "--at", type=_moment, default=None, metavar="TIME", help="end the window at this ISO 8601 moment, not now"
    )


def _moment(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time like 2026-03-10T12:00Z, got {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    _settings, url = prepare(logging_on=False)
    return asyncio.run(_stats(url, args))


async def _stats(url: str, args: argparse.Namespace) -> int:
    win = analytics.window(args.window)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        title: tuple[str, bool] | None = None
        if args.group is not None:
            title = await analytics.group_title(conn, args.group)
            if title is None:
                print(f"tgms: stats: --group {args.group}: no managed group with this id (see tgms groups list)")
                return 2
        series = await analytics.series_for(conn, win, args.group, args.at)
    if args.json:
        doc = series.as_json()
        if title is not None:
            doc["title"], doc["is_active"] = title
        print(json.dumps(doc))
    elif args.csv:
        print(series.as_csv(), end="")
    else:
        _print_table(series, title)
    return 0


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_table(series: analytics.Series, title: tuple[str, bool] | None) -> None:
    if title is None:
        scope = "the fleet (active groups)"
    else:
        scope = f"group {series.group_id} {title[0]!r}" + ("" if title[1] else " (inactive)")
    win = series.window
    print(f"{scope}, last {win.name} per {win.bucket_label} (UTC), as of {series.now:%Y-%m-%d %H:%M}")
    t = series.totals()
    change = t["members_change"]
    print(
        f"members {_cell(t['members'])} ({'+' if (change or 0) >= 0 else ''}{_cell(change)}), "
        f"active {_cell(t['active_members'])}; joins approved {t['joins_approved']}, declined "
        f"{t['joins_declined']}, other {t['joins_other']}; deliveries {t['deliveries_sent']}, "
        f"failed {t['deliveries_failed']}"
    )
    print(
        f"{'bucket (UTC)':<17} {'members':>9} {'approved':>8} {'declined':>8} {'other':>6} {'sent':>6} "
        f"{'failed':>6} {'active':>7}"
    )
    for row, start in zip(series.rows(), series.starts, strict=True):
        print(
            f"{start:%Y-%m-%d %H:%M} {_cell(row['members']):>9} {row['joins_approved']:>8} "
            f"{row['joins_declined']:>8} {row['joins_other']:>6} {row['deliveries_sent']:>6} "
            f"{row['deliveries_failed']:>6} {_cell(row['active_members']):>7}"
        )

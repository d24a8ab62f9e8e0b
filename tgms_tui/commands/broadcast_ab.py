"""`tgms broadcast` options for photos from disk and A/B variants, and `tgms broadcast send-winner ID`.

    tgms broadcast --photo ./poster.jpg --caption "New poster"
    tgms broadcast --variant "Join us today" --variant "Last chance: join us" --track-clicks
    tgms broadcast --variants-file variants.json --track-clicks --ab-holdout 50%
    tgms broadcast send-winner 42 [--variant B]

A variants file is a JSON list of 2-4 objects, `{"text": "...", "buttons": [[{"text": "Open",
"url": "https://..."}]]}` (`caption` instead of `text` with a photo).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psycopg

from tgms_tui.backend import ab_stats, broadcast_variants
from tgms_tui.backend.image_header import MAX_PHOTO_BYTES, check_photo
from tgms_tui.backend.message_validation import ValidationError


def add_send_arguments(send: argparse.ArgumentParser, content: argparse._MutuallyExclusiveGroup) -> None:
    content.add_argument(
        "--photo", metavar="PATH", help="a JPEG, PNG or WebP file (uploaded once; text goes in --caption)"
    )
    send.add_argument(
        "--variant", action="append", metavar="TEXT", help="an A/B variant's text (or caption); repeat 2-4 times"
    )
    send.add_argument("--variants-file", metavar="FILE", help='A/B variants as JSON: [{"text", "buttons"}, ...]')
    send.add_argument("--track-clicks", action="store_true", help="count clicks on the links (TGMS_PUBLIC_BASE_URL)")
    send.add_argument("--ab-holdout", metavar="SHARE", help="hold back this share of the groups for the winner (50%%)")


def add_actions(sub: Any) -> None:
    winner = sub.add_parser("send-winner", help="send an A/B broadcast's winner to the groups it held back")
    winner.add_argument("broadcast_id", type=int, metavar="ID")
    winner.add_argument("--variant", metavar="A-D", help="send this variant even without a clear winner")


def read_photo(path: str) -> tuple[bytes, str]:
    """The file's bytes, checked against Telegram's photo limits; ValidationError("photo")."""
    file = Path(path).expanduser()
    try:
        if file.stat().st_size > MAX_PHOTO_BYTES:
            raise ValidationError("photo", f"{path}: {file.stat().st_size:,} bytes; Telegram takes at most 10 MB")
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationError("photo", f"cannot read {path}: {exc.strerror or exc}") from None
    check_photo(data)
    return data, file.name


def collect(args: argparse.Namespace, data: dict[str, Any]) -> tuple[bytes, str] | None:
    """Put the photo, variants, tracking and hold-out options into `data`; the photo to store, if any."""
    photo = None
    if args.photo is not None:
        photo = read_photo(args.photo)  # submission.prepare makes it the broadcast's photo_url
    key = "caption" if "photo_url" in data or photo is not None else "text"
    if args.variant and args.variants_file:
        raise ValidationError("variants", "give --variant or --variants-file, not both")
    if args.variant:
        data["variants"] = [{key: text} for text in args.variant]
    elif args.variants_file:
        try:
            data["variants"] = json.loads(Path(args.variants_file).expanduser().read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValidationError("variants", f"cannot read {args.variants_file}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ValidationError("variants", f"{args.variants_file} is not valid JSON: {exc}") from None
    if args.track_clicks:
        data["track_clicks"] = True
    if args.ab_holdout is not None:
        data["holdout"] = args.ab_holdout
    return photo


async def send_winner(url: str, args: argparse.Namespace, who: str) -> int:
    variant = None
    if args.variant is not None:
        letter = args.variant.strip().upper()
        if letter not in ab_stats.LABELS:
            raise ValidationError("variant", "a variant is A, B, C or D")
        variant = ab_stats.LABELS.index(letter) + 1
    async with await psycopg.AsyncConnection.connect(url) as conn:
        new_id, groups = await broadcast_variants.send_winner(conn, args.broadcast_id, who, variant)
        await conn.commit()
    reply = {
        "status": "ok",
        "message": "Broadcast enqueued",
        "broadcast_id": new_id,
        "groups": groups,
        "winner_of": args.broadcast_id,
    }
    print(json.dumps(reply))
    return 0

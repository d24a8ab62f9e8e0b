"""A photo from disk to 1,000 groups: uploaded once, then sent by file_id, as fast as a text broadcast.

Two broadcasts to the same 1,000 groups in one run, through the admin API, TGMS worker processes and
the simulator (Telegram's flood limits on, TGMS_RATE_PER_SECOND=30 as in broadcast_bench):
1. the baseline: a text broadcast;
2. a photo from disk (multipart upload to the admin API, a ~1 MB PNG), sent as a caption.

Reported: uploads the simulator received (the target is exactly 1), the bytes that crossed the wire
against uploading the file to every group, each broadcast's wall time (API request -> last copy) and
the ratio photo / text (target <= 1.10: reusing the file_id costs nearly nothing), duplicates and
missing groups (0).

Usage: ./dev.sh bench photo_bench [--groups 1000] [--rate 30] [--workers 2] [--photo-kb 1024]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fleet import add_fleet, fleet_parser, flood_limited_stack, sender_env, wait_broadcast

from tests import images
from tests.workers.harness import ADMIN_KEY, Stack

TARGET_RATIO = 1.10


def _copies(stack: Stack, method: str, since: float) -> list[dict[str, Any]]:
    return [c for c in stack.calls(method, ok=True) if c["at"] >= since]


def main() -> int:
    parser = fleet_parser(__doc__, workers=2)
    parser.add_argument("--photo-kb", type=int, default=1024, help="size of the photo file in KiB (default 1024)")
    args = parser.parse_args()

    photo = images.png(1280, 853, padding=args.photo_kb * 1024)
    timeout = args.groups / args.rate * 3 + 60
    with flood_limited_stack("bench_photo", sender_env(args.rate)) as stack:
        ids = add_fleet(stack, args.groups, args.workers, title="Photo bench")
        print("baseline: a text broadcast ...", file=sys.stderr)
        t0 = time.time()
        text_id = stack.broadcast({"text": "Benchmark text broadcast"})
        wait_broadcast(stack, text_id, timeout)
        text_copies = _copies(stack, "sendMessage", t0)
        text_wall = max(c["at"] for c in text_copies) - t0

        print(f"a {len(photo):,}-byte photo from disk ...", file=sys.stderr)
        time.sleep(3.5)  # the groups' 20/min windows and the bot's bucket refill, as for the baseline
        stack.sim.state.flood.reset()
        t1 = time.time()
        answer = httpx.post(
            f"{stack.webhook_url}/api/tgms/send",
            headers={"x-api-key": ADMIN_KEY},
            files={"photo": ("bench.png", photo, "image/png")},
            data={"payload": json.dumps({"caption": "Benchmark photo broadcast"})},
            timeout=60,
        )
        answer.raise_for_status()
        photo_id = int(answer.json()["broadcast_id"])
        wait_broadcast(stack, photo_id, timeout)
        photo_copies = _copies(stack, "sendPhoto", t1)
        photo_wall = max(c["at"] for c in photo_copies) - t1
        uploads = stack.ctl.uploads()
        outcomes = dict(stack.sql("SELECT status, count(*) FROM sent_messages WHERE broadcast_id = %s "
                                  "GROUP BY status", (photo_id,)))  # fmt: skip

    per_chat = Counter(c["chat_id"] for c in photo_copies)
    duplicates = sum(1 for n in per_chat.values() if n > 1)
    missing = sum(1 for g in ids if per_chat.get(g, 0) == 0)
    uploaded_bytes = sum(int(u["size"]) for u in uploads["uploads"])
    naive = len(photo) * args.groups
    ratio = photo_wall / text_wall if text_wall else float("inf")
    print(f"\nphoto broadcast {photo_id}: rows {outcomes}")
    print(f"\n{'measure':<52} {'value':>16}")
    print("-" * 70)
    print(f"{'groups':<52} {args.groups:>16}")
    print(f"{'uploads received by the simulator':<52} {uploads['count']:>16}")
    print(f"{'bytes uploaded':<52} {uploaded_bytes:>16,}")
    print(f"{'bytes if uploaded to every group':<52} {naive:>16,}")
    print(f"{'baseline: text broadcast, API -> last copy (s)':<52} {text_wall:>16.2f}")
    print(f"{'photo broadcast, API -> last copy (s)':<52} {photo_wall:>16.2f}")
    print(f"{'ratio photo / text':<52} {ratio:>16.3f}")
    print(f"{'duplicates / missing':<52} {f'{duplicates} / {missing}':>16}")
    met = uploads["count"] == 1 and ratio <= TARGET_RATIO and duplicates == 0 and missing == 0
    print(f"\ntarget: 1 upload, photo/text <= {TARGET_RATIO}, 0 duplicates, 0 missing: {'MET' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

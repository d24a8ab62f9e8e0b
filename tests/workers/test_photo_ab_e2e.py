"""Photos from disk and A/B broadcasts end to end: admin API (multipart, variants) → TGMS worker
processes → simulator, and clicks through the webhook server's /r/<token>.

The simulator counts the files that arrive in Bot API requests, so "uploaded once" is what crossed
the wire, not what TGMS believes it did.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import images
from tests.token_guard import register_secret

from .harness import ADMIN_KEY, REPO, WEBHOOK_SECRET, Stack

PUBLIC = "https://tgms.example.test"
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(db_url, tmp_path, env={"TGMS_PUBLIC_BASE_URL": PUBLIC}) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s


def _groups(stack: Stack, n: int, members: int = 1, **columns: Any) -> list[int]:
    chats = [stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id], members=members) for _ in range(n)]
    return [stack.add_group(chat, member_count=members, **columns) for chat in chats]  # fmt: skip


def _send_photo(stack: Stack, photo: bytes, payload: dict[str, Any], name: str = "poster.png") -> httpx.Response:
    assert stack.webhook_url is not None
    return httpx.post(
        f"{stack.webhook_url}/api/tgms/send",
        files={"photo": (name, photo, "application/octet-stream")},
        data={"payload": json.dumps(payload)},
        headers={"x-api-key": ADMIN_KEY},
        timeout=30,
    )


def _wait_done(stack: Stack, broadcast_id: int, timeout: float = 60) -> str:
    def finished() -> str | None:
        status = stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,))
        return None if status in ("pending", "running") else str(status)

    return str(stack.wait_for(finished, timeout=timeout, what=f"broadcast {broadcast_id} finished"))


def _statuses(stack: Stack, broadcast_id: int) -> Counter[str]:
    rows = stack.sql("SELECT status FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,))
    return Counter(str(r[0]) for r in rows)


def test_a_photo_from_disk_is_uploaded_once_for_every_group(stack: Stack) -> None:
    groups = _groups(stack, 12)
    stack.start_worker("tgms")
    stack.start_worker("tgms")  # two processes, several senders: still one upload
    answer = _send_photo(stack, images.png(800, 600), {"caption": "Our *new* poster", "parse_mode": "Markdown"})
    assert answer.status_code == 200, answer.text
    broadcast_id = int(answer.json()["broadcast_id"])
    assert _wait_done(stack, broadcast_id) == "done"
    assert _statuses(stack, broadcast_id) == Counter({"sent": len(groups)})
    uploads = stack.ctl.uploads()
    assert uploads["count"] == 1, uploads
    calls = stack.calls("sendPhoto", ok=True)
    assert sorted(int(c["chat_id"]) for c in calls) == sorted(groups)
    by_id = [c for c in calls if isinstance(c["params"].get("photo"), str)]
    assert len(by_id) == len(groups) - 1  # every other copy reused the file_id
    file_id = stack.scalar("SELECT file_id FROM broadcast_photos")
    assert {c["params"]["photo"] for c in by_id} == {file_id}
    for chat in groups:
        (message,) = [m for m in stack.ctl.messages(chat) if m["has_photo"]]
        assert message["caption"].startswith("Our new poster")


@pytest.mark.parametrize(
    ("photo", "payload", "field", "words"),
    [
        (images.png(100, 100, padding=10 * 1024 * 1024), {}, "photo", "10 MB"),
        (images.GIF, {}, "photo", "JPEG, PNG or WebP"),
        (b"just some text", {}, "photo", "JPEG, PNG or WebP"),
        (images.jpeg(8000, 2500), {}, "photo", "width + height is 10500"),
        (images.png(4200, 200), {}, "photo", "ratio is over 20"),
        (images.png(100, 100), {"caption": "x" * 1025}, "caption", "too long"),
        (images.png(100, 100), {"text": "a text"}, "text", "give a caption"),
    ],
)
def test_refused_photos_name_the_field_and_store_nothing(
    stack: Stack, photo: bytes, payload: dict[str, Any], field: str, words: str
) -> None:
    _groups(stack, 1)
    answer = _send_photo(stack, photo, payload)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["detail"]
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 0
    assert stack.scalar("SELECT count(*) FROM broadcast_photos") == 0


def test_the_file_id_survives_a_worker_crash_and_a_failed_first_upload(stack: Stack) -> None:
    groups = _groups(stack, 10)
    # The fourth group in send order (rows go out by group id; the simulator's ids are random): never
    # the first upload, whose injected failure is counted apart.
    kicked = sorted(groups)[3]
    stack.ctl.kick_bot(kicked, stack.tgms_bot_id)  # fails when sent by file_id: no upload for it
    # The first sendPhoto (the upload, whichever group it is for) fails: the next group uploads.
    stack.ctl.add_fault("error", method="sendPhoto", times=1, error_code=403,
                        description="Forbidden: bot was kicked from the supergroup chat")  # fmt: skip
    worker = stack.start_worker("tgms", TGMS_RATE_PER_SECOND="3", TGMS_JOB_LEASE_SECONDS="5")
    answer = _send_photo(stack, images.jpeg(1200, 900), {"caption": "slow"}, name="slow.jpg")
    assert answer.status_code == 200, answer.text
    broadcast_id = int(answer.json()["broadcast_id"])
    sent_now = "SELECT count(*) FROM sent_messages WHERE broadcast_id = %s AND status = 'sent'"
    stack.wait_for(lambda: stack.scalar(sent_now, (broadcast_id,)) >= 2, what="two copies sent")
    stack.kill(worker)  # SIGKILL in the middle of the broadcast
    assert stack.scalar("SELECT file_id FROM broadcast_photos") is not None  # stored durably
    stack.start_worker("tgms", TGMS_JOB_LEASE_SECONDS="5")
    assert _wait_done(stack, broadcast_id, timeout=120) == "done"
    counts = _statuses(stack, broadcast_id)
    kicked_status = stack.scalar(
        "SELECT status FROM sent_messages WHERE broadcast_id = %s AND chat_id = %s", (broadcast_id, kicked)
    )
    # The kicked group never gets a copy: 'failed', or 'ambiguous' when the kill caught its very call
    # (the worker is killed right after two copies went out, when the fourth group may be in flight).
    assert kicked_status in ("failed", "ambiguous"), counts
    assert counts["failed"] + (kicked_status == "ambiguous") == 2, counts  # the kicked group, the failed upload's
    assert counts["sent"] + counts["ambiguous"] - (kicked_status == "ambiguous") == len(groups) - 2, counts
    assert counts["ambiguous"] <= 1, counts
    # The failed upload hands the upload on to whichever waiting copy takes it first; when that is the
    # kicked group's, its upload fails too (the bot is not in the chat) and the next copy uploads.
    kicked_uploads = sum(
        1
        for c in stack.calls("sendPhoto", ok=False)
        if int(c["chat_id"]) == kicked and isinstance(c["params"]["photo"], dict)
    )
    uploads = stack.ctl.uploads()
    # The failed one, the kicked group's if it uploaded, and the one that worked; never again.
    assert uploads["count"] == 2 + kicked_uploads, (uploads, kicked_uploads)
    failed_upload = stack.calls("sendPhoto", ok=False)[0]
    assert failed_upload["fault_id"] is not None and isinstance(failed_upload["params"]["photo"], dict)
    delivered = Counter(int(c["chat_id"]) for c in stack.calls("sendPhoto", ok=True))
    assert all(n == 1 for n in delivered.values())


def _tokens(stack: Stack, broadcast_id: int) -> dict[int, list[tuple[str, str]]]:
    rows = stack.sql(
        "SELECT s.chat_id, l.token, l.url FROM tracked_links l JOIN sent_messages s USING (message_id) "
        "WHERE l.broadcast_id = %s ORDER BY l.url",
        (broadcast_id,),
    )
    out: dict[int, list[tuple[str, str]]] = {}
    for chat, token, url in rows:
        out.setdefault(int(chat), []).append((str(token), str(url)))
    return out


def test_variants_are_dealt_evenly_and_clicks_are_counted_but_not_previews(stack: Stack) -> None:
    groups = _groups(stack, 11)
    stack.start_worker("tgms")
    variants: list[dict[str, Any]] = [
        {"text": "Variant one: https://example.org/one", "buttons": [[{"text": "Go", "url": "https://example.org/go?v=1"}]]},
        {"text": "Variant two", "buttons": [[{"text": "Go", "url": "https://example.org/go?v=2"}]]},
        {"text": "Variant three"},
    ]  # fmt: skip
    broadcast_id = stack.broadcast({"variants": variants, "track_clicks": True})
    assert _wait_done(stack, broadcast_id) == "done"
    assigned = dict(stack.sql("SELECT chat_id, variant FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    counts = Counter(assigned.values())
    assert set(counts) == {1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1
    tokens = _tokens(stack, broadcast_id)
    for chat in groups:
        (message,) = [m for m in stack.ctl.messages(chat) if m["sent_by_bot"]]
        variant = int(assigned[chat])
        assert message["text"].startswith(variants[variant - 1]["text"].split(":")[0])
        markup = message["message"].get("reply_markup")
        if variant == 3:
            assert markup is None and chat not in tokens
            continue
        button_url = markup["inline_keyboard"][0][0]["url"]
        assert button_url.startswith(f"{PUBLIC}/r/")
        assert "example.org" not in message["text"] or variant != 1
        assert {f"{PUBLIC}/r/{t}" for t, _ in tokens[chat]} >= {button_url}

    webhook = stack.webhook_url
    chat = next(c for c in groups if assigned[c] == 1)
    (go_token, go_url), (one_token, one_url) = tokens[chat]
    assert (go_url, one_url) == ("https://example.org/go?v=1", "https://example.org/one")
    with httpx.Client(base_url=str(webhook), follow_redirects=False, timeout=10) as http:
        clicked = http.get(f"/r/{go_token}", headers={"user-agent": BROWSER})
        assert clicked.status_code == 302 and clicked.headers["location"] == go_url
        preview = http.get(f"/r/{one_token}", headers={"user-agent": "TelegramBot (like TwitterBot)"})
        assert preview.status_code == 302 and preview.headers["location"] == one_url
        head = http.head(f"/r/{one_token}", headers={"user-agent": BROWSER})
        assert head.status_code == 302
        assert http.get("/r/" + "0" * 32, headers={"user-agent": BROWSER}).status_code == 404
        assert http.get("/r/not-a-token", headers={"user-agent": BROWSER}).status_code == 404
        assert http.get(f"/r/{go_token}x", headers={"user-agent": BROWSER}).status_code == 404
    rows = stack.sql("SELECT token, variant, chat_id, broadcast_id FROM clicks")
    assert rows == [(go_token, 1, chat, broadcast_id)]
    # A link hammered by a script: every request is redirected, at most 60 a minute are counted.
    with httpx.Client(base_url=str(webhook), follow_redirects=False, timeout=10) as http:
        answers = Counter(http.get(f"/r/{one_token}", headers={"user-agent": BROWSER}).status_code for _ in range(70))
    assert answers == Counter({302: 70})
    assert stack.scalar("SELECT count(*) FROM clicks WHERE token = %s", (one_token,)) == 60
    columns = {
        r[0] for r in stack.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'clicks'")
    }
    assert columns == {"click_id", "token", "broadcast_id", "variant", "chat_id", "clicked_at"}  # nothing personal


def test_the_winner_is_stated_and_sent_to_the_held_back_groups(stack: Stack, tmp_path: Path) -> None:
    groups = _groups(stack, 10, members=100)  # the worker's member counts agree with the simulator
    stack.start_worker("tgms")
    variants = [{"text": "Plain A https://example.org/a"}, {"text": "Bold B https://example.org/b"}]
    broadcast_id = stack.broadcast({"variants": variants, "track_clicks": True, "holdout": "50%"})
    assert _wait_done(stack, broadcast_id) == "done"
    sent = {int(c) for (c,) in stack.sql("SELECT chat_id FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,))}
    held = {
        int(c) for (c,) in stack.sql("SELECT chat_id FROM broadcast_holdout WHERE broadcast_id = %s", (broadcast_id,))
    }
    assert len(sent) == 5 and len(held) == 5 and sent | held == set(groups) and not sent & held
    assert not any(m["sent_by_bot"] for c in held for m in stack.ctl.messages(c))

    api = httpx.Client(base_url=str(stack.webhook_url), headers={"x-api-key": ADMIN_KEY}, timeout=10)
    early = api.post(f"/api/tgms/broadcasts/{broadcast_id}/send-winner")
    assert early.status_code == 409 and "not enough data" in early.json()["detail"]

    # Seeded clicks: B's copies are clicked far more often than A's.
    links = stack.sql("SELECT token, variant FROM tracked_links WHERE broadcast_id = %s", (broadcast_id,))
    per_variant = {1: 6, 2: 30}
    for token, variant in links:
        share = per_variant[int(variant)] // sum(1 for _t, v in links if v == variant)
        stack.sql("INSERT INTO clicks (token, broadcast_id, variant, chat_id) "
                  "SELECT l.token, l.broadcast_id, l.variant, s.chat_id FROM tracked_links l JOIN sent_messages s "
                  "USING (message_id), generate_series(1, %s) WHERE l.token = %s", (share, token))  # fmt: skip
    table = api.get(f"/api/tgms/broadcasts/{broadcast_id}/variants").json()
    assert table["winner"] == "B", table
    assert table["evidence"].startswith("B wins: B ")
    assert [v["groups"] for v in table["variants"]] in ([2, 3], [3, 2])

    shown = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "broadcast", "show", str(broadcast_id)],
        cwd=REPO, env=stack.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "B wins:" in shown.stdout and "two-proportion z-test" in shown.stdout
    assert "5 group(s) held back for the winner" in shown.stdout

    answer = api.post(f"/api/tgms/broadcasts/{broadcast_id}/send-winner")
    assert answer.status_code == 200, answer.text
    winner_id = int(answer.json()["broadcast_id"])
    assert answer.json()["groups"] == 5
    assert _wait_done(stack, winner_id) == "done"
    for chat in held:
        (message,) = [m for m in stack.ctl.messages(chat) if m["sent_by_bot"]]
        assert message["text"].startswith("Bold B https://tgms.example.test/r/")
    again = api.post(f"/api/tgms/broadcasts/{broadcast_id}/send-winner")
    assert again.status_code == 409 and "already went out" in again.json()["detail"]

"""Where buttons, test sends and follow-ups meet photos from disk, A/B variants and click tracking, end
to end: admin API → TGMS worker → simulator.

- top-level buttons go with every copy, tracked (`/r/<token>`) when the broadcast tracks clicks, and a
  follow-up edit sends the same tracked buttons again;
- a variant's own buttons replace the top-level ones on its copies; both are checked by the one
  button validator (the same words, named `buttons` or `variants[i].buttons`);
- a follow-up edit of an A/B broadcast is refused (422) rather than putting one text on every copy;
- a test send of a photo from disk uploads it without keeping a file_id; an A/B test sends each
  variant; a refused submission stores nothing, not even the photo.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import images
from tests.token_guard import register_secret

from .harness import ADMIN_KEY, WEBHOOK_SECRET, Stack

PUBLIC = "https://tgms.example.test"
KEYS = {"x-api-key": ADMIN_KEY}
SHOP = {"text": "Shop", "url": "https://example.org/shop"}
CHAT = {"text": "Chat", "url": "tg://resolve?domain=ourgroup"}


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(db_url, tmp_path, env={"TGMS_PUBLIC_BASE_URL": PUBLIC}) as s:
        for secret in (s.main_token, s.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        yield s


def _groups(stack: Stack, n: int) -> list[int]:
    chats = [stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id], members=1) for _ in range(n)]
    return [stack.add_group(chat) for chat in chats]


def _post(stack: Stack, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    assert stack.webhook_url is not None
    return httpx.post(f"{stack.webhook_url}{path}", json=body, headers={**KEYS, **headers}, timeout=30)


def _post_photo(stack: Stack, photo: bytes, payload: dict[str, Any]) -> httpx.Response:
    assert stack.webhook_url is not None
    return httpx.post(
        f"{stack.webhook_url}/api/tgms/send",
        files={"photo": ("poster.png", photo, "application/octet-stream")},
        data={"payload": json.dumps(payload)},
        headers=KEYS,
        timeout=30,
    )


def _wait_done(stack: Stack, broadcast_id: int) -> None:
    def finished() -> bool | None:
        status = stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,))
        return True if status == "done" else None

    stack.wait_for(finished, timeout=60, what=f"broadcast {broadcast_id} done")


def _wait_followup(stack: Stack, followup_id: int) -> set[str]:
    def finished() -> bool | None:
        status = stack.scalar(
            "SELECT j.status FROM jobs j JOIN broadcast_followups f ON f.job_id = j.job_id WHERE f.followup_id = %s",
            (followup_id,),
        )
        return True if status == "done" else None

    stack.wait_for(finished, timeout=60, what=f"follow-up {followup_id} done")
    rows = stack.sql("SELECT status FROM broadcast_followup_groups WHERE followup_id = %s", (followup_id,))
    return {str(r[0]) for r in rows}


def _copy(stack: Stack, chat: int) -> dict[str, Any]:
    rows = [r for r in stack.ctl.messages(chat, sender="bots") if r["sent_by_bot"]]
    assert len(rows) == 1, rows
    return rows[0]


def test_top_level_buttons_are_tracked_on_every_copy_and_an_edit_keeps_the_tracked_links(stack: Stack) -> None:
    groups = _groups(stack, 3)
    stack.start_worker("tgms")
    body = {"text": "See https://example.org/a", "buttons": [[SHOP, CHAT]], "track_clicks": True}
    broadcast_id = stack.broadcast(body)
    _wait_done(stack, broadcast_id)
    before: dict[int, dict[str, Any]] = {}
    tokens = set()
    for chat in groups:
        copy = _copy(stack, chat)
        (row,) = copy["reply_markup"]["inline_keyboard"]
        shop, tg = row
        assert shop["text"] == "Shop" and shop["url"].startswith(f"{PUBLIC}/r/")  # tracked
        assert tg == CHAT  # a tg:// link opens Telegram itself: left as written
        assert f"{PUBLIC}/r/" in copy["text"] and "example.org/a" not in copy["text"]
        tokens.add(shop["url"])
        before[chat] = copy
    assert len(tokens) == len(groups)  # a token per copy

    # a click on a tracked top-level button goes to the shop and counts
    assert stack.webhook_url is not None
    path = next(iter(tokens)).removeprefix(PUBLIC)
    clicked = httpx.get(f"{stack.webhook_url}{path}", headers={"user-agent": "Mozilla/5.0"}, follow_redirects=False)
    assert clicked.status_code == 302 and clicked.headers["location"] == SHOP["url"]
    assert stack.scalar("SELECT count(*) FROM clicks WHERE broadcast_id = %s", (broadcast_id,)) == 1

    edit = _post(
        stack,
        f"/api/tgms/broadcasts/{broadcast_id}/edit",
        {"text": "Still https://example.org/a and now https://example.org/new"},
        **{"Idempotency-Key": "edit-tracked"},
    )
    assert edit.status_code == 200, edit.text
    assert _wait_followup(stack, int(edit.json()["followup_id"])) == {"done"}
    for chat in groups:
        copy = _copy(stack, chat)
        assert copy["reply_markup"] == before[chat]["reply_markup"]  # the same tracked buttons again
        tracked_a = before[chat]["text"].split()[1]
        assert copy["text"].startswith(f"Still {tracked_a} and now https://example.org/new")


def test_variants_carry_their_own_buttons_or_the_top_level_ones_and_an_edit_is_refused(stack: Stack) -> None:
    groups = _groups(stack, 4)
    stack.start_worker("tgms")
    own = {"text": "Join", "url": "https://example.org/join"}
    body = {"variants": [{"text": "Variant A", "buttons": [[own]]}, {"text": "Variant B"}], "buttons": [[SHOP]]}
    broadcast_id = stack.broadcast(body)
    _wait_done(stack, broadcast_id)
    seen = set()
    for chat in groups:
        copy = _copy(stack, chat)
        keyboard = copy["reply_markup"]["inline_keyboard"]
        if copy["text"].startswith("Variant A"):
            assert keyboard == [[own]]
        else:
            assert copy["text"].startswith("Variant B") and keyboard == [[SHOP]]
        seen.add(copy["text"].split("\n")[0])
    assert seen == {"Variant A", "Variant B"}

    edit = _post(stack, f"/api/tgms/broadcasts/{broadcast_id}/edit", {"text": "One text for all"})
    assert edit.status_code == 422, edit.text
    assert edit.json()["field"] == "text" and "variants" in edit.json()["detail"]
    assert stack.scalar("SELECT count(*) FROM broadcast_followups WHERE action = 'edit'") == 0
    assert stack.scalar("SELECT text FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,)) == "Variant A"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"variants": [{"text": "A", "buttons": [[SHOP] * 9]}, {"text": "B"}]}, "variants[0].buttons", "at most 8"),
        (
            {"variants": [{"text": "A"}, {"text": "B", "buttons": [[{"text": "x", "url": "ftp://h/x"}]]}]},
            "variants[1].buttons",
            "only http://, https:// and tg://",
        ),
        ({"text": "A", "buttons": [[SHOP] * 9]}, "buttons", "at most 8"),
        ({"text": "A", "buttons": [[{"text": "", "url": "https://example.org"}]]}, "buttons", "the text is empty"),
    ],
)
def test_top_level_and_variant_buttons_are_checked_alike(
    stack: Stack, body: dict[str, Any], field: str, words: str
) -> None:
    _groups(stack, 2)
    answer = _post(stack, "/api/tgms/send", body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and words in answer.json()["detail"]
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 0


def test_a_test_send_of_a_photo_ab_broadcast_uploads_the_photo_and_sends_each_variant(stack: Stack) -> None:
    groups = _groups(stack, 3)
    test_chat = int(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id], members=1)["id"])
    stack.start_worker("tgms")
    photo = images.png(640, 480)
    payload = {
        "variants": [{"caption": "Poster A"}, {"caption": "Poster B", "buttons": [[CHAT]]}],
        "buttons": [[SHOP]],
        "track_clicks": True,
        "test": True,
        "test_chat_id": test_chat,
    }
    answer = _post_photo(stack, photo, payload)
    assert answer.status_code == 200, answer.text
    ids = answer.json()["test_send_ids"]
    assert len(ids) == 2 and answer.json()["test_send_id"] == ids[0]
    sent = "SELECT count(*) FROM broadcast_test_sends WHERE status = 'sent'"
    stack.wait_for(lambda: stack.scalar(sent) == 2 or None, timeout=60, what="both test sends delivered")
    tests = sorted(
        (r for r in stack.ctl.messages(test_chat, sender="bots") if r["sent_by_bot"]), key=lambda r: r["caption"]
    )
    assert [r["has_photo"] for r in tests] == [True, True]
    assert tests[0]["caption"].startswith("Poster A") and tests[0]["reply_markup"] == {"inline_keyboard": [[SHOP]]}
    assert tests[1]["caption"].startswith("Poster B") and tests[1]["reply_markup"] == {"inline_keyboard": [[CHAT]]}
    assert stack.ctl.uploads()["count"] == 2  # each test uploaded the file itself
    assert stack.scalar("SELECT file_id FROM broadcast_photos") is None  # and kept no file_id
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 0
    assert all(not stack.ctl.messages(g, sender="bots") for g in groups)

    # the broadcast itself: one upload more, then its own file_id for every other copy
    real = _post_photo(stack, photo, {"caption": "Poster", "buttons": [[SHOP]]})
    assert real.status_code == 200, real.text
    _wait_done(stack, int(real.json()["broadcast_id"]))
    assert stack.ctl.uploads()["count"] == 3
    assert stack.scalar("SELECT file_id FROM broadcast_photos") is not None
    for chat in groups:
        assert _copy(stack, chat)["reply_markup"] == {"inline_keyboard": [[SHOP]]}


def test_a_refused_submission_stores_no_photo(stack: Stack) -> None:
    _groups(stack, 1)
    # refused inside the transaction (no test chat named, none configured): the photo goes too
    answer = _post_photo(stack, images.png(100, 100), {"caption": "x", "test": True})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "test_chat_id"
    # refused before it (a bad button)
    answer = _post_photo(stack, images.png(100, 100), {"caption": "x", "buttons": [[{"text": "x", "url": "nope"}]]})
    assert answer.status_code == 422 and answer.json()["field"] == "buttons"
    assert stack.scalar("SELECT count(*) FROM broadcast_photos") == 0
    assert stack.scalar("SELECT count(*) FROM broadcast_test_sends") == 0
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 0


def test_a_paid_photo_ab_broadcast_is_paid_on_every_copy_and_its_test_is_not(stack: Stack) -> None:
    """`paid` is one more field of the same submission: with a photo file, variants and buttons every
    copy (the upload included) carries allow_paid_broadcast; a test send of it does not."""
    groups = _groups(stack, 4)
    test_chat = int(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id], members=1)["id"])
    stack.start_worker("tgms")
    photo = images.png(320, 240)
    payload = {"variants": [{"caption": "Paid A"}, {"caption": "Paid B"}], "buttons": [[SHOP]], "paid": True}
    tested = _post_photo(stack, photo, {**payload, "test": True, "test_chat_id": test_chat})
    assert tested.status_code == 200, tested.text
    sent = "SELECT count(*) FROM broadcast_test_sends WHERE status = 'sent'"
    stack.wait_for(lambda: stack.scalar(sent) == 2 or None, timeout=60, what="test sends delivered")
    answer = _post_photo(stack, photo, payload)
    assert answer.status_code == 200, answer.text
    assert answer.json()["paid"] is True and answer.json()["estimated_stars"] == 0.4
    _wait_done(stack, int(answer.json()["broadcast_id"]))
    calls = stack.calls("sendPhoto", ok=True)
    to_groups = [c for c in calls if int(c["chat_id"]) in groups]
    assert len(to_groups) == len(groups)
    assert all(str(c["params"].get("allow_paid_broadcast")).lower() == "true" for c in to_groups)
    assert any(isinstance(c["params"].get("photo"), dict) for c in to_groups)  # the upload was paid too
    to_test = [c for c in calls if int(c["chat_id"]) == test_chat]
    assert len(to_test) == 2 and all("allow_paid_broadcast" not in c["params"] for c in to_test)
    assert {_copy(stack, g)["caption"].split("\n")[0] for g in groups} == {"Paid A", "Paid B"}

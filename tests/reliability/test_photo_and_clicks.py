"""Scenarios 19a and 19b: a photo broadcast whose uploading worker is SIGKILLed mid-upload, and the
public click redirect under hostile traffic.

19a: the first sendPhoto (the upload) hangs 2 s at the simulator, then is delivered; the worker making
it is SIGKILLed while it waits, so TGMS never learns the file_id. Another sender must take the upload
over as soon as that worker stops heartbeating (not after the 2-minute lease), upload once more, and
every later copy must reuse the file_id; no group gets two copies.

19b: /r/<token> is the only route of TGMS that anyone may call. Guessed tokens, an open-redirect
attempt through the query string, link-preview fetchers and a flood of clicks on one link.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter

import httpx
import pytest

from tests import images
from tests.workers.harness import ADMIN_KEY, Stack

from .results import ScenarioFactory
from .world import StackFactory, managed_chats

GROUPS = 60
LEASE = 3.0
ENV = {
    "TGMS_RATE_PER_SECOND": "20",
    "TGMS_GROUP_DELAY_SECONDS": "0",
    "TGMS_GROUP_MESSAGES_PER_MINUTE": "1000",
    "TGMS_JOB_LEASE_SECONDS": str(LEASE),
    "TGMS_PUBLIC_BASE_URL": "https://tgms.example.test",
}
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.mark.slow
def test_a_killed_upload_is_taken_over_and_the_file_id_reused(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "19a", f"Photo from disk to {GROUPS} groups: the uploading worker SIGKILLed mid-upload",
        injected="the first sendPhoto (the upload) hangs 2 s at the simulator and is then delivered; the worker "
        f"holding the upload lease is SIGKILLed during it and restarted; lease {LEASE:g} s; 2 TGMS workers",
        checked="the upload is taken over once the killed worker stops heartbeating (well before the 2-minute "
        "upload lease), the simulator receives exactly 2 uploads (the killed one and its replacement), every "
        "other copy is sent by file_id, each group gets at most one copy ('sent' = exactly 1 call; the killed "
        "upload's group alone 'ambiguous', with its 1 copy: senders waiting for the upload record no intent), "
        "broadcast 'done'",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env=ENV)
    workers = [stack.start_worker("tgms"), stack.start_worker("tgms")]
    stack.wait_jobs_idle()
    chats = managed_chats(stack, GROUPS)
    stack.ctl.add_fault("hang", method="sendPhoto", seconds=2.0, apply=True, times=1)
    answer = httpx.post(
        f"{stack.webhook_url}/api/tgms/send", headers={"x-api-key": ADMIN_KEY},
        files={"photo": ("p.png", images.png(1024, 768, padding=200_000), "image/png")},
        data={"payload": json.dumps({"caption": "Poster"})}, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    broadcast_id = int(answer.json()["broadcast_id"])
    # The upload has reached the simulator (which holds its answer for 2 s): kill whoever sent it.
    stack.wait_for(lambda: stack.ctl.uploads()["count"] >= 1, what="the upload in flight")
    holder = stack.scalar("SELECT upload_worker FROM broadcast_photos")
    pids = {int(p) for (p,) in stack.sql("SELECT pid FROM bot_health WHERE worker_id = %s", (holder,))}
    (victim,) = [w for w in workers if w.pid in pids]
    stack.kill(victim)
    killed_at = time.monotonic()
    workers[workers.index(victim)] = stack.start_worker("tgms")
    stack.wait_for(lambda: stack.scalar("SELECT file_id FROM broadcast_photos"), timeout=60, what="file_id stored")
    takeover = rec.measure("upload taken over after (s)", round(time.monotonic() - killed_at, 1))
    finished = "SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN ('pending', 'running')"
    assert stack.wait_for(lambda: stack.scalar(finished, (broadcast_id,)), timeout=120, what="done") == "done"

    uploads = rec.measure("uploads at the simulator", stack.ctl.uploads()["count"])
    calls = stack.calls("sendPhoto", ok=True)
    per_chat = Counter(int(c["chat_id"]) for c in calls)
    rows = dict(stack.sql("SELECT chat_id, status FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    statuses = Counter(rows.values())
    rec.measure("sent / ambiguous", f"{statuses['sent']} / {statuses['ambiguous']}")
    by_file_id = rec.measure("copies sent by file_id", sum(1 for c in calls if isinstance(c["params"]["photo"], str)))
    assert uploads == 2
    assert takeover < 60  # the upload lease is 120 s: the heartbeat rule took it over
    # Senders waiting for the upload hold no 'sending' row: only the killed upload is ambiguous.
    assert set(rows) == set(chats) and set(statuses) <= {"sent", "ambiguous"} and statuses["ambiguous"] == 1
    (unknown,) = [chat for chat, status in rows.items() if status == "ambiguous"]
    assert per_chat[unknown] == 1  # the hung upload was delivered, and never resent
    assert all(n == 1 for n in per_chat.values())
    for chat, status in rows.items():
        assert per_chat.get(chat, 0) == 1 if status == "sent" else per_chat.get(chat, 0) <= 1
    assert by_file_id == len(calls) - 2


@pytest.mark.slow
def test_the_click_redirect_under_hostile_traffic(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "19b", "Tracked links (/r/<token>) under hostile traffic",
        injected="1,000 guessed tokens (right shape, random); an open-redirect attempt (?url=, //evil, a forged "
        "Host); link-preview fetchers (TelegramBot, Twitterbot, facebookexternalhit, Slackbot, curl, no user "
        "agent, HEAD); 300 clicks on one link as fast as one client can",
        checked="every guess 404 and no row; every redirect goes to the stored URL only; previews redirected "
        "but not counted; the flood redirected every time and counted at most 60 rows; no column of `clicks` "
        "can hold an address or a user agent",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env=ENV)
    stack.start_worker("tgms")
    stack.wait_jobs_idle()
    managed_chats(stack, 4)
    api = httpx.Client(base_url=str(stack.webhook_url), headers={"x-api-key": ADMIN_KEY}, timeout=10)
    body = {"variants": [{"text": "See https://example.org/offer"}, {"text": "Look https://example.org/offer"}],
            "track_clicks": True}  # fmt: skip
    broadcast_id = int(api.post("/api/tgms/send", json=body).json()["broadcast_id"])
    finished = "SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN ('pending', 'running')"
    assert stack.wait_for(lambda: stack.scalar(finished, (broadcast_id,)), timeout=60, what="done") == "done"
    token = str(stack.scalar("SELECT token FROM tracked_links ORDER BY token LIMIT 1"))
    target = "https://example.org/offer"

    web = httpx.Client(base_url=str(stack.webhook_url), follow_redirects=False, timeout=10)
    guesses = Counter(web.get(f"/r/{secrets.token_hex(16)}", headers={"user-agent": BROWSER}).status_code
                      for _ in range(1000))  # fmt: skip
    rec.measure("guessed tokens answered 404", guesses[404])
    assert guesses == Counter({404: 1000})
    assert stack.scalar("SELECT count(*) FROM clicks") == 0

    tricks = [
        web.get(f"/r/{token}?url=https://evil.example/", headers={"user-agent": BROWSER}),
        web.get(f"/r/{token}", headers={"user-agent": BROWSER, "host": "evil.example"}),
        web.get(f"/r//evil.example/{token}", headers={"user-agent": BROWSER}),
        web.get(f"/r/{token}/..%2F..%2Fevil", headers={"user-agent": BROWSER}),
    ]
    locations = [r.headers.get("location") for r in tricks]
    assert locations[:2] == [target, target] and [r.status_code for r in tricks[2:]] == [404, 404]
    assert stack.scalar("SELECT count(*) FROM clicks") == 2  # the two real clicks (query and Host ignored)

    fetchers = ["TelegramBot (like TwitterBot)", "Twitterbot/1.0", "facebookexternalhit/1.1",
                "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "curl/8.5.0", ""]  # fmt: skip
    previews = [web.get(f"/r/{token}", headers={"user-agent": ua}) for ua in fetchers]
    previews.append(web.head(f"/r/{token}", headers={"user-agent": BROWSER}))
    assert all(p.status_code == 302 and p.headers["location"] == target for p in previews)
    assert stack.scalar("SELECT count(*) FROM clicks") == 2

    started = time.monotonic()
    flood = Counter(web.get(f"/r/{token}", headers={"user-agent": BROWSER}).status_code for _ in range(300))
    seconds = time.monotonic() - started
    rec.measure("flood: redirects per second", round(300 / seconds))
    counted = rec.measure("flood: rows counted of 300", int(stack.scalar("SELECT count(*) FROM clicks")) - 2)
    assert flood == Counter({302: 300})
    assert counted <= 60 - 2
    columns = {
        c for (c,) in stack.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'clicks'")
    }
    assert columns == {"click_id", "token", "broadcast_id", "variant", "chat_id", "clicked_at"}

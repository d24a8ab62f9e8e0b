"""Event webhooks on real processes: the simulator, the webhook server, the main and TGMS workers, a
local receiver. Signatures are checked here with an implementation of our own (hmac from the
standard library), not TGMS's, so a mistake on TGMS's side cannot hide on both."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import psycopg

from tgms_tui.backend import groups, hooks
from tgms_tui.demo.hook_receiver import HookReceiver, Received

from .harness import Stack

ALLOW = {"TGMS_HOOKS_ALLOW_PRIVATE": "true"}


def verify(secret: str, received: Received, max_age: float = 300.0) -> dict[str, Any]:
    """What a receiver does: parse `t=..,v1=..`, recompute the HMAC over "<t>.<body>", compare in
    constant time, refuse an old timestamp; the parsed event."""
    parts = dict(item.split("=", 1) for item in received.signature.split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), "signature does not match"
    assert abs(time.time() - timestamp) <= max_age, "timestamp too old"
    event: dict[str, Any] = json.loads(received.body)
    return event


def _run(stack: Stack, work: Any) -> Any:
    async def go() -> Any:
        async with await psycopg.AsyncConnection.connect(stack.db_url) as conn:
            result = await work(conn)
            await conn.commit()
            return result

    return asyncio.run(go())


def subscribe(stack: Stack, url: str, events: list[str] | None = None) -> tuple[int, str]:
    chosen = events or list(hooks.DEFAULT_EVENTS)
    result: tuple[int, str] = _run(stack, lambda c: hooks.add(c, url, chosen, "test", allow_private=True))
    return result


def test_a_group_registered_through_the_simulator_arrives_signed(stack: Stack) -> None:
    with HookReceiver() as receiver:
        sub_id, secret = subscribe(stack, receiver.url)
        stack.start_worker("main")
        stack.start_worker("tgms", **ALLOW)
        chat = stack.ctl.create_chat("supergroup", "Hooked group", bots=[], members=2)
        stack.ctl.promote_bot(chat["id"], stack.tgms_bot_id)
        # (fleet.daily, the day's summary, goes out when the worker starts, in its own lane)
        registered = lambda: [r for r in receiver.accepted() if r.event_type == "group.registered"]  # noqa: E731
        stack.wait_for(registered, what="group.registered delivered")
        got = registered()[0]
        event = verify(secret, got)
        daily = [verify(secret, r) for r in receiver.accepted() if r.event_type == "fleet.daily"]
        assert daily and daily[0]["data"]["groups"]["total"] >= 0
        assert event["version"] == 1 and event["type"] == "group.registered"
        assert event["data"]["group_id"] == chat["id"] and event["data"]["title"] == "Hooked group"
        assert event["occurred_at"].endswith("Z") and len(event["id"]) == 36
        delivery = stack.wait_for(
            lambda: (d := _run(stack, lambda c: hooks.delivery(c, int(got.delivery_id)))).status == "delivered" and d,
            what="the delivery recorded",
        )
        assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.last_status_code == 200
        assert delivery.subscription_id == sub_id

        # A tampered body or another secret does not verify.
        forged = Received(got.event_type, got.delivery_id, got.signature, got.body + b" ", got.at, got.status)
        for secret_used, received in (("whsec_wrong", got), (secret, forged)):
            try:
                verify(secret_used, received)
            except AssertionError:
                continue
            raise AssertionError("a wrong signature verified")


def test_retries_keep_each_groups_order_then_replay_sends_the_same_event(stack: Stack) -> None:
    chat = stack.ctl.create_chat("supergroup", "Ordered", bots=[], members=2)
    group_id = stack.add_group(chat)
    with HookReceiver() as receiver:
        receiver.fail_next = 2  # the first two attempts fail: the head is retried, the rest wait behind it
        _sub_id, secret = subscribe(stack, receiver.url, ["group.deactivated", "group.reactivated"])
        for n in range(3):
            _run(stack, lambda c, n=n: groups.deactivate(c, group_id, f"operator step {n}"))
            _run(stack, lambda c: groups.reactivate(c, group_id))
        stack.start_worker("tgms", **ALLOW)
        stack.wait_for(lambda: len(receiver.accepted()) >= 6, timeout=60, what="six events delivered")
        events = [verify(secret, r) for r in receiver.accepted()]
        assert [e["type"] for e in events] == ["group.deactivated", "group.reactivated"] * 3
        assert [e["data"].get("reason") for e in events[::2]] == [f"operator step {n}" for n in range(3)]
        assert len(receiver.received) == 8  # two refused attempts of the head, then each event once
        assert all(r.event_type == "group.deactivated" for r in receiver.received[:3])
        stack.wait_jobs_idle(hooks.JOB_TYPE)
        first = _run(stack, lambda c: hooks.delivery(c, int(receiver.accepted()[0].delivery_id)))
        assert first.attempts == 3 and first.status == "delivered"
        attempts = _run(stack, lambda c: hooks.attempts(c, first.delivery_id))
        assert [a.status_code for a in attempts] == [503, 503, 200]

        # Replay one delivery: the same event (id and body), a new delivery id.
        original = receiver.accepted()[1]
        new_id = _run(stack, lambda c: hooks.replay(c, int(original.delivery_id)))
        stack.wait_for(lambda: len(receiver.accepted()) >= 7, what="the replay delivered")
        again = receiver.accepted()[6]
        assert again.body == original.body and again.delivery_id == str(new_id) != original.delivery_id
        verify(secret, again)

        # Replay a time range: every event of the subscription's types in it, in order.
        since = _run(stack, lambda c: hooks.db_now(c)) - __import__("datetime").timedelta(minutes=10)
        count = _run(stack, lambda c: hooks.replay_range(c, _sub_id, since, since.replace(year=since.year + 1)))
        assert count == 6
        stack.wait_for(lambda: len(receiver.accepted()) >= 13, what="the range replayed")
        assert [r.body for r in receiver.accepted()[7:13]] == [r.body for r in receiver.accepted()[:6]]


def test_a_receiver_failing_for_24_hours_pauses_its_subscription(stack: Stack) -> None:
    chat = stack.ctl.create_chat("supergroup", "Down", bots=[], members=2)
    group_id = stack.add_group(chat)
    with HookReceiver() as receiver:
        receiver.fail_next = 10**6
        sub_id, _secret = subscribe(stack, receiver.url, ["group.deactivated", "group.reactivated"])
        _run(stack, lambda c: groups.deactivate(c, group_id, "one"))
        _run(stack, lambda c: groups.reactivate(c, group_id))
        stack.start_worker("tgms", **ALLOW)
        stack.wait_for(lambda: len(receiver.received) >= 1, what="a first (failed) attempt")
        assert _run(stack, lambda c: hooks.get(c, sub_id)).status == "active"
        # The 24 hours are counted from the head's first attempt, in database time: move it back.
        stack.sql("UPDATE hook_deliveries SET first_attempt_at = first_attempt_at - interval '25 hours',"
                  " next_attempt_at = now() WHERE subscription_id = %s AND attempts > 0", (sub_id,))  # fmt: skip
        stack.wait_for(lambda: _run(stack, lambda c: hooks.get(c, sub_id)).status == "failing", timeout=30,
                       what="the subscription paused as failing")  # fmt: skip
        statuses = stack.sql("SELECT status FROM hook_deliveries WHERE subscription_id = %s ORDER BY 1", (sub_id,))
        assert statuses == [("failed",), ("failed",)]
        tried = len(receiver.received)
        # Paused: new events are not queued for it, and nothing more is sent.
        _run(stack, lambda c: groups.deactivate(c, group_id, "two"))
        time.sleep(1.0)
        assert len(receiver.received) == tried
        # Resumed with the receiver back: the missed events go out with a range replay.
        receiver.fail_next = 0
        assert _run(stack, lambda c: hooks.resume(c, sub_id))
        since = _run(stack, lambda c: hooks.db_now(c)) - __import__("datetime").timedelta(hours=1)
        assert _run(stack, lambda c: hooks.replay_range(c, sub_id, since, since.replace(year=since.year + 1))) == 3
        stack.wait_for(lambda: len(receiver.accepted()) == 3, what="the missed events delivered")


def test_delivery_refuses_a_private_address_when_not_allowed(stack: Stack) -> None:
    """The check at delivery time: a subscription added while private addresses were allowed is refused
    by a worker that does not allow them (as after DNS changed to a private address)."""
    chat = stack.ctl.create_chat("supergroup", "Private", bots=[], members=2)
    group_id = stack.add_group(chat)
    with HookReceiver() as receiver:
        sub_id, _secret = subscribe(stack, receiver.url.replace("127.0.0.1", "localhost"), ["group.deactivated"])
        _run(stack, lambda c: groups.deactivate(c, group_id, "x"))
        stack.start_worker("tgms")
        stack.wait_for(lambda: stack.scalar("SELECT last_error FROM hook_deliveries WHERE subscription_id = %s",
                                            (sub_id,)), what="a refused attempt")  # fmt: skip
        error = stack.scalar("SELECT last_error FROM hook_deliveries WHERE subscription_id = %s", (sub_id,))
        assert error.startswith("refused:") and "loopback" in error and "TGMS_HOOKS_ALLOW_PRIVATE" in error
        assert receiver.received == []

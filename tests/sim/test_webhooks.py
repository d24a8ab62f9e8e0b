"""Webhook side: setWebhook/getWebhookInfo/deleteWebhook, update shapes, delivery and redelivery,
against a real receiver (Starlette under uvicorn)."""

from __future__ import annotations

import threading
import time

import pytest

from telegram_sim.server import SimServer
from tests.sim.conftest import BotApiClient, Receiver
from tests.support import free_port, poll_until

SECRET = "s3cret_Token-42"


@pytest.fixture
def hooked(api: BotApiClient, receiver: Receiver) -> Receiver:
    api.ok("setWebhook", url=receiver.url, secret_token=SECRET)
    return receiver


def test_join_request_delivery_shape_and_headers(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    chat = sim.control.create_chat("supergroup", "Growth")
    request = sim.control.join_request(chat["id"], {"first_name": "Ann", "username": "ann"}, bio="hello",
                                       invite_link="ads")  # fmt: skip
    delivery = hooked.wait_count(1)[0]
    assert delivery.headers["x-telegram-bot-api-secret-token"] == SECRET
    assert delivery.headers["content-type"] == "application/json"
    update = delivery.body
    assert set(update) == {"update_id", "chat_join_request"}
    join = update["chat_join_request"]
    assert join["chat"] == {"id": chat["id"], "title": "Growth", "type": "supergroup"}
    assert join["from"] == {"id": request["user_id"], "is_bot": False, "first_name": "Ann", "username": "ann"}
    assert join["user_chat_id"] == request["user_id"] and isinstance(join["date"], int)
    assert join["bio"] == "hello"
    link = join["invite_link"]
    assert link["name"] == "ads" and link["creates_join_request"] is True and link["invite_link"].startswith(
        "https://t.me/+")  # fmt: skip
    assert {"is_primary", "is_revoked", "creator"} <= set(link)


def test_update_ids_increase_and_order_is_kept(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    chat = sim.control.create_chat("supergroup", "G", members=[1201])["id"]
    for i in range(5):
        sim.control.post_message(chat, 1201, f"message {i}")
    updates = [d.body for d in hooked.wait_count(5)]
    ids = [u["update_id"] for u in updates]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[-1] - ids[0] == 4
    assert [u["message"]["text"] for u in updates] == [f"message {i}" for i in range(5)]
    poll_until(lambda: api.ok("getWebhookInfo")["pending_update_count"] == 0)  # acknowledged after the 200


def test_redelivery_on_non_2xx(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    hooked.script.extend([(500, {}, 0.0), (502, {}, 0.0)])
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    deliveries = hooked.wait_count(3)
    assert len({d.body["update_id"] for d in deliveries}) == 1
    poll_until(lambda: api.ok("getWebhookInfo")["pending_update_count"] == 0)
    info = api.ok("getWebhookInfo")
    assert info["last_error_message"] == "Wrong response from the webhook: 502 Bad Gateway"
    assert isinstance(info["last_error_date"], int)
    stats = sim.control.webhook_deliveries(sim.bot.id)
    assert stats["bots"][0]["delivered"] == 1 and stats["bots"][0]["failed_attempts"] == 2
    assert [a["status"] for a in stats["attempts"]] == [500, 502, 200]


def test_retry_after_header_is_honoured(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    hooked.script.append((503, {"Retry-After": "1"}, 0.0))
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    first, second = hooked.wait_count(2, timeout=10)[:2]
    assert second.at - first.at >= 0.9  # without the header the first retry is immediate
    assert api.ok("getWebhookInfo")["last_error_message"] == "Wrong response from the webhook: 503 Service Unavailable"


def test_first_retry_is_immediate_without_retry_after(sim: SimServer, hooked: Receiver) -> None:
    sim.control.set_config(webhook_retry_first_delay=0.0, webhook_retry_base=5.0)
    hooked.script.append((500, {}, 0.0))
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    first, second = hooked.wait_count(2, timeout=4)[:2]
    assert second.body == first.body


def test_unreachable_webhook_keeps_updates_pending(api: BotApiClient, sim: SimServer, receiver: Receiver) -> None:
    api.ok("setWebhook", url=f"http://127.0.0.1:{free_port()}/hook")
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    sim.control.join_request(chat)
    poll_until(lambda: api.ok("getWebhookInfo").get("last_error_message") == "Connection refused")
    assert api.ok("getWebhookInfo")["pending_update_count"] == 2
    api.ok("setWebhook", url=receiver.url)
    assert [u["chat_join_request"]["chat"]["id"] for u in (d.body for d in receiver.wait_count(2))] == [chat, chat]
    poll_until(lambda: api.ok("getWebhookInfo")["pending_update_count"] == 0)


def test_read_timeout(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    sim.control.set_config(webhook_timeout=0.2)
    hooked.script.append((200, {}, 1.0))
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    deliveries = hooked.wait_count(2, timeout=5)
    assert deliveries[0].body == deliveries[1].body
    assert api.ok("getWebhookInfo")["last_error_message"] == "Read timeout expired"


def test_chat_member_only_when_asked(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    chat = sim.control.create_chat("supergroup", "G")["id"]
    user = sim.control.join_request(chat)["user_id"]
    hooked.wait_count(1)
    api.ok("approveChatJoinRequest", chat_id=chat, user_id=user)
    hooked.wait_count(2)
    time.sleep(0.1)
    assert hooked.kinds() == ["chat_join_request", "message"]  # new_chat_members, no chat_member
    joined = hooked.updates()[1]["message"]
    assert joined["new_chat_members"] == [joined["new_chat_member"]] and joined["from"]["id"] == user

    api.ok("setWebhook", url=hooked.url, secret_token=SECRET, allowed_updates=["chat_member", "chat_join_request"])
    user2 = sim.control.join_request(chat)["user_id"]
    api.ok("approveChatJoinRequest", chat_id=chat, user_id=user2)
    hooked.wait_count(4)
    time.sleep(0.1)
    assert hooked.kinds() == ["chat_join_request", "message", "chat_join_request", "chat_member"]
    member_update = hooked.updates()[3]["chat_member"]
    assert member_update["via_join_request"] is True
    assert member_update["old_chat_member"]["status"] == "left"
    assert member_update["new_chat_member"] == {"user": member_update["from"], "status": "member"}
    assert api.ok("getWebhookInfo")["allowed_updates"] == ["chat_member", "chat_join_request"]


def test_member_leaves(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    api.ok("setWebhook", url=hooked.url, allowed_updates=["chat_member", "message"])
    chat = sim.control.create_chat("supergroup", "G", members=[1301])["id"]
    sim.control.remove_member(chat, 1301)
    hooked.wait_count(2)
    by_kind = {next(k for k in u if k != "update_id"): u for u in hooked.updates()}
    left = by_kind["chat_member"]["chat_member"]
    assert (left["old_chat_member"]["status"], left["new_chat_member"]["status"]) == ("member", "left")
    assert by_kind["message"]["message"]["left_chat_member"]["id"] == 1301


def test_bot_kicked_and_promoted_give_my_chat_member(api: BotApiClient, sim: SimServer, hooked: Receiver) -> None:
    chat = sim.control.create_chat("group", "G", owner={"id": 1401, "first_name": "Olga"})["id"]
    sim.control.demote_bot(chat, sim.bot.id)
    sim.control.kick_bot(chat, sim.bot.id)
    updates = [d.body["my_chat_member"] for d in hooked.wait_count(2)]
    assert [(u["old_chat_member"]["status"], u["new_chat_member"]["status"]) for u in updates] == [
        ("administrator", "member"), ("member", "kicked")]  # fmt: skip
    assert updates[1]["from"]["id"] == 1401 and updates[1]["chat"]["type"] == "group"
    assert updates[1]["new_chat_member"]["user"]["id"] == sim.bot.id


def test_upgrade_service_messages(sim: SimServer, hooked: Receiver) -> None:
    chat = sim.control.create_chat("group", "Old", owner=1501)["id"]
    new_id = sim.control.upgrade(chat)["id"]
    updates = [d.body for d in hooked.wait_count(3)]
    to_msg = next(u["message"] for u in updates if "migrate_to_chat_id" in u.get("message", {}))
    from_msg = next(u["message"] for u in updates if "migrate_from_chat_id" in u.get("message", {}))
    mine = next(u["my_chat_member"] for u in updates if "my_chat_member" in u)
    assert to_msg["chat"]["id"] == chat and to_msg["migrate_to_chat_id"] == new_id and to_msg["from"]["id"] == 1501
    assert from_msg["chat"] == {"id": new_id, "title": "Old", "type": "supergroup"}
    assert from_msg["migrate_from_chat_id"] == chat and from_msg["sender_chat"]["id"] == new_id
    assert mine["chat"]["id"] == new_id and mine["old_chat_member"]["status"] == "left"
    assert mine["new_chat_member"]["status"] == "administrator"


def test_title_edit_and_privacy_mode(sim: SimServer, api: BotApiClient, api2: BotApiClient,
                                     receiver: Receiver) -> None:  # fmt: skip
    api.ok("setWebhook", url=receiver.url + "?bot=1")
    api2.ok("setWebhook", url=receiver.url + "?bot=2")
    # bot 2 is a plain member with privacy mode on: it sees commands and service messages only
    bots = {str(sim.bot.id): {}, str(sim.bots[1].id): {"status": "member"}}
    chat = sim.control.create_chat("supergroup", "G", members=[1601], bots=bots)["id"]
    sim.control.post_message(chat, 1601, "just chatting")
    sim.control.post_message(chat, 1601, "/stats")
    sent = sim.control.post_message(chat, 1601, "typo")
    sim.control.edit_message(chat, sent["message_id"], "fixed")
    sim.control.set_title(chat, "Renamed")
    receiver.wait_count(5 + 2)
    time.sleep(0.1)
    bot1 = [d.body for d in receiver.deliveries if d.query == "bot=1"]
    bot2 = [d.body for d in receiver.deliveries if d.query == "bot=2"]
    assert [u.get("message", {}).get("text") for u in bot2] == ["/stats", None]
    assert bot2[0]["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert bot2[1]["message"]["new_chat_title"] == "Renamed"
    assert [next(k for k in u if k != "update_id") for u in bot1] == [
        "message", "message", "message", "edited_message", "message"]  # fmt: skip
    assert bot1[3]["edited_message"]["text"] == "fixed" and "edit_date" in bot1[3]["edited_message"]
    assert bot1[4]["message"]["chat"]["title"] == "Renamed"
    assert [u["update_id"] for u in bot1] == sorted(u["update_id"] for u in bot1)


def test_per_queue_order_with_parallel_queues(sim: SimServer, hooked: Receiver) -> None:
    hooked.delay = 0.3
    chat = sim.control.create_chat("supergroup", "G", members=[1701])["id"]
    for i in range(3):
        sim.control.post_message(chat, 1701, f"m{i}")
    deliveries = hooked.wait_count(3, timeout=10)
    assert [d.body["message"]["text"] for d in deliveries] == ["m0", "m1", "m2"]
    assert hooked.max_in_flight == 1  # one chat = one queue: strictly one at a time
    for _ in range(4):  # join requests of different users are different queues
        sim.control.join_request(chat)
    hooked.wait_count(7, timeout=10)
    assert hooked.max_in_flight > 1


def test_webhook_answer_can_carry_a_method(sim: SimServer, hooked: Receiver) -> None:
    chat = sim.control.create_chat("supergroup", "G", members=[1801])["id"]
    hooked.reply_body = b'{"method":"sendMessage","chat_id":%d,"text":"welcome"}' % chat
    sim.control.post_message(chat, 1801, "hello bot")
    poll_until(lambda: bool(sim.control.messages(chat, sender="bots")))
    assert sim.control.messages(chat, sender="bots")[0]["text"] == "welcome"
    call = sim.control.calls("sendMessage", chat_id=chat)[0]
    assert call["via"] == "webhook_reply" and call["ok"] is True


def test_set_and_delete_webhook_descriptions(api: BotApiClient, receiver: Receiver) -> None:
    assert api("setWebhook", url=receiver.url).body["description"] == "Webhook was set"
    assert api("setWebhook", url=receiver.url).body["description"] == "Webhook is already set"
    info = api.ok("getWebhookInfo")
    assert info == {"url": receiver.url, "has_custom_certificate": False, "pending_update_count": 0,
                    "ip_address": "127.0.0.1", "max_connections": 40}  # fmt: skip
    assert api("deleteWebhook").body == {"ok": True, "result": True, "description": "Webhook was deleted"}
    assert api("deleteWebhook").body["description"] == "Webhook is already deleted"
    assert api.ok("getWebhookInfo") == {"url": "", "has_custom_certificate": False, "pending_update_count": 0}


def test_certificate_and_ip_address(api: BotApiClient, receiver: Receiver) -> None:
    answer = api("setWebhook", via="multipart", url=receiver.url, ip_address="10.1.2.3",
                 certificate=("cert.pem", b"-----BEGIN CERTIFICATE-----", "application/x-pem-file"))  # fmt: skip
    assert answer.status == 200
    info = api.ok("getWebhookInfo")
    assert info["has_custom_certificate"] is True and info["ip_address"] == "10.1.2.3"
    api.ok("deleteWebhook")
    assert api.ok("getWebhookInfo")["has_custom_certificate"] is False


def test_secret_token_validation(api: BotApiClient, receiver: Receiver) -> None:
    assert api.error("setWebhook", url=receiver.url, secret_token="x" * 257) == (
        400, "Bad Request: secret token is too long", None)  # fmt: skip
    assert api.error("setWebhook", url=receiver.url, secret_token="no spaces!") == (
        400, "Bad Request: secret token contains unallowed characters", None)  # fmt: skip
    assert api.ok("setWebhook", url=receiver.url, secret_token="A" * 256) is True


def test_quick_webhook_changes_are_flood_limited(api: BotApiClient, sim: SimServer, receiver: Receiver) -> None:
    sim.control.set_config(enforce_flood_limits=True)
    api.ok("setWebhook", url=receiver.url)
    assert api.error("setWebhook", url=receiver.url + "?v=2") == (
        429, "Too Many Requests: retry after 1", {"retry_after": 1})  # fmt: skip


def test_get_updates_conflict_and_polling(api: BotApiClient, sim: SimServer, receiver: Receiver) -> None:
    api.ok("setWebhook", url=f"http://127.0.0.1:{free_port()}/hook")
    assert api.error("getUpdates") == (409, "Conflict: can't use getUpdates method while webhook is active; "
                                       "use deleteWebhook to delete the webhook first", None)  # fmt: skip
    api.ok("deleteWebhook")
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    updates = api.ok("getUpdates")
    assert [list(u)[1] for u in updates] == ["chat_join_request"]
    assert api.ok("getUpdates", offset=updates[-1]["update_id"] + 1, timeout=0) == []
    # long polling returns as soon as an update arrives
    timer = threading.Timer(0.3, lambda: sim.state.create_join_request(chat, None))
    timer.start()
    started = time.monotonic()
    polled = api.ok("getUpdates", offset=updates[-1]["update_id"] + 1, timeout=5)
    assert len(polled) == 1 and time.monotonic() - started < 4
    assert polled[0]["update_id"] == updates[-1]["update_id"] + 1


def test_drop_pending_updates(api: BotApiClient, sim: SimServer, receiver: Receiver) -> None:
    chat = sim.control.create_chat("supergroup", "G")["id"]
    sim.control.join_request(chat)
    assert api.ok("getWebhookInfo")["pending_update_count"] == 1
    api.ok("setWebhook", url=receiver.url, drop_pending_updates=True)
    assert api.ok("getWebhookInfo")["pending_update_count"] == 0
    time.sleep(0.2)
    assert receiver.updates() == []

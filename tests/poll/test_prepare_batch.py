"""A polled update becomes exactly the payload the webhook would store for the same update."""

from __future__ import annotations

import json

from tgms_tui.backend.webhook_updates import payload_text
from webhook_server.poll import prepare_batch
from webhook_server.updates import parse_update


def _webhook_payload(bot: str, body: bytes) -> dict[str, object]:
    parsed = parse_update(body, trust_shape=False)
    return json.loads(payload_text(bot, parsed.update_id, parsed.update_type, parsed.json_text))


def test_payloads_match_the_webhooks_and_the_offset_confirms_the_batch() -> None:
    updates = [
        {"update_id": 12, "message": {"message_id": 1, "text": "zwölf 🎉", "chat": {"id": -5}}},
        {"update_id": 10, "chat_join_request": {"chat": {"id": -5}, "from": {"id": 7}}},
        {"update_id": 11, "message": {"text": "nul\x00 and lone \ud800"}},
    ]
    batch = prepare_batch("tgms", updates)
    assert [uid for uid, _ in batch.payloads] == [10, 11, 12]
    assert batch.next_offset == 13 and batch.refused == []
    by_id = {uid: json.loads(text) for uid, text in batch.payloads}
    for update in updates:
        body = json.dumps(update).encode()  # escaped as a webhook body may be
        assert by_id[update["update_id"]] == _webhook_payload("tgms", body)  # type: ignore[index]
    assert by_id[11]["update"]["message"]["text"] == "nul\ufffd and lone \ufffd"
    assert by_id[10]["update_type"] == "chat_join_request"


def test_an_update_that_is_not_storable_is_skipped_but_confirmed() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(80):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    batch = prepare_batch("main", [{"update_id": 5, "message": deep}, {"update_id": 6, "message": {"text": "ok"}}])
    assert [uid for uid, _ in batch.payloads] == [6]
    assert batch.refused == [5] and batch.next_offset == 7

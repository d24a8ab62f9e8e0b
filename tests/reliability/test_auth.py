"""Scenario 5: authentication of the webhook (secret token) and of the admin API (x-api-key).

5a: against the server process, every near miss of the secret and the key is refused, nothing is
stored, and no answer repeats a secret. 5b: the comparison is `hmac.compare_digest` and nothing else:
with the comparison forced to say "equal", a wrong secret gets in; forced to say "different", the right
one does not — so no `==`, length check or prefix test decides, and compare_digest's constant time is
the endpoint's. (5c, no secret in any process output of the session, is in conftest.py.)
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.token_guard import register_secret
from tests.webhook.conftest import asgi_client, make_settings
from tests.workers.harness import ADMIN_KEY, WEBHOOK_SECRET, Stack
from tgms_tui.backend.config import ConfigError
from webhook_server.app import create_app

from .results import ScenarioFactory
from .world import StackFactory

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def near_misses(value: str, other: str) -> dict[str, str | None]:
    """Ways to be almost right: absent, empty, one character short or long, case, the other secret."""
    return {
        "absent": None,
        "empty": "",
        "one char short": value[:-1],
        "one char more": value + "0",
        "last char changed": value[:-1] + ("A" if value[-1] != "A" else "B"),
        "upper case": value.upper(),
        "padded": f"{value[:4]} {value[4:]}",
        "the other secret": other,
    }


def _update(update_id: int) -> bytes:
    return json.dumps({"update_id": update_id, "message": {"message_id": 1, "date": 0,
                                                           "chat": {"id": 1, "type": "private"}}}).encode()  # fmt: skip


@pytest.mark.slow
def test_wrong_or_missing_secrets_are_refused(db_url: str, make_stack: StackFactory, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "5a", "Auth: secret token and admin key",
        injected="to the webhook process: each route with the secret absent, empty, 1 char short/long/changed, "
        "upper-cased, with a space, or the admin key; the admin API with the same near misses of its key "
        "(and the webhook secret)",
        checked="403 / 401 for every near miss, 200 for the right value; nothing stored for a refused request; "
        "no answer contains a secret; rejection counters in /metrics match",
    )  # fmt: skip
    stack: Stack = make_stack(db_url)
    assert stack.webhook_url is not None
    stack.sql("INSERT INTO managed_groups (group_id, title) VALUES (-1001, 'target')")  # a broadcast needs one
    refused = 0
    with httpx.Client(base_url=stack.webhook_url, timeout=10) as client:
        for n, route in enumerate(("/api/webhook", "/api/webhook/tgms")):
            for what, value in near_misses(WEBHOOK_SECRET, ADMIN_KEY).items():
                headers = {} if value is None else {SECRET_HEADER: value}
                response = client.post(route, content=_update(100 + n), headers=headers)
                assert response.status_code == 403, (route, what, response.status_code)
                assert WEBHOOK_SECRET not in response.text and ADMIN_KEY not in response.text
                refused += 1
            ok = client.post(route, content=_update(200 + n), headers={SECRET_HEADER: WEBHOOK_SECRET})
            assert ok.status_code == 200
        body = {"text": "hello", "target": {"group_ids": [-1001]}}
        for what, value in near_misses(ADMIN_KEY, WEBHOOK_SECRET).items():
            headers = {} if value is None else {"x-api-key": value}
            response = client.post("/api/tgms/send", json=body, headers=headers)
            assert response.status_code == 401, (what, response.status_code)
            assert WEBHOOK_SECRET not in response.text and ADMIN_KEY not in response.text
            refused += 1
        assert client.post("/api/tgms/send", json=body, headers={"x-api-key": ADMIN_KEY}).status_code == 200
        metrics = client.get("/metrics").text

    assert sorted(stack.sql("SELECT bot, update_id FROM webhook_updates")) == [("main", 200), ("tgms", 201)]
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'process_telegram_update'") == 2
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 1
    counted = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("tgms_webhook_rejected_total{")}  # fmt: skip
    misses = len(near_misses(WEBHOOK_SECRET, ADMIN_KEY))
    assert counted == {
        'tgms_webhook_rejected_total{route="webhook_main",reason="forbidden"}': misses,
        'tgms_webhook_rejected_total{route="webhook_tgms",reason="forbidden"}': misses,
        'tgms_webhook_rejected_total{route="admin_send",reason="unauthorized"}': misses,
    }
    rec.measure("near misses refused", refused)
    rec.measure("stored from them", 0)


class _ForcedCompare:
    """Stands in for hmac.compare_digest: records the calls about our secrets, answers `verdict`
    (None: the real answer)."""

    def __init__(self, real: Callable[[Any, Any], bool], watched: set[bytes]) -> None:
        self.real = real
        self.watched = watched
        self.calls: list[tuple[bytes, bytes]] = []
        self.verdict: bool | None = None

    def __call__(self, a: Any, b: Any) -> bool:
        if bytes(b) in self.watched or bytes(a) in self.watched:
            self.calls.append((bytes(a), bytes(b)))
            if self.verdict is not None:
                return self.verdict
        return self.real(a, b)


@pytest.mark.slow
async def test_comparisons_are_compare_digest_only(
    db_url: str, monkeypatch: pytest.MonkeyPatch, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "5b", "Auth: constant-time comparison",
        injected="hmac.compare_digest replaced by a recorder that can force its answer, in the app itself "
        "(ASGI, same code as the process)",
        checked="each request makes exactly one compare_digest(given, configured) call; forced 'equal', a wrong "
        "secret/key is accepted (200), forced 'different', the right one is refused (403/401): the endpoint "
        "decides by compare_digest alone. Without TGMS_WEBHOOK_SECRET the app refuses to start; without "
        "ADMIN_API_KEY the admin API refuses everyone",
    )  # fmt: skip
    register_secret(WEBHOOK_SECRET)
    register_secret(ADMIN_KEY)
    secret, key = WEBHOOK_SECRET.encode(), ADMIN_KEY.encode()
    spy = _ForcedCompare(hmac.compare_digest, {secret, key})
    monkeypatch.setattr(hmac, "compare_digest", spy)
    app = create_app(make_settings(db_url, webhook_secret=WEBHOOK_SECRET, admin_api_key=ADMIN_KEY), db_url)
    body = {"text": "hello", "target": {"group_ids": [-1001]}}
    with psycopg.connect(db_url, autocommit=True) as conn:  # a broadcast is accepted only with a target group
        conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1001, 'target')")
    cases = 0
    async with asgi_client(app) as client:
        for verdict, given, expect in ((None, b"wrong", 403), (None, secret, 200), (True, b"wrong-but-forced", 200),
                                       (True, b"", 200), (False, secret, 403)):  # fmt: skip
            spy.calls.clear()
            spy.verdict = verdict
            response = await client.post(
                "/api/webhook", content=_update(300 + cases), headers=[(SECRET_HEADER.encode(), given)]
            )
            assert response.status_code == expect, (verdict, given, response.status_code)
            assert spy.calls == [(given, secret)]
            cases += 1
        for verdict, given_key, expect in ((None, b"wrong", 401), (None, key, 200), (True, b"wrong-but-forced", 200),
                                           (False, key, 401)):  # fmt: skip
            spy.calls.clear()
            spy.verdict = verdict
            response = await client.post("/api/tgms/send", json=body, headers={"x-api-key": given_key.decode()})
            assert response.status_code == expect, (verdict, given_key, response.status_code)
            assert spy.calls == [(given_key, key)]
            cases += 1
    spy.verdict = None

    with pytest.raises(ConfigError, match="TGMS_WEBHOOK_SECRET"):
        create_app(make_settings(db_url, webhook_secret=None), db_url)
    no_key = create_app(make_settings(db_url, admin_api_key=None), db_url)
    async with asgi_client(no_key) as client:
        for offered in ("", "None", ADMIN_KEY):
            response = await client.post("/api/tgms/send", json=body, headers={"x-api-key": offered})
            assert response.status_code == 401
            cases += 1
    rec.measure("forced and real comparisons checked", cases)

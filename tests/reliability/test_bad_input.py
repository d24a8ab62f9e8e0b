"""Scenario 4: bad input at the only door from outside, the webhook server, running as its own process
under uvicorn (`python -m webhook_server`).

- Fuzzed update requests (hypothesis): secret header present/absent/wrong/duplicated/odd bytes, header
  name case, extra headers, both routes, and bodies from tests/webhook/test_fuzz.py (whose in-process
  fuzzing this extends to headers and a real server) mixed with valid updates.
- Fuzzed admin broadcasts: field names, types and values around what validation accepts.
- A 50 MiB body, declared and streamed, and JSON nested 100,000 deep, to both endpoints.

Always: no 5xx and no traceback in the server's output; a request is stored (one webhook_updates row
and one job, or one broadcast and its job) exactly when it was answered 200.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webhook.test_fuzz import garbage, json_values
from tests.workers.harness import ADMIN_KEY, WEBHOOK_SECRET, Stack

from .http_probe import peak_rss_kib, post_streaming
from .results import ScenarioFactory
from .world import StackFactory, managed_chats

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ROUTES = {"/api/webhook": "main", "/api/webhook/tgms": "tgms"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
MIB = 1024 * 1024
HUGE = 50 * MIB
DEEP = 100_000

# Any bytes HTTP allows in a header value (RFC 9110 field-value: visible ASCII and obs-text 0x80-0xFF,
# inner spaces and tabs), which is all an HTTP client will send.
_FIELD_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
header_bytes = st.binary(min_size=0, max_size=40).filter(lambda b: _FIELD_VALUE.fullmatch(b) is not None)
secret_values = st.one_of(
    st.just(WEBHOOK_SECRET.encode()),
    st.just(WEBHOOK_SECRET[:-1].encode()),
    st.just((WEBHOOK_SECRET + "x").encode()),
    st.just(WEBHOOK_SECRET.upper().encode()),
    st.just((WEBHOOK_SECRET[:5] + " " + WEBHOOK_SECRET[5:]).encode()),
    header_bytes,
)
header_names = st.sampled_from(
    [SECRET_HEADER, SECRET_HEADER.lower(), SECRET_HEADER.upper(), "X-Telegram-Bot-Api-Secret"]
)
other_headers = st.lists(
    st.tuples(
        st.sampled_from(["Content-Type", "Accept", "X-Forwarded-For", "Content-Encoding", "Expect", "X-Foo", "Cookie"]),
        header_bytes,
    ),
    max_size=3,
)
valid_updates = st.builds(
    lambda uid, kind, body: json.dumps({"update_id": uid, kind: body}).encode(),
    st.integers(min_value=1, max_value=2**62),
    st.sampled_from(["message", "chat_join_request", "my_chat_member", "poll"]),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
)


def _stored(stack: Stack) -> set[tuple[str, int]]:
    return {(str(b), int(u)) for b, u in stack.sql("SELECT bot, update_id FROM webhook_updates")}


def _server_trouble(stack: Stack) -> list[str]:
    text = stack.procs[0][2].read_text(errors="replace")
    return [line for line in text.splitlines() if "Traceback" in line or "Exception in ASGI" in line]


@pytest.mark.slow
def test_fuzzed_webhook_and_admin_requests(db_url: str, make_stack: StackFactory, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "4a", "Bad input: fuzzed requests",
        injected=f"{FUZZ.max_examples} fuzzed update requests (secret header absent/wrong/near-miss/duplicated/"
        "odd bytes/name case, extra headers, garbage or valid bodies, both routes) and "
        f"{FUZZ.max_examples} fuzzed admin broadcasts (fields, types, values; right or wrong key), hypothesis, "
        "against the webhook server process",
        checked="no 5xx, no traceback in the server output; 200 only with the right secret and a valid update, "
        "403 whenever no secret header is right; admin 401 without the right key; the stored updates are exactly "
        "those answered 200 (one job each), the broadcasts exactly those answered 200 (one job each)",
    )  # fmt: skip
    stack: Stack = make_stack(db_url)
    managed_chats(stack, 2)
    base = stack.webhook_url
    assert base is not None
    accepted: set[tuple[str, int]] = set()
    seen: dict[str, int] = {}

    with httpx.Client(base_url=base, timeout=30) as client:

        @FUZZ
        @given(
            route=st.sampled_from(sorted(ROUTES)),
            secrets=st.one_of(
                st.just([(SECRET_HEADER, WEBHOOK_SECRET.encode())]),
                st.lists(st.tuples(header_names, secret_values), max_size=2),
            ),
            extra=other_headers,
            body=st.one_of(valid_updates, garbage),
        )
        def update_request(route: str, secrets: list[tuple[str, bytes]], extra: list[tuple[str, bytes]],
                           body: bytes) -> None:  # fmt: skip
            headers = [(name.encode(), value) for name, value in [*secrets, *extra]]
            response = client.post(route, content=body, headers=headers)
            code = response.status_code
            seen[f"webhook {code}"] = seen.get(f"webhook {code}", 0) + 1
            right = any(n.lower() == SECRET_HEADER.lower() and v == WEBHOOK_SECRET.encode() for n, v in secrets)
            first = next((v for n, v in secrets if n.lower() == SECRET_HEADER.lower()), None)
            assert code < 500, (code, response.text)
            if not right:
                assert code == 403, (code, secrets)
            elif first == WEBHOOK_SECRET.encode():
                assert code in (200, 400, 413), code
            if code == 200:
                update = json.loads(body)
                assert right and isinstance(update, dict) and type(update.get("update_id")) is int
                accepted.add((ROUTES[route], update["update_id"]))

        update_request()

        keys = st.sampled_from(["text", "photo_url", "caption", "parse_mode", "target", "final", "send_at"])
        plausible: dict[str, Any] = {
            "text": st.text(alphabet="ab *_[]()`\\<>&.!-#\n", max_size=40) | st.text(max_size=20),
            "photo_url": st.sampled_from(["https://example.org/p.jpg", "ftp://x", "https://", "x.invalid", ""]),
            "caption": st.text(alphabet="ab *_[]<>&", max_size=30),
            "parse_mode": st.sampled_from(["Markdown", "MarkdownV2", "HTML", "html", "bogus", "", None]),
            "target": st.sampled_from(
                [
                    "all",
                    {"phase": "growth"},
                    {"phase": "x"},
                    {"group_ids": []},
                    {"group_ids": [-1001, "x"]},
                    {"kind": "all"},
                    [],
                ]
            ),
            "final": st.sampled_from([True, False, None, "yes", 1]),
            "send_at": st.sampled_from(
                ["2099-01-01T00:00:00+00:00", "2020-01-01T00:00:00Z", "2099-01-01T00:00:00", "tomorrow", 0]
            ),
        }
        field_values = st.one_of(*[st.tuples(st.just(k), v) for k, v in plausible.items()],
                                 st.tuples(keys | st.text(max_size=8), json_values))  # fmt: skip
        # Mostly near-valid broadcasts (a text, maybe a parse mode, a target...), then random fields, garbage.
        near_valid = st.fixed_dictionaries(
            {"text": plausible["text"]},
            optional={k: plausible[k] for k in ("parse_mode", "target", "final", "send_at")},
        )
        admin_bodies = st.one_of(
            near_valid.map(lambda d: json.dumps(d).encode()),
            st.lists(field_values, max_size=4).map(lambda items: json.dumps(dict(items)).encode()),
            garbage,
        )

        @FUZZ
        @given(body=admin_bodies, key=st.sampled_from([ADMIN_KEY, ADMIN_KEY, ADMIN_KEY, None, ADMIN_KEY + "x", ""]))
        def admin_request(body: bytes, key: str | None) -> None:
            headers = {"x-api-key": key} if key is not None else {}
            response = client.post(
                "/api/tgms/send", content=body, headers={**headers, "content-type": "application/json"}
            )
            code = response.status_code
            seen[f"admin {code}"] = seen.get(f"admin {code}", 0) + 1
            assert code < 500, (code, response.text)
            if key != ADMIN_KEY:
                assert code == 401
            assert code in (200, 400, 401, 413, 422), code
            if code == 200:
                assert response.json()["message"] == "Broadcast enqueued"

        admin_request()

    assert _stored(stack) == accepted
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type IN ('tgms_process_join_request', "
                        "'process_telegram_update')") == len(accepted)  # fmt: skip
    broadcasts = seen.get("admin 200", 0)
    assert stack.scalar("SELECT count(*) FROM broadcasts") == broadcasts
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_send_to_groups'") == broadcasts
    assert _server_trouble(stack) == []
    assert seen.get("webhook 200") and seen.get("admin 200"), seen  # the accepting paths were exercised too
    for name, count in sorted(seen.items()):
        rec.measure(name, count)


@pytest.mark.slow
def test_huge_and_deep_bodies_are_refused_cheaply(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "4b", "Bad input: huge and deep bodies",
        injected=f"to /api/webhook and /api/tgms/send (right secret/key): a {HUGE // MIB} MiB body declared in "
        f"Content-Length, the same streamed chunked with no length; JSON nested {DEEP:,} deep; 5 times each",
        checked="413 for the huge ones, answered once the 1 MiB limit is passed (declared: before any body is "
        "sent); the server's peak memory grows by far less than the body; 400 for the deep ones, no slower "
        "than refusing a flat body of the same size (median ratio < 20); nothing stored; server healthy after",
    )  # fmt: skip
    stack: Stack = make_stack(db_url)
    base = stack.webhook_url
    assert base is not None
    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", int(url.port or 80)
    pid = stack.procs[0][1].pid
    endpoints = {"/api/webhook": {SECRET_HEADER: WEBHOOK_SECRET}, "/api/tgms/send": {"x-api-key": ADMIN_KEY}}

    rss_before = peak_rss_kib(pid)
    streamed_sent: list[int] = []
    for path, headers in endpoints.items():
        for declared in (True, False):
            for _ in range(5):
                result = post_streaming(host, port, path, headers, HUGE, declare_length=declared)
                assert result.status == 413, (path, declared, result)
                if declared:
                    assert result.sent == 0, result  # answered from the header alone
                else:
                    streamed_sent.append(result.sent)
    rss_growth = peak_rss_kib(pid) - rss_before
    assert rss_growth < 16 * 1024, f"peak RSS grew by {rss_growth} KiB for {HUGE // MIB} MiB bodies"
    assert max(streamed_sent) < HUGE // 2  # cut off, not read to the end

    deep = {"/api/webhook": b'{"update_id":1,"x":' + b"[" * DEEP + b"]" * DEEP + b"}",
            "/api/tgms/send": b'{"text":' + b"[" * DEEP + b"]" * DEEP + b"}"}  # fmt: skip
    # Same size, flat, refused only after a full parse (no integer update_id; text not a string).
    flat = {"/api/webhook": b'{"update_id":"1","x":[' + b"1," * (DEEP - 1) + b"1]}",
            "/api/tgms/send": b'{"text":[' + b"1," * (DEEP - 1) + b"1]}"}  # fmt: skip
    ratios = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for path, headers in endpoints.items():
            timings: dict[str, list[float]] = {"deep": [], "flat": []}
            for _ in range(7):
                for kind, body in (("deep", deep[path]), ("flat", flat[path])):
                    t0 = time.perf_counter()
                    response = client.post(path, content=body, headers={**headers, "content-type": "application/json"})
                    timings[kind].append(time.perf_counter() - t0)
                    assert response.status_code in ((400,) if kind == "deep" else (400, 422)), (path, kind, response)
            ratios[path] = statistics.median(timings["deep"]) / statistics.median(timings["flat"])
            rec.measure(f"{path} deep median (ms)", round(statistics.median(timings["deep"]) * 1000, 1))
        assert client.get("/readyz").status_code == 200
    assert all(r < 20 for r in ratios.values()), ratios
    assert stack.scalar("SELECT count(*) FROM webhook_updates") == 0
    assert stack.scalar("SELECT count(*) FROM jobs") == 0
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 0
    assert _server_trouble(stack) == []
    rec.measure("peak RSS growth (MiB)", round(rss_growth / 1024, 1))
    rec.measure("streamed bytes taken before the 413 (MiB, max)", round(max(streamed_sent) / MIB, 1))
    rec.measure("deep/flat time ratio (max)", round(max(ratios.values()), 2))

"""Our Bot API client against the simulator over real HTTP: every error class, typed results, and
the token kept out of exceptions and logs."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from telegram_sim.server import SimServer
from tests.client.cases import CASES, Case, World
from tests.support import free_port
from workers import telegram_errors as errors
from workers.rate_limit import RateLimiter
from workers.telegram_api import TelegramClient, bot_id_of, redact


def client_for(sim: SimServer, token: str | None = None, read_timeout: float = 10.0) -> TelegramClient:
    return TelegramClient(token or sim.token, api_base=sim.base_url, timeout=httpx.Timeout(read_timeout, connect=5.0))


def assert_no_secret(text: str, token: str) -> None:
    secret = token.split(":", 1)[1]
    assert secret not in text, "the token's secret leaked"


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_case(sim: SimServer, world: World, case: Case) -> None:
    call = case.setup(world)
    token = call.token or sim.token
    async with client_for(sim, call.token, case.read_timeout) as tg:
        try:
            result = await tg.call(call.method, **call.params)
        except errors.TelegramError as exc:
            assert case.ours is not None, f"{case.name}: expected success, got {exc!r}"
            assert type(exc) is case.ours, f"{case.name}: {exc!r}"
            assert exc.method == call.method
            assert exc.description
            for text in (str(exc), repr(exc), *map(str, exc.args)):
                assert_no_secret(text, token)
            assert exc.__cause__ is None and exc.__context__ is None
            if case.check:
                case.check(exc, world)
            return
    assert case.ours is None, f"{case.name}: expected {case.ours.__name__}, got result {result!r}"
    if case.check:
        case.check(result, world)


async def test_typed_methods(sim: SimServer, world: World) -> None:
    chat_id = world.chat("supergroup", members=2)
    async with client_for(sim) as tg:
        me = await tg.get_me()
        assert me["id"] == tg.bot_id == sim.bot.id
        message = await tg.send_message(chat_id, "*hi*", parse_mode="Markdown", disable_web_page_preview=True)
        assert message["chat"]["id"] == chat_id and message["text"] == "hi"
        photo = await tg.send_photo(chat_id, b"\x89PNG fake bytes", caption="up")
        assert photo["caption"] == "up"
        assert await tg.get_chat_member_count(chat_id) == 4
        assert (await tg.get_chat(chat_id))["type"] == "supergroup"
        me_member = await tg.get_chat_member(chat_id, me["id"])
        assert me_member["status"] == "administrator" and me_member.get("can_restrict_members")
        admins = await tg.get_chat_administrators(chat_id)
        assert {a["status"] for a in admins} >= {"creator", "administrator"}
        user = world.member(chat_id)
        assert await tg.ban_chat_member(chat_id, user) is True
        assert await tg.unban_chat_member(chat_id, user, only_if_banned=True) is True
        joiner = world.user()
        world.ctl.join_request(chat_id, joiner)
        assert await tg.decline_chat_join_request(chat_id, joiner) is True
        with pytest.raises(errors.HideRequesterMissing):
            await tg.approve_chat_join_request(chat_id, joiner)
        assert await tg.set_webhook("https://127.0.0.1:9/hook", secret_token="a-webhook-secret") is True
        info = await tg.get_webhook_info()
        assert info["url"] == "https://127.0.0.1:9/hook"
        assert await tg.delete_webhook() is True
        assert await tg.leave_chat(chat_id) is True
    # The webhook secret travelled in the body; the simulator recorded it, our logs did not.
    calls = sim.control.calls("setWebhook")
    assert calls and calls[-1]["ok"]


async def test_real_flood_limit_gives_retry_after(sim: SimServer, world: World) -> None:
    sim.control.set_flood_limits(True)
    chat_id = world.chat()
    async with client_for(sim) as tg:
        with pytest.raises(errors.RetryAfter) as caught:
            for _ in range(30):  # Telegram allows ~1 msg/s per chat with a small burst
                await tg.send_message(chat_id, "spam")
    assert caught.value.retry_after >= 1
    assert caught.value.error_code == 429


async def test_connection_refused_is_not_delivered() -> None:
    port = free_port()
    token = "1234567:" + "AAF" + "z" * 32
    async with TelegramClient(token, api_base=f"http://127.0.0.1:{port}") as tg:
        with pytest.raises(errors.NetworkError) as caught:
            await tg.send_message(-100, "x")
    exc = caught.value
    assert type(exc) is errors.NetworkError
    assert exc.maybe_delivered is False and exc.retryable
    assert_no_secret(str(exc) + repr(exc), token)


async def test_timeout_reaching_the_server_is_not_delivered() -> None:
    # A listening socket that never accepts: the connection attempt itself times out (or is queued
    # and then the read times out, which must count as maybe delivered).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        port = sock.getsockname()[1]
        token = "1234567:" + "AAF" + "w" * 32
        async with TelegramClient(token, api_base=f"http://127.0.0.1:{port}", timeout=0.3) as tg:
            with pytest.raises(errors.TimedOut) as caught:
                await tg.get_me()
    assert_no_secret(str(caught.value) + repr(caught.value), token)


async def test_httpx_request_lines_are_logged_redacted(sim: SimServer, caplog: pytest.LogCaptureFixture) -> None:
    async with client_for(sim) as tg:
        await tg.get_me()
    request_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert request_lines, "httpx should log the request line at INFO (and we must see it at DEBUG)"
    assert any(f"bot{sim.bot.id}:***/getMe" in line for line in request_lines)
    for record in caplog.records:
        assert_no_secret(record.getMessage(), sim.token)


def test_client_repr_and_state_hide_the_token(sim: SimServer) -> None:
    tg = client_for(sim)
    assert repr(tg) == f"TelegramClient(bot_id={sim.bot.id}, api_base={sim.base_url!r})"
    assert_no_secret(repr(vars(tg)), sim.token)
    assert tg.bot_key == str(sim.bot.id)


def test_redact_strips_every_token_form() -> None:
    token = "5555555:" + "AAG" + "k" * 32
    assert redact(f"POST https://api.telegram.org/bot{token}/sendMessage") == (
        "POST https://api.telegram.org/bot5555555:***/sendMessage"
    )
    assert redact(f"token={token} end") == "token=5555555:*** end"
    assert redact("GET http://h/bot42:short-secret/getMe") == "GET http://h/bot42:***/getMe"
    assert redact("no secrets at 12:30 here") == "no secrets at 12:30 here"
    assert bot_id_of(token) == 5555555 and bot_id_of("garbage") is None


@pytest.mark.parametrize(
    ("status", "description", "parameters", "cls"),
    [
        (400, "Bad Request: group is deactivated", None, errors.Forbidden),
        (429, "Too Many Requests: retry after 12", None, errors.RetryAfter),
        (400, "Bad Request: PEER_ID_INVALID", None, errors.ChatNotFound),
        (400, "Bad Request: not enough rights to send text messages to the chat", None, errors.ChatAdminRequired),
        (400, "Bad Request: message text is empty", None, errors.ContentError),
        (403, "Forbidden: user is deactivated", None, errors.Forbidden),
        (409, "Conflict: terminated by other getUpdates request", None, errors.Conflict),
        (
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            {"migrate_to_chat_id": -1001},
            errors.ChatMigrated,
        ),
        (413, "Request Entity Too Large", None, errors.ContentError),
        (400, "Bad Request: something new", None, errors.BadRequest),
    ],
)
def test_classification_of_texts_the_simulator_does_not_produce(
    status: int, description: str, parameters: dict[str, int] | None, cls: type[errors.TelegramError]
) -> None:
    exc = errors.error_from_response(status, description, parameters, method="sendMessage")
    assert type(exc) is cls
    if isinstance(exc, errors.RetryAfter):
        assert exc.retry_after == 12
    if isinstance(exc, errors.Forbidden) and "deactivated" in description:
        expected = (
            errors.ForbiddenKind.CHAT_DELETED if "group" in description else errors.ForbiddenKind.USER_DEACTIVATED
        )
        assert exc.kind is expected


async def test_limiter_pauses_the_bot_on_429(sim: SimServer, world: World, pool: AsyncConnectionPool) -> None:
    chat_id = world.chat()
    sim.control.add_fault("flood", method="sendMessage", chat_id=chat_id, retry_after=30)
    limiter = RateLimiter(pool, rate_per_second=100, burst=10, chat_min_interval=0.01, group_limit=1000)
    async with TelegramClient(sim.token, api_base=sim.base_url, limiter=limiter) as tg:
        with pytest.raises(errors.RetryAfter):
            await tg.send_message(chat_id, "x")
        # Every process now sees the bot paused for Telegram's retry_after ...
        assert 25 < await limiter.paused_for(tg.bot_key) <= 30
        # ... while calls that do not post into a chat are not held back.
        assert (await tg.get_me())["id"] == sim.bot.id


def test_logging_of_our_own_module_never_includes_urls(caplog: pytest.LogCaptureFixture) -> None:
    # Our module logs method names only; the debug lines of a failed call carry the redacted text.
    exc = errors.error_from_response(400, "Bad Request: chat not found", None, method="sendMessage")
    logging.getLogger("workers.telegram_api").debug("telegram %s failed: %s", "sendMessage", exc)
    assert "chat not found" in caplog.text

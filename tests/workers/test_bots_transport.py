"""TGMS_HTTP_TRANSPORT picks the workers' HTTP transport to the Bot API: the lean one by default, httpx's
own as the fallback. Either way the workers' clients reach the Bot API, over plain HTTP and over TLS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.token_guard import register_secret
from tgms_tui.backend.config import load_settings
from tgms_tui.backend.lean_transport import LeanTransport
from workers.bots import Bots, bot_api_http
from workers.telegram_api import TelegramClient, TelegramError

from .tls_sim import Certificates, ServedApp, make_certificates, openssl_available, simulator

TOKEN = "7000000004:AAtest_bots_transport_token_xxxx"


async def test_the_setting_picks_the_transport() -> None:
    for env, expected in (({}, LeanTransport), ({"TGMS_HTTP_TRANSPORT": "httpx"}, httpx.AsyncHTTPTransport)):
        http = bot_api_http(load_settings(env, dotenv=None))
        # The transport a direct (unproxied) request goes through.
        transport = http._transport_for_url(httpx.URL("https://api.telegram.org/"))
        assert type(transport) is expected
        await http.aclose()


def test_a_proxy_in_the_environment_gets_httpx_s_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx ignores HTTPS_PROXY for a client given its own transport: the lean one would bypass it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    api = httpx.URL("https://api.telegram.org/")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    http = bot_api_http(load_settings({}, dotenv=None))
    proxy = http._transport_for_url(api)
    assert isinstance(proxy, httpx.AsyncHTTPTransport) and "Proxy" in type(proxy._pool).__name__
    # Not for a base the proxy does not cover (plain HTTP here), nor one NO_PROXY exempts.
    simulator_base = load_settings({"TELEGRAM_API_BASE": "http://127.0.0.1:8081"}, dotenv=None)
    assert type(bot_api_http(simulator_base)._transport_for_url(httpx.URL("http://127.0.0.1:8081/"))) is LeanTransport
    monkeypatch.setenv("NO_PROXY", "api.telegram.org")
    assert type(bot_api_http(load_settings({}, dotenv=None))._transport_for_url(api)) is LeanTransport


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("choice", ["lean", "httpx"])
async def test_bot_api_calls_work_on_either_transport(
    choice: str, scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs: Certificates | None = None
    if scheme == "https":
        if not openssl_available():
            pytest.skip("the openssl command is needed to make the test certificates")
        certs = make_certificates(tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # trusted the way an operator would
    register_secret(TOKEN)
    state, app = simulator([TOKEN])
    chat = state.create_chat("supergroup", "Transport group", members=3)
    with ServedApp(app, certs=certs) as served:
        env = {"TGMS_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": served.base_url, "TGMS_HTTP_TRANSPORT": choice}
        bots = Bots(load_settings(env, dotenv=None))
        try:
            tg = bots.client("tgms", paced=False)
            assert (await tg.get_me())["id"] == 7000000004
            assert (await tg.send_message(chat.id, f"via {choice}"))["text"] == f"via {choice}"
            assert await tg.get_chat_member_count(chat.id) >= 3
            assert bots._http is not None
            transport = bots._http._transport_for_url(httpx.URL(served.base_url))
            assert isinstance(transport, LeanTransport) == (choice == "lean")
            assert tg._direct is (transport if choice == "lean" else None)  # JSON calls skip the client's layers
        finally:
            await bots.aclose()
        assert served.base_url.startswith(f"{scheme}://") and served.connections == 1  # one kept-alive connection


async def test_a_direct_json_call_is_the_call_the_client_would_make(tmp_path: Path) -> None:
    """The lean transport's direct path (no AsyncClient layers) and the client's own post give Telegram
    the same call: non-ASCII text, nested markup, None parameters left out; a 400 is typed alike."""
    register_secret(TOKEN)
    state, app = simulator([TOKEN])
    chat = state.create_chat("supergroup", "Parity group", members=3)
    markup = {"inline_keyboard": [[{"text": "Открыть ✓", "url": "https://example.org/a?b=1&c=ü"}]]}
    with ServedApp(app, certs=None) as served:
        bots = Bots(load_settings({"TGMS_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": served.base_url}, dotenv=None))
        try:
            direct = bots.client("tgms", paced=False)
            assert direct._direct is not None
            via_client = TelegramClient(TOKEN, api_base=served.base_url, http_client=bots._http)
            sent = []
            for tg in (direct, via_client):
                message = await tg.call("sendMessage", chat_id=chat.id, text="héllo — 👋", reply_markup=markup,
                                        parse_mode=None)  # fmt: skip
                sent.append((message["text"], message["reply_markup"]))
                with pytest.raises(TelegramError) as refused:
                    await tg.call("sendMessage", chat_id=chat.id, text="")
                sent.append((type(refused.value).__name__, refused.value.description))
            assert sent[:2] == sent[2:]
            assert sent[0] == ("héllo — 👋", markup)
        finally:
            await bots.aclose()

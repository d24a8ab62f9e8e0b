"""The lean transport over TLS, as production uses it against api.telegram.org: real Bot API calls to
the simulator served over HTTPS with a certificate from a CA made for the run. Trusting that CA makes
the calls work; not trusting it, or reaching the server under a name the certificate does not carry,
is refused before anything is sent. Connections are reused, and dropped when idle, over TLS too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.token_guard import register_secret
from tgms_tui.backend.lean_transport import LeanTransport
from workers.telegram_api import NetworkError, TelegramClient

from .tls_sim import Certificates, ServedApp, make_certificates, openssl_available, simulator

TOKEN = "7000000002:AAtest_lean_transport_tls_token_x"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if not openssl_available():
        pytest.skip("the openssl command is needed to make the test certificates")
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_sim(certs: Certificates) -> Iterator[tuple[ServedApp, int]]:
    """The simulator over HTTPS (1 s server keep-alive), and a chat its bot administers."""
    register_secret(TOKEN)
    state, app = simulator([TOKEN])
    chat = state.create_chat("supergroup", "TLS group")
    with ServedApp(app, certs=certs, keep_alive=1) as served:
        yield served, chat.id


async def test_bot_api_calls_over_tls_with_the_ca_trusted(
    https_sim: tuple[ServedApp, int], certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, chat_id = https_sim
    # The default context, as in production (no ssl_context): it honours SSL_CERT_FILE like httpx.
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    async with httpx.AsyncClient(transport=LeanTransport()) as http:
        tg = TelegramClient(TOKEN, api_base=served.base_url, http_client=http)
        assert (await tg.get_me())["id"] == 7000000002
        sent = await tg.send_message(chat_id, "over TLS")
        assert sent["chat"]["id"] == chat_id and sent["text"] == "over TLS"
        assert (await tg.get_chat(chat_id))["title"] == "TLS group"
    assert served.base_url.startswith("https://") and served.connections == 1


async def test_an_untrusted_certificate_is_refused(https_sim: tuple[ServedApp, int]) -> None:
    served, _ = https_sim
    # The default trust store (certifi) does not know this run's CA.
    async with httpx.AsyncClient(transport=LeanTransport()) as http:
        with pytest.raises(httpx.ConnectError, match=r"TLS certificate rejected: .*certificate"):
            await http.post(f"{served.base_url}/bot{TOKEN}/getMe")
        tg = TelegramClient(TOKEN, api_base=served.base_url, http_client=http)
        with pytest.raises(NetworkError) as refused:
            await tg.get_me()
        assert not refused.value.maybe_delivered  # refused during the handshake: nothing was sent
    assert served.clients == []  # no request reached the simulator


async def test_the_host_name_is_verified(https_sim: tuple[ServedApp, int], certs: Certificates) -> None:
    served, _ = https_sim
    async with httpx.AsyncClient(transport=LeanTransport(ssl_context=certs.client_context())) as http:
        # The certificate is valid for 127.0.0.1 only: the same server under another name is refused.
        with pytest.raises(httpx.ConnectError, match="TLS certificate rejected: Hostname mismatch"):
            await http.post(f"https://localhost:{served.port}/bot{TOKEN}/getMe")
        assert (await http.post(f"{served.base_url}/bot{TOKEN}/getMe")).json()["ok"] is True
    assert served.connections == 1


async def test_connections_are_reused_over_tls(https_sim: tuple[ServedApp, int], certs: Certificates) -> None:
    served, chat_id = https_sim
    async with httpx.AsyncClient(transport=LeanTransport(ssl_context=certs.client_context())) as http:
        tg = TelegramClient(TOKEN, api_base=served.base_url, http_client=http)
        for _ in range(5):
            await tg.get_chat_member_count(chat_id)
        assert served.connections == 1
        for _ in range(2):  # two waves of 4 concurrent calls: the second reuses the first's connections
            await asyncio.gather(*(tg.get_chat(chat_id) for _ in range(4)))
        assert len(served.clients) == 13 and served.connections <= 1 + 4


async def test_idle_tls_connections_are_dropped_not_reused(
    https_sim: tuple[ServedApp, int], certs: Certificates
) -> None:
    served, _ = https_sim
    # The server closes idle connections after 1 s: the client sees its close and opens a fresh one.
    async with httpx.AsyncClient(transport=LeanTransport(ssl_context=certs.client_context())) as http:
        tg = TelegramClient(TOKEN, api_base=served.base_url, http_client=http)
        await tg.get_me()
        await asyncio.sleep(1.6)
        await tg.get_me()
        assert served.connections == 2
    # The client's own keepalive_expiry drops a connection the server would still have kept.
    transport = LeanTransport(ssl_context=certs.client_context(), keepalive_expiry=0.2)
    async with httpx.AsyncClient(transport=transport) as http:
        tg = TelegramClient(TOKEN, api_base=served.base_url, http_client=http)
        await tg.get_me()
        await tg.get_me()
        assert served.connections == 3  # reused within the expiry
        await asyncio.sleep(0.4)
        await tg.get_me()
        assert served.connections == 4

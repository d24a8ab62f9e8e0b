"""The admin and monitoring allow-lists behind reverse proxies.

With `--forwarded-allow-ips '*'` uvicorn believes every peer's X-Forwarded-For and takes its left-most
address, which the client writes: `X-Forwarded-For: 10.9.9.9, 127.0.0.1` got through
TGMS_ADMIN_ALLOW_NETWORKS=10.0.0.0/8 from 127.0.0.1. Such a start is now refused; with an explicit
proxy list, the address checked is the right-most one that is not a listed proxy.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from webhook_server.app import create_app

from .conftest import ADMIN_KEY, asgi_client, make_settings
from .process import run_webhook_command, webhook_process

BODY = {"text": "hello", "target": {"group_ids": [-1001]}}
MONITORING = ("/healthz", "/readyz", "/metrics")


@pytest.mark.parametrize(
    "args,env",
    [
        (["--forwarded-allow-ips", "*"], {"TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8"}),
        ([], {"FORWARDED_ALLOW_IPS": "*", "TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8"}),
        (["--forwarded-allow-ips", "10.0.0.5,*"], {"TGMS_METRICS_ALLOW_NETWORKS": "10.0.0.0/8"}),
    ],
    ids=["flag", "environment", "metrics list"],
)
def test_a_wildcard_proxy_trust_with_an_allow_list_is_refused_at_start(
    db_url: str, tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    done = run_webhook_command(db_url, tmp_path, *args, **env)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--forwarded-allow-ips" in lines[0] and "list your reverse proxies' addresses" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_proxy_named_by_host_name_is_refused(db_url: str, tmp_path: Path) -> None:
    done = run_webhook_command(db_url, tmp_path, "--forwarded-allow-ips", "proxy.internal")
    assert done.returncode == 2
    assert "--forwarded-allow-ips" in done.stderr and "not an IP address" in done.stderr


async def test_behind_a_listed_proxy_the_right_most_untrusted_address_is_checked(
    db_url: str, tmp_path: Path, pool: AsyncConnectionPool
) -> None:
    env = {"TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8", "TGMS_METRICS_ALLOW_NETWORKS": "10.0.0.0/8"}
    key = {"x-api-key": ADMIN_KEY}
    async with pool.connection() as conn:  # the group BODY targets: a broadcast to no group is refused
        await conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1001, 'G')")
    # This test connects from 127.0.0.1: here it is the listed proxy.
    with (
        webhook_process(db_url, tmp_path, "--forwarded-allow-ips", "127.0.0.1", **env) as server,
        httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client,
    ):
        cases = {
            # The finding's header, now from a listed proxy: 127.0.0.1 vouches that it got the request
            # from 10.9.9.9, and a listed proxy is believed (only a listed one is).
            "the finding's header from a listed proxy": ("10.9.9.9, 127.0.0.1", 200),
            "spoofed left-most, real client right-most": ("10.9.9.9, 192.0.2.7", 403),
            "client inside the list, forwarded by the proxy": ("192.0.2.7, 10.9.9.9", 200),
            "no header: the proxy itself": (None, 403),
        }
        for name, (forwarded, expected) in cases.items():
            headers = dict(key) if forwarded is None else {**key, "X-Forwarded-For": forwarded}
            response = client.post("/api/tgms/send", json=BODY, headers=headers)
            assert response.status_code == expected, (name, response.text)
            for path in MONITORING:
                extra = {} if forwarded is None else {"X-Forwarded-For": forwarded}
                assert client.get(path, headers=extra).status_code == expected, (name, path)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT created_by FROM broadcasts ORDER BY broadcast_id")
        # "10.9.9.9, 127.0.0.1": 127.0.0.1 is the trusted proxy, so 10.9.9.9 is what it was told.
        assert [row[0] for row in await cur.fetchall()] == ["api:10.9.9.9", "api:10.9.9.9"]


def test_headers_from_a_peer_that_is_not_a_listed_proxy_are_ignored(db_url: str, tmp_path: Path) -> None:
    env = {"TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8", "TGMS_METRICS_ALLOW_NETWORKS": "10.0.0.0/8"}
    with (
        webhook_process(db_url, tmp_path, "--forwarded-allow-ips", "192.0.2.1", **env) as server,
        httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client,
    ):
        spoofed = {"X-Forwarded-For": "10.9.9.9", "x-api-key": ADMIN_KEY}
        assert client.post("/api/tgms/send", json=BODY, headers=spoofed).status_code == 403
        for path in MONITORING:
            assert client.get(path, headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 403


async def test_monitoring_endpoints_are_open_unless_listed(db_url: str) -> None:
    for networks, expected in (((), 200), (("10.0.0.0/8",), 403), (("10.0.0.0/8", "127.0.0.0/8"), 200)):
        app = create_app(make_settings(db_url, metrics_allow_networks=networks), db_url)
        async with asgi_client(app) as client:  # the ASGI client connects as 127.0.0.1
            for path in MONITORING:
                response = await client.get(path)
                assert response.status_code == expected, (networks, path)
                if expected == 403:
                    assert response.json() == {"detail": "source address not allowed"}

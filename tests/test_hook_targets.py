"""Where event webhooks may go (SSRF rule) and the signature contract, checked against an
independent HMAC written here."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from pathlib import Path
from typing import Any

import pytest

from tgms_tui.backend import hook_targets, hooks
from tgms_tui.backend.hook_targets import TargetRefused, resolve


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    secret, body = hook_targets.new_secret(), b'{"version":1,"id":"x"}'
    header = hook_targets.sign(secret, 1_700_000_000, body)
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert header.startswith("t=1700000000,v1=")
    expected = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert t == "1700000000" and hmac.compare_digest(v1, expected)
    assert hook_targets.sign(secret, 1_700_000_001, body) != header
    assert hook_targets.sign(hook_targets.new_secret(), 1_700_000_000, body) != header


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8080/",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://100.64.0.1/",
        "http://240.0.0.1/",
        "http://localhost:8000/hook",
    ],
)
async def test_private_loopback_link_local_and_reserved_receivers_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused, match="TGMS_HOOKS_ALLOW_PRIVATE"):
        await resolve(url, allow_private=False)


async def test_a_name_resolving_to_loopback_is_refused_and_allowed_with_the_switch() -> None:
    with pytest.raises(TargetRefused, match=r"localhost resolves to .*loopback"):
        await resolve("http://localhost:1/x", allow_private=False)
    target = await resolve("http://localhost:8123/x?y=1", allow_private=True)
    assert target.address.is_loopback
    assert target.host_header() == "localhost:8123"
    assert target.pinned_url().endswith(":8123/x?y=1") and "localhost" not in target.pinned_url()


async def test_a_public_address_is_accepted_and_pinned() -> None:
    target = await resolve("https://93.184.215.14/hook", allow_private=False)
    assert target.address == ipaddress.ip_address("93.184.215.14")
    assert target.pinned_url() == "https://93.184.215.14:443/hook"
    v6 = await resolve("http://[2606:4700::1]:8080/", allow_private=False)
    assert v6.pinned_url() == "http://[2606:4700::1]:8080/"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.org/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://user:pw@example.org/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://example.org:99999/", "malformed"),
        ("http://exa mple.org/", "spaces"),
        ("", "empty"),
    ],
)
def test_malformed_urls_are_refused_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(TargetRefused, match=problem):
        hook_targets.parse_url(url)


def test_event_lists() -> None:
    assert hooks.parse_events(None) == list(hooks.DEFAULT_EVENTS)
    assert "join_request.decided" not in hooks.parse_events("all")
    assert hooks.parse_events("all,join_request.decided")[-1] == "join_request.decided"
    assert hooks.parse_events("group.registered, group.registered") == ["group.registered"]
    with pytest.raises(hooks.HookError, match=r"unknown event type 'group\.nope'"):
        hooks.parse_events("group.nope")
    with pytest.raises(hooks.HookError, match="empty"):
        hooks.parse_events(" , ")


def test_retry_delays_grow_to_an_hour() -> None:
    delays = [hooks.retry_delay(n) for n in range(1, 40)]
    assert 1.5 <= delays[0] <= 2.5 and 3.0 <= delays[1] <= 5.0
    assert max(delays) <= hooks.RETRY_CAP_SECONDS * 1.2
    assert sum(delays) > hooks.GIVE_UP_SECONDS  # the backoff spans the 24 hours


def test_the_verifier_in_the_docs_accepts_a_signed_body_and_rejects_the_rest() -> None:
    """docs/metrics.md's five lines of Python, run as written, against TGMS's signature."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    block = text.split("### Verifying the signature", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in block.splitlines() if line.strip()]) == 5
    scope: dict[str, Any] = {}
    exec(compile(block, "docs/metrics.md", "exec"), scope)
    verify = scope["verify"]
    secret, body = hook_targets.new_secret(), b'{"version":1}'
    now = int(time.time())
    assert verify(secret, hook_targets.sign(secret, now, body), body)
    assert not verify(secret, hook_targets.sign(secret, now, body), body + b" ")
    assert not verify("whsec_other", hook_targets.sign(secret, now, body), body)
    assert not verify(secret, hook_targets.sign(secret, now - 3600, body), body)  # too old

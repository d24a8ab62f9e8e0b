"""Configuration: env + .env, defaults, one clear error naming the variable, secrets out of repr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tgms_tui.backend import redaction
from tgms_tui.backend.config import ConfigError, default_data_dir, load_settings, secret_weakness
from tgms_tui.backend.redaction import redact, register_secrets

TOKEN = "123456789:AAF-abcdefghijklmnopqrstuvwxyz0123456"


def test_defaults_are_the_seeds() -> None:
    s = load_settings({}, dotenv=None)
    assert (s.rate_per_second, s.group_delay_seconds, s.max_consecutive_failures) == (5.0, 3.0, 3)
    assert s.database_url is None and s.telegram_api_base == "https://api.telegram.org"


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"# comment\nexport BOT_TOKEN={TOKEN}\nTGMS_RATE_PER_SECOND='7.5'\nTGMS_GROUP_DELAY_SECONDS=1 # inline\n"
    )
    s = load_settings({"TGMS_RATE_PER_SECOND": "9"}, dotenv=env_file)
    assert s.bot_token == TOKEN and s.rate_per_second == 9.0 and s.group_delay_seconds == 1.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TGMS_RATE_PER_SECOND": "0"}, "TGMS_RATE_PER_SECOND: must be > 0, got '0'"),
        ({"TGMS_MAX_CONSECUTIVE_FAILURES": "x"}, "TGMS_MAX_CONSECUTIVE_FAILURES: expected a int, got 'x'"),
        ({"DATABASE_URL": "mysql://u:secretpw@h/db"}, "DATABASE_URL: must start with postgresql:// (value not shown)"),
        ({"TGMS_WEBHOOK_SECRET": "has space and is long"}, "TGMS_WEBHOOK_SECRET: must be characters of A-Z"),
        ({"TGMS_WEBHOOK_SECRET": "short_secretpw"}, "TGMS_WEBHOOK_SECRET: must be 16-256 characters, got 14"),
        ({"TGMS_WEBHOOK_SECRET": "secretpw" * 33}, "TGMS_WEBHOOK_SECRET: must be 16-256 characters, got 264"),
        ({"ADMIN_API_KEY": "secretpw"}, "ADMIN_API_KEY: must be 16-256 characters, got 8"),
        ({"ADMIN_API_KEY": "secretpw\x01secretpw"}, "ADMIN_API_KEY: must be printable characters only"),
        ({"TELEGRAM_API_BASE": "api.telegram.org"}, "TELEGRAM_API_BASE: must be an http(s) URL"),
        ({"TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8,nope"}, "TGMS_ADMIN_ALLOW_NETWORKS: 'nope' is not an IP network"),
        ({"TGMS_HTTP_TRANSPORT": "curl"}, "TGMS_HTTP_TRANSPORT: must be lean or httpx, got 'curl'"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, dotenv=None)
    assert str(info.value).startswith(message)
    assert "secretpw" not in str(info.value)


def test_the_http_transport_defaults_to_lean() -> None:
    assert load_settings({}, dotenv=None).http_transport == "lean"
    assert load_settings({"TGMS_HTTP_TRANSPORT": " HTTPX "}, dotenv=None).http_transport == "httpx"


def test_a_malformed_token_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"TGMS_BOT_TOKEN": "123:short-secret-value"}, dotenv=None)
    assert info.value.variable == "TGMS_BOT_TOKEN" and "short-secret-value" not in str(info.value)


def test_secrets_stay_out_of_repr_and_are_redacted() -> None:
    s = load_settings({"BOT_TOKEN": TOKEN, "ADMIN_API_KEY": "admin-key-1234567"}, dotenv=None)
    assert TOKEN not in repr(s) and "admin-key-1234567" not in repr(s)
    register_secrets(s.secrets())
    line = f"GET https://api.telegram.org/bot{TOKEN}/getMe key=admin-key-1234567"
    assert redact(line) == "GET https://api.telegram.org/bot123456789:***/getMe key=***"


def test_secrets_of_16_to_256_telegram_characters_are_accepted() -> None:
    secret, key = "A-z_0" * 4, "k" * 15 + " !"
    s = load_settings({"TGMS_WEBHOOK_SECRET": secret, "ADMIN_API_KEY": key}, dotenv=None)
    assert (s.webhook_secret, s.admin_api_key) == (secret, key)
    assert load_settings({"TGMS_WEBHOOK_SECRET": "a" * 256}, dotenv=None).webhook_secret == "a" * 256


def test_a_secret_of_any_length_is_redacted_without_blanking_words(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, empty in (("_extra_secrets", set()), ("_long_secrets", ()), ("_short_pattern", None)):
        monkeypatch.setattr(redaction, name, empty)  # these secrets stay inside this test
    register_secrets(["q7", "Zx-9", "wq3Zr8Lp"])
    assert redact("key=q7 (q7) q7, Zx-9/ x wq3Zr8Lp ywq3Zr8Lpz") == "key=*** (***) ***, ***/ x *** y***z"
    # Inside a longer word a short secret is another word: logs stay readable.
    assert redact("q77 aq7 q7_ Zx-90") == "q77 aq7 q7_ Zx-90"


def test_weak_secrets_are_named_for_doctor() -> None:
    assert secret_weakness("a" * 15) == "is short (15 characters, at least 16 are needed)"
    assert secret_weakness("ab" * 10) == "uses only 2 different characters"
    assert secret_weakness("Kq3_vT9-pX2mW8zR") is None


def test_root_keeps_its_data_out_of_its_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_data_dir() == Path("/var/lib/tgms")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert default_data_dir().name == "tgms" and default_data_dir() != Path("/var/lib/tgms")


def test_event_webhook_settings() -> None:
    settings = load_settings({}, dotenv=None)
    assert (settings.hooks_allow_private, settings.hooks_timeout, settings.hooks_concurrency) == (False, 5.0, 8)
    chosen = load_settings(
        {"TGMS_HOOKS_ALLOW_PRIVATE": "true", "TGMS_HOOKS_TIMEOUT": "2.5", "TGMS_HOOKS_CONCURRENCY": "3"}, dotenv=None
    )
    assert (chosen.hooks_allow_private, chosen.hooks_timeout, chosen.hooks_concurrency) == (True, 2.5, 3)
    for variable, value in (
        ("TGMS_HOOKS_ALLOW_PRIVATE", "maybe"),
        ("TGMS_HOOKS_TIMEOUT", "61"),
        ("TGMS_HOOKS_TIMEOUT", "0"),
        ("TGMS_HOOKS_CONCURRENCY", "0"),
    ):
        with pytest.raises(ConfigError, match=variable):
            load_settings({variable: value}, dotenv=None)

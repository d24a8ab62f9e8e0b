"""Configuration: env + .env, defaults, one clear error naming the variable, secrets out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgms_tui.backend.config import ConfigError, load_settings
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
        ({"TGMS_WEBHOOK_SECRET": "has space"}, "TGMS_WEBHOOK_SECRET: must be 1-256 characters"),
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
    s = load_settings({"BOT_TOKEN": TOKEN, "ADMIN_API_KEY": "admin-key-12345"}, dotenv=None)
    assert TOKEN not in repr(s) and "admin-key-12345" not in repr(s)
    register_secrets(s.secrets())
    line = f"GET https://api.telegram.org/bot{TOKEN}/getMe key=admin-key-12345"
    assert redact(line) == "GET https://api.telegram.org/bot123456789:***/getMe key=***"

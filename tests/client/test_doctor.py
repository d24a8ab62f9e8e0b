"""`tgms doctor` against the simulator and a real database: every finding it must make, and the
command's exit status and output (no secrets)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from telegram_sim.server import SimServer
from tests.support import simulator_fixtures
from tgms_tui.backend.config import Settings
from tgms_tui.commands.doctor import Finding, diagnose
from workers.telegram_api import TelegramClient

REPO = Path(__file__).resolve().parents[2]
UNKNOWN_TOKEN = "918273645:" + "AAE" + "d" * 32
ADMIN_KEY = "doctor-admin-key-Q8m2xT5vR7wZ"
ALL_RIGHTS = {"can_invite_users": True, "can_restrict_members": True, "can_delete_messages": True}


sim_server, sim = simulator_fixtures(bots=2, seed=3, webhook_retry_base=0.05, webhook_retry_max=0.2)


def settings_for(sim: SimServer, db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "bot_token": sim.bots[0].token,
        "tgms_bot_token": sim.bots[1].token,
        "admin_api_key": ADMIN_KEY,
        "webhook_secret": "hook-secret-value",
        "telegram_api_base": sim.base_url,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def add_groups(db_url: str, rows: list[tuple[int, str, str, bool, int | None]]) -> None:
    with psycopg.connect(db_url) as conn:
        for group_id, title, chat_type, active, inactivity_days in rows:
            conn.execute(
                "INSERT INTO managed_groups (group_id, title, chat_type, is_active, inactivity_days)"
                " VALUES (%s, %s, %s, %s, %s)",
                (group_id, title, chat_type, active, inactivity_days),
            )


def lines_about(findings: list[Finding], subject_part: str) -> list[str]:
    return [f.line() for f in findings if subject_part in f.subject]


async def test_findings_for_every_kind_of_group(sim: SimServer, db_url: str) -> None:
    ctl, tgms = sim.control, sim.bots[1]

    def chat(title: str, chat_type: str = "supergroup", **bot: object) -> int:
        spec = {str(tgms.id): bot} if bot else {str(tgms.id): {"status": "administrator", "rights": ALL_RIGHTS}}
        return int(ctl.create_chat(chat_type, title, bots=spec)["id"])

    good = chat("Good")
    no_invite = chat("NoInvite", status="administrator", rights={"can_restrict_members": True})
    no_ban = chat("NoBan", status="administrator", rights={"can_invite_users": True})
    no_ban_kicking = chat("NoBanKicking", status="administrator", rights={"can_invite_users": True})
    plain_member = chat("Member", status="member")
    kicked = chat("Kicked")
    ctl.kick_bot(kicked, tgms.id)
    deleted = chat("Deleted", "group")
    ctl.delete_chat(deleted)
    upgraded = chat("Upgraded", "group")
    new_id = int(ctl.upgrade(upgraded)["id"])
    inactive = chat("Inactive")
    add_groups(
        db_url,
        [
            (good, "Good", "supergroup", True, None),
            (no_invite, "NoInvite", "supergroup", True, None),
            (no_ban, "NoBan", "supergroup", True, None),
            (no_ban_kicking, "NoBanKicking", "supergroup", True, 30),
            (plain_member, "Member", "supergroup", True, None),
            (kicked, "Kicked", "supergroup", True, None),
            (deleted, "Deleted", "group", True, None),
            (upgraded, "Upgraded", "group", True, None),
            (-1001111111111, "Missing", "supergroup", True, None),
            (inactive, "Inactive", "supergroup", False, None),
        ],
    )
    findings: list[Finding] = []
    await diagnose(settings_for(sim, db_url), emit=findings.append, db_url=db_url)

    def only(title: str) -> str:
        found = lines_about(findings, repr(title))
        assert len(found) == 1, found
        return found[0]

    assert only("Good").startswith("OK") and "can approve join requests, post and ban" in only("Good")
    assert only("NoInvite").startswith("FAIL") and "cannot approve join requests" in only("NoInvite")
    assert only("NoBan").startswith("WARN") and "cannot ban" in only("NoBan")
    assert only("NoBanKicking").startswith("FAIL") and "kicking is on" in only("NoBanKicking")
    assert only("Member").startswith("FAIL") and "not an administrator" in only("Member")
    assert only("Kicked").startswith("FAIL") and "no longer in the group" in only("Kicked")
    assert only("Deleted").startswith("FAIL") and "deleted" in only("Deleted")
    assert only("Upgraded").startswith("WARN") and str(new_id) in only("Upgraded")
    assert only("Missing").startswith("FAIL") and "chat not found" in only("Missing")
    assert lines_about(findings, "'Inactive'") == []
    assert any("9 active group(s) checked, 1 inactive not checked" in f.line() for f in findings)
    # every problem comes with its fix
    assert all("-- fix:" in f.line() for f in findings if f.level != "OK")


async def test_configuration_database_tokens_and_webhooks(sim: SimServer, db_url: str) -> None:
    main, tgms = sim.bots
    # The TGMS bot's webhook points at a closed port: a join request makes delivery fail.
    hook = "http://127.0.0.1:9/api/webhook/tgms"
    sim.control.create_chat("supergroup", "G", bots=[tgms.id])
    async_settings = settings_for(sim, db_url)
    async with TelegramClient(tgms.token, api_base=sim.base_url) as tg:
        assert await tg.set_webhook(hook, secret_token="hook-secret-value")
        chat_id = sim.control.chats()[0]["id"]
        sim.control.join_request(chat_id)
        deadline = time.monotonic() + 10
        while not (await tg.get_webhook_info()).get("last_error_date"):
            assert time.monotonic() < deadline, "the simulator never reported the failed delivery"
            await asyncio.sleep(0.05)

    findings: list[Finding] = []
    await diagnose(async_settings, emit=findings.append, db_url=db_url)
    text = "\n".join(f.line() for f in findings)
    assert f"OK   config: BOT_TOKEN set (bot id {main.id})" in text
    assert f"OK   config: TGMS_BOT_TOKEN set (bot id {tgms.id})" in text
    assert "OK   database: schema up to date" in text
    assert f"OK   main bot: BOT_TOKEN valid: @{main.username}" in text
    assert f"OK   tgms bot: TGMS_BOT_TOKEN valid: @{tgms.username}" in text
    assert "WARN main bot webhook: no webhook set" in text
    assert f"OK   tgms bot webhook: set to {hook}" in text
    assert "WARN tgms bot webhook: last delivery error" in text
    for secret in (main.token, tgms.token, "hook-secret-value", ADMIN_KEY):
        assert secret not in text


async def test_a_webhook_url_with_the_wrong_path_fails_with_the_command_that_fixes_it(
    sim: SimServer, db_url: str
) -> None:
    """Following doctor's advice, or typing the full path to `set-webhook --url`, once gave
    `.../api/webhook/api/webhook`, which Telegram accepts and doctor called OK until deliveries 404."""
    main, tgms = sim.bots
    async with TelegramClient(main.token, api_base=sim.base_url) as tg:
        assert await tg.set_webhook(
            "https://bots.example.org/api/webhook/api/webhook", secret_token="hook-secret-value"
        )
    async with TelegramClient(tgms.token, api_base=sim.base_url) as tg:
        assert await tg.set_webhook("https://bots.example.org/api/webhook", secret_token="hook-secret-value")
    findings: list[Finding] = []
    await diagnose(settings_for(sim, db_url), emit=findings.append, db_url=db_url, check_groups=False)
    main_line, tgms_line = (lines_about(findings, f"{role} bot webhook")[0] for role in ("main", "tgms"))
    assert main_line.startswith("FAIL main bot webhook: set to https://bots.example.org/api/webhook/api/webhook")
    assert "serves this bot at https://bots.example.org/api/webhook," in main_line
    assert "fix: run `tgms set-webhook --url https://bots.example.org`" in main_line
    assert tgms_line.startswith("FAIL tgms bot webhook: set to https://bots.example.org/api/webhook:")
    assert "https://bots.example.org/api/webhook/tgms" in tgms_line

    async with TelegramClient(main.token, api_base=sim.base_url) as tg:
        assert await tg.delete_webhook()
    findings.clear()
    await diagnose(settings_for(sim, db_url), emit=findings.append, db_url=db_url, check_groups=False)
    advice = lines_about(findings, "main bot webhook")[0]
    assert "`tgms set-webhook --url https://<your host>`" in advice and "/api/webhook`" not in advice


async def test_rejected_token_and_missing_settings(sim: SimServer, db_url: str) -> None:
    findings: list[Finding] = []
    settings = settings_for(sim, db_url, tgms_bot_token=UNKNOWN_TOKEN, admin_api_key=None, webhook_secret=None)
    await diagnose(settings, emit=findings.append, db_url=db_url)
    text = "\n".join(f.line() for f in findings)
    assert "FAIL tgms bot: TGMS_BOT_TOKEN (bot id 918273645) is rejected by Telegram (401 Unauthorized)" in text
    assert "WARN config: ADMIN_API_KEY not set" in text
    assert "WARN config: TGMS_WEBHOOK_SECRET not set" in text
    assert UNKNOWN_TOKEN.split(":")[1] not in text


async def test_a_polling_only_set_up_needs_no_webhook_secret(sim: SimServer, db_url: str) -> None:
    # Neither bot has a webhook (long polling with `tgms poll`): nothing asks for a webhook secret.
    settings = settings_for(sim, db_url, webhook_secret=None)
    findings: list[Finding] = []
    await diagnose(settings, emit=findings.append, db_url=db_url, check_groups=False)
    text = "\n".join(f.line() for f in findings)
    assert "OK   config: TGMS_WEBHOOK_SECRET not set: not needed, every bot uses long polling" in text
    assert "WARN config: TGMS_WEBHOOK_SECRET" not in text

    # One bot on a webhook: the secret is needed again.
    async with TelegramClient(sim.bots[1].token, api_base=sim.base_url) as tg:
        assert await tg.set_webhook("https://bots.example.org/api/webhook/tgms")
    findings.clear()
    await diagnose(settings, emit=findings.append, db_url=db_url, check_groups=False)
    text = "\n".join(f.line() for f in findings)
    assert "WARN config: TGMS_WEBHOOK_SECRET not set: forged updates cannot be told from Telegram's" in text
    assert "not needed" not in text


async def test_weak_secrets_are_warned_about_never_shown(sim: SimServer, db_url: str) -> None:
    findings: list[Finding] = []
    settings = settings_for(sim, db_url, admin_api_key="k" * 40, webhook_secret="ab")
    await diagnose(settings, emit=findings.append, db_url=db_url, check_groups=False)
    text = "\n".join(f.line() for f in findings)
    assert "WARN config: ADMIN_API_KEY uses only 1 different characters" in text
    assert "WARN config: TGMS_WEBHOOK_SECRET is short (2 characters, at least 16 are needed)" in text
    assert "k" * 40 not in text and "OK   config: TGMS_WEBHOOK_SECRET" not in text

    findings.clear()
    settings = settings_for(sim, db_url, admin_api_key=ADMIN_KEY, webhook_secret=ADMIN_KEY)
    await diagnose(settings, emit=findings.append, db_url=db_url, check_groups=False)
    assert "WARN config: TGMS_WEBHOOK_SECRET is the same as ADMIN_API_KEY" in "\n".join(f.line() for f in findings)


async def test_unreachable_database_and_unmigrated_schema(sim: SimServer, pg_server_url: str) -> None:
    findings: list[Finding] = []
    dead = "postgresql://tgms:pw@127.0.0.1:9/tgms"
    await diagnose(settings_for(sim, dead), emit=findings.append, db_url=dead, check_groups=False)
    assert any(f.level == "FAIL" and f.subject == "database" and "cannot connect" in f.message for f in findings)
    assert all("pw@" not in f.line() for f in findings)

    findings.clear()
    await diagnose(settings_for(sim, pg_server_url), emit=findings.append, db_url=pg_server_url, check_groups=False)
    assert any(f.level == "FAIL" and "migration(s) not applied" in f.message for f in findings)


def run_doctor(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "doctor", "--timeout", "5"],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # three CLI processes
def test_command_exit_status_and_output(sim: SimServer, db_url: str, tmp_path: Path) -> None:
    main, tgms = sim.bots
    group = int(sim.control.create_chat("supergroup", "Fine", bots=[tgms.id])["id"])
    add_groups(db_url, [(group, "Fine", "supergroup", True, None)])
    env = {
        "DATABASE_URL": db_url,
        "BOT_TOKEN": main.token,
        "TGMS_BOT_TOKEN": tgms.token,
        "TELEGRAM_API_BASE": sim.base_url,
        "ADMIN_API_KEY": ADMIN_KEY,
        "TGMS_WEBHOOK_SECRET": "hook-secret-value",
    }
    healthy = run_doctor(env, tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "OK   group" in healthy.stdout and "0 failures" in healthy.stdout

    sim.control.kick_bot(group, tgms.id)
    broken = run_doctor(env, tmp_path)
    assert broken.returncode == 1
    assert "FAIL group" in broken.stdout and "-- fix:" in broken.stdout
    for output in (healthy.stdout + healthy.stderr, broken.stdout + broken.stderr):
        assert main.token.split(":")[1] not in output and tgms.token.split(":")[1] not in output

    bad_config = run_doctor({**env, "TGMS_BOT_TOKEN": "not-a-token"}, tmp_path)
    assert bad_config.returncode == 1
    assert bad_config.stdout.startswith("FAIL configuration: TGMS_BOT_TOKEN")
    assert "not-a-token" not in bad_config.stdout

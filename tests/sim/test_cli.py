"""`python -m telegram_sim` (what `tgms sim` runs): bots from the environment, ready-made groups."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from telegram_sim import cli
from telegram_sim.scenario import populate
from telegram_sim.state import SimState
from tests.support import free_port, http_ok, poll_until

TOKEN_A = "111222333:AAFakeTokenForTheSimulatorTestsOnly01"
TOKEN_B = "444555666:AAAnotherFakeTokenForSimulatorTests02"


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "telegram_sim", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    lines = [process.stdout.readline()]
    assert "simulator on" in lines[0], lines
    return process, lines


def _wait_ready(base: str) -> None:
    poll_until(lambda: http_ok(f"{base}/_sim/health"), timeout=15, what="the simulator to start")


def test_serves_env_and_flag_tokens_with_ready_groups() -> None:
    port = free_port()
    env = {**os.environ, "BOT_TOKEN": TOKEN_A, "TGMS_BOT_TOKEN": ""}
    hook = f"http://127.0.0.1:{free_port()}/api/webhook"
    process, _ = _start(["--port", str(port), "--groups", "4", "--seed", "3", "--bot-token", TOKEN_B,
                         "--webhook-url", hook, "--secret", "abc_123", "--no-flood-limits"], env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base)
        with httpx.Client(trust_env=False) as http:
            for token in (TOKEN_A, TOKEN_B):
                me = http.get(f"{base}/bot{token}/getMe").json()["result"]
                assert me["id"] == int(token.split(":")[0])
                assert http.get(f"{base}/bot{token}/getWebhookInfo").json()["result"]["url"] == hook
            unknown = http.get(f"{base}/bot999888777:AAUnknownTokenUnknownTokenUnknown12/getMe")
            assert unknown.status_code == 401
            chats = http.get(f"{base}/_sim/chats").json()
            assert len(chats) == 4
            for chat in chats:
                for token in (TOKEN_A, TOKEN_B):
                    member = http.get(
                        f"{base}/bot{token}/getChatMember",
                        params={"chat_id": chat["id"], "user_id": token.split(":")[0]},
                    ).json()
                    rights = member["result"]
                    assert rights["status"] == "administrator"
                    assert rights["can_invite_users"] and rights["can_restrict_members"]
            assert http.get(f"{base}/_sim/config").json()["enforce_flood_limits"] is False
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert TOKEN_A not in output and TOKEN_B not in output  # known tokens are never printed


@pytest.mark.token_guard_allow  # prints the token it generated, on purpose
def test_generates_and_prints_a_token_when_none_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env either
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.delenv("TGMS_BOT_TOKEN", raising=False)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    built = cli.build_state(parser.parse_args(["--groups", "2"]))
    assert not isinstance(built, int)
    state, generated = built
    assert generated and len(state.bots) == 1 and len(state.chats) == 2
    cli.print_banner(state, "http://127.0.0.1:8081", generated)
    out = capsys.readouterr().out
    token = next(line for line in out.splitlines() if "generated bot token" in line).rsplit(" ", 1)[1]
    assert state.bot_by_token(token) is next(iter(state.bots.values()))
    assert "TELEGRAM_API_BASE=http://127.0.0.1:8081" in out


def test_bad_token_and_busy_port_fail_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--bot-token", "not-a-token"])) == 2
    assert capsys.readouterr().err.strip() == (
        "tgms sim: --bot-token #1 is not a well-formed bot token (<id>:<secret>)")  # fmt: skip
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.groups, defaults.no_flood_limits) == ("127.0.0.1", 8081, 5, False)


def test_tokens_may_come_from_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(f"BOT_TOKEN={TOKEN_A}\nTGMS_BOT_TOKEN='{TOKEN_B}'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.setenv("TGMS_BOT_TOKEN", TOKEN_A)  # the real environment wins over .env
    env = cli._environment()
    assert (env["BOT_TOKEN"], env["TGMS_BOT_TOKEN"]) == (TOKEN_A, TOKEN_A)


def test_ready_made_groups_are_deterministic() -> None:
    def world(seed: int) -> list[tuple[int, str, str, int]]:
        state = SimState(seed=seed)
        state.add_bot(TOKEN_A)
        return [(c.id, c.type, c.title or "", c.member_count) for c in populate(state, 8, seed)]

    assert world(11) == world(11)
    assert world(11) != world(12)
    types = {kind for _, kind, _, _ in world(11)}
    sizes = {count for *_, count in world(11)}
    assert types == {"group", "supergroup"} and len(sizes) > 2

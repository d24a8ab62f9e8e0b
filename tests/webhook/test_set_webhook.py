"""`tgms set-webhook` against the simulator: both bots configured with the secret and allowed updates."""

from __future__ import annotations

import argparse

from telegram_sim.config import SimConfig
from telegram_sim.server import SimServer
from tgms_tui.backend.config import Settings
from tgms_tui.commands.set_webhook import (
    ALLOWED_UPDATES,
    WEBHOOK_PATHS,
    add_arguments,
    configure_webhooks,
    normalise_base_url,
    webhook_url,
    webhook_url_problem,
)

from .conftest import SECRET


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


async def test_set_info_and_delete_for_both_bots() -> None:
    config = SimConfig(enforce_flood_limits=False, set_webhook_min_interval=0.0)
    async with SimServer(config=config, bots=2) as sim:
        main, tgms = sim.bots
        settings = Settings(bot_token=main.token, tgms_bot_token=tgms.token, webhook_secret=SECRET,
                            telegram_api_base=sim.base_url)  # fmt: skip
        lines, failures = await configure_webhooks(settings, parse("--url", "https://bots.example.org/tg/"))
        assert failures == []
        assert lines[0].startswith(f"main bot (id {main.id}): webhook set to https://bots.example.org/tg/api/webhook ")
        for bot, path in ((main, "/api/webhook"), (tgms, "/api/webhook/tgms")):
            hook = sim.state.bots[bot.id].webhook
            assert hook.url == "https://bots.example.org/tg" + path
            assert hook.secret_token == SECRET
            assert set(sim.state.bots[bot.id].allowed_updates or []) == set(ALLOWED_UPDATES)
        assert "chat_member" in ALLOWED_UPDATES and "chat_join_request" in ALLOWED_UPDATES

        lines, failures = await configure_webhooks(settings, parse("--info"))
        assert failures == []
        text = "\n".join(lines)
        assert "url https://bots.example.org/tg/api/webhook/tgms" in text
        assert "last error: none" in text
        assert main.token not in text and tgms.token not in text and SECRET not in text

        lines, failures = await configure_webhooks(settings, parse("--delete", "--bot", "tgms"))
        assert failures == [] and len(lines) == 1
        assert sim.state.bots[tgms.id].webhook.url in ("", None)
        assert sim.state.bots[main.id].webhook.url


async def test_failures_are_reported_per_bot_without_the_token() -> None:
    async with SimServer(config=SimConfig(enforce_flood_limits=False), bots=1) as sim:
        bogus = "123456:" + "A" * 35  # well formed, unknown to the simulator: 401
        settings = Settings(bot_token=sim.bot.token, tgms_bot_token=bogus, webhook_secret=SECRET,
                            telegram_api_base=sim.base_url)  # fmt: skip
        lines, failures = await configure_webhooks(settings, parse("--info"))
        assert len(lines) >= 1 and len(failures) == 1
        assert failures[0].startswith("tgms bot (id 123456): Unauthorized")
        assert bogus not in failures[0]


async def test_a_url_already_ending_in_the_bot_path_is_cut_back_to_the_base_with_a_warning() -> None:
    config = SimConfig(enforce_flood_limits=False, set_webhook_min_interval=0.0)
    async with SimServer(config=config, bots=2) as sim:
        main, tgms = sim.bots
        settings = Settings(bot_token=main.token, tgms_bot_token=tgms.token, webhook_secret=SECRET,
                            telegram_api_base=sim.base_url)  # fmt: skip
        lines, failures = await configure_webhooks(settings, parse("--url", "https://bots.example.org/api/webhook"))
        assert failures == []
        assert lines[0].startswith("warning: --url is the server's base URL")
        assert "using https://bots.example.org instead" in lines[0]
        assert sim.state.bots[main.id].webhook.url == "https://bots.example.org/api/webhook"
        assert sim.state.bots[tgms.id].webhook.url == "https://bots.example.org/api/webhook/tgms"


def test_doctor_accepts_exactly_what_set_webhook_sets() -> None:
    typed = [
        "https://h.example",
        "https://h.example/",
        "https://h.example/tg",
        "https://h.example:8443/tg/",
        "https://h.example/api/webhook",
        "https://h.example/api/webhook/tgms",
        "https://h.example/tg/api/webhook/api/webhook",
        "http://127.0.0.1:8000",
    ]
    for url in typed:
        base, _warning = normalise_base_url(url)
        assert "/api/webhook" not in base, url
        for bot in WEBHOOK_PATHS:
            assert webhook_url_problem(webhook_url(base, bot), bot) is None, (url, bot)
    wrong = {
        ("https://h.example/api/webhook/api/webhook", "main"): "https://h.example",
        ("https://h.example/api/webhook/tgms", "main"): "https://h.example",
        ("https://h.example/tg/api/webhook", "tgms"): "https://h.example/tg",
        ("https://h.example/api/webhook/", "main"): "https://h.example",
        ("https://h.example/", "tgms"): "https://h.example",
    }
    for (url, bot), base in wrong.items():
        problem = webhook_url_problem(url, bot)
        assert problem is not None and problem[1] == base, (url, bot, problem)

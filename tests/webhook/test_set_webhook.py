"""`tgms set-webhook` against the simulator: both bots configured with the secret and allowed updates."""

from __future__ import annotations

import argparse

from telegram_sim.config import SimConfig
from telegram_sim.server import SimServer
from tgms_tui.backend.config import Settings
from tgms_tui.commands.set_webhook import ALLOWED_UPDATES, add_arguments, configure_webhooks

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

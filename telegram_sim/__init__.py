"""Telegram Bot API simulator: the api.telegram.org our client and third-party libraries are tested
against (Bot API over HTTP, webhook delivery, a `/_sim/` control API). Imports nothing from workers.

Entry points: `telegram_sim.app.create_app`, `telegram_sim.server.SimServer`,
`telegram_sim.control.SimControl`, `tgms sim` / `python -m telegram_sim`.
"""

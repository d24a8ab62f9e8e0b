"""Ready-made worlds for `tgms sim` and the demo: N groups, deterministic from a seed.

Sizes vary (a handful to a few hundred members) and about a third are basic groups, so broadcasts,
member counts and migrations all meet both chat types; every bot is an administrator allowed to
invite users, post and ban.
"""

from __future__ import annotations

import random

from telegram_sim.model import Chat
from telegram_sim.state import SimState

_ADJECTIVES = ("Sunny", "Quiet", "Busy", "Northern", "Crypto", "Garden", "Retro", "Night", "Travel", "Local")
_NOUNS = ("Traders", "Readers", "Hikers", "Makers", "Gamers", "Cooks", "Runners", "Parents", "Coders", "Artists")
_SIZES = (3, 5, 8, 12, 20, 35, 60, 120, 250)


def populate(state: SimState, groups: int, seed: int = 0) -> list[Chat]:
    rng = random.Random(seed)
    chats = []
    for index in range(groups):
        chat_type = "group" if rng.random() < 0.35 else "supergroup"
        title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {index + 1}"
        size = rng.choice(_SIZES)
        chats.append(state.create_chat(chat_type, title, members=size))
    return chats

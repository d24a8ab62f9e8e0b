"""What a Bot API method handler receives and how handlers are registered and found.

Handlers register by name with `@method("sendMessage", *legacy_aliases)`; lookups are
case-insensitive, as on the real server, which lowercases method names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from telegram_sim.model import Bot
from telegram_sim.params import Params
from telegram_sim.state import SimState


class UpdateWaiter(Protocol):
    async def wait_for_updates(self, bot_id: int, timeout: float) -> None: ...


@dataclass
class CallContext:
    state: SimState
    bot: Bot
    params: Params
    waiter: UpdateWaiter | None = None


@dataclass
class Described:
    """A successful result the server annotates with a description ("Webhook was set")."""

    value: Any
    description: str


Handler = Callable[[CallContext], Any]
AsyncHandler = Callable[[CallContext], Awaitable[Any]]

# lowercased method name -> (canonical name, handler)
METHODS: dict[str, tuple[str, Handler]] = {}
ASYNC_METHODS: dict[str, tuple[str, AsyncHandler]] = {}


def method(name: str, *aliases: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for alias in (name, *aliases):
            METHODS[alias.lower()] = (name, handler)
        return handler

    return register


def lookup(name: str) -> str | None:
    """The canonical name of a method (case-insensitive, legacy aliases), None if unknown."""
    key = name.lower()
    if key in METHODS:
        return METHODS[key][0]
    if key in ASYNC_METHODS:
        return ASYNC_METHODS[key][0]
    return None


def run_sync(ctx: CallContext, handler: Handler) -> Any:
    with ctx.state.lock:
        return handler(ctx)

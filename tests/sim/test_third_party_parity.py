"""Done-when proof: python-telegram-bot (a widely used third-party client) and our client, pointed at
the simulator, get the same outcome for every case in tests/client/cases.py.

Each case is set up twice, in two fresh but identical worlds (a call may change the world: an
approval makes a member), once per library. Same outcome means: both succeed with results of the same
shape that pass the case's check, or both fail with corresponding exceptions (ours -> PTB's class, as
PTB itself classifies by HTTP status and `parameters`) carrying the same description / new chat id /
retry_after.
"""

from __future__ import annotations

import datetime as dtm
import enum
import logging
import re
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import telegram
import telegram.error as ptb
from telegram.request import HTTPXRequest

from telegram_sim.server import SimServer
from tests.client.cases import CASES, Call, Case, World
from workers import telegram_errors as ours
from workers.telegram_api import TelegramClient, _redaction_filter

# Our classes -> the PTB class the same answer must raise (most specific first).
# PTB 22 warns about its own int-valued RetryAfter.retry_after when it builds the exception.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

PTB_EQUIVALENT: list[tuple[type[ours.TelegramError], type[ptb.TelegramError]]] = [
    (ours.ChatMigrated, ptb.ChatMigrated),
    (ours.RetryAfter, ptb.RetryAfter),
    (ours.BadRequest, ptb.BadRequest),
    (ours.Forbidden, ptb.Forbidden),
    (ours.Unauthorized, ptb.InvalidToken),
    (ours.MethodNotFound, ptb.EndPointNotFound),
    (ours.Conflict, ptb.Conflict),
    (ours.TimedOut, ptb.TimedOut),
    (ours.ServerError, ptb.NetworkError),
    (ours.NetworkError, ptb.NetworkError),
]
VOLATILE = re.compile(r"^(-?\d+|[A-Za-z0-9_-]{12,})$")


@pytest.fixture(autouse=True)
def _redact_ptb_logs() -> Iterator[None]:
    """PTB logs each request URL (with the token) at DEBUG on its own loggers; give them the same
    redaction our client installs on httpx's. The token guard proves it is needed."""
    names = [n for n in logging.root.manager.loggerDict if n == "telegram" or n.startswith("telegram.")]
    loggers = [logging.getLogger(n) for n in names]
    for logger in loggers:
        logger.addFilter(_redaction_filter)
    yield
    for logger in loggers:
        logger.removeFilter(_redaction_filter)


def ptb_equivalent(exc: ours.TelegramError) -> type[ptb.TelegramError]:
    for our_cls, ptb_cls in PTB_EQUIVALENT:
        if isinstance(exc, our_cls):
            return ptb_cls
    raise AssertionError(f"no PTB equivalent for {exc!r}")


def shape(value: Any) -> Any:
    """The structure of a result with the world-specific values (ids, dates, file ids) left out."""
    if isinstance(value, enum.Enum):  # PTB turns e.g. chat types into str enums
        value = value.value
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) and VOLATILE.match(value):
        return "id"
    return value


async def run_ours(sim: SimServer, call: Call, case: Case) -> Any:
    timeout = httpx.Timeout(case.read_timeout, connect=5.0)
    async with TelegramClient(call.token or sim.token, api_base=sim.base_url, timeout=timeout) as tg:
        try:
            return await tg.call(call.method, **call.params)
        except ours.TelegramError as exc:
            return exc


async def run_ptb(sim: SimServer, call: Call, case: Case) -> Any:
    request = HTTPXRequest(connect_timeout=5.0, read_timeout=case.read_timeout, write_timeout=5.0, pool_timeout=5.0)
    bot = telegram.Bot(call.token or sim.token, base_url=f"{sim.base_url}/bot", request=request)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", call.method).lower()
    try:
        if call.token is None:
            await bot.initialize()  # as PTB applications do (getMe); needed for EndPointNotFound
        if hasattr(bot, snake):
            result = await getattr(bot, snake)(**call.params)
        else:  # a method the library does not know: its generic entry point
            result = await bot.do_api_request(call.method, api_kwargs=call.params)
    except ptb.TelegramError as exc:
        return exc
    finally:
        await request.shutdown()
    if isinstance(result, telegram.TelegramObject):
        return result.to_dict()
    if isinstance(result, tuple | list):
        return [r.to_dict() if isinstance(r, telegram.TelegramObject) else r for r in result]
    return result


def contained(ours_: Any, theirs_: Any) -> bool:
    """Everything our raw result holds is in PTB's parsed result, with the same shape. (PTB's
    to_dict() adds defaults of its own, e.g. `delete_chat_photo: False`.)"""
    if isinstance(ours_, dict):
        return isinstance(theirs_, dict) and all(k in theirs_ and contained(v, theirs_[k]) for k, v in ours_.items())
    if isinstance(ours_, list):
        return isinstance(theirs_, list) and len(ours_) == len(theirs_) and all(map(contained, ours_, theirs_))
    return bool(ours_ == theirs_)


def ptb_message(description: str) -> str:
    """What PTB makes of a description (telegram/error.py): known prefixes stripped, then the rest
    capitalized; "Forbidden: ..." keeps its prefix."""
    msg = description.removeprefix("Error: ").removeprefix("[Error]: ").removeprefix("Bad Request: ")
    return msg.capitalize() if msg != description else msg


def seconds(value: int | float | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_same_outcome_as_python_telegram_bot(sim: SimServer, case: Case) -> None:
    world_ours, world_ptb = World(sim.control, sim.bot.id), World(sim.control, sim.bot.id)
    mine = await run_ours(sim, case.setup(world_ours), case)
    theirs = await run_ptb(sim, case.setup(world_ptb), case)

    if case.ours is None:
        assert not isinstance(mine, Exception), f"ours failed: {mine!r}"
        assert not isinstance(theirs, Exception), f"PTB failed: {theirs!r}"
        assert contained(shape(mine), shape(theirs)), (shape(mine), shape(theirs))
        if case.check:
            case.check(mine, world_ours)
            case.check(theirs, world_ptb)
        return

    assert isinstance(mine, ours.TelegramError), f"ours: expected {case.ours.__name__}, got {mine!r}"
    assert isinstance(theirs, ptb.TelegramError), f"PTB: expected {case.ptb}, got {theirs!r}"
    assert type(mine) is case.ours and type(theirs) is case.ptb, (mine, theirs)
    assert ptb_equivalent(mine) is type(theirs)

    if isinstance(theirs, ptb.ChatMigrated):
        assert isinstance(mine, ours.ChatMigrated)
        assert mine.new_chat_id == world_ours.expect["new_chat_id"]
        assert theirs.new_chat_id == world_ptb.expect["new_chat_id"]
    elif isinstance(theirs, ptb.RetryAfter):
        assert isinstance(mine, ours.RetryAfter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PTB 22 deprecates the int form of retry_after
            assert seconds(theirs.retry_after) == mine.retry_after
    elif type(theirs) in (ptb.BadRequest, ptb.Forbidden, ptb.InvalidToken) or (
        type(theirs) is ptb.NetworkError and mine.error_code == 500
    ):
        assert theirs.message == ptb_message(mine.description)

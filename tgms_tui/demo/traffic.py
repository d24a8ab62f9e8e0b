"""Simulated fleet traffic for `tgms demo`, driven through the simulator's control API.

Everything happens the way it would on Telegram: groups are created with both bots added as
administrators (so TGMS learns about them from `my_chat_member` updates, as in production), people
ask to join, write and leave, and broadcasts are posted to the admin API (`POST /api/tgms/send`), or,
when the demo runs without a webhook server (`--intake poll`), created as `tgms broadcast` does.
Alongside, a short script plays the faults real fleets see:

- the bot is kicked from one group while TGMS misses the `my_chat_member` update (the simulator
  answers every call in that chat `403 Forbidden: bot was kicked ...`), so the next broadcasts fail
  there until the group is deactivated after TGMS_MAX_CONSECUTIVE_FAILURES in a row;
- one basic group is upgraded to a supergroup (its id changes);
- a short 429 storm (every send and approval answered `Too Many Requests`) during a broadcast;
- an owner removes the bot from another group (deactivated at once, from the update);
- a reply to a user's /start gets 502 Bad Gateway until its job has used its retries: a failed job
  to retry from the TUI.

The plan is deterministic for a seed: the same events, groups and people in the same order (timing
depends on the machine, the sequence does not).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from telegram_sim.control import SimControl, SimControlError
from tgms_tui.backend import broadcasts
from tgms_tui.backend.message_validation import ValidationError, validate_broadcast

log = logging.getLogger(__name__)

_ADJECTIVES = (
    "Sunny",
    "Quiet",
    "Busy",
    "Northern",
    "Crypto",
    "Garden",
    "Retro",
    "Night",
    "Travel",
    "Local",
    "Urban",
    "Coastal",
)
_NOUNS = (
    "Traders",
    "Readers",
    "Hikers",
    "Makers",
    "Gamers",
    "Cooks",
    "Runners",
    "Parents",
    "Coders",
    "Artists",
    "Cyclists",
    "Birders",
)
_SIZES = (4, 6, 9, 14, 22, 35, 60, 90, 140, 220)
_CHATTER = (
    "good morning everyone",
    "anyone around?",
    "thanks for the link!",
    "see you at the meetup",
    "+1",
    "what time is it starting?",
    "welcome to the new folks",
    "just joined, hi all",
    "does anyone have the schedule?",
    "great discussion today",
    "lol",
    "sharing this with friends",
)


@dataclass
class DemoGroup:
    chat_id: int
    title: str
    type: str
    owner_id: int
    members: list[int]  # people present (not bots, not the owner) who may write or leave
    active: bool = True  # False once the demo's script took the bot out (no more join requests)


@dataclass
class DemoWorld:
    groups: list[DemoGroup]
    bot_ids: dict[str, int]  # role -> bot id
    fault_kicked: DemoGroup  # bot kicked, update missed: fails until deactivated
    upgraded: DemoGroup  # basic group upgraded to a supergroup
    owner_kicked: DemoGroup  # bot removed by the owner: deactivated from the update

    def group_ids(self) -> list[int]:
        return [g.chat_id for g in self.groups]


@dataclass(frozen=True)
class GroupSpec:
    type: str
    title: str
    size: int


def plan_groups(count: int, seed: int) -> list[GroupSpec]:
    """Varied sizes, about a third basic groups (at least two), the rest supergroups."""
    rng = random.Random(f"groups-{seed}")
    names = [f"{a} {n}" for a in _ADJECTIVES for n in _NOUNS]
    rng.shuffle(names)
    specs = []
    for index in range(count):
        chat_type = "group" if rng.random() < 0.35 else "supergroup"
        specs.append(GroupSpec(chat_type, f"{names[index % len(names)]} {index + 1}", rng.choice(_SIZES)))
    basic = [i for i, s in enumerate(specs) if s.type == "group"]
    for index in range(max(0, min(2, count) - len(basic))):  # the script needs a basic group to upgrade
        spec = specs[-1 - index]
        specs[-1 - index] = GroupSpec("group", spec.title, spec.size)
    return specs


def build_world(ctl: SimControl, specs: list[GroupSpec], bot_ids: dict[str, int], seed: int) -> DemoWorld:
    """Create the groups with both bots as administrators, announced: each bot gets the
    `my_chat_member` update that makes TGMS register the group (the production path)."""
    groups: list[DemoGroup] = []
    for spec in specs:
        detail = ctl.create_chat(spec.type, spec.title, members=spec.size, announce=True)
        owner = 0
        people = []
        for member in detail.get("members", []):
            user = member.get("user", {})
            if user.get("is_bot"):
                continue
            if member.get("status") == "creator":
                owner = int(user["id"])
            elif member.get("status") == "member":
                people.append(int(user["id"]))
        groups.append(DemoGroup(int(detail["id"]), str(detail["title"]), spec.type, owner, people))
    if len(groups) < 4:
        raise ValueError("the demo needs at least 4 groups")
    rng = random.Random(f"roles-{seed}")
    basic = [g for g in groups if g.type == "group"]
    upgraded = rng.choice(basic)
    rest = [g for g in groups if g is not upgraded]
    supergroups = [g for g in rest if g.type == "supergroup"] or rest
    fault_kicked = rng.choice(supergroups)
    owner_kicked = rng.choice([g for g in rest if g is not fault_kicked])
    return DemoWorld(groups, bot_ids, fault_kicked, upgraded, owner_kicked)


@dataclass
class TrafficStats:
    join_requests: int = 0
    bursts: int = 0
    messages: int = 0
    leaves: int = 0
    broadcasts: list[int] = field(default_factory=list)  # broadcast ids the admin API returned
    broadcast_errors: int = 0
    faults: list[str] = field(default_factory=list)
    control_errors: int = 0
    upgraded_from: int | None = None
    upgraded_to: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "join_requests": self.join_requests,
            "bursts": self.bursts,
            "messages": self.messages,
            "leaves": self.leaves,
            "broadcasts": list(self.broadcasts),
            "broadcast_errors": self.broadcast_errors,
            "faults": list(self.faults),
            "control_errors": self.control_errors,
            "upgraded_from": self.upgraded_from,
            "upgraded_to": self.upgraded_to,
        }


EventCallback = Callable[[str], None]

# The opening script (seconds after traffic starts): every fault shows within the first half minute,
# so a short headless run sees them all.
SCRIPT: tuple[tuple[float, str], ...] = (
    (2.0, "kick_missed"),
    (4.0, "broadcast_small"),
    (11.0, "broadcast_small"),
    (15.0, "upgrade"),
    (16.5, "owner_kick"),  # between broadcasts, so none is on its way there at that moment
    (18.0, "broadcast_small"),
    (21.0, "storm"),
    (21.5, "broadcast_all"),
    (40.0, "bad_gateway"),
)
REPEAT_START = 60.0
REPEAT_EVERY = 60.0  # afterwards: a broadcast a minute (small and "all" in turn), a storm every 4th


class Traffic:
    """Runs the plan in a background thread until `stop()`."""

    def __init__(
        self,
        sim_url: str,
        admin_url: str | None,
        admin_key: str,
        world: DemoWorld,
        seed: int,
        *,
        on_event: EventCallback | None = None,
        db_url: str | None = None,
    ) -> None:
        """`admin_url` None (no webhook server): broadcasts are created in `db_url` directly."""
        self.sim_url = sim_url
        self.admin_url = admin_url
        self.db_url = db_url
        self._admin_key = admin_key
        self.world = world
        self.rng = random.Random(f"traffic-{seed}")
        self.on_event = on_event
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: list[tuple[float, int, str]] = []
        self._seq = 0
        self._small_broadcasts = 0
        self._paused_until: dict[int, float] = {}  # chat id -> t: quiet right after an upgrade
        self._started = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _schedule(self, at: float, kind: str) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind))

    def _run(self) -> None:
        for at, kind in SCRIPT:
            self._schedule(at, kind)
        self._schedule(0.3, "join")
        self._schedule(0.5, "message")
        self._schedule(6.0, "leave")
        self._schedule(9.0, "burst")
        self._schedule(REPEAT_START, "repeat")
        self._started = time.monotonic()
        with SimControl(self.sim_url) as ctl, httpx.Client(timeout=10.0, trust_env=False) as admin:
            self._ctl = ctl
            self._admin = admin
            while not self._stop.is_set():
                at, _, kind = self._queue[0]
                delay = at - self.elapsed
                if delay > 0 and self._stop.wait(delay):
                    break
                heapq.heappop(self._queue)
                try:
                    getattr(self, f"_do_{kind}")(at)
                except (SimControlError, httpx.HTTPError) as exc:
                    self.stats.control_errors += 1
                    log.info("demo traffic: %s failed: %s", kind, exc)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _say(self, text: str) -> None:
        log.info("demo: %s", text)
        if self.on_event is not None:
            self.on_event(text)

    # ------------------------------------------------------------------ people
    def _open_groups(self, at: float) -> list[DemoGroup]:
        return [g for g in self.world.groups if g.active and self._paused_until.get(g.chat_id, 0.0) <= at]

    def _do_join(self, at: float) -> None:
        self._schedule(at + self.rng.uniform(0.6, 2.2), "join")
        groups = self._open_groups(at)
        if groups:
            self._join(self.rng.choice(groups))

    def _join(self, group: DemoGroup) -> None:
        self._ctl.join_request(group.chat_id)
        self.stats.join_requests += 1

    def _do_burst(self, at: float) -> None:
        self._schedule(at + self.rng.uniform(30.0, 50.0), "burst")
        groups = self._open_groups(at)
        if not groups:
            return
        viral = self.rng.choice(groups)
        count = self.rng.randint(8, 16)
        self.stats.bursts += 1
        self._say(f"a link to {viral.title} was shared: {count} join requests at once")
        for _ in range(count):
            self._join(viral if self.rng.random() < 0.75 else self.rng.choice(groups))

    def _do_message(self, at: float) -> None:
        self._schedule(at + self.rng.uniform(0.3, 1.1), "message")
        groups = [g for g in self._open_groups(at) if g.members]
        if not groups:
            return
        group = self.rng.choice(groups)
        self._ctl.post_message(group.chat_id, self.rng.choice(group.members), self.rng.choice(_CHATTER))
        self.stats.messages += 1

    def _do_leave(self, at: float) -> None:
        self._schedule(at + self.rng.uniform(5.0, 12.0), "leave")
        groups = [g for g in self._open_groups(at) if len(g.members) > 2]
        if not groups:
            return
        group = self.rng.choice(groups)
        user = group.members.pop(self.rng.randrange(len(group.members)))
        self._ctl.remove_member(group.chat_id, user)
        self.stats.leaves += 1

    # ------------------------------------------------------------------ broadcasts
    def _post_broadcast(self, text: str, target: Any) -> None:
        if self.admin_url is None:
            self._create_broadcast(text, target)
            return
        response = self._admin.post(
            f"{self.admin_url}/api/tgms/send",
            headers={"x-api-key": self._admin_key},
            json={"text": text, "target": target},
        )
        if response.status_code != 200:
            self.stats.broadcast_errors += 1
            log.warning("demo broadcast refused: %s %s", response.status_code, response.text[:200])
            return
        body = response.json()
        self.stats.broadcasts.append(int(body["broadcast_id"]))
        self._say(f"broadcast #{body['broadcast_id']} posted to the admin API: {body.get('groups')} groups")

    def _create_broadcast(self, text: str, target: Any) -> None:
        """What `tgms broadcast` does: validate, then the broadcast and its job in one transaction."""

        async def create() -> tuple[int, int]:
            assert self.db_url is not None
            async with await psycopg.AsyncConnection.connect(self.db_url) as conn, conn.transaction():
                return await broadcasts.create_broadcast(conn, request, created_by="demo")

        try:
            request = validate_broadcast({"text": text, "target": target})
            broadcast_id, groups = asyncio.run(create())
        except (ValidationError, psycopg.Error) as exc:
            self.stats.broadcast_errors += 1
            log.warning("demo broadcast refused: %s", exc)
            return
        self.stats.broadcasts.append(broadcast_id)
        self._say(f"broadcast #{broadcast_id} created: {groups} groups")

    def _do_broadcast_small(self, at: float) -> None:
        self._small_broadcasts += 1
        candidates = [g for g in self._open_groups(at) if g is not self.world.fault_kicked]
        chosen = self.rng.sample(candidates, min(4, len(candidates)))
        if self._small_broadcasts <= 3:  # the first three reach the group whose kick TGMS missed
            chosen.insert(self.rng.randrange(len(chosen) + 1), self.world.fault_kicked)
        text = f"Demo announcement {self._small_broadcasts}: the weekly meetup is on Thursday at 18:00."
        self._post_broadcast(text, {"group_ids": [g.chat_id for g in chosen]})

    def _do_broadcast_all(self, at: float) -> None:
        self._post_broadcast("Demo: a message for every active group. Thanks for being here!", "all")

    # ------------------------------------------------------------------ faults
    def _do_kick_missed(self, at: float) -> None:
        group = self.world.fault_kicked
        kind = "supergroup" if group.type == "supergroup" else "group"
        self._ctl.add_fault(
            "error",
            chat_id=group.chat_id,
            times=None,
            error_code=403,
            description=f"Forbidden: bot was kicked from the {kind} chat",
        )
        group.active = False
        self.stats.faults.append(f"kick_missed {group.chat_id}")
        self._say(
            f"the bot was kicked from {group.title} while TGMS missed the update: "
            "broadcasts will fail there until it is deactivated"
        )

    def _do_upgrade(self, at: float) -> None:
        group = self.world.upgraded
        old = group.chat_id
        result = self._ctl.upgrade(old)
        group.chat_id = int(result["id"])
        group.type = "supergroup"
        self._paused_until[group.chat_id] = at + 3.0  # let TGMS see the migration before new traffic
        self.stats.upgraded_from, self.stats.upgraded_to = old, group.chat_id
        self.stats.faults.append(f"upgrade {old} -> {group.chat_id}")
        self._say(f"{group.title} was upgraded to a supergroup: id {old} -> {group.chat_id}")

    def _do_storm(self, at: float) -> None:
        for method, times in (("sendMessage", 3), ("approveChatJoinRequest", 2)):
            self._ctl.add_fault("flood", method=method, times=times, retry_after=2)
        self.stats.faults.append("storm")
        self._say("429 storm: Telegram answers 'Too Many Requests: retry after 2' for a moment")

    def _do_owner_kick(self, at: float) -> None:
        group = self.world.owner_kicked
        self._ctl.kick_bot(group.chat_id, self.world.bot_ids["tgms"])
        group.active = False
        self.stats.faults.append(f"owner_kick {group.chat_id}")
        self._say(f"the owner of {group.title} removed the bot: TGMS deactivates it from the update")

    def _do_bad_gateway(self, at: float) -> None:
        """A member writes /start to the main bot, and the Bot API answers the bot's reply with 502 Bad
        Gateway for a while: the update's job retries with backoff, fails after its last retry, and
        can then be retried from the TUI (the reply goes out then)."""
        group = self.rng.choice([g for g in self._open_groups(at) if g.members] or self.world.groups)
        user = self.rng.choice(group.members) if group.members else group.owner_id
        attempts = 6  # the first try and the queue's 5 retries
        self._ctl.add_fault(
            "error", method="sendMessage", chat_id=user, times=attempts, error_code=502, description="Bad Gateway"
        )
        self._ctl.private_message(user, "/start", bot=self.world.bot_ids["main"])
        self.stats.faults.append(f"bad_gateway {user}")
        self._say(
            f"user {user} sent /start to the main bot and Telegram answers its reply 502 Bad Gateway: the "
            "job retries with backoff and fails after about a minute; then press 2, select it, press R"
        )

    def _do_repeat(self, at: float) -> None:
        self._schedule(at + REPEAT_EVERY, "repeat")
        round_no = int((at - REPEAT_START) // REPEAT_EVERY)
        if round_no % 4 == 3:
            self._do_storm(at)
        if round_no % 2 == 0:
            self._do_broadcast_small(at)
        else:
            self._do_broadcast_all(at)

"""Member counts end to end: periodic (once per period across workers) and on demand."""

from __future__ import annotations

from .harness import Stack

COUNT = "getChatMemberCount"


def test_periodic_counts_once_per_period_with_history_and_on_demand_refresh(stack: Stack) -> None:
    ctl = stack.ctl
    tgms = [stack.tgms_bot_id]
    sizes = {}
    for members in (3, 7):
        chat = ctl.create_chat("supergroup", bots=tgms, members=members)
        sizes[stack.add_group(chat)] = members + 2  # + the owner and the bot
    basic = ctl.create_chat("group", bots=tgms, members=4)
    stack.add_group(basic)
    new_id = int(ctl.upgrade(basic["id"])["id"])  # the count itself finds out about the upgrade
    sizes[new_id] = 4 + 2
    inactive = stack.add_group(ctl.create_chat("supergroup", bots=tgms, members=1), is_active=False)

    # Two workers, a 3 s period: each period's job is enqueued once, whoever heartbeats first.
    env = {"TGMS_MEMBER_COUNT_INTERVAL_SECONDS": "3"}
    stack.start_worker("tgms", **env)
    stack.start_worker("tgms", **env)
    stack.wait_for(
        lambda: (
            stack.scalar("SELECT count(DISTINCT recorded_at) FROM member_count_history WHERE group_id = %s", (new_id,))
            >= 2
        ),
        timeout=30,
        what="two periods",
    )

    counts = dict(stack.sql("SELECT group_id, member_count FROM managed_groups WHERE is_active"))
    assert counts == sizes
    assert stack.scalar("SELECT count(*) FROM managed_groups WHERE group_id = %s", (basic["id"],)) == 0
    # One job per period: the dedupe key carries the period number.
    keys = [k for (k,) in stack.sql("SELECT dedupe_key FROM jobs WHERE job_type = 'tgms_update_member_counts'")]
    assert len(keys) == len(set(keys)) and all(k.startswith("periodic:tgms_update_member_counts:") for k in keys)
    periods = len(keys)
    per_group = dict(stack.sql("SELECT group_id, count(*) FROM member_count_history GROUP BY group_id"))
    assert set(per_group) == set(sizes)
    # A group read in each finished period (the current one may be running right now).
    assert all(periods - 1 <= n <= periods for n in per_group.values()), (per_group, periods)
    assert stack.calls(COUNT, chat_id=inactive) == []

    # On demand (the TUI's refresh key), also for an inactive group.
    ctl.add_member(inactive, 5555)
    stack.enqueue("tgms_update_member_counts", {"group_ids": [inactive]})
    stack.wait_for(lambda: stack.scalar("SELECT member_count FROM managed_groups WHERE group_id = %s",
                                        (inactive,)) == 4, what="on-demand count")  # fmt: skip
    assert stack.scalar("SELECT count(*) FROM member_count_history WHERE group_id = %s", (inactive,)) == 1

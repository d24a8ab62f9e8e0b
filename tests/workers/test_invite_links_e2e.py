"""Named invite links end to end: `tgms links create` → createChatInviteLink in the chosen groups,
requests through the links attributed, joins and leaves from chat_member, retention figures, revoke
in bulk."""

from __future__ import annotations

import json

from .harness import Stack
from .test_bans_e2e import cli


def link_rows(stack: Stack, name: str) -> dict[int, tuple[str, str | None, str | None]]:
    rows = stack.sql("SELECT group_id, status, invite_link, error FROM invite_links WHERE name = %s", (name,))
    return {int(g): (s, u, e) for g, s, u, e in rows}


def test_links_created_attributed_retained_and_revoked(stack: Stack) -> None:
    ctl = stack.ctl
    stack.start_worker("tgms")
    stack.start_worker("main")
    tgms = stack.tgms_bot_id
    chosen = [ctl.create_chat("supergroup", f"Chosen {i}", bots=[tgms]) for i in range(2)]
    other = ctl.create_chat("supergroup", "Not chosen", bots=[tgms])
    # The TGMS bot lost its invite right here: the link cannot be made, and the row says why.
    no_right = ctl.create_chat("supergroup", "No invite right", bots={tgms: {"rights": {"can_restrict_members": True}}})
    for chat in [*chosen, other, no_right]:
        stack.add_group(chat)
    ids = ",".join(str(c["id"]) for c in [*chosen, no_right])

    made = cli(stack, "links", "create", "--name", "ads-june", f"--groups={ids}")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "creating in 3 group(s)" in made.stdout
    stack.wait_for(lambda: all(s != "pending" for s, _, _ in link_rows(stack, "ads-june").values()), what="links")
    rows = link_rows(stack, "ads-june")
    assert set(rows) == {c["id"] for c in [*chosen, no_right]}
    status, url, error = rows[no_right["id"]]
    assert status == "failed" and url is None and error == "Bad Request: not enough rights to manage chat invite link"
    for chat in chosen:
        status, url, _ = rows[chat["id"]]
        assert status == "active" and url is not None
        (link,) = ctl.invite_links(chat["id"])
        assert link["invite_link"] == url and link["name"] == "ads-june" and link["creates_join_request"] is True
    assert ctl.invite_links(other["id"]) == []
    # Unknown groups are refused, in one line.
    bad = cli(stack, "links", "create", "--name", "x", "--groups=-100123")
    assert bad.returncode == 1 and "not managed, active groups: -100123" in bad.stdout

    # Requests through the link are approved and attributed; the approvals' chat_member updates
    # (carrying the link) record the joins; one member leaves again.
    first, second = chosen[0]["id"], chosen[1]["id"]
    url1 = rows[first][1]
    assert url1 is not None
    joiners = [ctl.join_request(first, None, invite_link=url1)["user_id"] for _ in range(3)]
    plain = ctl.join_request(first)["user_id"]  # not through the link
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM invite_link_members WHERE chat_id = %s", (first,)) == 3,
                   what="joins recorded")  # fmt: skip
    attributed = stack.sql("SELECT user_id, invite_link, status FROM join_requests WHERE chat_id = %s", (first,))
    assert {(u, link, s) for u, link, s in attributed} == {
        *((u, url1, "approved") for u in joiners),
        (plain, None, "approved"),
    }
    ctl.remove_member(first, joiners[0])
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM invite_link_members WHERE left_at IS NOT NULL") == 1,
                   what="leave recorded")  # fmt: skip

    # History from before: in the second group, 4 joined 40 days ago (one left after 3 days, one after
    # 10 days, one after 35), 2 joined 10 days ago (one left after a day).
    url2 = rows[second][1]
    history = [(40, 3), (40, 10), (40, 35), (40, None), (10, 1), (10, None)]
    for n, (days_ago, stayed) in enumerate(history):
        stack.sql(
            "INSERT INTO invite_link_members (chat_id, user_id, invite_link, joined_at, left_at) "
            "VALUES (%s, %s, %s, now() - make_interval(days => %s), "
            "CASE WHEN %s::int IS NULL THEN NULL "
            "ELSE now() - make_interval(days => %s) + make_interval(days => %s) END)",
            (second, 900 + n, url2, days_ago, stayed, days_ago, stayed or 0),
        )
    listed = cli(stack, "links", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (source,) = json.loads(listed.stdout)
    assert source["name"] == "ads-june" and source["statuses"] == {"active": 2, "failed": 1}
    by_group = {link["group_id"]: link for link in source["links"]}
    g1 = by_group[first]
    assert (g1["requests"], g1["approved"], g1["declined"], g1["joined"], g1["members"]) == (3, 3, 0, 3, 2)
    assert g1["active"] == 2  # approved just now: seen
    g2 = by_group[second]
    assert g2["joined"] == 6 and g2["members"] == 2
    assert (g2["joined_7d_ago"], g2["stayed_7d"]) == (6, 4)  # left after 3 and after 1 day: gone by day 7
    assert (g2["joined_30d_ago"], g2["stayed_30d"]) == (4, 2)  # of the 40-day-old: left after 35, still in
    table = cli(stack, "links", "list")
    assert "ads-june" in table.stdout and "67%" in table.stdout  # 4 of 6 stayed a week (g1 is too recent)

    # Revoke in bulk: every active link of the source.
    revoked = cli(stack, "links", "revoke", "--name", "ads-june")
    assert revoked.returncode == 0 and "revoking in 2 group(s)" in revoked.stdout
    stack.wait_for(lambda: sorted(s for s, _, _ in link_rows(stack, "ads-june").values()) == ["failed", "revoked",
                                                                                            "revoked"])  # fmt: skip
    for chat in chosen:
        assert [link["is_revoked"] for link in ctl.invite_links(chat["id"])] == [True]
    assert cli(stack, "links", "revoke", "--name", "ads-june").returncode == 1  # nothing left to revoke

"""Every key and action of the control center, in one table.

The help screen lists it, the command palette offers it, and `--read-only` uses its `mutating` flag
to hide and refuse actions. A test checks that every binding in the app appears here, so the help
screen cannot fall behind the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from textual.app import App

Target = Literal["app", "screen", "groups", "jobs", "pane", "none"]


@dataclass(frozen=True)
class ActionSpec:
    key: str
    action: str
    description: str
    scope: str
    target: Target = "none"  # where the palette runs it; "none" = key-only (not in the palette)
    mutating: bool = False


ACTIONS: tuple[ActionSpec, ...] = (
    # Everywhere
    ActionSpec("q", "quit", "Quit", "Global", "app"),
    ActionSpec("?", "help", "Help: every key", "Global", "app"),
    ActionSpec("ctrl+p", "command_palette", "Command palette (every action)", "Global"),
    # Dashboard
    ActionSpec("b", "compose", "Compose a broadcast", "Dashboard", "screen", mutating=True),
    ActionSpec("B", "broadcasts", "Broadcasts: every broadcast, its outcome and progress", "Dashboard", "screen"),
    ActionSpec("K", "bans", "The fleet's ban list (ban / unban)", "Dashboard", "screen"),
    ActionSpec("L", "links", "Named invite links: requests, joins, retention", "Dashboard", "screen"),
    ActionSpec("/", "filter", "Filter the focused pane", "Dashboard", "screen"),
    ActionSpec("escape", "clear_filter", "Clear the focused pane's filter", "Dashboard", "screen"),
    ActionSpec("p", "toggle_pause", "Pause / resume live updates", "Dashboard", "screen"),
    ActionSpec("ctrl+r", "refresh_now", "Refresh now", "Dashboard", "screen"),
    ActionSpec("1", "focus_pane('groups')", "Focus the groups pane", "Dashboard", "screen"),
    ActionSpec("2", "focus_pane('jobs')", "Focus the jobs pane", "Dashboard", "screen"),
    ActionSpec("3", "focus_pane('workers')", "Focus the workers pane", "Dashboard", "screen"),
    ActionSpec("4", "focus_pane('joins')", "Focus the join requests pane", "Dashboard", "screen"),
    ActionSpec("Q", "join_queue", "Join-request queue: approve, decline, raid holds", "Dashboard", "screen"),
    ActionSpec("C", "analytics", "Charts: members, joins, deliveries, active (fleet / group)", "Dashboard", "screen"),
    ActionSpec("W", "hooks", "Event webhooks: subscriptions, their state and delivery log", "Dashboard", "screen"),
    ActionSpec("tab", "focus_next", "Next pane (shift+tab: previous)", "Dashboard"),
    # Any table
    ActionSpec("s", "cycle_sort", "Sort by the next column (or click a header)", "Tables", "pane"),
    ActionSpec("S", "reverse_sort", "Reverse the sort order", "Tables", "pane"),
    ActionSpec("↑ ↓ j k", "cursor_down", "Move the cursor (the row under it stays selected on refresh)", "Tables"),
    ActionSpec("pgup pgdn", "page_down", "A page up / down", "Tables"),
    ActionSpec("home end g G", "first", "First / last row", "Tables"),
    ActionSpec("click", "click", "A row selects it; a column header sorts by it", "Tables"),
    # Groups pane
    ActionSpec("enter", "detail", "Group detail: history, join requests, broadcasts, kicks", "Groups", "groups"),
    ActionSpec("space", "mark", "Mark / unmark for a broadcast to marked groups", "Groups", "groups"),
    ActionSpec("u", "clear_marks", "Unmark all groups", "Groups", "groups"),
    ActionSpec(
        "a",
        "toggle_active",
        "Activate (once Telegram confirms the bot's rights) / deactivate (asks first)",
        "Groups",
        "groups",
        mutating=True,
    ),
    ActionSpec("P", "set_phase", "Set phase: growth / monitoring", "Groups", "groups", mutating=True),
    ActionSpec("J", "set_join_policy", "Set join policy: auto / verify / manual", "Groups", "groups", mutating=True),
    ActionSpec("f", "toggle_final", "Allow / forbid the final message", "Groups", "groups", mutating=True),
    ActionSpec("H", "release_hold", "End the group's raid hold now", "Groups", "groups", mutating=True),
    ActionSpec("r", "refresh_members", "Refresh the member count now", "Groups", "groups", mutating=True),
    ActionSpec("+", "add_group", "Add a group by id (checked with Telegram)", "Groups", "groups", mutating=True),
    # Broadcasts screen
    ActionSpec("enter", "open_broadcast", "Its live progress: each group, debug code, message id", "Broadcasts"),
    ActionSpec(
        "e",
        "edit_broadcast",
        "Edit: not started (text, caption, send time) or its sent copies (asks first)",
        "Broadcasts",
        mutating=True,
    ),
    ActionSpec("D", "retract_broadcast", "Retract: delete its copies (48 h; asks first)", "Broadcasts", mutating=True),
    ActionSpec("P", "pin_broadcast", "Pin its copies, silently or not (asks first)", "Broadcasts", mutating=True),
    ActionSpec("U", "unpin_broadcast", "Unpin its copies (asks first)", "Broadcasts", mutating=True),
    ActionSpec(
        "x",
        "cancel_broadcast",
        "Cancel one not started, or stop a running one (asks first)",
        "Broadcasts",
        mutating=True,
    ),
    ActionSpec("ctrl+s", "save", "Edit: save (checked like a new broadcast)", "Broadcasts", mutating=True),
    ActionSpec(
        "W",
        "send_winner",
        "A/B broadcast: send the winner to the held-back groups (asks first)",
        "Broadcasts",
        mutating=True,
    ),
    # Join-request queue
    ActionSpec(
        "a d", "decide", "Queue: approve / decline the marked requests (or the cursor's)", "Join queue", mutating=True
    ),
    ActionSpec(
        "A D",
        "decide_group",
        "Queue: approve / decline every waiting request of the group",
        "Join queue",
        mutating=True,
    ),
    ActionSpec("r", "release", "Queue: release the cursor's group from its raid hold", "Join queue", mutating=True),
    ActionSpec("R", "release_fleet", "Queue: release the fleet's raid hold", "Join queue", mutating=True),
    ActionSpec(
        "l L",
        "decide_link",
        "Queue: approve / decline every waiting request that came through the cursor's invite link",
        "Join queue",
        mutating=True,
    ),
    # Jobs pane
    ActionSpec("enter", "job_detail", "Job payload and error", "Jobs", "jobs"),
    ActionSpec("R", "retry_job", "Retry a failed (or cancelled) job", "Jobs", "jobs", mutating=True),
    ActionSpec("x", "cancel_job", "Cancel a pending job, or a running one (asks first)", "Jobs", "jobs", mutating=True),
    # Bans and links
    ActionSpec("n", "new_ban", "Bans: ban a user in every group (asks first)", "Bans", mutating=True),
    ActionSpec("u", "unban", "Bans: lift the selected ban everywhere (asks first)", "Bans", mutating=True),
    ActionSpec("A", "toggle_all", "Bans: open entries / every entry", "Bans"),
    ActionSpec("c", "new_link", "Links: create a named link (asks first)", "Links", mutating=True),
    ActionSpec("X", "revoke_links", "Links: revoke the selected source's links (asks first)", "Links", mutating=True),
    ActionSpec("escape", "back", "Bans and links screens: back", "Bans"),
    # Analytics
    ActionSpec("w", "next_window", "Charts: next window (24h, 7d, 30d; or 1 2 3)", "Charts"),
    ActionSpec("g", "toggle_scope", "Charts: the fleet / the group chosen (dashboard cursor, detail)", "Charts"),
    ActionSpec("C", "analytics", "Group detail: this group's charts", "Charts"),
    # Event webhooks
    ActionSpec("r", "replay_delivery", "Webhooks: send the selected delivery again", "Webhooks", mutating=True),
    ActionSpec("R", "replay_range", "Webhooks: send again every event since a time", "Webhooks", mutating=True),
    ActionSpec("t", "test_hook", "Webhooks: send a test event to the subscription", "Webhooks", mutating=True),
    ActionSpec("p", "pause_hook", "Webhooks: pause / resume the subscription", "Webhooks", mutating=True),
    # Composer
    ActionSpec("ctrl+s", "review", "Composer: review and send (asks first)", "Composer", mutating=True),
    ActionSpec(
        "ctrl+t", "test_send", "Composer: test send to the test chat (no group gets it)", "Composer", mutating=True
    ),
    ActionSpec("escape", "cancel", "Composer, detail and progress screens: back", "Composer"),
    # Confirmations
    ActionSpec("y", "yes", "Confirm", "Confirm"),
    ActionSpec("n", "no", "Decline (escape too)", "Confirm"),
)

MUTATING_ACTIONS = frozenset(a.action for a in ACTIONS if a.mutating)


def is_allowed(app: App[Any], action: str) -> bool:
    """False for a mutating action in read-only mode (bindings then vanish from the footer)."""
    return not (getattr(app, "read_only", False) and action in MUTATING_ACTIONS)

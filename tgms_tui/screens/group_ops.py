"""Group actions shared by the dashboard and the group detail screen (confirm, write, tell)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tgms_tui.backend import group_actions, join_gate
from tgms_tui.backend.dashboard import GroupRow

from .confirm import ConfirmScreen
from .join_queue import JoinPolicyScreen
from .phase import PhaseScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp


def _label(g: GroupRow) -> str:
    return f"{g.title} ({g.group_id})" if g.title else str(g.group_id)


async def toggle_active(app: TGMSApp, g: GroupRow) -> bool:
    """Deactivation asks first (the group then gets nothing); activation does not."""
    if app.refuse_if_read_only("activating or deactivating a group"):
        return False
    if g.is_active:
        question = (
            f"Deactivate group {_label(g)}?\n\n"
            "It will get no broadcasts and its join requests are skipped until it is activated again."
        )
        if not await app.push_screen_wait(ConfirmScreen(question, yes="Deactivate", no="Keep active")):
            return False
    if not await app.perform(
        lambda conn: group_actions.set_active(conn, g.group_id, not g.is_active), "Changing the group"
    ):
        return False
    app.notify(f"Group {_label(g)} {'deactivated' if g.is_active else 'activated'}.", timeout=3)
    return True


async def set_phase(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("setting the phase"):
        return False
    phase = await app.push_screen_wait(PhaseScreen(g.phase, _label(g)))
    if phase is None or phase == g.phase:
        return False
    if not await app.perform(lambda conn: group_actions.set_phase(conn, g.group_id, phase), "Setting the phase"):
        return False
    app.notify(f"Group {_label(g)} is now in phase {phase}.", timeout=3)
    return True


async def toggle_final(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("changing final-message permission"):
        return False
    allowed = not g.final_message_allowed
    if not await app.perform(
        lambda conn: group_actions.set_final_message_allowed(conn, g.group_id, allowed),
        "Changing final-message permission",
    ):
        return False
    app.notify(f"Final message {'allowed' if allowed else 'not allowed'} in {_label(g)}.", timeout=3)
    return True


async def refresh_members(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("refreshing the member count"):
        return False
    job_id = await app.attempt(
        lambda conn: group_actions.request_member_count_refresh(conn, g.group_id), "Queueing a member count"
    )
    if job_id is None:
        return False
    app.notify(f"Member count refresh for {_label(g)} queued (job {job_id}).", timeout=3)
    return True


async def set_join_policy(app: TGMSApp, g: GroupRow) -> bool:
    if app.refuse_if_read_only("setting the join policy"):
        return False
    current = await app.attempt(lambda conn: join_gate.group_gate(conn, g.group_id), "Reading the join policy")
    if current is None:
        return False
    policy = await app.push_screen_wait(JoinPolicyScreen(current.join_policy, _label(g)))
    if policy is None or policy == current.join_policy:
        return False
    if not await app.perform(
        lambda conn: join_gate.set_group_gate(conn, g.group_id, {"join_policy": policy}), "Setting the join policy"
    ):
        return False
    app.notify(f"Join policy of {_label(g)}: {policy}.", timeout=3)
    return True

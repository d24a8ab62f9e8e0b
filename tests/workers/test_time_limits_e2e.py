"""Time limits on the real handlers, through the real pipeline: a broadcast outlives its sender's time
limit by working in slices, and a sender cut by its limit mid-call records that call and never resends."""

from __future__ import annotations

import pytest

from .harness import Stack

SEND = "sendMessage"


def _groups(stack: Stack, n: int) -> list[int]:
    return [stack.add_group(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id])) for _ in range(n)]


def _sender_jobs(stack: Stack) -> list[tuple[str, int, str | None]]:
    """Once every sender job has finished (one may still be winding down when the broadcast is done)."""
    query = "SELECT count(*) FROM jobs WHERE job_type = 'tgms_send_to_groups' AND status IN ('pending', 'running')"
    stack.wait_for(lambda: stack.scalar(query) == 0, timeout=30, what="sender jobs finished")
    rows = stack.sql("SELECT status, retries, last_error FROM jobs WHERE job_type = 'tgms_send_to_groups'")
    return [(str(s), int(r), e) for s, r, e in rows]


def _finished(stack: Stack, broadcast_id: int) -> object:
    return stack.scalar(
        "SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN ('pending', 'running')",
        (broadcast_id,),
    )


@pytest.mark.slow
def test_a_broadcast_longer_than_its_senders_time_limit_goes_on_in_slices(stack: Stack) -> None:
    """Limit 4 s (slices of 2 s), 16 groups at 4 messages/s: about 4 s of sending. The senders snooze
    their own jobs between slices (no retry counted) and every group gets exactly one copy."""
    env = {"TGMS_JOB_TIMEOUTS": "tgms_send_to_groups=4", "TGMS_RATE_PER_SECOND": "4"}
    stack.start_worker("tgms", **env)
    stack.wait_jobs_idle()
    chats = _groups(stack, 16)
    broadcast_id = stack.broadcast({"text": "Sliced hello"})
    status = stack.wait_for(lambda: _finished(stack, broadcast_id), timeout=60, what="broadcast finished")
    assert status == "done"
    assert stack.ok_sends() == dict.fromkeys(chats, 1)
    jobs = _sender_jobs(stack)
    assert {s for s, _, _ in jobs} == {"done"} and all(r == 0 for _, r, _ in jobs), jobs
    assert any(e and "time slice used up" in e for _, _, e in jobs), jobs  # it did take more than one slice


@pytest.mark.slow
def test_a_sender_cut_by_its_time_limit_mid_call_records_the_call_and_never_resends(stack: Stack) -> None:
    """Limit 2 s; Telegram (the simulator) takes 4 s to answer one send, and delivers it. The limit
    cancels that sender: the call in flight is awaited and recorded 'sent' first, the timeout counts a
    retry, and the job's next run carries on with the other groups; no group gets two copies."""
    stack.start_worker("tgms", TGMS_JOB_TIMEOUTS="tgms_send_to_groups=2", TGMS_RATE_PER_SECOND="20")
    stack.wait_jobs_idle()
    chats = _groups(stack, 12)
    hung = chats[0]
    stack.ctl.add_fault("hang", method=SEND, chat_id=hung, seconds=4, apply=True)
    broadcast_id = stack.broadcast({"text": "Cut mid-call"})
    status = stack.wait_for(lambda: _finished(stack, broadcast_id), timeout=60, what="broadcast finished")
    assert status == "done"
    rows = dict(stack.sql("SELECT chat_id, status FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    assert rows == dict.fromkeys(chats, "sent")
    assert stack.ok_sends() == dict.fromkeys(chats, 1)
    assert len(stack.calls(SEND, chat_id=hung)) == 1
    jobs = _sender_jobs(stack)
    assert {s for s, _, _ in jobs} == {"done"}, jobs
    assert any(r >= 1 and e and e.startswith("timed out after 2 s") for _, r, e in jobs), jobs


def test_sigusr1_logs_where_each_task_of_a_worker_waits(stack: Stack) -> None:
    """A handler waiting on a call Telegram does not answer: `kill -USR1` logs every asyncio task of the
    worker, the handler's named by its job, with the await chain down to the line it waits on (what
    the harness prints when a wait times out)."""
    import time

    worker = stack.start_worker("tgms")
    chat = stack.add_group(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id]))
    stack.ctl.add_fault("hang", method="approveChatJoinRequest", chat_id=chat, seconds=5.0, apply=True)
    stack.ctl.join_request(chat)
    job = stack.wait_for(
        lambda: stack.scalar("SELECT job_id FROM jobs WHERE job_type = 'tgms_process_join_request' "
                             "AND status = 'running'"),
        what="the approval under way",
    )  # fmt: skip
    time.sleep(0.5)  # the call is out
    dumps = stack.handler_dumps()  # sends SIGUSR1 and reads the worker's log
    assert "worker-tgms: 1 handler(s) in flight" in dumps
    handler = dumps[dumps.index(f"job {job} (tgms_process_join_request, ") :]
    assert "workers/join_requests.py" in handler and "in process_join_request" in handler
    assert "workers/telegram_api.py" in handler  # down to the call it waits on
    [log_path] = [path for _name, proc, path in stack.procs if proc is worker]
    dump = log_path.read_text(errors="replace").split("task dump of")[-1]
    assert "in _claim_loop" in dump  # the worker's own tasks are listed too
    assert worker.poll() is None  # the signal did not stop it
    stack.wait_for(lambda: stack.scalar("SELECT status FROM jobs WHERE job_id = %s", (job,)) == "done",
                   what="the approval done once Telegram answers")  # fmt: skip

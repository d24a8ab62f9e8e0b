"""The record of every Bot API call, oldest first, for tests and tools (`GET /_sim/calls`).

A record names the bot by id and username, never by token, and redacts webhook secrets, so the log
can be printed or shared. `seq` is a cursor: `since=<seq>` returns only newer calls.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

REDACTED = "<redacted>"
_SECRET_PARAMS = frozenset({"secret_token"})


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (REDACTED if k in _SECRET_PARAMS and v not in (None, "") else v) for k, v in params.items()}


class CallLog:
    def __init__(self, maxlen: int) -> None:
        self._lock = threading.Lock()
        self._records: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = 0

    def record(self, **fields: Any) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, **fields}
            self._records.append(entry)
            return entry

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def query(
        self,
        *,
        method: str | None = None,
        chat_id: int | None = None,
        bot: str | None = None,
        since: int | None = None,
        since_at: float | None = None,
        ok: bool | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Matching records, oldest first (`limit` keeps the newest N of them)."""
        wanted_method = method.lower() if method else None
        with self._lock:
            records = list(self._records)
        out = []
        for entry in records:
            if since is not None and entry["seq"] <= since:
                continue
            if since_at is not None and entry["at"] < since_at:
                continue
            if wanted_method and str(entry["method"]).lower() != wanted_method:
                continue
            if chat_id is not None and entry.get("chat_id") != chat_id:
                continue
            if bot is not None and bot not in (str(entry.get("bot_id")), str(entry.get("bot_username"))):
                continue
            if ok is not None and entry["ok"] != ok:
                continue
            out.append(entry)
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out

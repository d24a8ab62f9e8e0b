"""Injected faults: make the next N matching Bot API calls fail, hang or flood.

A fault matches by method (case-insensitive), chat and bot, any of which may be left open, and is
consumed once per matching call until its count runs out (`times: null` keeps it until removed).
Kinds: `error` (any code/description/parameters, as a JSON envelope), `status` (a raw non-JSON HTTP
answer such as nginx's 502 page), `hang` (sleep, then answer normally or fail) and `flood` (429 with
`retry_after`, the "429 storm").
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_KINDS = ("error", "status", "hang", "flood")

NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: str
    method: str | None = None
    chat_id: int | None = None
    bot_id: int | None = None
    times: int | None = 1
    error_code: int = 500
    description: str = "Internal Server Error"
    parameters: dict[str, Any] = field(default_factory=dict)
    status: int = 502
    body: str | None = None
    seconds: float = 0.0
    apply: bool = True
    retry_after: int = 5
    hits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    """The active faults of one simulator; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any], bot_id: int | None = None) -> Fault:
        kind = str(spec.get("kind") or ("error" if "error_code" in spec else "")).lower()
        if kind not in FAULT_KINDS:
            raise FaultSpecError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        times = spec.get("times", 1)
        if times is not None:
            times = int(times)
            if times < 1:
                raise FaultSpecError("times must be >= 1 or null")
        chat_id = spec.get("chat_id")
        fault = Fault(
            id=0,
            kind=kind,
            method=str(spec["method"]).lower() if spec.get("method") else None,
            chat_id=int(chat_id) if chat_id is not None else None,
            bot_id=bot_id,
            times=times,
            parameters=dict(spec.get("parameters") or {}),
            body=spec.get("body"),
            seconds=float(spec.get("seconds", 0.0)),
            apply=bool(spec.get("apply", True)),
            retry_after=int(spec.get("retry_after", 5)),
        )
        if kind == "error":
            fault.error_code = int(spec.get("error_code", 500))
            fault.description = str(spec.get("description") or _default_description(fault.error_code))
        if kind == "status":
            fault.status = int(spec.get("status", 502))
        if kind == "hang" and fault.seconds <= 0:
            raise FaultSpecError("hang needs seconds > 0")
        with self._lock:
            fault.id = next(self._ids)
            self._faults.append(fault)
        return fault

    def take(self, method: str, chat_id: int | None, bot_id: int | None) -> Fault | None:
        """The first fault matching this call, consumed once; None if none applies."""
        method = method.lower()
        with self._lock:
            for fault in self._faults:
                if fault.method is not None and fault.method != method:
                    continue
                if fault.chat_id is not None and fault.chat_id != chat_id:
                    continue
                if fault.bot_id is not None and fault.bot_id != bot_id:
                    continue
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def _default_description(code: int) -> str:
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(code, "Internal Server Error")

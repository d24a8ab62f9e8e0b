"""Bot API errors as the real server words them (tdlib/telegram-bot-api `fail_query_with_error`).

A handler raises `BotApiError`; the HTTP layer turns it into the `{"ok":false,...}` envelope with
HTTP status == error_code and `parameters` only when non-empty. Constructors below carry the exact
descriptions, so each text exists once.
"""

from __future__ import annotations

from typing import Any


class BotApiError(Exception):
    """One failed Bot API call: code, description and optional ResponseParameters."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = dict(parameters or {})

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(text: str, parameters: dict[str, Any] | None = None) -> BotApiError:
    return BotApiError(400, f"Bad Request: {text}", parameters)


def forbidden(text: str) -> BotApiError:
    return BotApiError(403, f"Forbidden: {text}")


def too_many_requests(retry_after: int) -> BotApiError:
    return BotApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def conflict(text: str) -> BotApiError:
    return BotApiError(409, f"Conflict: {text}")


def chat_migrated(new_chat_id: int) -> BotApiError:
    return bad_request("group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": new_chat_id})


UNAUTHORIZED = (401, "Unauthorized")
INVALID_TOKEN = (401, "Unauthorized: invalid token specified")
METHOD_NOT_FOUND = (404, "Not Found: method not found")
NOT_FOUND = (404, "Not Found")

"""The `/_sim/` control API: set up the world, trigger events, inject faults, read what happened.

JSON in, JSON out; every endpoint is listed in docs/simulator.md. Two shapes are fixed contracts
read by tools outside the project: `GET /_sim/chats` (a list of chats with at least id, type, title,
member_count) and `GET /_sim/calls` (a list of calls with at least method, params, ok, error_code,
at; oldest first). Errors answer `{"error": "..."}` with a 4xx status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from telegram_sim import objects
from telegram_sim.config import _as_bool
from telegram_sim.faults import FaultSpecError
from telegram_sim.model import StoredMessage
from telegram_sim.state import SimError, SimState
from telegram_sim.webhooks import WebhookDispatcher

Endpoint = Callable[[Request], Awaitable[Response]]


class SignedIntConvertor(Convertor[int]):
    """Chat ids are negative; Starlette's `int` convertor only matches digits."""

    regex = "-?[0-9]+"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


register_url_convertor("chatid", SignedIntConvertor())


class ControlApi:
    def __init__(self, state: SimState, dispatcher: WebhookDispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher

    def routes(self) -> list[Route]:
        r = _route
        return [
            r("/_sim/health", self.health),
            r("/_sim/config", self.get_config),
            r("/_sim/config", self.set_config, ["POST", "PATCH"]),
            r("/_sim/reset", self.reset, ["POST"]),
            r("/_sim/bots", self.list_bots),
            r("/_sim/bots", self.create_bot, ["POST"]),
            r("/_sim/bots/{bot_id:chatid}/stars", self.get_stars),
            r("/_sim/bots/{bot_id:chatid}/stars", self.set_stars, ["POST"]),
            r("/_sim/users", self.list_users),
            r("/_sim/users", self.create_user, ["POST"]),
            r("/_sim/users/{user_id:chatid}/block", self.block_user, ["POST"]),
            r("/_sim/users/{user_id:chatid}/unblock", self.unblock_user, ["POST"]),
            r("/_sim/users/{user_id:chatid}/deactivate", self.deactivate_user, ["POST"]),
            r("/_sim/users/{user_id:chatid}/press", self.press_button, ["POST"]),
            r("/_sim/callback_queries/{query_id}", self.get_callback_query),
            r("/_sim/chats", self.list_chats),
            r("/_sim/chats", self.create_chat, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}", self.get_chat),
            r("/_sim/chats/{chat_id:chatid}", self.delete_chat, ["DELETE"]),
            r("/_sim/chats/{chat_id:chatid}/members", self.add_member, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/members/{user_id:chatid}", self.remove_member, ["DELETE"]),
            r("/_sim/chats/{chat_id:chatid}/join_requests", self.list_join_requests),
            r("/_sim/chats/{chat_id:chatid}/join_requests", self.create_join_request, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/invite_links", self.list_invite_links),
            r("/_sim/chats/{chat_id:chatid}/bans", self.list_bans),
            r("/_sim/chats/{chat_id:chatid}/messages", self.chat_messages),
            r("/_sim/chats/{chat_id:chatid}/messages", self.post_message, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/messages/{message_id:chatid}/edit", self.edit_message, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/messages/{message_id:chatid}", self.delete_message, ["DELETE"]),
            r("/_sim/messages/age", self.age_messages, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/bots/{bot}", self.set_bot_status, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/upgrade", self.upgrade_chat, ["POST"]),
            r("/_sim/chats/{chat_id:chatid}/title", self.set_title, ["POST"]),
            r("/_sim/messages", self.list_messages),
            r("/_sim/messages", self.post_private_message, ["POST"]),
            r("/_sim/calls", self.list_calls),
            r("/_sim/calls", self.clear_calls, ["DELETE"]),
            r("/_sim/uploads", self.list_uploads),
            r("/_sim/faults", self.list_faults),
            r("/_sim/faults", self.add_fault, ["POST"]),
            r("/_sim/faults", self.clear_faults, ["DELETE"]),
            r("/_sim/faults/{fault_id:chatid}", self.remove_fault, ["DELETE"]),
            r("/_sim/webhook_deliveries", self.webhook_deliveries),
            r("/_sim/updates", self.pending_updates),
        ]

    # --- general -------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "bots": len(self.state.bots), "chats": len(self.state.chats)})

    async def get_config(self, request: Request) -> Response:
        with self.state.lock:
            return JSONResponse(self.state.config.as_dict())

    async def set_config(self, request: Request) -> Response:
        body = await _body(request)
        with self.state.lock:
            unknown = self.state.config.update(body)
            if unknown:
                raise SimError(f"unknown config keys: {', '.join(sorted(unknown))}")
            self.state.flood.reset()
            return JSONResponse(self.state.config.as_dict())

    async def reset(self, request: Request) -> Response:
        body = await _body(request)
        self.state.reset(
            keep_bots=_as_bool(body.get("keep_bots", True)),
            clear_webhooks=_as_bool(body.get("clear_webhooks", False)),
        )
        self.dispatcher.reset_stats()
        return JSONResponse({"ok": True})

    # --- bots and users ------------------------------------------------------------------------

    async def list_bots(self, request: Request) -> Response:
        with self.state.lock:
            return JSONResponse([_bot_row(bot) for bot in self.state.bots.values()])

    async def create_bot(self, request: Request) -> Response:
        body = await _body(request)
        generated = not body.get("token")
        bot = self.state.add_bot(
            body.get("token") or None,
            username=body.get("username"),
            first_name=body.get("first_name"),
            can_read_all_group_messages=_as_bool(body.get("can_read_all_group_messages", False)),
        )
        row = _bot_row(bot)
        if generated:  # the caller needs the token it did not choose; it is never logged
            row["token"] = bot.token
        self.dispatcher_wake(bot.id)
        return JSONResponse(row, status_code=201)

    async def get_stars(self, request: Request) -> Response:
        """The bot's Telegram Stars balance and paid messages billed so far (paid broadcasts)."""
        bot_id = int(request.path_params["bot_id"])
        with self.state.lock:
            self._require_bot(bot_id)
            return JSONResponse(self.state.flood.stars(bot_id))

    async def set_stars(self, request: Request) -> Response:
        """{"balance": N}: set the bot's Star balance (a paid message beyond the free rate costs 0.1)."""
        bot_id = int(request.path_params["bot_id"])
        balance = (await _body(request)).get("balance")
        if isinstance(balance, bool) or not isinstance(balance, int | float) or balance < 0:
            raise SimError("balance must be a number >= 0")
        with self.state.lock:
            self._require_bot(bot_id)
            self.state.flood.set_stars(bot_id, float(balance))
            return JSONResponse(self.state.flood.stars(bot_id))

    def _require_bot(self, bot_id: int) -> None:
        if bot_id not in self.state.bots:
            raise SimError(f"no bot {bot_id}", status=404)

    def dispatcher_wake(self, bot_id: int) -> None:
        with self.state.lock:
            self.state.notify(bot_id)

    async def list_users(self, request: Request) -> Response:
        with self.state.lock:
            return JSONResponse([objects.user_json(u) for u in self.state.users.values()])

    async def create_user(self, request: Request) -> Response:
        body = await _body(request)
        user = self.state.ensure_user(body or None)
        return JSONResponse(objects.user_json(user), status_code=201)

    async def block_user(self, request: Request) -> Response:
        body = await _body(request)
        self.state.set_blocked(request.path_params["user_id"], body.get("bot"), True)
        return JSONResponse({"ok": True})

    async def unblock_user(self, request: Request) -> Response:
        body = await _body(request)
        self.state.set_blocked(request.path_params["user_id"], body.get("bot"), False)
        return JSONResponse({"ok": True})

    async def deactivate_user(self, request: Request) -> Response:
        with self.state.lock:
            self.state.user(request.path_params["user_id"]).deactivated = True
        return JSONResponse({"ok": True})

    async def press_button(self, request: Request) -> Response:
        body = await _body(request)
        if "chat_id" not in body or "message_id" not in body or not isinstance(body.get("data"), str):
            raise SimError("chat_id, message_id and data are required")
        query = self.state.press_button(request.path_params["user_id"], int(body["chat_id"]),
                                        int(body["message_id"]), body["data"])  # fmt: skip
        return JSONResponse({"callback_query_id": query.id, "id": query.id}, status_code=201)

    async def get_callback_query(self, request: Request) -> Response:
        with self.state.lock:
            query = self.state.callback_queries.get(request.path_params["query_id"])
            if query is None:
                raise SimError("unknown callback query", 404)
            return JSONResponse({"id": query.id, "bot_id": query.bot_id, "user_id": query.user_id,
                                 "chat_id": query.chat_id, "message_id": query.message_id, "data": query.data,
                                 "answered": query.answered, "answer": query.answer})  # fmt: skip

    # --- chats ---------------------------------------------------------------------------------

    async def list_chats(self, request: Request) -> Response:
        query = request.query_params
        with self.state.lock:
            chats = list(self.state.chats.values())
            if "type" in query:
                chats = [c for c in chats if c.type == query["type"]]
            if not _as_bool(query.get("include_inactive", "true")):
                chats = [c for c in chats if c.active]
            return JSONResponse([self.state.chat_summary(c) for c in chats])

    async def create_chat(self, request: Request) -> Response:
        body = await _body(request)
        chat = self.state.create_chat(
            body.get("type", "supergroup"),
            body.get("title"),
            id=body.get("id"),
            username=body.get("username"),
            description=body.get("description"),
            owner=body.get("owner"),
            members=body.get("members"),
            admins=body.get("admins") or (),
            bots=body.get("bots"),
            permissions=body.get("permissions"),
            announce=_as_bool(body.get("announce", False)),
        )
        return JSONResponse(self.state.chat_detail(chat), status_code=201)

    async def get_chat(self, request: Request) -> Response:
        chat = self.state.chat(request.path_params["chat_id"])
        return JSONResponse(self.state.chat_detail(chat))

    async def delete_chat(self, request: Request) -> Response:
        chat = self.state.delete_chat(request.path_params["chat_id"])
        return JSONResponse(self.state.chat_summary(chat))

    async def add_member(self, request: Request) -> Response:
        body = await _body(request)
        chat_id = request.path_params["chat_id"]
        member = self.state.add_member(
            chat_id,
            body.get("user", body.get("user_id")),
            status=body.get("status", "member"),
            rights=body.get("rights"),
            actor=body.get("actor"),
            via_join_request=_as_bool(body.get("via_join_request", False)),
            invite_link=body.get("invite_link"),
        )
        return JSONResponse(self._member(chat_id, member.user_id), status_code=201)

    async def remove_member(self, request: Request) -> Response:
        chat_id, user_id = request.path_params["chat_id"], request.path_params["user_id"]
        query = request.query_params
        self.state.remove_member(
            chat_id,
            user_id,
            kicked=_as_bool(query.get("kicked", "false")),
            actor=query.get("actor"),
            until_date=int(query.get("until_date", "0")),
        )
        return JSONResponse(self._member(chat_id, user_id))

    def _member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        with self.state.lock:
            chat = self.state.chat(chat_id)
            return objects.member_json(chat, self.state.member_of(chat, user_id), self.state.users[user_id])

    async def list_join_requests(self, request: Request) -> Response:
        with self.state.lock:
            chat = self.state.chat(request.path_params["chat_id"])
            return JSONResponse(self.state.chat_detail(chat)["join_requests"])

    async def create_join_request(self, request: Request) -> Response:
        body = await _body(request)
        join = self.state.create_join_request(
            request.path_params["chat_id"],
            body.get("user", body.get("user_id")),
            bio=body.get("bio"),
            invite_link=body.get("invite_link"),
        )
        with self.state.lock:
            user = objects.user_json(self.state.users[join.user_id])
        return JSONResponse(
            {"chat_id": join.chat_id, "user": user, "user_id": join.user_id, "user_chat_id": join.user_id,
             "date": join.date, "invite_link": join.invite_link},
            status_code=201,
        )  # fmt: skip

    async def list_invite_links(self, request: Request) -> Response:
        """Every link bots created in the chat (whole, as their creator sees them), oldest first."""
        with self.state.lock:
            chat = self.state.chat(request.path_params["chat_id"])
            return JSONResponse(
                [self.state.invite_link_json(chat, link, link.creator_id) for link in chat.invite_links.values()]
            )

    async def list_bans(self, request: Request) -> Response:
        """Users banned from the chat now (status kicked; a ban past its until_date has ended)."""
        with self.state.lock:
            chat = self.state.chat(request.path_params["chat_id"])
            banned = [self.state.member_of(chat, user_id) for user_id in list(chat.members)]
            return JSONResponse(
                [{"user_id": m.user_id, "until_date": m.until_date} for m in banned if m.status == "kicked"]
            )

    async def chat_messages(self, request: Request) -> Response:
        return JSONResponse(self._messages([request.path_params["chat_id"]], request))

    async def list_messages(self, request: Request) -> Response:
        query = request.query_params
        with self.state.lock:
            chat_ids = (
                [int(query["chat_id"])]
                if "chat_id" in query
                else list(dict.fromkeys([*self.state.messages, *self.state.deleted_messages]))
            )
        return JSONResponse(self._messages(chat_ids, request))

    def _messages(self, chat_ids: list[int], request: Request) -> list[dict[str, Any]]:
        query = request.query_params
        sender = query.get("sender", "all")  # all | bots | users
        bot_filter = query.get("bot")
        since = float(query["since_at"]) if "since_at" in query else None
        with_deleted = _as_bool(query.get("include_deleted", False))
        with self.state.lock:
            bot_id = self.state.resolve_bot(bot_filter).id if bot_filter else None
            rows = []
            for chat_id in chat_ids:
                stored_rows = list(self.state.messages.get(chat_id, []))
                if with_deleted:
                    stored_rows += self.state.deleted_messages.get(chat_id, [])
                for stored in stored_rows:
                    if sender == "bots" and stored.sent_by_bot is None:
                        continue
                    if sender == "users" and stored.sent_by_bot is not None:
                        continue
                    if bot_id is not None and stored.sent_by_bot != bot_id:
                        continue
                    if since is not None and stored.at < since:
                        continue
                    rows.append(_message_row(stored))
        rows.sort(key=lambda row: row["at"])
        return rows

    async def delete_message(self, request: Request) -> Response:
        chat_id, message_id = request.path_params["chat_id"], request.path_params["message_id"]
        with self.state.lock:
            stored = self.state.find_message(chat_id, message_id)
            if stored is None:
                raise SimError("unknown message", 404)
            self.state.remove_message(stored)
            return JSONResponse(_message_row(stored))

    async def age_messages(self, request: Request) -> Response:
        body = await _body(request)
        try:
            seconds = int(float(body["seconds"]))
        except (KeyError, TypeError, ValueError):
            raise SimError("seconds: a number of seconds to move message dates back") from None
        chat_id = body.get("chat_id")
        message_id = body.get("message_id")
        aged = 0
        with self.state.lock:
            chat_ids = [int(chat_id)] if chat_id is not None else list(self.state.messages)
            for cid in chat_ids:
                for stored in self.state.messages.get(cid, []):
                    if message_id is not None and stored.message_id != int(message_id):
                        continue
                    stored.data["date"] = int(stored.data.get("date", self.state.now())) - seconds
                    stored.at -= seconds
                    aged += 1
        return JSONResponse({"aged": aged})

    async def post_message(self, request: Request) -> Response:
        body = await _body(request)
        data = self.state.post_message(
            request.path_params["chat_id"],
            body.get("user", body.get("user_id", body.get("from"))),
            str(body.get("text", "")),
            bot=body.get("bot"),
            reply_to_message_id=body.get("reply_to_message_id"),
        )
        return JSONResponse(data, status_code=201)

    async def post_private_message(self, request: Request) -> Response:
        body = await _body(request)
        data = self.state.post_message(
            body.get("chat_id"),
            body.get("user", body.get("user_id", body.get("from"))),
            str(body.get("text", "")),
            bot=body.get("bot"),
            reply_to_message_id=body.get("reply_to_message_id"),
        )
        return JSONResponse(data, status_code=201)

    async def edit_message(self, request: Request) -> Response:
        body = await _body(request)
        data = self.state.edit_message(
            request.path_params["chat_id"], request.path_params["message_id"], str(body.get("text", ""))
        )
        return JSONResponse(data)

    async def set_bot_status(self, request: Request) -> Response:
        body = await _body(request)
        chat_id = request.path_params["chat_id"]
        member = self.state.set_bot_status(
            chat_id,
            request.path_params["bot"],
            status=body.get("status"),
            action=body.get("action"),
            rights=body.get("rights"),
            actor=body.get("actor"),
        )
        return JSONResponse(self._member(chat_id, member.user_id))

    async def upgrade_chat(self, request: Request) -> Response:
        body = await _body(request)
        chat = self.state.upgrade_chat(request.path_params["chat_id"], new_id=body.get("new_id"),
                                       actor=body.get("actor"))  # fmt: skip
        return JSONResponse(self.state.chat_summary(chat), status_code=201)

    async def set_title(self, request: Request) -> Response:
        body = await _body(request)
        if not body.get("title"):
            raise SimError("title is required")
        data = self.state.set_title(request.path_params["chat_id"], str(body["title"]), actor=body.get("actor"))
        return JSONResponse(data)

    # --- calls, faults, deliveries -------------------------------------------------------------

    async def list_calls(self, request: Request) -> Response:
        query = request.query_params
        try:
            rows = self.state.calls.query(
                method=query.get("method"),
                chat_id=int(query["chat_id"]) if "chat_id" in query else None,
                bot=query.get("bot"),
                since=int(query["since"]) if "since" in query else None,
                since_at=float(query["since_at"]) if "since_at" in query else None,
                ok=_as_bool(query["ok"]) if "ok" in query else None,
                limit=int(query["limit"]) if "limit" in query else None,
            )
        except ValueError as exc:
            raise SimError(f"bad filter: {exc}") from None
        return JSONResponse(rows)

    async def clear_calls(self, request: Request) -> Response:
        self.state.calls.clear()
        return JSONResponse({"ok": True})

    async def list_uploads(self, request: Request) -> Response:
        """Every file uploaded in a Bot API request (sendPhoto multipart), with the count."""
        with self.state.lock:
            rows = list(self.state.uploads)
        return JSONResponse({"count": len(rows), "uploads": rows})

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse(self.state.faults.list())

    async def add_fault(self, request: Request) -> Response:
        body = await _body(request)
        bot_id = self.state.resolve_bot(body["bot"]).id if body.get("bot") else None
        try:
            fault = self.state.faults.add(body, bot_id=bot_id)
        except (FaultSpecError, ValueError, TypeError) as exc:
            raise SimError(str(exc)) from None
        return JSONResponse(fault.as_dict(), status_code=201)

    async def clear_faults(self, request: Request) -> Response:
        self.state.faults.clear()
        return JSONResponse({"ok": True})

    async def remove_fault(self, request: Request) -> Response:
        if not self.state.faults.remove(request.path_params["fault_id"]):
            raise SimError("unknown fault", 404)
        return JSONResponse({"ok": True})

    async def webhook_deliveries(self, request: Request) -> Response:
        query = request.query_params
        bot_id = self.state.resolve_bot(query["bot"]).id if "bot" in query else None
        limit = int(query.get("attempts", "100"))
        return JSONResponse({
            "bots": [row for row in self.dispatcher.summary() if bot_id is None or row["bot_id"] == bot_id],
            "attempts": self.dispatcher.recent_attempts(bot_id, limit),
        })  # fmt: skip

    async def pending_updates(self, request: Request) -> Response:
        bot = self.state.resolve_bot(request.query_params.get("bot"))
        return JSONResponse(self.state.pending_updates(bot))


def _route(path: str, endpoint: Endpoint, methods: list[str] | None = None) -> Route:
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except SimError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)

    return Route(path, guarded, methods=methods or ["GET"])


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise SimError("body must be JSON") from None
    if not isinstance(data, dict):
        raise SimError("body must be a JSON object")
    return data


def _bot_row(bot: Any) -> dict[str, Any]:
    return {
        "id": bot.id,
        "username": bot.username,
        "first_name": bot.user.first_name,
        "can_read_all_group_messages": bot.can_read_all_group_messages,
        "webhook": objects.webhook_info_json(bot),
        "has_secret_token": bool(bot.webhook.secret_token),
    }


def _message_row(stored: StoredMessage) -> dict[str, Any]:
    data = stored.data
    return {
        "chat_id": stored.chat_id,
        "message_id": stored.message_id,
        "date": data.get("date"),
        "at": stored.at,
        "from": data.get("from"),
        "sent_by_bot": stored.sent_by_bot,
        "text": data.get("text"),
        "caption": data.get("caption"),
        "has_photo": "photo" in data,
        "reply_markup": data.get("reply_markup"),
        "edit_date": data.get("edit_date"),
        "history": list(stored.history),
        "pinned": stored.pinned,
        "deleted": stored.deleted_at is not None,
        "deleted_at": stored.deleted_at,
        "message": data,
    }

"""Bot API request parameters from the query string, urlencoded/multipart forms or a JSON body.

Telegram accepts all four transports and treats every value as a string; a JSON body may carry
real numbers, booleans, objects and arrays instead. `Params` hides the difference: typed getters
accept both forms, and `for_record()` gives a JSON-safe copy (uploads become name + size).
Multipart is parsed here (stdlib only) so the simulator needs no python-multipart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request


@dataclass
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


class BodyError(Exception):
    pass


class Params:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def string(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, UploadedFile):
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value, ensure_ascii=False)
        return value if isinstance(value, str) else str(value)

    def integer(self, name: str) -> int | None:
        """The integer value, None when absent/empty; raises ValueError when not an integer."""
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(str(value).strip())

    def number(self, name: str, default: float = 0.0) -> float:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, bool):
            return value
        if value is None:
            return False
        return str(value).strip().lower() in ("true", "1", "yes", "on")

    def json(self, name: str) -> Any:
        """A JSON-typed parameter (arrays/objects arrive as JSON text in forms); None if absent or invalid."""
        value = self.values.get(name)
        if value is None or isinstance(value, (dict, list)):
            return value
        try:
            return json.loads(str(value))
        except ValueError:
            return None

    def for_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            if isinstance(value, UploadedFile):
                out[key] = {"upload": value.filename, "size": len(value.data)}
            else:
                out[key] = value
        return out


async def read_params(request: Request) -> Params:
    values: dict[str, Any] = dict(request.query_params)
    if request.method in ("GET", "HEAD"):
        return Params(values)
    body = await request.body()
    if not body:
        return Params(values)
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise BodyError("can't parse JSON object") from exc
        if not isinstance(data, dict):
            raise BodyError("JSON object expected")
        values.update(data)
    elif media_type == "multipart/form-data":
        values.update(_parse_multipart(body, content_type))
    else:  # x-www-form-urlencoded, or no content type at all
        values.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return Params(values)


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    boundary = ""
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise BodyError("multipart boundary missing")
    out: dict[str, Any] = {}
    delimiter = b"--" + boundary.encode("latin-1")
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = _disposition_params(headers.get("content-disposition", ""))
        field_name = disposition.get("name")
        if not field_name:
            continue
        if "filename" in disposition:
            out[field_name] = UploadedFile(
                disposition["filename"], headers.get("content-type", "application/octet-stream"), content
            )
        else:
            out[field_name] = content.decode("utf-8", "replace")
    return out


def _disposition_params(header: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for piece in header.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return params

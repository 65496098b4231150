"""Request body limits, enforced before any route runs (an ASGI middleware).

A body larger than its route's limit is answered 413 and never reaches the route, whether
its ``Content-Length`` says so up front or it arrives chunked. The refused body is read and
dropped (up to :data:`DRAIN_BYTES` more), so that the client sees the 413 instead of a
connection reset; a body larger still gets the 413 and the connection is closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_BYTES = 256 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a route reads a body past its limit: FastAPI passes
    HTTP exceptions raised there through, so the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: this endpoint takes at most "
                              f"{limit:,} bytes")


def too_large_message(limit: int) -> Message:
    body = json.dumps({"error": {
        "type": "UsageError", "status": 413,
        "message": f"request body too large: this endpoint takes at most {limit:,} bytes",
    }}).encode()
    return {"type": "http.response.body", "body": body}


class BodyLimit:
    """``limit_for(method, path)`` gives each request's limit in bytes."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await _answer(send, 400, json.dumps({"error": {
                "type": "UsageError", "status": 400,
                "message": "invalid Content-Length header"}}).encode())
            return
        if declared is not None and declared > limit:
            if declared <= limit + DRAIN_BYTES:
                await _drain(receive)
            await _too_large(send, limit)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_BYTES)
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _too_large(send, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent; -1 when invalid."""
    values = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
    if not values:
        return None
    if len(values) > 1 or not re.fullmatch(rb"[0-9]{1,18}", values[0]):
        return -1
    return int(values[0])


async def _drain(receive: Receive, limit: int = DRAIN_BYTES) -> None:
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _too_large(send: Send, limit: int) -> None:
    body = too_large_message(limit)["body"]
    await _answer(send, 413, body)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})

"""The writer STAC API: stac-fastapi-pgstac with Transactions, every write behind a bearer token.

Readers get a second stac-fastapi-pgstac with Transactions off (the local stack's ``stac-api``,
the chart's ``stacApi``); the publisher writes through this one. Run it with uvicorn::

    STAC_WRITE_TOKEN=... ENABLE_TRANSACTIONS_EXTENSIONS=true \\
        uvicorn cloudfree.stac_writer:create_app --factory

Any request other than GET, HEAD or OPTIONS (POST, PUT, PATCH, DELETE: every Transactions
route, bulk items included, and any a later stac-fastapi adds) needs
``Authorization: Bearer <STAC_WRITE_TOKEN>``, compared in constant time; reads stay open.
The check wraps the whole app rather than naming routes, so a write route cannot slip past it.

This module imports nothing of cloudfree: the chart mounts this same file into the upstream
stac-fastapi-pgstac image (``charts/cloudfree/files/stac_writer.py`` is a symlink to it).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

TOKEN_ENV = "STAC_WRITE_TOKEN"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_TOKEN_LENGTH = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequireBearerToken:
    """ASGI middleware: writes need the bearer token; reads and lifespan pass through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        body = json.dumps({
            "code": "Unauthorized",
            "description": "writes need 'Authorization: Bearer <token>' (the writer's token)",
        }).encode()  # fmt: skip
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="stac-writer"'),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def create_app() -> ASGIApp:
    """The pgstac app with Transactions (forced on), wrapped in the token check.

    Raises:
        RuntimeError: ``STAC_WRITE_TOKEN`` is unset or shorter than 16 characters; the
            writer never starts open.
    """
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < MIN_TOKEN_LENGTH:
        raise RuntimeError(
            f"{TOKEN_ENV} is unset or shorter than {MIN_TOKEN_LENGTH} characters; the writer "
            "STAC API refuses to start without a token (set it from a Secret)"
        )
    os.environ["ENABLE_TRANSACTIONS_EXTENSIONS"] = "true"  # read by stac_fastapi.pgstac.config
    from stac_fastapi.pgstac.app import create_app as create_pgstac_app

    return RequireBearerToken(create_pgstac_app(), token)

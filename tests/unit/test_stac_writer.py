"""cloudfree.stac_writer's token check around a small ASGI app, called over ASGI (the real
writer, in the local stack, is tested in tests/integration/test_auth.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cloudfree import stac_writer

TOKEN = "a-token-of-32-characters-0123456"


async def _inner(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["method"].encode()})


def _call(method: str, headers: dict[str, str] | None = None) -> httpx.Response:
    app = stac_writer.RequireBearerToken(_inner, TOKEN)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://writer") as client:
            return await client.request(method, "/collections/c/items", headers=headers or {})

    return asyncio.run(go())


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_pass_without_a_token(method: str) -> None:
    assert _call(method).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"bearer {TOKEN}", TOKEN,
                                           f"Bearer {TOKEN} ", f"Basic {TOKEN}"])
def test_writes_without_the_exact_token_are_refused(method: str, authorization) -> None:
    response = _call(method, {"Authorization": authorization} if authorization else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in response.text


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writes_with_the_token_pass(method: str) -> None:
    response = _call(method, {"Authorization": f"Bearer {TOKEN}"})
    assert (response.status_code, response.text) == (200, method)


@pytest.mark.parametrize("token", [None, "", "short"])
def test_the_writer_never_starts_open(monkeypatch: pytest.MonkeyPatch, token) -> None:
    if token is None:
        monkeypatch.delenv(stac_writer.TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(stac_writer.TOKEN_ENV, token)
    with pytest.raises(RuntimeError, match="STAC_WRITE_TOKEN is unset or shorter than 16"):
        stac_writer.create_app()

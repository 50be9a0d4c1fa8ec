"""cloudfree._stac_api against a tiny scripted HTTP server of this file on 127.0.0.1: retries
of 5xx, 429 (Retry-After) and broken connections, no retry of other 4xx, the bearer token."""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudfree import _stac_api as api
from cloudfree.errors import PublishError, StacApiUnreachableError

FAST = api.RetryPolicy(retries=4, backoff_s=0.01, max_retry_after_s=5.0, timeout_s=5.0)


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: dict | None
    at: float


@dataclass
class Script:
    """Answers by request: the next entry of ``answers`` (status, headers), then ``then``.
    An answer of status 0 drops the connection without a response (after reading the request,
    as when the server committed and the connection broke)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    then: tuple[int, dict[str, str]] = (200, {})
    by_method: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, method: str) -> tuple[int, dict[str, str]]:
        with self.lock:
            if self.answers:
                return self.answers.pop(0)
            return self.by_method.get(method, self.then)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            script.seen.append(Seen(self.command, self.path, self.headers.get("Authorization"),
                                    json.loads(raw) if raw else None, time.monotonic()))
            status, headers = script.next(self.command)
            if status == 0:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = json.dumps({"status": status, "id": "x"}).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def fast_policy() -> Iterator[None]:
    before = api.current_policy()
    api.configure(retries=FAST.retries, backoff_s=FAST.backoff_s,
                  max_retry_after_s=FAST.max_retry_after_s, timeout_s=FAST.timeout_s)
    yield
    api.configure(retries=before.retries, backoff_s=before.backoff_s,
                  max_retry_after_s=before.max_retry_after_s, timeout_s=before.timeout_s)


ITEM = {"type": "Feature", "id": "i1", "collection": "c1", "properties": {}}


def test_503_twice_then_200_succeeds(server) -> None:
    url, script = server
    script.answers = [(503, {}), (503, {})]
    api.upsert_item(url, ITEM, token="t0k")
    assert [(s.method, s.path) for s in script.seen] == [("POST", "/collections/c1/items")] * 3
    gaps = [b.at - a.at for a, b in zip(script.seen, script.seen[1:], strict=False)]
    assert gaps[0] >= FAST.backoff_s and gaps[1] >= 2 * FAST.backoff_s  # the backoff doubles


def test_429_with_retry_after_waits_that_long(server) -> None:
    url, script = server
    script.answers = [(429, {"Retry-After": "1"})]
    assert api.get_json(f"{url}/collections/c1") == {"status": 200, "id": "x"}
    first, second = script.seen
    assert second.at - first.at >= 1.0  # Retry-After wins over the 0.01 s backoff


def test_retry_after_as_an_http_date(server) -> None:
    url, script = server
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1-2 s ahead
    script.answers = [(503, {"Retry-After": when})]
    api.upsert_collection(url, {"id": "c1"}, token="t")
    first, second = script.seen
    assert second.at - first.at >= 0.9


def test_retry_after_longer_than_allowed_fails_clearly(server) -> None:
    url, script = server
    script.answers = [(429, {"Retry-After": "3600"})]
    with pytest.raises(PublishError, match="retry after 3600 s.*CLOUDFREE_MAX_RETRY_AFTER_S"):
        api.upsert_item(url, ITEM, token="t")
    assert len(script.seen) == 1


def test_400_fails_at_once(server) -> None:
    url, script = server
    script.answers = [(400, {})]
    with pytest.raises(PublishError, match="HTTP 400"):
        api.upsert_item(url, ITEM, token="t")
    assert len(script.seen) == 1


def test_retries_are_spent_then_the_error_says_how_many(server) -> None:
    url, script = server
    script.then = (502, {})
    with pytest.raises(PublishError, match="HTTP 502 after 5 attempts"):
        api.upsert_items(url, "c1", [ITEM], token="t")
    assert len(script.seen) == 1 + FAST.retries


def test_the_bearer_token_is_sent_on_every_write(server) -> None:
    url, script = server
    script.answers = [(409, {})]  # the item exists: POST, then PUT
    api.upsert_item(url, ITEM, token="s3cr3t-token")
    api.upsert_items(url, "c1", [ITEM], token="s3cr3t-token")
    api.delete_item(url, "c1", "i1", token="s3cr3t-token")
    assert [(s.method, s.path) for s in script.seen] == [
        ("POST", "/collections/c1/items"), ("PUT", "/collections/c1/items/i1"),
        ("POST", "/collections/c1/bulk_items"), ("DELETE", "/collections/c1/items/i1")]
    assert {s.authorization for s in script.seen} == {"Bearer s3cr3t-token"}
    api.get_json(f"{url}/collections/c1")
    assert script.seen[-1].authorization is None  # reads go without it


def test_a_post_committed_before_the_connection_broke_becomes_a_put(server, caplog) -> None:
    """The server stores the item, then the connection breaks: the retried POST finds it
    (409), and the item is replaced with a PUT; the token never reaches the log."""
    url, script = server
    script.answers = [(0, {}), (409, {})]
    with caplog.at_level(logging.DEBUG):
        api.upsert_item(url, ITEM, token="never-log-me")
    assert [s.method for s in script.seen] == ["POST", "POST", "PUT"]
    assert script.seen[-1].body == ITEM
    assert "retry 1 of 4" in caplog.text
    assert "never-log-me" not in caplog.text


@pytest.mark.parametrize(("token", "said"), [(None, "no write token was sent"),
                                             ("wrong", "the write token was refused")])
def test_401_names_the_token_and_where_it_comes_from(server, token, said) -> None:
    url, script = server
    script.then = (401, {})
    with pytest.raises(PublishError, match=said) as caught:
        api.upsert_collection(url, {"id": "c1"}, token=token)
    assert "CLOUDFREE_STAC_WRITE_TOKEN" in str(caught.value)
    assert "stac-write-token" in str(caught.value)
    assert "wrong" not in str(caught.value)
    assert len(script.seen) == 1


def test_405_says_this_is_no_writer(server) -> None:
    url, script = server
    script.by_method = {"POST": (405, {})}
    with pytest.raises(PublishError, match="takes no writes.*CLOUDFREE_STAC_WRITE_URL"):
        api.upsert_items(url, "c1", [ITEM], token="t")  # bulk 405, then the per-item POST


def test_a_server_that_never_answers_is_unreachable_after_the_retries() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    start = time.monotonic()
    with pytest.raises(StacApiUnreachableError, match="5 attempts"):
        api.get_json(f"http://127.0.0.1:{port}/")
    assert time.monotonic() - start >= sum(FAST.backoff_s * 2**i for i in range(FAST.retries))


def test_configure_keeps_what_it_is_not_given() -> None:
    policy = api.configure(retries=7)
    assert (policy.retries, policy.backoff_s, policy.max_retry_after_s) == (
        7, FAST.backoff_s, FAST.max_retry_after_s)
    assert api.current_policy() is policy

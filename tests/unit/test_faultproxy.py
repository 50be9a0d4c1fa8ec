"""The fault proxy against a tiny real upstream (http.server in a thread): it forwards
byte for byte, and each fault reaches a real client as it would from a flaky server."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests

from cloudfree.testing.faultproxy import Fault, FaultProxy


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services
    seen: list[tuple[str, str, str | None, bytes]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while (size := int(self.rfile.readline().strip(), 16)):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(length)
        type(self).seen.append((self.command, self.path, self.headers.get("Host"), body))
        if self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            payload = bytes(i % 251 for i in range(n))
        else:
            payload = b"echo:" + self.command.encode() + b":" + self.path.encode() + b":" + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Upstream", "yes")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer


@pytest.fixture
def upstream() -> Iterator[str]:
    _Upstream.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream) as p:
        yield p


def test_forwards_byte_for_byte_keeping_the_host_header(proxy: FaultProxy) -> None:
    with requests.Session() as session:  # one kept-alive connection for all three
        got = session.get(f"{proxy.url}/bytes/100000")
        posted = session.post(f"{proxy.url}/items?x=1", data=b"\x00\xffpayload")
        chunked = session.put(f"{proxy.url}/up", data=iter([b"ab", b"cd", b"ef"]))
    assert got.status_code == 200 and got.content == bytes(i % 251 for i in range(100000))
    assert got.headers["X-Upstream"] == "yes"
    assert posted.content == b"echo:POST:/items?x=1:\x00\xffpayload"
    assert chunked.content == b"echo:PUT:/up:abcdef"
    hosts = {host for _, _, host, _ in _Upstream.seen}
    assert hosts == {proxy.netloc}  # what the client signed is what upstream sees
    assert [(e.method, e.path, e.status, e.fault) for e in proxy.requests] == [
        ("GET", "/bytes/100000", 200, None), ("POST", "/items?x=1", 200, None),
        ("PUT", "/up", 200, None)]


def test_head_and_expect_100_continue(proxy: FaultProxy) -> None:
    assert requests.head(f"{proxy.url}/bytes/10").headers["Content-Length"] == "10"
    conn = http.client.HTTPConnection(*proxy.address, timeout=5)
    conn.putrequest("PUT", "/expect")
    conn.putheader("Content-Length", "3")
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    conn.send(b"xyz")
    assert conn.getresponse().read() == b"echo:PUT:/expect:xyz"


def test_status_at_the_nth_matching_request(proxy: FaultProxy) -> None:
    fault = proxy.add(Fault(kind="status", status=503, nth=2, match=r"^GET /a"))
    codes = [requests.get(f"{proxy.url}/{p}").status_code for p in ("a", "b", "a", "a")]
    assert codes == [200, 200, 503, 200]
    assert proxy.counts == {fault.name: 1}
    assert [e.path for e in proxy.requests if e.fault] == ["/a"]
    assert len(_Upstream.seen) == 3  # the injected answer never reached upstream


def test_429_with_retry_after_every_second_request_at_most_twice(proxy: FaultProxy) -> None:
    fault = proxy.add(Fault(kind="status", status=429, retry_after=7, every=2, times=2))
    responses = [httpx.get(f"{proxy.url}/x") for _ in range(8)]
    assert [r.status_code for r in responses] == [200, 429, 200, 429, 200, 200, 200, 200]
    assert responses[1].headers["Retry-After"] == "7"
    assert "429" in responses[1].json()["description"]
    assert proxy.injected(fault) == 2


def test_rate_is_seeded_and_deterministic(upstream: str) -> None:
    def sequence(seed: int) -> list[int]:
        with FaultProxy(upstream) as p:
            p.add(Fault(kind="status", status=500, rate=0.3, seed=seed))
            with requests.Session() as s:
                return [s.get(f"{p.url}/r").status_code for _ in range(40)]

    first, again, other = sequence(1), sequence(1), sequence(2)
    assert first == again
    assert first != other
    assert 4 <= first.count(500) <= 20


def test_reset_is_an_rst(proxy: FaultProxy) -> None:
    proxy.add(Fault(kind="reset", nth=1))
    with pytest.raises(requests.ConnectionError) as info:
        requests.get(f"{proxy.url}/x")
    assert "reset" in str(info.value).lower()
    assert requests.get(f"{proxy.url}/x").status_code == 200
    assert proxy.requests[0].status is None and len(_Upstream.seen) == 1


def test_stall_delays_then_forwards(proxy: FaultProxy) -> None:
    proxy.add(Fault(kind="stall", stall_s=0.6, nth=1))
    start = time.monotonic()
    assert requests.get(f"{proxy.url}/slow", timeout=5).content == b"echo:GET:/slow:"
    assert time.monotonic() - start >= 0.6
    with pytest.raises(requests.Timeout):  # and a client timeout fires on a longer one
        proxy.add(Fault(kind="stall", stall_s=3, nth=2, match="/slower"))
        requests.get(f"{proxy.url}/slower")
        requests.get(f"{proxy.url}/slower", timeout=0.5)


def test_stall_then_close_and_a_dead_client_is_never_forwarded(proxy: FaultProxy) -> None:
    proxy.add(Fault(kind="stall", stall_s=0.3, stall_then="close", match="/closed"))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/closed", timeout=5)
    stall = proxy.add(Fault(kind="stall", stall_s=30, match="/publish"))
    sock = socket.create_connection(proxy.address)
    sock.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert proxy.wait_injected(stall, timeout_s=5)
    sock.close()  # the client dies during the stall
    assert proxy.wait(lambda p: len(p.requests) == 2, timeout_s=5)
    assert not any(path == "/publish" for _, path, _, _ in _Upstream.seen)


def test_truncate_sends_the_full_length_and_half_the_body(proxy: FaultProxy) -> None:
    proxy.add(Fault(kind="truncate", match=r"^GET /bytes/"))
    conn = http.client.HTTPConnection(*proxy.address, timeout=5)
    conn.request("GET", "/bytes/1000")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "1000"
    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()
    assert len(info.value.partial) == 500
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{proxy.url}/bytes/1000")
    assert requests.post(f"{proxy.url}/other").status_code == 200  # no match: forwarded


def test_clear_and_bad_rules(proxy: FaultProxy) -> None:
    proxy.add(Fault(kind="status", status=502))
    assert requests.get(f"{proxy.url}/x").status_code == 502
    proxy.clear()
    assert requests.get(f"{proxy.url}/x").status_code == 200 and proxy.counts == {}
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http://host:port"):
        FaultProxy("https://example.org")


def _session(retry: object) -> requests.Session:
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
    return session


def test_search_retry_policy_backs_off_and_honours_retry_after(proxy: FaultProxy) -> None:
    """The STAC reads' policy (cloudfree.search.retry_policy) through the proxy: 503s and
    a POST are retried, after backoff_s, then doubled; Retry-After wins."""
    from cloudfree.search import retry_policy

    proxy.add(Fault(kind="status", status=503, match="^POST /search", times=2))
    start = time.monotonic()
    got = _session(retry_policy(retries=3, backoff_s=0.2)).post(f"{proxy.url}/search",
                                                              data=b"q")
    assert got.content == b"echo:POST:/search:q"
    assert time.monotonic() - start >= 0.2 + 0.4
    proxy.clear()
    proxy.add(Fault(kind="status", status=429, retry_after=1, times=1))
    start = time.monotonic()
    assert _session(retry_policy(backoff_s=0.01)).get(f"{proxy.url}/x").status_code == 200
    assert time.monotonic() - start >= 1.0


def test_search_retry_policy_gives_up(proxy: FaultProxy) -> None:
    from cloudfree.search import retry_policy

    long = proxy.add(Fault(kind="status", status=503, retry_after=600, times=1))
    with pytest.raises(requests.exceptions.RetryError, match="Retry-After 600"):
        _session(retry_policy(max_retry_after_s=5)).get(f"{proxy.url}/x")
    assert proxy.injected(long) == 1
    proxy.clear()
    always = proxy.add(Fault(kind="status", status=500))
    with pytest.raises(requests.exceptions.RetryError):
        _session(retry_policy(retries=2, backoff_s=0.01)).get(f"{proxy.url}/x")
    assert proxy.injected(always) == 3
    proxy.clear()
    bad = proxy.add(Fault(kind="status", status=400))  # the request's fault: never retried
    assert _session(retry_policy()).get(f"{proxy.url}/x").status_code == 400
    assert proxy.injected(bad) == 1

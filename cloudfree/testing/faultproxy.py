"""A small fault-injecting HTTP/1.1 reverse proxy, for tests and benchmarks.

It listens on a free ``127.0.0.1`` port, in background threads, in front of one real
upstream (the local SeaweedFS S3 endpoint, a stac-fastapi) and forwards every request
byte for byte: the request head is passed on untouched, the ``Host`` header included, so
S3 SigV4 signatures made for the proxy's address still validate upstream. Faults are
injected by rule (:class:`Fault`): an error status (5xx, or 429 with ``Retry-After``), a
connection reset (RST, through ``SO_LINGER`` 0), a stall (the connection held, then
answered or closed) or a truncated body (the full ``Content-Length``, half the body, then
a close). A rule fires at the Nth matching request, every Nth, at a seeded rate, or on
every match, at most ``times`` times.

Why our own: the fault must hit the real clients (botocore, GDAL's curl, requests,
httpx) on the wire, exactly as a flaky load balancer would, and be deterministic.

    with FaultProxy(upstream="http://127.0.0.1:8333") as proxy:
        proxy.add(Fault(kind="status", status=503, match=r"^PUT ", times=2))
        ...  # point the client at proxy.url
        assert proxy.counts[...]
"""

from __future__ import annotations

import random
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple
from urllib.parse import urlparse

__all__ = ("Fault", "FaultProxy", "Logged")

FaultKind = Literal["status", "reset", "stall", "truncate"]
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}
_MAX_HEAD = 64 * 1024


@dataclass
class Fault:
    """One injection rule.

    Attributes:
        kind: ``"status"`` (answer ``status`` with a small body, never forwarded),
            ``"reset"`` (RST the client connection, never forwarded), ``"stall"`` (hold
            the connection ``stall_s``, then forward, or close when ``stall_then`` is
            ``"close"``) or ``"truncate"`` (forward, then send the upstream's headers with
            the full ``Content-Length`` and only half the body, and close).
        status: the status of a ``"status"`` fault.
        retry_after: the ``Retry-After`` header (seconds) of a ``"status"`` fault.
        every: fire on every Nth matching request (N, 2N, ...).
        nth: fire on the Nth matching request only (1-based).
        rate: fire with this probability, drawn from ``random.Random(seed)``.
        seed: the seed of ``rate``.
        match: a regular expression searched in ``"METHOD target"`` (the target is the
            path with its query string), e.g. ``r"^POST /collections/.*/items"``.
        times: fire at most this many times (None: no limit).
        stall_s: how long a ``"stall"`` holds the connection.
        stall_then: after a stall, ``"forward"`` the request or ``"close"`` the connection.
        name: the key of this fault in :attr:`FaultProxy.counts` (default: derived).

    With none of ``every``, ``nth`` and ``rate``, every matching request fires.
    """

    kind: FaultKind
    status: int = 503
    retry_after: float | None = None
    every: int | None = None
    nth: int | None = None
    rate: float | None = None
    seed: int = 0
    match: str = ""
    times: int | None = None
    stall_s: float = 10.0
    stall_then: Literal["forward", "close"] = "forward"
    name: str = ""
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _matched: int = field(default=0, init=False, repr=False, compare=False)
    _injected: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("status", "reset", "stall", "truncate"):
            raise ValueError(f"unknown fault kind {self.kind!r}: give status, reset, stall or "
                             "truncate")
        if self.kind == "status" and not 100 <= self.status <= 599:
            raise ValueError(f"fault status {self.status} is not an HTTP status")
        if self.every is not None and self.every < 1 or self.nth is not None and self.nth < 1:
            raise ValueError("every and nth count matching requests from 1")
        self._rng = random.Random(self.seed)
        self._pattern = re.compile(self.match)
        if not self.name:
            detail = str(self.status) if self.kind == "status" else ""
            self.name = f"{self.kind}{detail}" + (f" {self.match}" if self.match else "")

    def _fires(self, request_line: str) -> bool:
        """Count a matching request and say whether this rule fires on it (under the
        proxy's lock, so the order of requests decides, deterministically)."""
        if not self._pattern.search(request_line):
            return False
        self._matched += 1
        if self.times is not None and self._injected >= self.times:
            return False
        n = self._matched
        if self.nth is not None:
            fires = n == self.nth
        elif self.every is not None:
            fires = n % self.every == 0
        elif self.rate is not None:
            fires = self._rng.random() < self.rate
        else:
            fires = True
        if fires:
            self._injected += 1
        return fires


class Logged(NamedTuple):
    """One request seen by the proxy: what the client got (a status, or None when the
    connection was reset or closed early) and which fault, if any, was injected."""

    method: str
    path: str
    status: int | None
    fault: str | None


class _Closed(Exception):
    """The peer closed the connection."""


class _Reader:
    """Buffered reads from a socket, keeping the raw bytes (nothing is re-encoded)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed
        self.buf += chunk

    def until(self, marker: bytes, limit: int = _MAX_HEAD) -> bytes:
        while (end := self.buf.find(marker)) < 0:
            if len(self.buf) > limit:
                raise _Closed
            self._fill()
        end += len(marker)
        data, self.buf = self.buf[:end], self.buf[end:]
        return data

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def rest(self) -> bytes:
        """Everything until the peer closes."""
        try:
            while True:
                self._fill()
        except (_Closed, OSError):
            pass
        data, self.buf = self.buf, b""
        return data

    def chunked(self) -> bytes:
        """A chunked body, raw: chunk sizes, chunks, the last chunk and the trailers."""
        out = b""
        while True:
            size_line = self.until(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = self.until(b"\r\n")
                    out += line
                    if line == b"\r\n":
                        return out
            out += self.exactly(size + 2)


def _headers(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parsed = []
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            parsed.append((name.strip().lower(), value.strip()))
    return lines[0], parsed


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


def _read_body(reader: _Reader, headers: list[tuple[str, str]], *, until_close: bool) -> bytes:
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        return reader.chunked()
    length = _header(headers, "content-length")
    if length is not None:
        return reader.exactly(int(length))
    return reader.rest() if until_close else b""


def _reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN: SO_LINGER on, timeout 0."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """A fault-injecting reverse proxy in front of ``upstream`` (``http://host:port``).

    Use as a context manager (or :meth:`start` / :meth:`close`). :attr:`url` is where
    clients connect; :meth:`add` adds a fault rule, :meth:`clear` removes them all;
    :attr:`counts` maps each rule's name to its injections; :attr:`requests` logs every
    request (method, path, status, fault).
    """

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", port: int = 0,
                 upstream_timeout_s: float = 120.0) -> None:
        url = urlparse(upstream)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"upstream {upstream!r}: give http://host:port (plain HTTP)")
        self.upstream = (url.hostname, url.port)
        self.upstream_timeout_s = upstream_timeout_s
        self._bind = (host, port)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._log: list[Logged] = []
        self._sockets: set[socket.socket] = set()
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FaultProxy:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(self._bind)
        server.listen(128)
        server.settimeout(0.2)
        self._server = server
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the proxy is not started; use it as a context manager")
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def netloc(self) -> str:
        """``host:port``, as GDAL's ``AWS_S3_ENDPOINT`` wants it."""
        host, port = self.address
        return f"{host}:{port}"

    # ------------------------------------------------------------------ rules and records

    def add(self, fault: Fault) -> Fault:
        """Add a rule (checked in the order added; the first that fires wins)."""
        with self._lock:
            if any(f.name == fault.name for f in self._faults):
                fault.name = f"{fault.name} #{len(self._faults) + 1}"
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every rule (the counts of removed rules are forgotten too)."""
        with self._lock:
            self._faults.clear()

    @property
    def counts(self) -> dict[str, int]:
        """Injections so far, per rule name."""
        with self._lock:
            return {f.name: f._injected for f in self._faults}

    def injected(self, fault: Fault) -> int:
        with self._lock:
            return fault._injected

    @property
    def requests(self) -> list[Logged]:
        with self._lock:
            return list(self._log)

    def wait(self, predicate: Callable[[FaultProxy], bool], timeout_s: float = 60.0) -> bool:
        """Block until ``predicate(self)`` holds (checked after every request), or the
        timeout passes; returns whether it holds."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                self._lock.release()
                try:
                    if predicate(self):
                        return True
                finally:
                    self._lock.acquire()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def wait_injected(self, fault: Fault, n: int = 1, timeout_s: float = 60.0) -> bool:
        """Block until ``fault`` fired ``n`` times (a stall counts when it starts)."""
        return self.wait(lambda p: p.injected(fault) >= n, timeout_s)

    def _choose(self, request_line: str) -> Fault | None:
        with self._lock:
            chosen = None
            for fault in self._faults:
                if fault._fires(request_line) and chosen is None:
                    chosen = fault
            if chosen is not None:
                self._changed.notify_all()
            return chosen

    def _record(self, entry: Logged) -> None:
        with self._changed:
            self._log.append(entry)
            self._changed.notify_all()

    # ------------------------------------------------------------------ the wire

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._sockets.add(client)
            threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn",
                             daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        sock = socket.create_connection(self.upstream, timeout=self.upstream_timeout_s)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _forget(self, *socks: socket.socket | None) -> None:
        with self._lock:
            for sock in socks:
                if sock is not None:
                    self._sockets.discard(sock)

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        reader = _Reader(client)
        try:
            while not self._stopping.is_set():
                keep, upstream = self._one_request(client, reader, upstream)
                if not keep:
                    break
        except (_Closed, OSError, ValueError):
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            self._forget(client, upstream)

    def _hold(self, client: socket.socket, seconds: float) -> bool:
        """Hold the client ``seconds``; False as soon as it hangs up (or the proxy stops),
        so a stalled request whose client died is never forwarded."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.is_set():
                return False
            readable, _, _ = select.select([client], [], [], min(left, 0.1))
            if readable:
                try:
                    if not client.recv(1, socket.MSG_PEEK):
                        return False
                except OSError:
                    return False
                time.sleep(min(left, 0.1))  # a pipelined request waits its turn
        return not self._stopping.is_set()

    def _one_request(self, client: socket.socket, reader: _Reader,
                     upstream: socket.socket | None) -> tuple[bool, socket.socket | None]:
        """Serve one request; returns whether to keep the client connection open, and the
        upstream connection to reuse."""
        head = reader.until(b"\r\n\r\n")
        request_line, headers = _headers(head)
        method, target, version = (request_line.split(" ", 2) + ["", ""])[:3]
        if "100-continue" in (_header(headers, "expect") or "").lower():
            # answer the interim response ourselves, so the whole body can be read before
            # a fault is decided (Expect is not part of a SigV4 signature)
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            head = b"".join(line + b"\r\n" for line in head.split(b"\r\n")
                            if not line.lower().startswith(b"expect:"))[:-2]
        body = _read_body(reader, headers, until_close=False)
        client_close = ((_header(headers, "connection") or "").lower() == "close"
                        or version == "HTTP/1.0")
        fault = self._choose(f"{method} {target}")
        label = fault.name if fault else None

        if fault is not None and fault.kind == "status":
            reason = _REASONS.get(fault.status, "Injected Fault")
            payload = (f'{{"code": "InjectedFault", "description": "fault proxy: '
                       f'{fault.status} {reason}"}}').encode()
            extra = (f"Retry-After: {fault.retry_after:g}\r\n"
                     if fault.retry_after is not None else "")
            client.sendall(
                f"HTTP/1.1 {fault.status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n{extra}\r\n".encode() + payload)
            self._record(Logged(method, target, fault.status, label))
            return not client_close, upstream
        if fault is not None and fault.kind == "reset":
            self._record(Logged(method, target, None, label))
            self._forget(client)
            _reset(client)
            raise _Closed
        if fault is not None and fault.kind == "stall":
            if not self._hold(client, fault.stall_s) or fault.stall_then == "close":
                self._record(Logged(method, target, None, label))
                raise _Closed

        # forward, byte for byte
        for attempt in (0, 1):
            if upstream is None:
                upstream = self._connect_upstream()
            try:
                upstream.sendall(head + body)
                up_reader = _Reader(upstream)
                response_head = up_reader.until(b"\r\n\r\n")
                break
            except (_Closed, OSError):
                # a kept-alive upstream connection the server had closed: once more, fresh
                self._forget(upstream)
                upstream.close()
                upstream = None
                if attempt:
                    raise
        assert upstream is not None  # the loop either connected or raised
        status_line, response_headers = _headers(response_head)
        status = int(status_line.split(" ")[1])
        upstream_close = (_header(response_headers, "connection") or "").lower() == "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            response_body = b""
        else:
            response_body = _read_body(up_reader, response_headers, until_close=True)
            if _header(response_headers, "content-length") is None and \
                    "chunked" not in (_header(response_headers, "transfer-encoding") or ""):
                upstream_close = True
        if up_reader.buf:  # nothing may follow a response we did not ask for
            upstream_close = True

        if upstream_close:
            self._forget(upstream)
            upstream.close()
            upstream = None
        if fault is not None and fault.kind == "truncate" and response_body:
            client.sendall(response_head + response_body[: len(response_body) // 2])
            self._record(Logged(method, target, status, label))
            self._forget(client)
            client.shutdown(socket.SHUT_WR)
            raise _Closed
        client.sendall(response_head + response_body)
        self._record(Logged(method, target, status, label))
        return not (client_close or upstream_close), upstream

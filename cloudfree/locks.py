"""Per-item locks on the object store, so two runs of one tile never write it at once.

A lock is one small JSON object, ``{output_root}/_locks/{item_id}.lock``, created with a
conditional PUT (``If-None-Match: *``): of two runs that race for it, the store lets
exactly one create it. The holder refreshes it (a conditional PUT on its own ETag) every
quarter of its time to live, and deletes it when done, on failure too. A waiting run polls
with backoff; a lock whose ETag has not changed for its time to live, as the waiter's own
clock measures it, belongs to a run that died, and is taken over by a conditional PUT on
that ETag (so of two waiters, one wins). No clocks are compared between machines.

What it guarantees: while a holder keeps refreshing, nobody else holds the lock. A holder
that cannot refresh for a whole time to live (a paused process, a store that is down) may
lose it; it finds out at its next refresh and :meth:`TileLock.check` then raises, which the
publisher calls before it publishes. A holder paused for longer than the time to live
right between that check and its publish is the one case left, and the publisher's
read-back of the item after publishing (:func:`cloudfree.tile.mosaic_tile`) catches it.

The store must honour conditional writes (AWS S3 and SeaweedFS do); the first lock of a
process checks it once per bucket and refuses to go on without them. Local output roots
(a path or ``file://``) lock through ``fcntl`` on this machine only.

``CLOUDFREE_LOCK_TTL_S`` (default 60 s) and ``CLOUDFREE_LOCK_WAIT_S`` (default 3600 s, the
default task timeout) set the defaults for processes, Dask workers included, that inherit
the environment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cloudfree.errors import TileLockError

log = logging.getLogger(__name__)

#: The folder of the lock objects under an output root.
LOCKS_DIR = "_locks"
LOCK_SUFFIX = ".lock"


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, "") or default)
    except ValueError:
        return default
    return value if value >= 0 else default


#: A lock not refreshed for this long (s) belongs to a dead run and may be taken over.
DEFAULT_TTL_S = _env_seconds("CLOUDFREE_LOCK_TTL_S", 60.0)
#: How long (s) a run waits for another run of its tile before it fails.
DEFAULT_WAIT_S = _env_seconds("CLOUDFREE_LOCK_WAIT_S", 3600.0)
_MAX_POLL_S = 5.0


def lock_url(output_root: str, item_id: str) -> str:
    """Where the lock of an item lives."""
    return f"{output_root.rstrip('/')}/{LOCKS_DIR}/{item_id}{LOCK_SUFFIX}"


@dataclass(frozen=True)
class LockInfo:
    """What a lock object says about its holder."""

    owner: str
    item: str
    host: str
    pid: int
    ttl_s: float
    beat: int
    acquired_at: str

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> LockInfo | None:
        """The lock's fields; ``None`` for an object that is not a lock of ours."""
        try:
            raw = json.loads(data)
            return cls(owner=str(raw["owner"]), item=str(raw["item"]), host=str(raw["host"]),
                       pid=int(raw["pid"]), ttl_s=float(raw["ttl_s"]), beat=int(raw["beat"]),
                       acquired_at=str(raw["acquired_at"]))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"held by {self.host} pid {self.pid} since {self.acquired_at}"


# --------------------------------------------------------------------------- backends


class _Backend(Protocol):
    def create(self, data: bytes) -> str | None: ...  # ETag, or None: it exists
    def read(self) -> tuple[bytes, str] | None: ...  # (body, ETag), or None: absent
    def replace(self, data: bytes, etag: str) -> str | None: ...  # new ETag, or None
    def delete(self, etag: str) -> bool: ...


def _precondition_failed(exc: BaseException) -> bool:
    """Whether an s3fs error is the store refusing a conditional write (HTTP 412)."""
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("PreconditionFailed", "412") or status == 412
    return False


def _unreachable(url: str, exc: OSError) -> Exception:
    """The store kept failing (s3fs's own retries spent): a clear, retryable error."""
    from cloudfree.errors import StorageUnreachableError

    return StorageUnreachableError(url, f"{type(exc).__name__}: {exc}")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


class _S3Backend:
    """Conditional PUT/DELETE through an s3fs filesystem."""

    def __init__(self, fs: Any, url: str) -> None:
        self.fs = fs
        self.url = url
        self.bucket, self.key = split_s3(url)

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            response = self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key,
                                       Body=data, **condition)
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise _unreachable(self.url, exc) from exc
        return str(response.get("ETag", ""))

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, etag: str) -> str | None:
        return self._put(data, IfMatch=etag)

    def read(self) -> tuple[bytes, str] | None:
        # The ETag first, then the body: a body newer than the ETag can only make the
        # caller's conditional write on that ETag fail, never succeed wrongly.
        path = f"{self.bucket}/{self.key}"
        try:
            etag = str(self.fs.info(path)["ETag"])
            return self.fs.cat_file(path), etag
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unreachable(self.url, exc) from exc

    def delete(self, etag: str) -> bool:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key, IfMatch=etag)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise _unreachable(self.url, exc) from exc
        return True


class _LocalBackend:
    """The same operations on a local file, made atomic by ``fcntl.flock`` on a guard file
    beside it (one machine only)."""

    def __init__(self, url: str) -> None:
        self.path = Path(url.removeprefix("file://"))

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / ".guard", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _current(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def _write(self, data: bytes) -> str:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        return hashlib.sha256(data).hexdigest()

    def create(self, data: bytes) -> str | None:
        with self._guard():
            return None if self.path.exists() else self._write(data)

    def replace(self, data: bytes, etag: str) -> str | None:
        with self._guard():
            current = self._current()
            return self._write(data) if current and current[1] == etag else None

    def read(self) -> tuple[bytes, str] | None:
        with self._guard():
            return self._current()

    def delete(self, etag: str) -> bool:
        with self._guard():
            current = self._current()
            if current is None or current[1] != etag:
                return False
            self.path.unlink()
            return True


def backend(url: str, fs: Any) -> _Backend:
    """The lock operations for ``url``: conditional S3 requests, or a local file."""
    if url.startswith("s3://"):
        _check_conditional_writes(fs, url)
        return _S3Backend(fs, url)
    if "://" in url and not url.startswith("file://"):
        raise TileLockError(url, "give an s3:// URL, a file:// URL or a local path as the "
                                 "output root")
    return _LocalBackend(url)


_CHECKED: set[tuple[str, str]] = set()
_CHECKED_LOCK = threading.Lock()


def _check_conditional_writes(fs: Any, url: str) -> None:
    """Once per process and bucket: the store must refuse a second ``If-None-Match: *``
    PUT of one key, or locks would not exclude anything."""
    bucket, key = split_s3(url)
    endpoint = str(getattr(fs, "client_kwargs", {}).get("endpoint_url", "s3"))
    with _CHECKED_LOCK:
        if (endpoint, bucket) in _CHECKED:
            return
        probe = _S3Backend(fs, f"s3://{bucket}/{key.rsplit('/', 1)[0]}/.probe-"
                                f"{secrets.token_hex(6)}")
        first = probe.create(b"probe")
        try:
            second = probe.create(b"probe again")
        finally:
            probe.fs.rm_file(f"{probe.bucket}/{probe.key}")
        if first is None or second is not None:
            raise TileLockError(url, f"the object store {endpoint} does not honour conditional "
                                     "writes (PUT with If-None-Match: *), which keep two runs "
                                     "of one tile apart; use a store that does (AWS S3, "
                                     "SeaweedFS)")
        _CHECKED.add((endpoint, bucket))


# --------------------------------------------------------------------------- the lock


class TileLock:
    """One run's hold on one item's lock; a context manager (released on any exit).

    ``ttl_s``: how long the lock lives without a refresh (it is refreshed every quarter of
    that); ``wait_s``: how long :meth:`acquire` waits for another holder before it raises
    :class:`~cloudfree.errors.TileLockError` (0: try once)."""

    def __init__(self, url: str, *, fs: Any, ttl_s: float | None = None,
                 wait_s: float | None = None) -> None:
        self.url = url
        self.ttl_s = DEFAULT_TTL_S if ttl_s is None else float(ttl_s)
        self.wait_s = DEFAULT_WAIT_S if wait_s is None else float(wait_s)
        if self.ttl_s <= 0:
            raise TileLockError(url, f"the lock's time to live must be positive, got "
                                     f"{self.ttl_s:g} s (CLOUDFREE_LOCK_TTL_S)")
        self._backend = backend(url, fs)
        self.owner = secrets.token_hex(8)
        self._etag: str | None = None
        self._beat = 0
        self._acquired_at = ""
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.waited_s = 0.0

    def _info(self) -> LockInfo:
        return LockInfo(owner=self.owner, item=self.url.rsplit("/", 1)[-1].removesuffix(
            LOCK_SUFFIX), host=socket.gethostname(), pid=os.getpid(), ttl_s=self.ttl_s,
            beat=self._beat, acquired_at=self._acquired_at)

    def acquire(self) -> TileLock:
        """Take the lock, waiting (polling with backoff) while another live run holds it."""
        start = time.monotonic()
        self._acquired_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        seen: tuple[str, float] | None = None  # (ETag, when first seen) of another's lock
        delay = 0.05
        while True:
            etag = self._backend.create(self._info().to_bytes())
            if etag is None:
                current = self._backend.read()
                if current is None:
                    continue  # released between the two requests: try again at once
                data, etag_now = current
                info = LockInfo.parse(data)
                if info is not None and info.owner == self.owner:
                    etag = etag_now  # our create went through; its answer was lost
                else:
                    now = time.monotonic()
                    ttl = info.ttl_s if info is not None else self.ttl_s
                    if seen is None or seen[0] != etag_now:
                        seen = (etag_now, now)
                    elif now - seen[1] >= ttl:
                        etag = self._backend.replace(self._info().to_bytes(), etag_now)
                        if etag is not None:
                            log.warning("tile lock %s: took over a lock not refreshed for "
                                        "%.0f s (%s)", self.url, now - seen[1],
                                        info.describe() if info else "unreadable")
                        seen = None
                    if etag is None:
                        waited = now - start
                        if waited >= self.wait_s:
                            holder = info.describe() if info else "held by an unreadable lock"
                            raise TileLockError(self.url, (
                                f"{holder}; waited {waited:.0f} s. Another run of this tile is "
                                "in progress: let it finish, then re-run (a tile published "
                                "with the same inputs is skipped). If no run is alive, the "
                                f"lock is taken over once it is {ttl:g} s old"))
                        time.sleep(min(delay, max(0.0, self.wait_s - waited), _MAX_POLL_S))
                        delay = min(delay * 2, _MAX_POLL_S)
                        continue
            self._etag = etag
            self.waited_s = time.monotonic() - start
            self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                            name=f"cloudfree-lock-{self.owner}")
            self._thread.start()
            return self

    def _refresh_loop(self) -> None:
        interval = max(self.ttl_s / 4, 0.05)
        last_ok = time.monotonic()
        while not self._stop.wait(interval):
            try:
                self._beat += 1
                assert self._etag is not None
                etag = self._backend.replace(self._info().to_bytes(), self._etag)
                if etag is None:
                    current = self._backend.read()
                    info = LockInfo.parse(current[0]) if current else None
                    if current is not None and info is not None and info.owner == self.owner:
                        etag = current[1]  # our refresh went through; its answer was lost
                    else:
                        self._lost = (info.describe() if info else "deleted") + " after " \
                            "this run failed to refresh it in time"
                        return
                self._etag = etag
                last_ok = time.monotonic()
            except Exception as exc:  # the store is down: keep trying until the TTL is up
                log.warning("tile lock %s: refresh failed (%s: %s)", self.url,
                            type(exc).__name__, exc)
                if time.monotonic() - last_ok > self.ttl_s:
                    self._lost = f"not refreshed for {self.ttl_s:g} s ({exc})"
                    return

    def check(self) -> None:
        """Raise :class:`~cloudfree.errors.TileLockError` when the lock was lost (another
        run may hold it now): the caller must not publish."""
        if self._lost is not None:
            raise TileLockError(self.url, f"lost: {self._lost}; nothing was published. "
                                          "Re-run the tile")

    def release(self) -> None:
        """Stop refreshing and delete the lock if it is still ours. Never raises: a lock
        that cannot be deleted now goes stale after its TTL (and ``cloudfree gc`` removes
        it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._etag is None or self._lost is not None:
            return
        try:
            for _ in range(3):
                if self._backend.delete(self._etag):
                    return
                current = self._backend.read()
                info = LockInfo.parse(current[0]) if current else None
                if current is None or info is None or info.owner != self.owner:
                    return
                self._etag = current[1]  # ours, refreshed once more after its last answer
        except Exception as exc:
            log.warning("tile lock %s: could not delete it (%s: %s); it goes stale in %g s",
                        self.url, type(exc).__name__, exc, self.ttl_s)
        finally:
            self._etag = None

    def __enter__(self) -> TileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock(url: str, fs: Any) -> tuple[LockInfo | None, str] | None:
    """A lock's fields (``None`` when unreadable) and ETag; ``None`` when absent."""
    current = backend(url, fs).read()
    if current is None:
        return None
    return LockInfo.parse(current[0]), current[1]


def delete_lock(url: str, fs: Any, etag: str) -> bool:
    """Delete a lock only if it is still the version ``etag`` (it was not refreshed)."""
    return backend(url, fs).delete(etag)


__all__ = ("DEFAULT_TTL_S", "DEFAULT_WAIT_S", "LOCKS_DIR", "LOCK_SUFFIX", "LockInfo", "TileLock",
           "delete_lock", "lock_url", "read_lock", "split_s3")

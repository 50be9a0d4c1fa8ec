"""Object storage edges: s3fs filesystems and GDAL options for s3:// hrefs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import aiohttp
import s3fs
from botocore.exceptions import BotoCoreError, ClientError
from rasterio.session import Session

from cloudfree.errors import StorageUnreachableError

# GDAL settings for COG reads over HTTP(S)/S3, one comment per option.
DEFAULT_GDAL_ENV: dict[str, str | int] = {
    # Never list the "directory" of a COG before opening it: one GET instead of a LIST.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # Only these extensions are treated as rasters by /vsicurl/ and /vsis3/.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF",
    # Merge adjacent range requests into one (bytes).
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    # Bytes of the first read; holds the header and tile offsets of our COGs.
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    # Retries of one request on 429, 500, 502, 503 and 504, and (GDAL >= 3.7) on a
    # timed-out or reset connection; rasterio 1.4 ships GDAL 3.10.
    "GDAL_HTTP_MAX_RETRY": 4,
    # Seconds before the first retry; GDAL doubles it (with jitter) for each next one,
    # and waits a 429's or 503's Retry-After instead when the server gives one.
    "GDAL_HTTP_RETRY_DELAY": 1,
    # The whole of one request, s: a stalled read fails with "Operation timed out", which
    # GDAL retries, instead of hanging the tile. (No GDAL_HTTP_LOW_SPEED_TIME: curl's
    # low-speed abort, "Operation too slow", is not an error GDAL retries, so a stall
    # would fail the read at once; tested in tests/integration/test_faults.py.)
    "GDAL_HTTP_TIMEOUT": 30,
    # Seconds to open the TCP connection; a dead endpoint fails fast.
    "GDAL_HTTP_CONNECTTIMEOUT": 10,
    # Per-process block cache (MB).
    "GDAL_CACHEMAX": 256,
}


def gdal_http_options(*, timeout_s: int = 30, retries: int = 4,
                      retry_delay_s: float = 1.0) -> dict[str, str | int]:
    """:data:`DEFAULT_GDAL_ENV` with the timeout and retries given (the connect timeout
    kept within the total timeout)."""
    return {
        **DEFAULT_GDAL_ENV,
        "GDAL_HTTP_TIMEOUT": int(timeout_s),
        "GDAL_HTTP_CONNECTTIMEOUT": max(1, min(10, int(timeout_s))),
        "GDAL_HTTP_MAX_RETRY": int(retries),
        # GDAL reads a fractional delay; it is a string so GDAL gets "0.5", not "0"
        "GDAL_HTTP_RETRY_DELAY": f"{retry_delay_s:g}",
    }


def s3_config_kwargs(*, retries: int = 4, connect_timeout_s: float = 5.0,
                     read_timeout_s: float = 30.0) -> dict[str, Any]:
    """botocore ``Config`` options (s3fs ``config_kwargs``) of every S3 call, the COG
    uploads (``fs.pipe``) included."""
    return {
        # fail in seconds, not minutes, when the endpoint is down
        "connect_timeout": connect_timeout_s,
        # a stalled answer fails (and is retried) instead of hanging the upload
        "read_timeout": read_timeout_s,
        # botocore's "standard" mode retries 500, 502, 503, 504, throttling (429,
        # SlowDown), connection errors and read timeouts, with exponential backoff and
        # jitter; max_attempts counts the first try. (botocore ignores Retry-After.)
        "retries": {"max_attempts": int(retries) + 1, "mode": "standard"},
    }


class S3Session(Session):  # type: ignore[misc]  # rasterio ships no type information
    """A rasterio session holding static S3 credentials, without boto3.

    rasterio refuses credentials passed as plain GDAL options; a session is the way
    in. It pickles, so it travels to Dask workers inside the read tasks.
    """

    def __init__(self, key: str, secret: str, *, region: str = "us-east-1") -> None:
        self._creds = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        self._region = region

    @classmethod
    def hascreds(cls, config: dict[str, Any]) -> bool:
        return "AWS_ACCESS_KEY_ID" in config and "AWS_SECRET_ACCESS_KEY" in config

    @property
    def credentials(self) -> dict[str, str]:
        return dict(self._creds)

    def get_credential_options(self) -> dict[str, str]:
        return {**self._creds, "AWS_REGION": self._region}

    def __repr__(self) -> str:  # never show the secret
        return "S3Session(key=***, secret=***)"


def gdal_s3_env(endpoint_url: str, key: str, secret: str, *, timeout_s: int = 30,
                retries: int = 4, retry_delay_s: float = 1.0) -> dict[str, object]:
    """GDAL options to read ``s3://`` from a path-style, possibly plain-HTTP endpoint,
    with the HTTP timeout and retries of :func:`gdal_http_options`.

    Use as ``rasterio.Env(**gdal_s3_env(...))``; the credentials ride in ``session``.
    """
    url = urlparse(endpoint_url)
    return {
        **gdal_http_options(timeout_s=timeout_s, retries=retries, retry_delay_s=retry_delay_s),
        # host:port of the S3 endpoint, without the scheme.
        "AWS_S3_ENDPOINT": url.netloc,
        # Local servers speak plain HTTP.
        "AWS_HTTPS": "YES" if url.scheme == "https" else "NO",
        # Path-style addressing: bucket in the path, not in the host name.
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "session": S3Session(key, secret),
    }


class S3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]  # s3fs ships no type information
    """s3fs whose uploads (``pipe``, what :func:`cloudfree.cog.put` calls) fail with a
    clear :class:`~cloudfree.errors.StorageUnreachableError` naming the object once
    botocore's retries are spent, instead of s3fs's bare ``OSError`` (e.g. "[Errno 16]
    Service Unavailable"). It is a ``ConnectionError``, so a flow retries the tile."""

    async def _pipe_file(self, path: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._pipe_file(path, data, *args, **kwargs)
        except FileExistsError:
            raise  # an exclusive create that lost a race: the caller's answer, not a fault
        except (TimeoutError, OSError, BotoCoreError, ClientError, aiohttp.ClientError) as exc:
            endpoint = self.client_kwargs.get("endpoint_url", "s3")
            raise StorageUnreachableError(
                f"{endpoint} (upload of s3://{path})",
                f"{type(exc).__name__}: {exc}; still failing after the retries") from exc


def s3_filesystem(storage_options: dict[str, Any]) -> s3fs.S3FileSystem:
    """The process's s3fs filesystem for these options (fsspec's instance cache), which
    caches no listings, so what other processes write is seen at once.

    Shared rather than fresh per call: s3fs closes a dropped filesystem from a finaliser,
    and one that runs while another event loop runs in the thread (a Prefect flow's)
    schedules the close on that loop, where it fails and asyncio logs "Task exception was
    never retrieved ... attached to a different loop"."""
    return S3FileSystem(use_listings_cache=False, **storage_options)


def check_bucket(fs: s3fs.S3FileSystem, bucket: str, *, create: bool = False) -> None:
    """Fail early with a clear error when the store or the bucket cannot be reached."""
    endpoint = fs.client_kwargs.get("endpoint_url", "s3")
    try:
        if fs.exists(bucket):
            return
        if create:
            fs.mkdir(bucket)
            return
    except Exception as exc:  # botocore/aiohttp raise many kinds
        raise StorageUnreachableError(f"{endpoint}/{bucket}", exc) from exc
    raise StorageUnreachableError(
        f"{endpoint}/{bucket}", f"bucket {bucket!r} does not exist; create it first"
    )

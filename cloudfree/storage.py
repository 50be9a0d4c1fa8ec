"""Object storage edges: s3fs filesystems and GDAL options for s3:// hrefs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import s3fs
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
    # Retries and their delay (s) on transient HTTP errors.
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 1,
    # Per-process block cache (MB).
    "GDAL_CACHEMAX": 256,
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


def gdal_s3_env(endpoint_url: str, key: str, secret: str) -> dict[str, object]:
    """GDAL options to read ``s3://`` from a path-style, possibly plain-HTTP endpoint.

    Use as ``rasterio.Env(**gdal_s3_env(...))``; the credentials ride in ``session``.
    """
    url = urlparse(endpoint_url)
    return {
        **DEFAULT_GDAL_ENV,
        # host:port of the S3 endpoint, without the scheme.
        "AWS_S3_ENDPOINT": url.netloc,
        # Local servers speak plain HTTP.
        "AWS_HTTPS": "YES" if url.scheme == "https" else "NO",
        # Path-style addressing: bucket in the path, not in the host name.
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "session": S3Session(key, secret),
    }


def s3_filesystem(storage_options: dict[str, Any]) -> s3fs.S3FileSystem:
    """The process's s3fs filesystem for these options (fsspec's instance cache), which
    caches no listings, so what other processes write is seen at once.

    Shared rather than fresh per call: s3fs closes a dropped filesystem from a finaliser,
    and one that runs while another event loop runs in the thread (a Prefect flow's)
    schedules the close on that loop, where it fails and asyncio logs "Task exception was
    never retrieved ... attached to a different loop"."""
    return s3fs.S3FileSystem(use_listings_cache=False, **storage_options)


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

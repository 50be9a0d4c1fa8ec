"""The single settings object (env prefix ``CLOUDFREE_``), built once at the edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

CREDENTIALS_FILE = "s3-credentials.json"
#: Read-only S3 identity for downstream readers (GET and LIST, no PUT), made by services up.
READONLY_CREDENTIALS_FILE = "s3-readonly-credentials.json"
#: Bearer token of the local writer STAC API, made by services up (mode 0600).
STAC_TOKEN_FILE = "stac-write-token"


class Settings(BaseSettings):
    """Where the services live and which collections to use.

    Only the CLI and the flows build this; library functions take plain values.
    """

    model_config = SettingsConfigDict(env_prefix="CLOUDFREE_", extra="ignore")

    state_dir: Path = Field(
        default=Path(".cloudfree"),
        description="Project-local directory holding service data, logs and pid files.",
    )
    host: str = Field(default="127.0.0.1", description="Address every local service binds.")
    pg_port: int = Field(default=5439, description="PostgreSQL (pgstac) port.")
    stac_port: int = Field(default=8082, description="stac-fastapi-pgstac port.")
    s3_port: int = Field(default=8333, description="SeaweedFS S3 port.")
    seaweed_port_base: int = Field(
        default=19330,
        description="First of the internal SeaweedFS ports (master, volume, filer and their gRPC).",
    )
    prefect_port: int = Field(default=4200, description="Prefect API server port.")

    stac_api_url: str | None = Field(
        default=None, description="STAC API to search and read (Transactions off: readers' "
        "URL); default: the local readers' API. Mosaics are published to stac_write_url."
    )
    source_stac_api_url: str | None = Field(
        default=None,
        description="STAC API the mosaic flows and 'cloudfree plan' search for source scenes "
        "(e.g. Earth Search or the Planetary Computer); default: stac_api_url. Mosaics are "
        "published to stac_api_url either way.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint; default: the local SeaweedFS."
    )
    # Only CLOUDFREE_-prefixed: a developer's own AWS keys must never reach the local store.
    s3_access_key_id: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDFREE_S3_ACCESS_KEY_ID")
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDFREE_S3_SECRET_ACCESS_KEY")
    )
    bucket: str = Field(default="cloudfree", description="Bucket for demo scenes and mosaics.")
    source_collection: str = Field(default="sentinel-2-l2a")
    output_collection: str = Field(default="cloudfree-mosaics")
    prefect_api_url: str | None = Field(
        default=None, description="Prefect API; default: the local server started by services."
    )
    out_dir: Path = Field(default=Path("out"), description="Local outputs such as quicklooks.")
    dask_cluster: Literal["local", "kubernetes"] = Field(
        default="local",
        description="Dask cluster of the flows: a LocalCluster, or a dask-kubernetes operator "
        "cluster shaped by the CLOUDFREE_DASK_* variables (cloudfree.cluster.KubeClusterConfig).",
    )
    # Budgets: a mosaic flow builds its plan (cloudfree.plan) first and refuses to start
    # when the plan exceeds one of these (BudgetExceededError says which and how to raise it).
    max_tiles: int = Field(default=10000, ge=1,
                           description="Most tiles one mosaic run may have (CLOUDFREE_MAX_TILES).")
    max_scenes_per_tile: int = Field(
        default=500, ge=1,
        description="Most source scenes one tile may read (CLOUDFREE_MAX_SCENES_PER_TILE).")
    max_tile_memory_gib: float = Field(
        default=64.0, gt=0,
        description="Most estimated memory one tile may need, GiB "
        "(CLOUDFREE_MAX_TILE_MEMORY_GIB).")

    # --- the publisher's authenticated path (issue 13) ---
    stac_write_port: int = Field(
        default=8083,
        description="Port of the local writer STAC API (Transactions on, behind a token).")
    stac_write_url: str | None = Field(
        default=None,
        description="STAC API the mosaic flows publish to (Transactions, authenticated); "
        "default: the local writer API. Readers use stac_api_url, which has no Transactions.")
    stac_write_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLOUDFREE_STAC_WRITE_TOKEN"),
        description="Bearer token of the writer STAC API; default: the file "
        "'cloudfree services up' generated under state_dir (mode 0600).")
    # --- bounded work and budgets (issue 13) ---
    max_pixels_per_tile: int = Field(
        default=16384 * 16384, ge=1,
        description="Most output pixels one tile may have (CLOUDFREE_MAX_PIXELS_PER_TILE).")
    max_tiles_in_flight: int = Field(
        default=4, ge=1,
        description="Most tiles a regional run computes at once (CLOUDFREE_MAX_TILES_IN_FLIGHT).")
    max_search_items: int = Field(
        default=20000, ge=1,
        description="Most scenes one search may return; more fails clearly, never truncates "
        "(CLOUDFREE_MAX_SEARCH_ITEMS).")
    # --- faults (issue 13) ---
    read_failure_policy: Literal["fail", "drop"] = Field(
        default="drop",
        description="A source read that still fails after retries: 'fail' the tile, or "
        "'drop' the scene and record it in the item (CLOUDFREE_READ_FAILURE_POLICY).")
    http_retries: int = Field(
        default=4, ge=0,
        description="Retries of STAC API and S3 requests on 5xx, 429 and timeouts "
        "(CLOUDFREE_HTTP_RETRIES).")
    http_backoff_s: float = Field(
        default=0.5, ge=0,
        description="First retry delay, doubled each retry, s (Retry-After wins when given).")
    max_retry_after_s: float = Field(
        default=60.0, ge=0,
        description="Longest Retry-After honoured, s; a longer one fails the request.")
    gdal_http_timeout_s: int = Field(
        default=30, ge=1, description="GDAL_HTTP_TIMEOUT of source and output reads, s.")
    task_timeout_s: float = Field(
        default=3600.0, gt=0,
        description="Longest one tile may run before it is failed (CLOUDFREE_TASK_TIMEOUT_S).")

    @property
    def stac_url(self) -> str:
        return self.stac_api_url or f"http://{self.host}:{self.stac_port}"

    @property
    def stac_publish_url(self) -> str:
        """Where mosaics are published: the writer API (Transactions behind a bearer
        token), ``stac_write_url`` or the local writer. Readers use :attr:`stac_url`."""
        return self.stac_write_url or f"http://{self.host}:{self.stac_write_port}"

    def stac_token(self) -> str | None:
        """The writer API's bearer token: ``CLOUDFREE_STAC_WRITE_TOKEN``, else the file
        ``cloudfree services up`` generated under ``state_dir`` (mode 0600), else ``None``
        (an API that needs no token)."""
        if self.stac_write_token is not None:
            return self.stac_write_token.get_secret_value() or None
        path = self.state_dir / STAC_TOKEN_FILE
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def s3_url(self) -> str:
        return self.s3_endpoint_url or f"http://{self.host}:{self.s3_port}"

    @property
    def prefect_url(self) -> str:
        return self.prefect_api_url or f"http://{self.host}:{self.prefect_port}/api"

    def s3_credentials(self) -> tuple[str, str]:
        """Access key and secret: from the environment, else from the file
        ``cloudfree services up`` generated under ``state_dir`` (mode 0600)."""
        if self.s3_access_key_id and self.s3_secret_access_key:
            return (
                self.s3_access_key_id.get_secret_value(),
                self.s3_secret_access_key.get_secret_value(),
            )
        path = self.state_dir / CREDENTIALS_FILE
        if path.exists():
            creds = json.loads(path.read_text())
            return str(creds["access_key_id"]), str(creds["secret_access_key"])
        from cloudfree.errors import StorageUnreachableError

        raise StorageUnreachableError(
            self.s3_url,
            f"no S3 credentials: set CLOUDFREE_S3_ACCESS_KEY_ID and "
            f"CLOUDFREE_S3_SECRET_ACCESS_KEY, or run 'cloudfree services up' to create {path}",
        )

    def storage_options(self) -> dict[str, Any]:
        """s3fs keyword arguments for the configured endpoint."""
        from cloudfree.storage import s3_config_kwargs

        key, secret = self.s3_credentials()
        return {
            "key": key,
            "secret": secret,
            "client_kwargs": {"endpoint_url": self.s3_url, "region_name": "us-east-1"},
            # retries on 5xx/throttling/timeouts, connect and read timeouts
            "config_kwargs": s3_config_kwargs(retries=self.http_retries,
                                              read_timeout_s=float(self.gdal_http_timeout_s)),
        }

    def gdal_env(self) -> dict[str, Any]:
        """GDAL options for reading s3:// hrefs from the configured endpoint."""
        from cloudfree.storage import gdal_s3_env

        key, secret = self.s3_credentials()
        return gdal_s3_env(self.s3_url, key, secret, timeout_s=self.gdal_http_timeout_s,
                           retries=self.http_retries,
                           retry_delay_s=max(self.http_backoff_s, 0.1))

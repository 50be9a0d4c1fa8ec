"""The local stack on 127.0.0.1: PostgreSQL/PostGIS/pgstac, stac-fastapi-pgstac, SeaweedFS S3, Prefect.

Two STAC APIs share one pgstac: ``stac-api`` for readers (Transactions off) and
``stac-writer`` for the publisher (Transactions behind a bearer token, generated into
``stac-write-token``, mode 0600). S3 has a read/write identity (``s3-credentials.json``)
and a read-only one for downstream readers (``s3-readonly-credentials.json``).

Everything lives under ``settings.state_dir``: data in ``pg/``, ``s3/`` and ``prefect/``, logs in
``logs/``, pid files in ``run/``. Several instances can run side by side when their state
directories and ports differ. A development tool: the pipeline never imports it, and the
runtime images leave it out (its programs come with the ``services`` extra).
"""

from cloudfree.localstack._postgres import API_ROLE, PASSWORD_FILE, PG_DATABASE
from cloudfree.localstack._processes import Echo
from cloudfree.localstack._stack import (
    ServiceStatus,
    down,
    readonly_s3_credentials,
    seaweed_ports,
    status,
    up,
)

__all__ = [
    "API_ROLE",
    "PASSWORD_FILE",
    "PG_DATABASE",
    "Echo",
    "ServiceStatus",
    "down",
    "readonly_s3_credentials",
    "seaweed_ports",
    "status",
    "up",
]

"""The local stack on 127.0.0.1: PostgreSQL/PostGIS/pgstac, stac-fastapi-pgstac, SeaweedFS S3, Prefect.

Everything lives under ``settings.state_dir``: data in ``pg/``, ``s3/`` and ``prefect/``, logs in
``logs/``, pid files in ``run/``. Several instances can run side by side when their state
directories and ports differ. A development tool: the pipeline never imports it, and the
runtime images leave it out (its programs come with the ``services`` extra).
"""

from cloudfree.localstack._postgres import API_ROLE, PASSWORD_FILE, PG_DATABASE
from cloudfree.localstack._processes import Echo
from cloudfree.localstack._stack import ServiceStatus, down, seaweed_ports, status, up

__all__ = [
    "API_ROLE",
    "PASSWORD_FILE",
    "PG_DATABASE",
    "Echo",
    "ServiceStatus",
    "down",
    "seaweed_ports",
    "status",
    "up",
]

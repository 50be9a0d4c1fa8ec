"""Integration tests of the local stack against the real services the ``stack`` fixture starts."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
import s3fs

from cloudfree import cli
from cloudfree import localstack as services
from cloudfree.errors import ServiceError
from cloudfree.settings import CREDENTIALS_FILE, STAC_TOKEN_FILE, Settings
from cloudfree.storage import check_bucket, s3_filesystem
from cloudfree.testing import settings_environment

TRANSACTION_CONFORMANCE = "https://api.stacspec.org/v1.0.0/ogcapi-features/extensions/transaction"


def _rows(settings: Settings) -> dict[str, services.ServiceStatus]:
    return {row.name: row for row in services.status(settings)}


def _collection(collection_id: str) -> dict:
    return {
        "type": "Collection",
        "id": collection_id,
        "stac_version": "1.0.0",
        "description": "services test",
        "license": "CC-BY-4.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[10.0, 45.0, 11.0, 46.0]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
    }


def _item(collection_id: str, item_id: str) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": collection_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[10, 45], [11, 45], [11, 46], [10, 46], [10, 45]]],
        },
        "bbox": [10.0, 45.0, 11.0, 46.0],
        "properties": {"datetime": "2024-06-01T10:00:00Z"},
        "links": [],
        "assets": {},
    }


def test_status_reports_every_service_running(stack: Settings) -> None:
    rows = _rows(stack)
    assert set(rows) == {"postgres", "stac-api", "stac-writer", "s3", "prefect"}
    for row in rows.values():
        assert row.running, str(row)
        assert isinstance(row.pid, int) and row.pid > 0
        assert "running" in str(row) and row.name in str(row)
    assert rows["stac-api"].url == stack.stac_url
    assert rows["stac-writer"].url == stack.stac_publish_url != stack.stac_url
    assert rows["s3"].url == stack.s3_url
    assert rows["prefect"].url == stack.prefect_url
    assert str(stack.pg_port) in rows["postgres"].url


def test_only_the_writer_api_offers_transactions(stack: Settings) -> None:
    reader = httpx.get(stack.stac_url, timeout=10)
    writer = httpx.get(stack.stac_publish_url, timeout=10)  # reads on the writer stay open
    assert reader.status_code == writer.status_code == 200
    assert reader.json()["type"] == writer.json()["type"] == "Catalog"
    assert TRANSACTION_CONFORMANCE not in reader.json()["conformsTo"]
    assert TRANSACTION_CONFORMANCE in writer.json()["conformsTo"]


def test_stac_writer_token_is_private_and_stable(stack: Settings) -> None:
    token_file = stack.state_dir / STAC_TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = stack.stac_token()
    assert token and len(token) >= 32 and token == token_file.read_text().strip()
    writer_pid = _rows(stack)["stac-writer"].pid
    cmdline = Path(f"/proc/{writer_pid}/cmdline").read_bytes()
    assert token.encode() not in cmdline  # by environment, never on the command line
    assert token not in (stack.state_dir / "logs" / "stac-writer.log").read_text()


def test_stac_api_writes_through_transactions(stack: Settings) -> None:
    collection_id = f"test-services-{uuid.uuid4().hex[:8]}"
    auth = {"Authorization": f"Bearer {stack.stac_token()}"}
    with httpx.Client(base_url=stack.stac_publish_url, headers=auth, timeout=30) as client:
        try:
            assert client.post("/collections", json=_collection(collection_id)).status_code in (
                200,
                201,
            )
            posted = client.post(
                f"/collections/{collection_id}/items", json=_item(collection_id, "a")
            )
            assert posted.status_code in (200, 201), posted.text
            bulk = client.post(
                f"/collections/{collection_id}/bulk_items",
                json={"items": {"b": _item(collection_id, "b")}, "method": "upsert"},
            )
            assert bulk.status_code == 200, bulk.text
            items = client.get(f"/collections/{collection_id}/items").json()["features"]
            assert sorted(item["id"] for item in items) == ["a", "b"]
        finally:
            client.delete(f"/collections/{collection_id}")


def test_database_role_needs_its_password(stack: Settings) -> None:
    password_file = stack.state_dir / services.PASSWORD_FILE
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    dsn = {"host": stack.host, "port": stack.pg_port, "dbname": services.PG_DATABASE}
    with psycopg.connect(
        **dsn, user=services.API_ROLE, password=password_file.read_text().strip()
    ) as conn:
        assert conn.execute("SELECT pgstac.get_version()").fetchone()[0]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(**dsn, user=services.API_ROLE, password="wrong", connect_timeout=5)


def test_s3_round_trip_with_generated_credentials(stack: Settings) -> None:
    creds_file = stack.state_dir / CREDENTIALS_FILE
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    creds = json.loads(creds_file.read_text())
    assert (creds["access_key_id"], creds["secret_access_key"]) == stack.s3_credentials()

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **stack.storage_options())
    key = f"{stack.bucket}/tests/{uuid.uuid4().hex}.bin"
    payload = os.urandom(4096)
    fs.pipe(key, payload)
    try:
        assert fs.cat(key) == payload
        assert fs.cat_file(key, start=100, end=200) == payload[100:200]  # range read
        assert fs.size(key) == len(payload)
    finally:
        fs.rm(key)
    assert not fs.exists(key)


def test_s3_filesystem_leaves_a_running_event_loop_alone(stack: Settings) -> None:
    """A flow's thread runs an event loop; a filesystem dropped there must not schedule its
    close on that loop (s3fs's finaliser would, and the close fails there)."""
    errors: list[object] = []

    async def flow_like() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context.get("exception", context["message"])))
        fs = s3_filesystem(stack.storage_options())
        check_bucket(fs, stack.bucket)
        del fs
        gc.collect()
        await asyncio.sleep(0.3)  # a scheduled close would run and fail here

    gc.collect()  # filesystems other tests dropped close here, outside the loop
    asyncio.run(flow_like())
    assert errors == []
    assert s3_filesystem(stack.storage_options()) is s3_filesystem(stack.storage_options())


def test_s3_rejects_bad_credentials(stack: Settings) -> None:
    key, _ = stack.s3_credentials()
    endpoint = {"endpoint_url": stack.s3_url, "region_name": "us-east-1"}
    wrong = s3fs.S3FileSystem(
        key=key, secret="not-the-secret", client_kwargs=endpoint, skip_instance_cache=True
    )
    with pytest.raises(PermissionError):
        wrong.pipe(f"{stack.bucket}/tests/forbidden.bin", b"x")
    anonymous = s3fs.S3FileSystem(anon=True, client_kwargs=endpoint, skip_instance_cache=True)
    with pytest.raises(PermissionError):
        anonymous.ls(stack.bucket)


def test_prefect_api_answers(stack: Settings) -> None:
    assert os.environ["PREFECT_API_URL"] == stack.prefect_url
    response = httpx.get(f"{stack.prefect_url}/health", timeout=10)
    assert response.status_code == 200


def test_up_twice_leaves_running_services_alone(stack: Settings) -> None:
    before = {name: row.pid for name, row in _rows(stack).items()}
    lines: list[str] = []
    services.up(stack, echo=lines.append)
    after = _rows(stack)
    assert {name: row.pid for name, row in after.items()} == before
    assert all(row.running for row in after.values())
    for name in before:
        assert any(line.startswith(name) and "already running" in line for line in lines), lines


def test_crashed_service_leaves_a_stale_pid_file_that_up_cleans(stack: Settings) -> None:
    old_pid = _rows(stack)["stac-api"].pid
    assert old_pid
    os.killpg(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _rows(stack)["stac-api"].running and time.monotonic() < deadline:
        time.sleep(0.1)
    crashed = _rows(stack)["stac-api"]
    assert not crashed.running
    assert "stale pid file" in crashed.detail

    lines: list[str] = []
    services.up(stack, echo=lines.append)
    assert any("stac-api" in line and "stale pid file" in line for line in lines), lines
    restarted = _rows(stack)["stac-api"]
    assert restarted.running and restarted.pid != old_pid
    assert httpx.get(stack.stac_url, timeout=10).status_code == 200


def test_a_readers_api_left_open_by_an_older_version_is_refused(stack: Settings) -> None:
    """A reader started with Transactions on (as before the writer API existed) is not
    kept: `up` says to restart, and a restart closes it."""
    from cloudfree.localstack import _processes, _stack

    def stop_reader() -> None:
        pid = _rows(stack)["stac-api"].pid
        assert pid
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _processes._reap(pid)
            if not _processes._alive(pid):
                return
            time.sleep(0.1)
        raise AssertionError(f"reader {pid} did not stop")

    svc = next(s for s in _stack._services(stack) if s.name == "stac-api")
    stop_reader()
    # the old way: the readers' app with Transactions on
    _stack._up_stac(stack, svc, lambda line: None, app="stac_fastapi.pgstac.app:create_app",
                    port=stack.stac_port, ENABLE_TRANSACTIONS_EXTENSIONS="true")
    assert TRANSACTION_CONFORMANCE in httpx.get(stack.stac_url, timeout=10).json()["conformsTo"]
    with pytest.raises(ServiceError, match="Transactions on.*'cloudfree services down'"):
        services.up(stack, echo=lambda line: None)
    stop_reader()
    services.up(stack, echo=lambda line: None)
    landing = httpx.get(stack.stac_url, timeout=10).json()
    assert TRANSACTION_CONFORMANCE not in landing["conformsTo"]


def test_second_instance_on_the_same_ports_is_refused(stack: Settings, tmp_path: Path) -> None:
    other = stack.model_copy(update={"state_dir": tmp_path / "other"})
    with pytest.raises(ServiceError) as caught:
        services.up(other, echo=lambda line: None)
    message = str(caught.value)
    assert f"port {stack.pg_port}" in message
    assert "CLOUDFREE_PG_PORT" in message
    assert f"sport = :{stack.pg_port}" in message
    assert not list((tmp_path / "other" / "run").glob("*.pid"))  # nothing was started


def test_port_held_by_a_foreign_process_is_named(stack: Settings, tmp_path: Path) -> None:
    with socket.socket() as held, socket.socket() as spare:
        held.bind(("127.0.0.1", 0))
        held.listen()
        spare.bind(("127.0.0.1", 0))
        free_pg_port = spare.getsockname()[1]
        spare.close()
        settings = stack.model_copy(
            update={
                "state_dir": tmp_path / "foreign",
                "pg_port": free_pg_port,
                "stac_port": held.getsockname()[1],
            }
        )
        with pytest.raises(ServiceError, match="CLOUDFREE_STAC_PORT") as caught:
            services.up(settings, echo=lambda line: None)
    assert f"port {settings.stac_port}" in str(caught.value)
    assert caught.value.service == "stac-api"


def test_cli_status_in_process(stack: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    with settings_environment(stack):
        assert cli.main(["services", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    assert all(" running " in line for line in lines), lines
    assert any(f":{stack.stac_port}" in line for line in lines)
    assert any(line.startswith("stac-writer") and f":{stack.stac_write_port}" in line
               for line in lines)


def test_cli_status_fails_for_an_instance_that_is_not_up(
    stack: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLOUDFREE_STATE_DIR", str(tmp_path / "never-started"))
    monkeypatch.setenv("CLOUDFREE_STAC_PORT", str(stack.stac_port))
    assert cli.main(["services", "status"]) == 1
    out = capsys.readouterr().out
    stac_line = next(line for line in out.splitlines() if line.startswith("stac-api"))
    assert "stopped" in stac_line
    assert "held by another process" in stac_line  # the session's stack, not this instance


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data to the postgres user")
def test_state_dir_the_postgres_user_cannot_enter_is_refused(
    tmp_path: Path, free_port_settings: Callable[..., Settings]
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    settings = free_port_settings(private / "state")
    with pytest.raises(ServiceError, match="CLOUDFREE_STATE_DIR") as caught:
        services.up(settings, echo=lambda line: None)
    assert "not traversable" in str(caught.value)
    assert caught.value.service == "postgres"
    assert not any(row.running for row in services.status(settings))  # nothing was started

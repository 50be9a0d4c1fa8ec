"""Writes need a credential readers don't have, on the real local stack: the readers' STAC API
takes no writes, the writer takes them only with its bearer token, S3 has a read-only identity
for downstream readers, and no secret reaches a log line or a published JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import botocore.session
import httpx
import pytest
import rasterio
from botocore.config import Config
from botocore.exceptions import ClientError

from cloudfree import _stac_api
from cloudfree import localstack as services
from cloudfree.errors import PublishError
from cloudfree.settings import READONLY_CREDENTIALS_FILE, Settings
from cloudfree.storage import gdal_s3_env, s3_filesystem
from cloudfree.testing import settings_env


def _item(collection_id: str, item_id: str) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection_id,
        "geometry": {"type": "Polygon",
                     "coordinates": [[[10, 45], [11, 45], [11, 46], [10, 46], [10, 45]]]},
        "bbox": [10.0, 45.0, 11.0, 46.0], "properties": {"datetime": "2024-06-01T10:00:00Z"},
        "links": [], "assets": {},
    }  # fmt: skip


def _collection(collection_id: str) -> dict:
    return {
        "type": "Collection", "id": collection_id, "stac_version": "1.0.0",
        "description": "auth test", "license": "CC-BY-4.0", "links": [],
        "extent": {"spatial": {"bbox": [[10.0, 45.0, 11.0, 46.0]]},
                   "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
    }  # fmt: skip


@pytest.fixture(scope="module")
def output_collection(stack: Settings) -> str:
    """The output collection, created as the flows do when missing (through the writer)."""
    from cloudfree.publish import build_collection
    from cloudfree.sentinel2 import DEFAULT_BANDS

    cid = stack.output_collection
    if _stac_api.get_json(f"{stack.stac_url}/collections/{cid}") is None:
        _stac_api.upsert_collection(stack.stac_publish_url,
                                    build_collection(cid, bands=DEFAULT_BANDS),
                                    token=stack.stac_token())
    return cid


# --- the STAC APIs ------------------------------------------------------------------------


def test_unauthenticated_write_to_the_readers_api_is_refused(stack, output_collection) -> None:
    """The issue's acceptance: POST /collections/cloudfree-mosaics/items at the URL readers use."""
    item = _item(output_collection, f"intruder-{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=stack.stac_url, timeout=30) as client:
        posted = client.post(f"/collections/{output_collection}/items", json=item)
        assert posted.status_code in (401, 403, 405), posted.text
        # the writer's token does not open the readers' API either: it has no write routes
        auth = {"Authorization": f"Bearer {stack.stac_token()}"}
        assert client.post(f"/collections/{output_collection}/items", json=item,
                           headers=auth).status_code == 405
        assert client.delete(f"/collections/{output_collection}").status_code == 405
        assert client.get(f"/collections/{output_collection}/items/{item['id']}").status_code == 404
        assert client.get(f"/collections/{output_collection}").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", "Basic eA=="])
def test_the_writer_refuses_writes_without_its_token(stack, output_collection, authorization):
    item = _item(output_collection, f"intruder-{uuid.uuid4().hex[:6]}")
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=stack.stac_publish_url, headers=headers, timeout=30) as client:
        requests = [
            ("POST", f"/collections/{output_collection}/items", item),
            ("PUT", f"/collections/{output_collection}/items/{item['id']}", item),
            ("POST", f"/collections/{output_collection}/bulk_items",
             {"items": {item["id"]: item}, "method": "upsert"}),
            ("DELETE", f"/collections/{output_collection}", None),
            ("POST", "/collections", _collection(f"intruder-{uuid.uuid4().hex[:6]}")),
        ]
        for method, path, body in requests:
            response = client.request(method, path, json=body)
            assert response.status_code in (401, 403), (method, path, response.status_code)
        assert client.get(f"/collections/{output_collection}").status_code == 200  # reads open
        assert client.get(f"/collections/{output_collection}/items/{item['id']}").status_code == 404


def test_the_writer_takes_writes_with_its_token(stack, output_collection) -> None:
    item = _item(output_collection, f"auth-{uuid.uuid4().hex[:6]}")
    token = stack.stac_token()
    _stac_api.upsert_item(stack.stac_publish_url, item, token=token)
    _stac_api.upsert_item(stack.stac_publish_url, item, token=token)  # exists: POST 409, PUT
    found = httpx.get(f"{stack.stac_url}/collections/{output_collection}/items/{item['id']}",
                      timeout=30)
    assert found.status_code == 200 and found.json()["id"] == item["id"]  # readers see it
    _stac_api.delete_item(stack.stac_publish_url, output_collection, item["id"], token=token)
    assert httpx.get(f"{stack.stac_url}/collections/{output_collection}/items/{item['id']}",
                     timeout=30).status_code == 404


def test_client_errors_say_which_url_and_token_to_use(stack, output_collection) -> None:
    item = _item(output_collection, f"auth-{uuid.uuid4().hex[:6]}")
    with pytest.raises(PublishError, match="takes no writes.*CLOUDFREE_STAC_WRITE_URL"):
        _stac_api.upsert_item(stack.stac_url, item, token=stack.stac_token())
    with pytest.raises(PublishError, match="no write token was sent.*CLOUDFREE_STAC_WRITE_TOKEN"):
        _stac_api.upsert_item(stack.stac_publish_url, item)
    with pytest.raises(PublishError, match="the write token was refused") as caught:
        _stac_api.upsert_item(stack.stac_publish_url, item, token="not-the-token-0123456789")
    assert "not-the-token" not in str(caught.value)


def test_the_demo_catalog_loads_through_the_writer(stack, demo_scenes) -> None:
    """``demo_scenes`` is built through the writer with the token and searched at the reader."""
    assert len(demo_scenes) == 16
    assert {it["collection"] for it in demo_scenes} == {stack.source_collection}


# --- S3 -----------------------------------------------------------------------------------


def _s3(stack: Settings, key: str, secret: str):
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=stack.s3_url, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name="us-east-1", config=Config(retries={"max_attempts": 1}))


def test_the_readonly_s3_identity_reads_and_lists_but_never_writes(stack, demo_scenes) -> None:
    path = stack.state_dir / READONLY_CREDENTIALS_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    key, secret = services.readonly_s3_credentials(stack)
    assert (key, secret) != stack.s3_credentials()
    reader = _s3(stack, key, secret)
    href = demo_scenes[0]["assets"]["red"]["href"]
    bucket, _, object_key = href.removeprefix("s3://").partition("/")
    assert reader.get_object(Bucket=bucket, Key=object_key)["Body"].read(4) in (b"II*\0", b"MM\0*")
    listed = reader.list_objects_v2(Bucket=bucket, Prefix=stack.source_collection, MaxKeys=5)
    assert listed["KeyCount"] == 5
    for call in (lambda: reader.put_object(Bucket=bucket, Key="readonly-test.bin", Body=b"x"),
                 lambda: reader.delete_object(Bucket=bucket, Key=object_key),
                 lambda: reader.copy_object(Bucket=bucket, Key=object_key + ".copy",
                                            CopySource={"Bucket": bucket, "Key": object_key})):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    fs = s3_filesystem(stack.storage_options())
    assert fs.exists(href) and not fs.exists(f"{bucket}/readonly-test.bin")


@pytest.mark.parametrize(("identity", "pam", "writes_aux"), [
    ("read/write", "YES", True), ("read-only", "YES", False), ("read-only", "NO", False)])
def test_a_gdal_reader_with_the_readonly_key_writes_no_aux_xml(stack, demo_scenes, identity,
                                                                pam, writes_aux) -> None:
    """What `gdalinfo -stats` does: statistics, then an .aux.xml beside the file. With the
    read/write key and PAM on (GDAL's default) that lands in the product bucket; the
    read-only key cannot write it, and GDAL_PAM_ENABLED=NO does not even try."""
    key, secret = (services.readonly_s3_credentials(stack) if identity == "read-only"
                   else stack.s3_credentials())
    href = demo_scenes[1]["assets"]["nir"]["href"]
    fs = s3_filesystem(stack.storage_options())
    try:
        with rasterio.Env(**gdal_s3_env(stack.s3_url, key, secret), GDAL_PAM_ENABLED=pam):
            with rasterio.open(href) as src:
                (stats,) = src.stats(indexes=[1], approx=False)
        assert stats.max > stats.min
        fs.invalidate_cache()
        assert fs.exists(href + ".aux.xml") is writes_aux
    finally:
        if fs.exists(href + ".aux.xml"):
            fs.rm(href + ".aux.xml")


# --- no secret anywhere -------------------------------------------------------------------


def _secrets(stack: Settings) -> dict[str, str]:
    key_ro, secret_ro = services.readonly_s3_credentials(stack)
    found = {
        "S3 secret key": stack.s3_credentials()[1],
        "read-only S3 secret key": secret_ro,
        "STAC write token": stack.stac_token() or "",
        "database password": (stack.state_dir / services.PASSWORD_FILE).read_text().strip(),
    }
    assert all(len(value) >= 16 for value in found.values()), "a secret too short to grep for"
    return found


def _prefect_logs(stack: Settings) -> list[str]:
    lines, offset = [], 0
    while True:
        page = httpx.post(f"{stack.prefect_url}/logs/filter",
                          json={"limit": 200, "offset": offset, "sort": "TIMESTAMP_ASC"},
                          timeout=30).json()
        lines += [f"{entry['name']} {entry['message']}" for entry in page]
        if len(page) < 200:
            return lines
        offset += 200


def test_a_debug_mosaic_run_leaks_no_secret(stack, demo_scenes, tmp_path):
    """A whole `cloudfree mosaic` in a subprocess, every logger at DEBUG: its output, the
    Prefect logs, the services' logs, the API's items and collection and every JSON in
    S3 hold none of the secret values. Into a collection of its own, so the other
    modules' runs of the demo region into the default one are not skipped."""
    output_collection = "cloudfree-secrets-test"
    from cloudfree.demo import demo_region

    epsg, bbox, window = demo_region(demo_scenes, tile_size_px=64)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFREE_", "AWS_"))},
        **settings_env(stack),
        "PREFECT_API_URL": stack.prefect_url,
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_LOGGING_ROOT_LEVEL": "DEBUG",
        "PREFECT_LOGGING_LOGGERS_PREFECT_LEVEL": "DEBUG",
        "CLOUDFREE_OUT_DIR": str(tmp_path / "out"),
        "CLOUDFREE_OUTPUT_COLLECTION": output_collection,
    }
    script = ("import logging, sys; logging.basicConfig(level=logging.DEBUG); "
              "from cloudfree import cli; sys.exit(cli.main(sys.argv[1:]))")
    run = subprocess.run(
        [sys.executable, "-c", script, "mosaic", "--bbox", ",".join(map(str, bbox)),
         "--datetime", window, "--epsg", str(epsg), "--tile-size", "64", "--json"],
        env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DEBUG" in run.stderr  # the run did log at DEBUG
    result = json.loads(run.stdout[run.stdout.index("{"):])
    assert result["tiles"] and all(t["status"] == "published" for t in result["tiles"])

    texts = {"the run's stdout": run.stdout, "the run's stderr": run.stderr,
             "Prefect's logs": "\n".join(_prefect_logs(stack))}
    for log in (stack.state_dir / "logs").glob("*.log"):
        texts[f"service log {log.name}"] = log.read_text(errors="replace")
    items = httpx.get(f"{stack.stac_url}/collections/{output_collection}/items?limit=1000",
                      timeout=30).json()
    assert items["features"]
    texts["API items"] = json.dumps(items)
    texts["API collection"] = httpx.get(f"{stack.stac_url}/collections/{output_collection}",
                                        timeout=30).text
    fs = s3_filesystem(stack.storage_options())
    fs.invalidate_cache()
    static = [p for p in fs.find(f"{stack.bucket}/{output_collection}") if p.endswith(".json")]
    assert static, "no static STAC JSON in S3"
    for path in static:
        texts[f"s3://{path}"] = fs.cat(path).decode()

    # the texts are what they should be: DEBUG lines of the run, the flow's logs in Prefect,
    # and the writer's access log with the publishing requests (which carried the token)
    assert texts["Prefect's logs"].count("\n") > 10
    assert "POST /collections/" in texts["service log stac-writer.log"]
    sizes = {where: len(text) for where, text in texts.items()}
    print("texts grepped (characters):", sizes)
    leaks = [(name, where) for name, secret in _secrets(stack).items()
             for where, text in texts.items() if secret in text]
    assert not leaks, leaks

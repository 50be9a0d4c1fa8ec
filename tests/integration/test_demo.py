"""Demo catalog in the real local STAC API and S3 (offline: ``tests/unit/test_demo.py``)."""

import time

import pytest
import rasterio
from rio_cogeo import cog_validate

from cloudfree import demo
from cloudfree.errors import StacApiUnreachableError, StorageUnreachableError

SIZE = 64


def test_demo_catalog_in_the_real_stack(stack):
    from pystac_client import Client

    from cloudfree.storage import s3_filesystem

    kwargs = dict(
        stac_api_url=stack.stac_publish_url,  # the writer; readers search stack.stac_url
        stac_token=stack.stac_token(),
        storage_options=stack.storage_options(),
        bucket=stack.bucket,
        collection_id="demo-catalog-test",
        n_tiles=2,
        size_px=SIZE,
        seed=2,
    )
    ids = demo.build_demo_catalog(n_dates=3, **kwargs)
    assert len(ids) == 6
    client = Client.open(stack.stac_url)
    found = list(client.search(collections=["demo-catalog-test"], max_items=100).items_as_dicts())
    assert sorted(it["id"] for it in found) == sorted(ids)
    item = found[0]
    assert all(
        a["href"].startswith(f"s3://{stack.bucket}/demo-catalog-test/")
        for a in item["assets"].values()
    )
    with rasterio.Env(**stack.gdal_env()):
        assert cog_validate(item["assets"]["nir"]["href"], quiet=True)[0]
        with rasterio.open(item["assets"]["nir"]["href"]) as src:
            nir = src.read(1)
            assert src.scales[0] == pytest.approx(0.0001) and src.nodata == 0
    assert nir.shape == (SIZE, SIZE) and nir[nir > 0].min() >= 1
    collection = client.get_collection("demo-catalog-test")
    assert set(collection.extra_fields["item_assets"]) == set(demo.ASSETS)

    # Unchanged parameters: nothing is rewritten.
    fs = s3_filesystem(stack.storage_options())
    key = item["assets"]["nir"]["href"].removeprefix("s3://")
    before = fs.info(key)["LastModified"]
    start = time.perf_counter()
    assert demo.build_demo_catalog(n_dates=3, **kwargs) == ids
    assert time.perf_counter() - start < 5
    fs.invalidate_cache()
    assert fs.info(key)["LastModified"] == before

    # New parameters: rebuilt, and items of the old layout are pruned.
    fewer = demo.build_demo_catalog(n_dates=2, **kwargs)
    found = list(client.search(collections=["demo-catalog-test"], max_items=100).items_as_dicts())
    assert sorted(it["id"] for it in found) == sorted(fewer) and len(fewer) == 4
    fs.invalidate_cache()
    stored = set(fs.find(f"{stack.bucket}/demo-catalog-test"))
    hrefs = {a["href"].removeprefix("s3://") for it in found for a in it["assets"].values()}
    assert stored == hrefs  # the pruned scenes' COGs are gone too


def test_unreachable_services_fail_early(stack, tmp_path):
    with pytest.raises(StacApiUnreachableError, match="127.0.0.1:9"):
        demo.build_demo_catalog(
            stac_api_url="http://127.0.0.1:9",
            bucket=stack.bucket,
            storage_options=stack.storage_options(),
            size_px=SIZE,
        )
    options = stack.storage_options()
    options["client_kwargs"] = {**options["client_kwargs"], "endpoint_url": "http://127.0.0.1:9"}
    options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
    with pytest.raises(StorageUnreachableError, match="127.0.0.1:9"):
        demo.build_demo_catalog(
            stac_api_url=stack.stac_publish_url, stac_token=stack.stac_token(),
            bucket=stack.bucket, storage_options=options, size_px=SIZE
        )

"""Training series from a real STAC time cube: the demo catalog in the local stack."""

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from cloudfree import cli
from cloudfree.cube import build_cube
from cloudfree.demo import demo_defaults, demo_region
from cloudfree.errors import InvalidAOIError, InvalidParameterError, NoScenesFoundError
from cloudfree.masking import scl_clear_mask
from cloudfree.models import load_generator
from cloudfree.models.weights import MODEL_BANDS
from cloudfree.testing import TINY_TRAINING, settings_environment
from cloudfree.training import TrainOptions, train
from cloudfree.training.data import orient
from cloudfree.training.loop import build_samplers
from cloudfree.training.stac_data import POOL_CLOUD_FRACTION, CubeSampler

torch.set_num_threads(2)

SIZE, FRAMES = TINY_TRAINING["size"], TINY_TRAINING["frames"]


@pytest.fixture(scope="module")
def sampler(stack, demo_scenes):
    """The demo catalog's cube, read with its defaults (no bbox, no datetime)."""
    return CubeSampler.from_stac(
        stack.stac_url,
        collection=stack.source_collection,
        gdal_env=stack.gdal_env(),
        size=SIZE,
        frames=FRAMES,
        seed=3,
        defaults=demo_defaults,
    )


@pytest.fixture(scope="module")
def scl(sampler, demo_scenes, stack):
    """The cube's SCL read on its own, on the sampler's grid."""
    return (
        build_cube(demo_scenes, ["scl"], tile=sampler.cube.tile, gdal_env=stack.gdal_env())
        .sel(band="scl")
        .compute()
    )


def _orientations(mask):
    return [orient(mask, k, flip) for k in range(4) for flip in (False, True)]


def test_defaults_are_the_demo_catalog(sampler, demo_scenes, stack):
    _, bbox, window = demo_region(demo_scenes, tile_size_px=SIZE)
    source = sampler.source
    assert source.collection == stack.source_collection and source.stac_url == stack.stac_url
    assert source.bbox == pytest.approx(bbox) and source.datetime == window
    assert sorted(source.scene_ids) == sorted(it["id"] for it in demo_scenes)
    n_dates = len({it["properties"]["datetime"][:10] for it in demo_scenes})
    assert sampler.values.shape[0] == n_dates and source.masking == "scl"
    assert sampler.cube.bands == ("B02", "B03", "B04", "B08", "B11", "B12", "ndvi")
    reflectance = sampler.cube.reflectance
    assert 0 < np.nanmedian(reflectance[:, :6]) < 0.6  # DN * SCALE + OFFSET, not raw DN
    assert np.nanmin(reflectance[:, 6]) >= 0 and np.nanmax(reflectance[:, 6]) <= 1


def test_sampler_is_deterministic_per_step(sampler):
    a, b = sampler.batch(5, 2), sampler.batch(5, 2)
    assert set(a) == {"truth", "clear", "doy", "band_present", "known"}
    assert all(v.dtype == np.float32 for v in a.values())
    assert a["truth"].shape == (2, FRAMES, len(MODEL_BANDS), SIZE, SIZE)
    assert a["clear"].shape == a["known"].shape == (2, FRAMES, SIZE, SIZE)
    assert a["doy"].shape == (2, FRAMES) and a["band_present"].shape == (2, len(MODEL_BANDS))
    assert all((a[k] == b[k]).all() for k in a)
    fresh = CubeSampler(sampler.cube, size=SIZE, frames=FRAMES, seed=3).batch(5, 2)
    assert all((a[k] == fresh[k]).all() for k in a)  # a resumed run draws the same
    assert not (sampler.batch(6, 2)["truth"] == a["truth"]).all()
    assert (np.diff(a["doy"], axis=1) > 0).all()  # frames in time order (one season)


def test_known_is_zero_exactly_where_the_real_cube_was_cloudy(sampler, scl):
    cloudy = np.isin(scl.values, (0, 1, 3, 8, 9, 10))  # nodata, defective, cloud, shadow
    assert cloudy.any() and not sampler.known[cloudy].any()
    valid = np.isfinite(sampler.cube.reflectance).all(axis=1)
    expected = scl_clear_mask(scl, resolution_m=10.0).values & valid
    np.testing.assert_array_equal(sampler.known, expected)
    assert 0 < sampler.known.mean() < 1
    for step in range(3):  # and every series carries that mask, turned like its truth
        batch = sampler.batch(step, 2)
        for i, draw in enumerate(sampler.draws(step, 2)):
            crop = (draw.frames, slice(draw.y, draw.y + SIZE), slice(draw.x, draw.x + SIZE))
            turn = (draw.rotations, draw.flip)
            np.testing.assert_array_equal(batch["known"][i], orient(sampler.known[crop], *turn))
            truth = orient(sampler.values[crop[0]][..., crop[1], crop[2]], *turn)
            np.testing.assert_array_equal(batch["truth"][i][:, sampler.band_index], truth)


def test_simulated_gaps_only_remove_known_pixels(sampler):
    for step in range(6):
        batch = sampler.batch(step, 3)
        clear, known = batch["clear"], batch["known"]
        assert (clear <= known).all()
        hidden = (known - clear).sum(axis=(2, 3))  # known pixels the simulation hides
        still = clear.sum(axis=(2, 3))
        # every series has a frame partly hidden on known pixels: something to learn
        assert ((hidden > 0) & (still > 0)).any(axis=1).all(), step
        present = batch["band_present"].astype(bool)
        assert present.any(axis=1).all()
        assert not present[:, [MODEL_BANDS.index(b) for b in ("B01", "B05", "B10")]].any()


def test_real_masks_come_from_the_cubes_cloudy_frames(sampler):
    assert len(sampler.pool_frames) > 0
    valid = np.isfinite(sampler.cube.reflectance).all(axis=1)
    cover = (~sampler.cube.clear & valid).sum(axis=(1, 2)) / valid.sum(axis=(1, 2))
    low, high = POOL_CLOUD_FRACTION
    expected = np.flatnonzero((cover >= low) & (cover <= high))
    np.testing.assert_array_equal(sampler.pool_frames, expected)
    assert len(expected) < len(cover)  # the clear dates are not in the pool
    windows = sliding_window_view(sampler.cloud[sampler.pool_frames], (SIZE, SIZE), axis=(1, 2))
    rng = np.random.default_rng(0)
    crops = [sampler.real_cloud_crop(rng) for _ in range(6)]
    assert any(c.any() for c in crops)
    for crop in crops:
        assert any(
            (windows == turned).all(axis=(-2, -1)).any() for turned in _orientations(crop)
        ), "not a crop of a pool frame's mask"


def test_tiny_stac_training_writes_weights_naming_the_source(sampler, stack, tmp_path):
    result = train(
        TrainOptions(data="stac", steps=2, out_dir=str(tmp_path), device="cpu", **TINY_TRAINING),
        settings=stack,
        source_defaults=demo_defaults,
        log=lambda *_: None,
    )
    assert result["step"] == 2 and np.isfinite(result["final"]["total"])
    _, card = load_generator("default", directory=tmp_path)
    assert f"STAC collection {stack.source_collection!r} at {stack.stac_url}" in card.training_data
    assert f"{len(sampler.source.scene_ids)} scenes" in card.training_data
    assert f"real cloud masks of {len(sampler.pool_frames)} cloudy frames" in card.training_data
    (record,) = card.training["stac_sources"]
    assert record["n_scenes"] == len(sampler.source.scene_ids)
    assert record["bbox"] == pytest.approx(list(sampler.source.bbox))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["data_fingerprints"] == [sampler.source.fingerprint]


def test_mixed_alternates_synth_and_stac_by_step(stack, demo_scenes):
    synth, cube = build_samplers(TrainOptions(data="mixed", **TINY_TRAINING), stack, demo_defaults)
    assert synth.batch(0, 2)["known"].all()  # synthetic truth is known everywhere
    assert not cube.batch(1, 2)["known"].all()


def test_cli_trains_on_the_demo_catalog_by_default(stack, demo_scenes, tmp_path, capsys):
    with settings_environment(stack):
        rc = cli.main(
            [
                "train",
                "--data",
                "mixed",
                "--steps",
                "2",
                "--batch",
                "1",
                "--size",
                "32",
                "--frames",
                "3",
                "--base-channels",
                "4",
                "--depth",
                "1",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
            ]
        )
    assert rc == 0, capsys.readouterr().err
    _, card = load_generator("default", directory=tmp_path)
    assert card.training_data.startswith("data 'mixed': synthetic Sentinel-2 series")
    assert f"STAC collection {stack.source_collection!r}" in card.training_data


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(bbox="10,5,9,6", datetime="2024-04-01/2024-10-31"),
            InvalidAOIError,
            "invalid area of interest '10,5,9,6'",
        ),
        (
            dict(bbox=[0.0, 0.0, 0.1, 0.1], datetime="2024-04-01/2024-10-31"),
            NoScenesFoundError,
            "no scenes in collection",
        ),
        (dict(datetime="2019-01-01/2019-01-31"), NoScenesFoundError, "2019-01-01"),
    ],
)
def test_bad_source_is_a_clear_error(stack, demo_scenes, kwargs, error, message):
    with pytest.raises(error, match=message):
        CubeSampler.from_stac(
            stack.stac_url,
            collection=stack.source_collection,
            gdal_env=stack.gdal_env(),
            size=SIZE,
            frames=FRAMES,
            defaults=demo_defaults,
            **kwargs,
        )


def test_the_library_has_no_default_source(stack, demo_scenes):
    """Even the demo catalog: where to train is the edge's choice, passed in as defaults."""
    with pytest.raises(InvalidParameterError, match="invalid bbox None: give both a bbox and"):
        CubeSampler.from_stac(stack.stac_url, collection=stack.source_collection, size=SIZE)
    with pytest.raises(InvalidParameterError, match="invalid datetime None: give both"):
        CubeSampler.from_stac(
            stack.stac_url, collection=stack.source_collection, bbox="15,46,15.1,46.1", size=SIZE
        )


def test_only_the_demo_catalog_has_default_region_and_dates(stack, demo_scenes):
    from cloudfree._stac_api import upsert_collection
    from cloudfree.publish import build_collection

    upsert_collection(stack.stac_publish_url, build_collection("training-not-a-demo", bands=["red"]),
                      token=stack.stac_token())
    with pytest.raises(InvalidParameterError, match="not the cloudfree demo catalog"):
        CubeSampler.from_stac(
            stack.stac_url, collection="training-not-a-demo", size=SIZE, defaults=demo_defaults
        )


def test_too_small_a_cube_is_a_clear_error(sampler):
    n_dates, _, height, width = sampler.values.shape
    with pytest.raises(InvalidParameterError, match=f"invalid size 4096.*{height}x{width} px"):
        CubeSampler(sampler.cube, size=4096, frames=FRAMES)
    with pytest.raises(InvalidParameterError, match=f"invalid frames 99.*has {n_dates} dates"):
        CubeSampler(sampler.cube, size=SIZE, frames=99)


def test_prefect_flow_trains_on_a_stac_cube(stack, demo_scenes, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.train import train as train_flow

    # Prefect reads its API URL once, at import: a module that imported it before the
    # stack was up would otherwise run this flow on a temporary server of its own.
    with settings_environment(stack), temporary_settings({PREFECT_API_URL: stack.prefect_url}):
        result = train_flow(
            TrainOptions(
                steps=1,
                batch=1,
                out_dir=str(tmp_path),
                device="cpu",
                base_channels=4,
                depth=1,
                size=SIZE,
                frames=FRAMES,
                data="stac",
            )
        )
    assert result["step"] == 1
    _, card = load_generator("default", directory=tmp_path)
    assert card.training_data.startswith("data 'stac': Sentinel-2 time cube from STAC")

"""Chunked generator inference: no seams, observed pixels untouched, dask == eager, GPU tasks."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from cloudfree.errors import InvalidParameterError
from cloudfree.methods import FILL_GENERATED, FILL_NODATA, FILL_OBSERVED, composite
from cloudfree.methods import generator as inference
from cloudfree.methods.generator import generator_composite_array
from cloudfree.methods.generator import mosaic as generator_composite
from cloudfree.models.inference import (
    fill_frame,
    fill_series,
    network_prediction,
    select_frames,
    tile_windows,
)
from cloudfree.testing import model_card, reflectance_cube, tiny_generator

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
#: Correction widths for small test images (overlap 16 px instead of 128).
SMALL_SIGMAS = (2.0, 4.0)


class StandInGenerator(nn.Module):
    """A tiny U-Net-shaped stand-in with the Generator's interface: one pooling level
    (downsample_factor 2), time mixing through the clear-weighted temporal mean, zero
    padding in every convolution. Receptive radius: 1 + 1 + 2*2 + 1 = 7 <= 8."""

    bands = BANDS
    downsample_factor = 2
    receptive_radius_px = 8

    def __init__(self, seed: int = 0, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(seed)
        n = len(self.bands)
        self.down = nn.Conv2d(2 * n + 2, width, 3, padding=1)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.up = nn.Conv2d(2 * width, n, 3, padding=1)

    def forward(self, values, clear, doy, band_present):
        b, t, c, h, w = values.shape
        weight = clear[:, :, None]
        mean = (values * weight).sum(1) / weight.sum(1).clamp(min=1)  # (B, C, H, W)
        x = torch.cat([values, mean[:, None].expand(-1, t, -1, -1, -1), clear[:, :, None],
                       torch.sin(doy * 2 * torch.pi / 365.25)[:, :, None, None, None]
                       .expand(-1, -1, 1, h, w)], dim=2).reshape(b * t, 2 * c + 2, h, w)
        skip = torch.relu(self.down(x))
        low = torch.relu(self.mid(nn.functional.avg_pool2d(skip, 2)))
        up = nn.functional.interpolate(low, scale_factor=2, mode="nearest")
        generated = self.up(torch.cat([skip, up], 1)).reshape(b, t, c, h, w)
        generated = generated * band_present[:, None, :, None, None]
        return weight * values + (1 - weight) * generated


def _random_generator(seed: int = 0):
    """A small seeded random Generator and a card. Its head starts at zero (output = the
    temporal prior); random head weights make the spatial network count too."""
    model = tiny_generator(seed=seed, base_channels=8, depth=2, head_std=0.3, head_bias_std=0.1)
    return model, model_card("random-test", "0.0.0", training_data="none")


@pytest.fixture(scope="module")
def model_and_card():
    return _random_generator()


def _series(n_dates=4, n_bands=6, height=150, width=170, seed=0, cloud=0.35):
    rng = np.random.default_rng(seed)
    surface = rng.uniform(0.02, 0.4, (n_bands, height, width)).astype(np.float32)
    values = np.stack([surface * (1 + 0.05 * t) for t in range(n_dates)]).astype(np.float32)
    yy, xx = np.mgrid[:height, :width]
    for t in range(n_dates):  # round clouds of random size
        for _ in range(4):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, 20)
            values[t, :, (yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = np.nan
        values[t, :, rng.random((height, width)) < cloud / 10] = np.nan
    days = 19800.0 + 10 * np.arange(n_dates)
    return values, days


def test_tile_windows_partition_and_halo():
    windows = tile_windows(70, 50, tile_px=16, halo_px=6)
    owned = np.zeros((70, 50), int)
    for cy, cx, wy, wx in windows:
        owned[cy, cx] += 1
        assert wy.start == max(0, cy.start - 6) and wy.stop == min(70, cy.stop + 6)
        assert wx.start == max(0, cx.start - 6) and wx.stop == min(50, cx.stop + 6)
    assert (owned == 1).all()


def test_chunked_equals_whole_and_observed_unchanged(model_and_card):
    model, card = model_and_card
    values, days = _series()
    halo = model.receptive_radius_px
    assert values.shape[-1] > 48 + 2 * halo  # interior tiles, with borders on every side
    # sizes off the grid: the image is padded, tiles at the bottom/right are clipped
    whole = fill_series(values, days, BANDS, model=model, card=card, tile_px=4096)
    chunked = fill_series(values, days, BANDS, model=model, card=card, tile_px=48, batch_size=3)
    missing = np.isnan(values)
    assert np.isfinite(whole).all() and np.isfinite(chunked).all()
    # the single-tile run is the network on the whole (grid-padded) array
    from cloudfree.models.weights import prepare_inputs, restore_outputs

    factor = model.downsample_factor
    height, width = values.shape[-2:]
    padded = np.pad(values, ((0, 0), (0, 0), (0, -height % factor), (0, -width % factor)),
                    constant_values=np.nan)
    with torch.inference_mode():
        direct = model(**prepare_inputs(padded, days, BANDS, card))
    direct = restore_outputs(direct, BANDS, card)[..., :height, :width]
    np.testing.assert_array_equal(whole[missing], direct[missing])
    diff = np.abs(chunked - whole).max()
    print(f"max abs diff chunked vs whole: {diff:.3g} reflectance")
    assert diff < 1e-3
    # observed values are bit-identical; generated ones really were generated
    np.testing.assert_array_equal(chunked[~missing], values[~missing])
    assert not np.array_equal(chunked[missing], np.zeros(missing.sum(), np.float32))


@pytest.mark.parametrize("bare", [False, True])
def test_fill_frame_is_fill_series_frame_chunked_or_whole(model_and_card, bare):
    """The target-only path (the Generator's forward_target; a bare model's full forward)
    fills one frame as fill_series does, chunked or whole; observed values bit-identical."""
    model, card = (StandInGenerator().eval(), None) if bare else model_and_card
    values, days = _series(n_dates=4, height=90, width=102, seed=8)
    frame = 2
    values[frame, :, 30:60, 40:80] = np.nan
    reference = fill_series(values, days, BANDS, model=model, card=card, tile_px=4096)[frame]
    whole = fill_frame(values, days, BANDS, frame=frame, model=model, card=card, tile_px=4096)
    chunked = fill_frame(values, days, BANDS, frame=frame, model=model, card=card, tile_px=32,
                         batch_size=3)
    assert whole.shape == (6, 90, 102) and whole.dtype == np.float32
    assert np.abs(whole - reference).max() < 1e-5
    assert np.abs(chunked - whole).max() < 1e-4
    finite = np.isfinite(values[frame])
    np.testing.assert_array_equal(chunked[finite], values[frame][finite])
    assert np.isfinite(chunked).all()


def test_select_frames_is_the_evaluation_rule_on_tile_fractions():
    """The nearest frames with over 2 % of the tile usable, the target always, in time
    order: the same choice as the evaluation's select_frames on the series itself."""
    from cloudfree.methods.generator import select_frames as evaluation_select

    values, days = _series(n_dates=12, height=30, width=30, seed=9)
    values[[3, 8], :, 1:] = np.nan
    values[[3, 8], :, 0, 10:] = np.nan  # 10 of 900 pixels usable: under 2 %
    values[5] = np.nan  # the target, hidden
    fraction = np.isfinite(values).all(axis=1).mean(axis=(1, 2))
    chosen = select_frames(fraction, days, 5, 8)
    assert 5 in chosen and 3 not in chosen and 8 not in chosen and len(chosen) == 8
    assert (np.diff(days[chosen]) > 0).all()
    np.testing.assert_array_equal(chosen, evaluation_select(values, days, 5, 8))
    np.testing.assert_array_equal(select_frames(fraction, days, 5, 40),
                                  [i for i in range(12) if i not in (3, 8)])
    with pytest.raises(InvalidParameterError):
        select_frames(fraction[:3], days, 5, 8)
    with pytest.raises(InvalidParameterError):
        select_frames(fraction, days, 5, 0)


def test_lazy_network_sees_the_same_frames_in_every_chunk(model_and_card):
    """With more dates than the network sees, each chunk picks them from the whole
    tile's usable fractions: the lazy mosaic still equals the eager one."""
    model, card = model_and_card
    values, days = _series(n_dates=11, height=96, width=104, seed=10)
    values[2, :, :, :60] = np.nan  # usable only in the right part: fractions differ by chunk
    values[[1, 9], :, :90] = np.nan
    reflectance, clear = reflectance_cube(values, days, bands=BANDS)
    eager = generator_composite(reflectance, clear, model=model, card=card, tile_px=4096,
                                sigmas_px=SMALL_SIGMAS, with_network=True)
    lazy = generator_composite(reflectance.chunk({"y": 40, "x": 40}),
                               clear.chunk({"y": 40, "x": 40}), model=model, card=card,
                               tile_px=48, resources=None, sigmas_px=SMALL_SIGMAS, with_network=True)
    with dask.config.set(scheduler="synchronous"):
        computed = lazy.compute()
    refl_diff = np.abs(computed["reflectance"].values.astype(int) - eager["reflectance"].values)
    assert refl_diff.max() <= 1
    np.testing.assert_array_equal(computed["fill"].values, eager["fill"].values)
    assert "7 nearest dates" in computed.attrs["parameters"]["network_frames"]


def test_bare_model_without_card():
    """Any module with the Generator's interface works; no card: reflectance as is."""
    model = StandInGenerator().eval()
    values, days = _series(n_dates=3, height=60, width=70, seed=6)
    whole = fill_series(values, days, BANDS, model=model, tile_px=4096)
    chunked = fill_series(values, days, BANDS, model=model, tile_px=16, batch_size=5)
    assert np.isfinite(chunked).all()
    assert np.abs(chunked - whole).max() < 1e-3
    seamy = fill_series(values, days, BANDS, model=model, tile_px=16, halo_px=0)
    assert np.abs(seamy - whole).max() > 1e-3
    finite = np.isfinite(values)
    np.testing.assert_array_equal(chunked[finite], values[finite])


def test_halo_too_small_shows_seams(model_and_card):
    """The property the halo buys is real: without it, tile borders differ."""
    model, card = model_and_card
    values, days = _series(seed=1)
    whole = fill_series(values, days, BANDS, model=model, card=card, tile_px=4096)
    seamy = fill_series(values, days, BANDS, model=model, card=card, tile_px=32, halo_px=0)
    assert np.abs(seamy - whole).max() > 1e-3


def test_all_nan_pixel_series_and_composite_provenance(model_and_card):
    model, card = model_and_card
    values, days = _series(n_dates=3, height=40, width=48, seed=2)
    values[:, :, 5:9, 7:12] = np.nan  # never observed
    values[1, :, 20:24, 20:30] = np.nan  # hidden in the target frame only
    values[:, :, 20:24, 20:30][[0, 2]] = 0.2
    filled = fill_series(values, days, BANDS, model=model, card=card, tile_px=32)
    assert np.isfinite(filled).all()
    result = generator_composite_array(values, days, BANDS, target_day=days[1] + 2,
                                       model=model, card=card, tile_px=32)
    assert result.reflectance.shape == (6, 40, 48)
    assert (result.fill[5:9, 7:12] == FILL_NODATA).all()
    assert np.isnan(result.reflectance[:, 5:9, 7:12]).all()
    assert (result.clear_count[5:9, 7:12] == 0).all()
    assert (result.fill[20:24, 20:30] == FILL_GENERATED).all()
    observed = np.isfinite(values[1]).all(axis=0)
    assert (result.fill[observed] == FILL_OBSERVED).all()
    np.testing.assert_array_equal(result.reflectance[:, observed], values[1][:, observed])
    np.testing.assert_array_equal(result.source_day[result.fill != FILL_NODATA], days[1])
    np.testing.assert_array_equal(result.clear_count, np.isfinite(values).all(1).sum(0))


def test_network_prediction_uses_no_pixel_of_the_target(model_and_card):
    """The network predicts the target frame from the other dates only: the target's own
    pixels reach the mosaic through the test-time head's training labels and the
    correction, never through the network's inputs."""
    model, card = model_and_card
    values, days = _series(n_dates=3, height=40, width=48, seed=7)
    usable = np.isfinite(values).all(axis=1)
    values = np.where(usable[:, None], values, np.nan).astype(np.float32)
    changed = values.copy()
    changed[1] = np.where(usable[1], values[1] * 1.5, np.nan)
    a, b = (network_prediction(v, days, BANDS, frame=1, model=model, card=card,
                                         tile_px=32) for v in (values, changed))
    assert a.shape == (6, 40, 48)
    np.testing.assert_array_equal(a, b)
    # and the corrected mosaic does follow the target's own (changed) level in its gaps
    kw = dict(target_day=days[1], model=model, card=card, tile_px=32, sigmas_px=SMALL_SIGMAS)
    ra = generator_composite_array(values, days, BANDS, **kw).reflectance
    rb = generator_composite_array(changed, days, BANDS, **kw).reflectance
    gaps = ~usable[1] & usable.any(axis=0)
    assert np.nanmean(rb[:, gaps]) > np.nanmean(ra[:, gaps]) + 0.01


@pytest.fixture
def one_torch_thread():
    """Torch's float sums depend on its thread count, and the test-time head, trained on
    the network's output, turns a 1e-7 difference into a few DN: one thread for the test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_lazy_equals_eager_and_matches_composite_schema(model_and_card, one_torch_thread):
    model, card = model_and_card
    values, days = _series(n_dates=3, height=110, width=124, seed=3)
    reflectance, clear = reflectance_cube(values, days, bands=BANDS)
    # narrow correction widths keep the overlap (and so the image) small
    eager = generator_composite(reflectance, clear, model=model, card=card, tile_px=4096,
                                sigmas_px=SMALL_SIGMAS)
    lazy_in = reflectance.chunk({"y": 40, "x": 40}), clear.chunk({"y": 40, "x": 40})
    lazy = generator_composite(*lazy_in, model=model, card=card, tile_px=48, resources=None,
                               sigmas_px=SMALL_SIGMAS)
    assert isinstance(lazy["reflectance"].data, da.Array)
    chunks = lazy["reflectance"].data.chunks
    assert len(chunks[1]) > 1 and len(chunks[2]) > 2  # interior chunks, halos on all sides
    with dask.config.set(scheduler="synchronous"):
        computed = lazy.compute()
    # one choice of candidate and width for the tile, whatever the chunks
    assert float(computed["correction_sigma_px"]) == float(eager["correction_sigma_px"])
    assert int(computed["correction_candidate"]) == int(eager["correction_candidate"])
    reference = composite(reflectance, clear, method="median")
    for name in reference.data_vars:
        assert eager[name].dtype == reference[name].dtype == computed[name].dtype, name
        assert eager[name].dims == reference[name].dims == computed[name].dims, name
    for name in ("clear_count", "source_date", "fill"):
        np.testing.assert_array_equal(computed[name].values, eager[name].values)
    # digital numbers: equal up to one DN of float rounding (1e-4 reflectance)
    refl_diff = np.abs(computed["reflectance"].values.astype(int) - eager["reflectance"].values)
    assert refl_diff.max() <= 1
    assert computed.attrs["method"] == "generator" and "model_version" in computed.attrs["parameters"]
    assert computed.attrs["parameters"]["sigmas_px"] == list(SMALL_SIGMAS)
    # the head, then its prior (the fallback where the head cannot learn), by name
    from cloudfree.methods.corrected import record_choice
    from cloudfree.methods.generator import PRIOR_CANDIDATE

    recorded = record_choice(computed).attrs["parameters"]
    assert recorded["candidates"][1] == PRIOR_CANDIDATE
    assert recorded["candidates"][0].startswith("test-time head")
    assert recorded["chosen_candidate"] in recorded["candidates"]
    # observed pixels of the target frame keep their DN
    frame = inference.nearest_frame(days, (days.min() + days.max()) / 2)
    observed = clear.values[frame]
    np.testing.assert_array_equal(computed["reflectance"].values[:, observed],
                                  reflectance.values[frame][:, observed])
    assert (computed["fill"].values[~observed & (clear.values.sum(0) > 0)] == FILL_GENERATED).all()
    assert computed["source_date"].attrs["units"] == "days since 1970-01-01"


def test_gpu_annotation_in_graph(model_and_card):
    model, card = model_and_card
    values, days = _series(n_dates=2, height=32, width=32, seed=4)
    reflectance, clear = reflectance_cube(values, days, bands=BANDS)
    out = generator_composite(reflectance.chunk({"y": 16}), clear.chunk({"y": 16}), model=model,
                              card=card, tile_px=16, resources={"GPU": 1}, with_network=True)
    layers = out["reflectance"].data.__dask_graph__().layers
    annotated = [name for name, layer in layers.items()
                 if (layer.annotations or {}).get("resources") == {"GPU": 1}]
    assert any(name.startswith("generator-block") for name in annotated)
    plain = generator_composite(reflectance.chunk({"y": 16}), clear.chunk({"y": 16}),
                                model=model, card=card, tile_px=16, resources=None, with_network=True)
    assert not any((layer.annotations or {}).get("resources")
                   for layer in plain["reflectance"].data.__dask_graph__().layers.values())
    # without the network (the default) the head's trainings and predictions, torch both,
    # carry the annotation
    headed = generator_composite(reflectance.chunk({"y": 16}), clear.chunk({"y": 16}),
                                 model=model, card=card, tile_px=16, resources={"GPU": 1})
    layers = headed["reflectance"].data.__dask_graph__().layers
    annotated = [name for name, layer in layers.items()
                 if (layer.annotations or {}).get("resources") == {"GPU": 1}]
    assert any(name.startswith("apply_pair_block") for name in annotated)
    assert any(name.startswith(("_filling_block", "_train_block")) for name in annotated)
    assert not any(name.startswith("_samples_block") for name in annotated)
    assert not any(name.startswith("generator-block") for name in layers)


def test_gpu_tasks_land_on_the_gpu_worker(model_and_card):
    distributed = pytest.importorskip("distributed")
    from distributed import Client, Scheduler, SpecCluster, Worker

    model, card = model_and_card
    values, days = _series(n_dates=2, height=48, width=48, seed=5)
    reflectance, clear = reflectance_cube(values, days, bands=BANDS)
    workers = {"cpu": {"cls": Worker, "options": {"nthreads": 1}},
               "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}}}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
    with SpecCluster(workers=workers, scheduler=scheduler) as cluster, \
            Client(cluster) as client:
        out = generator_composite(reflectance.chunk({"y": 16, "x": 16}),
                                  clear.chunk({"y": 16, "x": 16}), model=model, card=card,
                                  tile_px=16, with_network=True)  # resources="auto": gpu_resources(client)
        with distributed.get_task_stream(client) as stream, \
                dask.config.set(inference.COMPUTE_CONFIG):
            result = out.compute()
        gpu_address = next(addr for addr, info in client.scheduler_info()["workers"].items()
                           if info.get("resources", {}).get("GPU"))
        blocks = [task for task in stream.data if "generator-block" in str(task["key"])]
        # without the network (the default): the head's trainings and predictions
        headed = generator_composite(reflectance.chunk({"y": 16, "x": 16}),
                                     clear.chunk({"y": 16, "x": 16}), model=model, card=card,
                                     tile_px=16)
        with distributed.get_task_stream(client) as stream, \
                dask.config.set(inference.COMPUTE_CONFIG):
            headed.compute()
        torch_tasks = [task for task in stream.data if str(task["key"]).startswith(
            ("('apply_pair_block", "_train_block", "_filling_block"))]
    assert blocks and all(task["worker"] == gpu_address for task in blocks)
    assert result["fill"].shape == (48, 48)
    assert len(torch_tasks) >= 3 and all(t["worker"] == gpu_address for t in torch_tasks)


def test_graph_keys_depend_on_the_input():
    """Two tiles computed on one scheduler must not share task keys (they would get
    each other's results)."""
    import dask.array as da

    from cloudfree.methods.generator import mosaic as generator_composite

    model = tiny_generator(("B02", "B03", "B04"), heads=1)
    rng = np.random.default_rng(0)

    def cube(seed):
        data = np.random.default_rng(seed).integers(1000, 3000, (3, 3, 16, 16), np.uint16)
        return xr.DataArray(da.from_array(data, chunks=(3, 3, 8, 8)),
                            dims=("time", "band", "y", "x"),
                            coords={"time": pd.date_range("2024-05-01", periods=3, freq="10D"),
                                    "band": ["B02", "B03", "B04"]})

    clear = xr.DataArray(da.from_array(rng.random((3, 16, 16)) > 0.3, chunks=(3, 8, 8)),
                         dims=("time", "y", "x"))
    a = generator_composite(cube(1), clear, model=model, resources=None, halo_px=4, with_network=True)
    b = generator_composite(cube(2), clear, model=model, resources=None, halo_px=4, with_network=True)
    keys_a = set(a["reflectance"].data.__dask_graph__().layers)
    keys_b = set(b["reflectance"].data.__dask_graph__().layers)
    blocks_a = {k for k in keys_a if k.startswith("generator-block")}
    blocks_b = {k for k in keys_b if k.startswith("generator-block")}
    assert blocks_a and blocks_b and not blocks_a & blocks_b


def test_too_few_dates_fall_back_to_interpolate_corrected(model_and_card):
    from cloudfree.methods.generator import MIN_DATES

    model, card = model_and_card
    values, days = _series(n_dates=MIN_DATES - 1, height=64, width=64, seed=5)
    reflectance, clear = reflectance_cube(values, days, bands=BANDS)
    result = generator_composite(reflectance, clear, model=model, card=card,
                                 sigmas_px=SMALL_SIGMAS)
    assert result.attrs["method"] == "generator"
    assert "interpolate_corrected" in result.attrs["parameters"]["fallback"]
    fill = result["fill"].values
    assert (fill != FILL_GENERATED).all() and (fill == FILL_OBSERVED).any()

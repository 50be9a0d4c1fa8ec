"""Corrected mosaics on dask cubes: chunked == whole, one choice per tile, lazy, and the
per-date bias that plain interpolation keeps is gone."""

import json

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudfree.errors import InvalidParameterError
from cloudfree.methods import (
    FILL_COMPOSITED,
    FILL_NODATA,
    FILL_OBSERVED,
    composite,
    corrected,
    corrected_interval,
    correction,
    days_since_epoch,
    interpolate_corrected,
)
from cloudfree.methods._driver import aligned_chunks, nearest_frame
from cloudfree.methods.corrected import record_choice
from cloudfree.methods.interpolate_corrected import interpolation_candidate
from cloudfree.methods.interpolate_corrected import mosaic as interpolate_corrected_composite
from cloudfree.testing import reflectance_cube, tiny_generator

BANDS = ("blue", "green", "red")
#: Narrow widths for small images: an overlap of 16 px instead of 128.
SMALL_SIGMAS = (2.0, 4.0)


def biased_cube(size=96, n_dates=6, seed=0, clouds=5, clear_others=False):
    """A landscape seen on ``n_dates`` dates 10 days apart, each with its own smooth additive
    bias (haze) and round clouds: (reflectance DN, clear, true reflectance)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    land = 0.1 + 0.2 * (np.sin(yy / 3.0) * np.cos(xx / 4.0) + 1) / 2
    days = 19850.0 + 10 * np.arange(n_dates)
    truth = np.stack([
        np.stack([land * (1 + 0.2 * b) for b in range(len(BANDS))])
        + 0.05 * rng.random() * (1 + np.sin(yy / size * 2 + rng.random()) * xx / size)
        for _ in days]).astype(np.float32)
    clear = np.ones((n_dates, size, size), bool)
    for t in range(n_dates):
        if clear_others and t != n_dates // 2 - 1:
            continue
        for _ in range(clouds):
            cy, cx = rng.uniform(0, size, 2)
            radius = rng.uniform(0.05, 0.2) * size
            clear[t] &= (yy - cy) ** 2 + (xx - cx) ** 2 > radius ** 2
    reflectance, clear = reflectance_cube(truth, days, bands=BANDS, clear=clear)
    return reflectance, clear, truth


def _frame(reflectance):
    days = days_since_epoch(reflectance["time"].values)
    return nearest_frame(days, (days.min() + days.max()) / 2)


def _chunked(reflectance, clear, chunk, **kw):
    lazy = interpolate_corrected_composite(reflectance.chunk({"y": chunk, "x": chunk}),
                                           clear.chunk({"y": chunk, "x": chunk}), **kw)
    assert isinstance(lazy["reflectance"].data, da.Array)
    with dask.config.set(scheduler="threads"):
        return lazy, lazy.compute()


@pytest.mark.parametrize("clear_others", [False, True], ids=["cloud-masks", "discs"])
@pytest.mark.parametrize("chunk", [7, 24, 40])
def test_chunked_equals_whole(chunk, clear_others):
    """Chunks smaller than the overlap (merged), interior chunks, and no partly cloudy
    date to borrow held-out masks from (global discs instead): all equal the whole run."""
    reflectance, clear, _ = biased_cube(clear_others=clear_others)
    whole = interpolate_corrected_composite(reflectance, clear, sigmas_px=SMALL_SIGMAS)
    lazy, out = _chunked(reflectance, clear, chunk, sigmas_px=SMALL_SIGMAS)
    chunks = lazy["reflectance"].data.chunks[1:]
    depth = correction.kernel_radius(max(SMALL_SIGMAS))
    assert len(chunks[0]) > 2 and min(chunks[0]) >= depth  # interior chunks, each >= depth
    diff = np.abs(out["reflectance"].values.astype(int) - whole["reflectance"].values)
    assert diff.max() * 1e-4 < 1e-4 + 1e-9  # at most one DN of float rounding
    for name in ("clear_count", "source_date", "fill"):
        np.testing.assert_array_equal(out[name].values, whole[name].values)
    assert float(out["correction_sigma_px"]) == float(whole["correction_sigma_px"])
    frame = _frame(reflectance)
    visible = clear.values[frame]
    np.testing.assert_array_equal(out["reflectance"].values[:, visible],
                                  reflectance.values[frame][:, visible])
    assert (out["fill"].values[visible] == FILL_OBSERVED).all()
    assert (out["fill"].values[~visible] == FILL_COMPOSITED).all()


def test_chunked_equals_whole_at_the_default_widths():
    """The shipped widths (4..32 px, overlap 128 px) on a tile cut into three chunks a side."""
    reflectance, clear, _ = biased_cube(size=300, clouds=8, seed=1)
    whole = interpolate_corrected_composite(reflectance, clear)
    lazy, out = _chunked(reflectance, clear, 100)
    assert lazy["reflectance"].data.chunks[1] == (128, 172)  # merged up to the overlap
    diff = np.abs(out["reflectance"].values.astype(int) - whole["reflectance"].values)
    assert diff.max() <= 1
    assert float(out["correction_sigma_px"]) == float(whole["correction_sigma_px"])
    assert float(whole["correction_sigma_px"]) in correction.SIGMAS_PX


def test_per_chunk_sums_add_up_to_the_whole_image():
    """Stage 1's exactness: the validation sums of chunk cores (with halos) add up to the
    whole image's, so the choice is the whole image's choice."""
    reflectance, clear, truth = biased_cube(size=64)
    frame = _frame(reflectance)
    usable = clear.values
    values = np.where(usable[:, None], truth, np.nan)
    candidates = interpolation_candidate(values, usable, np.arange(6) * 10.0, frame)
    candidates = np.stack([candidates, candidates + 0.01])
    fraction = (~usable).mean(axis=(1, 2))
    kw = dict(frame=frame, shape=(64, 64), seed=0, masks=4, sigmas=SMALL_SIGMAS)
    whole = corrected.validation_sums(truth[frame], usable, candidates, fraction,
                                      np.arange(64), np.arange(64), None, **kw)
    depth = correction.kernel_radius(max(SMALL_SIGMAS))
    total = np.zeros_like(whole)
    for y0 in range(0, 64, 20):
        for x0 in range(0, 64, 24):
            ys = slice(max(0, y0 - depth), min(64, y0 + 20 + depth))
            xs = slice(max(0, x0 - depth), min(64, x0 + 24 + depth))
            rows, cols = np.arange(64)[ys], np.arange(64)[xs]
            core = (((rows >= y0) & (rows < y0 + 20))[:, None]
                    & ((cols >= x0) & (cols < x0 + 24))[None, :])
            total += corrected.validation_sums(truth[frame][:, ys, xs], usable[:, ys, xs],
                                               candidates[:, :, ys, xs], fraction, rows, cols,
                                               core, **kw)
    np.testing.assert_allclose(total, whole, rtol=1e-9)
    assert whole[-1] == np.count_nonzero(usable[frame])


def test_scoring_candidates_choose_and_calibrate_while_the_candidates_fill():
    """``correct_stack(..., scoring=)``: the width and the interval come from the scoring
    twin, the filled values from the candidate; chunked equals whole."""
    reflectance, clear, truth = biased_cube(size=64)
    frame = _frame(reflectance)
    dn, usable = reflectance.values, clear.values
    values = np.where(usable[:, None], truth, np.nan)
    days = np.arange(6) * 10.0
    good = interpolation_candidate(values, usable, days, frame)[None].astype(np.float32)
    rng = np.random.default_rng(0)
    noisy = (good + rng.normal(0, 0.03, good.shape)).astype(np.float32)
    kw = dict(frame=frame, day=float(days[frame]), sigmas=SMALL_SIGMAS)
    plain, plain_choice = corrected.correct_stack(dn, usable, good, **kw)
    twin, twin_choice = corrected.correct_stack(dn, usable, good, scoring=noisy, **kw)
    alone, alone_choice = corrected.correct_stack(dn, usable, noisy, **kw)
    n = len(BANDS)
    # chosen and calibrated on the noisy twin: its width, its (wider) interval and RMSE
    assert twin_choice[1] == alone_choice[1] and twin_choice[2] == alone_choice[2]
    np.testing.assert_array_equal(twin[n + 3:], alone[n + 3:])
    assert np.nanmean(twin[n + 3:]) > np.nanmean(plain[n + 3:])
    # filled from the good candidate at that width, not with the twin's values
    gaps = ~usable[frame]
    assert np.abs(twin[:n, gaps] - alone[:n, gaps]).max() > 10
    if plain_choice[1] == twin_choice[1]:
        np.testing.assert_array_equal(twin[:n], plain[:n])
    with dask.config.set(scheduler="threads"):
        lazy, lazy_choice = corrected.correct_stack(
            da.from_array(dn, chunks=(-1, -1, 24, 24)), da.from_array(usable, chunks=(-1, 24, 24)),
            da.from_array(good, chunks=(-1, -1, 24, 24)),
            scoring=da.from_array(noisy, chunks=(-1, -1, 24, 24)), **kw)
        lazy, lazy_choice = dask.compute(lazy, lazy_choice)
    np.testing.assert_array_equal(lazy_choice[:2], twin_choice[:2])
    assert np.nanmax(np.abs(lazy[:n] - twin[:n])) <= 1
    # the nominal level where the twin is weaker than what fills, lazily decided too
    fixed, fixed_choice = corrected.correct_stack(dn, usable, good, scoring=noisy,
                                                  select_level=False, **kw)
    assert fixed_choice[3] == corrected_interval.COVERAGE
    assert twin_choice[3] in corrected_interval.LEVELS
    assert (np.nan_to_num(fixed[n + 3:]) <= np.nan_to_num(twin[n + 3:])).all()
    with dask.config.set(scheduler="threads"):
        lazy_fixed, lazy_fixed_choice = dask.compute(*corrected.correct_stack(
            da.from_array(dn, chunks=(-1, -1, 24, 24)), da.from_array(usable, chunks=(-1, 24, 24)),
            da.from_array(good, chunks=(-1, -1, 24, 24)),
            scoring=da.from_array(noisy, chunks=(-1, -1, 24, 24)),
            select_level=da.from_array(np.array(False)), **kw))
    assert lazy_fixed_choice[3] == corrected_interval.COVERAGE
    np.testing.assert_array_equal(lazy_fixed[n + 3:], fixed[n + 3:])


def test_scoring_of_another_shape_is_refused():
    reflectance, clear, truth = biased_cube(size=32)
    good = np.zeros((1, len(BANDS), 32, 32), np.float32)
    with pytest.raises(InvalidParameterError, match="scoring"):
        corrected.correct_stack(reflectance.values, clear.values, good, frame=2, day=0.0,
                                scoring=np.zeros((2, len(BANDS), 32, 32), np.float32))


def test_the_mosaic_is_the_evaluation_method():
    """On a tile where every pixel has another clear date, the mosaic equals the
    evaluation's ``interpolate_corrected`` (up to the DN rounding), its interval too."""
    reflectance, clear, truth = biased_cube(size=64)
    assert (clear.values.sum(axis=0) >= 2).all()
    frame = _frame(reflectance)
    series = np.where(clear.values[:, None], reflectance.values * 1e-4 - 0.1, np.nan)
    days = days_since_epoch(reflectance["time"].values)
    expected = interpolate_corrected.evaluate(series.astype(np.float32), days, frame)
    result = interpolate_corrected_composite(reflectance, clear)
    mosaic = result["reflectance"].values
    assert np.abs(mosaic * 1e-4 - 0.1 - expected.values).max() < 1.5e-4
    # the same table: DN rounded up from the same float32 half-widths (one DN at most)
    width = result["uncertainty"].values.astype(float) * 1e-4
    assert np.abs(width - expected.half_width).max() <= 1e-4 + 1e-7
    assert (result["uncertainty"].values[:, clear.values[frame]] == 0).all()
    assert (expected.half_width[:, ~clear.values[frame]] > 0).all()


def test_removes_the_per_date_bias_that_interpolation_keeps():
    reflectance, clear, truth = biased_cube(size=96, seed=3)
    frame = _frame(reflectance)
    target = str(reflectance["time"].values[frame])[:10]
    gaps = ~clear.values[frame]
    assert gaps.mean() > 0.05

    def error(result):
        refl = result["reflectance"].values * 1e-4 - 0.1
        return np.abs(refl - truth[frame])[:, gaps].mean()

    plain = error(composite(reflectance, clear, method="interpolate", target_date=target))
    fitted = error(interpolate_corrected_composite(reflectance, clear, target_date=target))
    print(f"gap MAE: interpolate {plain:.4f}, interpolate_corrected {fitted:.4f}")
    assert fitted < 0.3 * plain


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_heldout_rmse_estimates_the_error_in_the_gaps(seed):
    """The self-validation's error of the chosen pair, recorded for the item, is within a
    factor of three of the true RMSE of the filled pixels. On these synthetic cubes it is
    conservative (1.3 to 2.2 times the true error)."""
    reflectance, clear, truth = biased_cube(size=96, seed=seed)
    frame = _frame(reflectance)
    gaps = ~clear.values[frame]
    out = record_choice(interpolate_corrected_composite(reflectance, clear).compute())
    refl = out["reflectance"].values * 1e-4 - 0.1
    actual = float(np.sqrt(((refl - truth[frame])[:, gaps] ** 2).mean()))
    estimate = out.attrs["parameters"]["heldout_rmse"]
    print(f"held-out RMSE {estimate:.5f}, actual gap RMSE {actual:.5f}")
    assert actual / 3 <= estimate <= 3 * actual
    assert "correction_heldout_rmse" not in out.coords
    assert out.attrs["parameters"]["interval_level"] in corrected_interval.LEVELS
    assert "correction_interval_level" not in out.coords


def test_nodata_where_no_date_saw_the_pixel_and_provenance():
    reflectance, clear, _ = biased_cube(size=48)
    frame = _frame(reflectance)
    clear[:, 5:9, 7:12] = False  # never observed
    reflectance[frame, :, 30:33, 30:33] = 0  # nodata on the target date only
    out = record_choice(interpolate_corrected_composite(reflectance, clear).compute())
    assert (out["fill"].values[5:9, 7:12] == FILL_NODATA).all()
    assert (out["reflectance"].values[:, 5:9, 7:12] == 0).all()
    assert (out["source_date"].values[5:9, 7:12] == 0).all()
    assert (out["fill"].values[30:33, 30:33] == FILL_COMPOSITED).all()
    assert (out["reflectance"].values[:, 30:33, 30:33] > 0).all()
    day = int(days_since_epoch(reflectance["time"].values[frame]))
    assert set(np.unique(out["source_date"].values)) == {0, day}
    for name in ("reflectance", "clear_count", "source_date", "fill"):
        assert out[name].dtype == composite(reflectance, clear)[name].dtype
    params = out.attrs["parameters"]
    json.dumps(params)
    assert out.attrs["method"] == "interpolate_corrected"
    assert params["sigmas_px"] == list(correction.SIGMAS_PX) and "self-validation" in \
        params["sigma_selection"]
    assert params["chosen_candidate"] == "interpolate" and params["corrected"] is True
    assert params["chosen_sigma_px"] in correction.SIGMAS_PX
    assert "correction_sigma_px" not in out.coords


def test_a_single_date_is_its_own_clear_pixels():
    reflectance, clear, _ = biased_cube(size=32, n_dates=1)
    out = interpolate_corrected_composite(reflectance.chunk({"y": 16}), clear.chunk({"y": 16}),
                                          sigmas_px=SMALL_SIGMAS).compute()
    visible = clear.values[0]
    assert np.isnan(float(out["correction_sigma_px"]))  # nothing to correct with
    assert record_choice(out).attrs["parameters"]["corrected"] is False
    assert record_choice(out).attrs["parameters"]["heldout_rmse"] is None
    np.testing.assert_array_equal(out["fill"].values, np.where(visible, FILL_OBSERVED, FILL_NODATA))
    np.testing.assert_array_equal(out["reflectance"].values,
                                  np.where(visible, reflectance.values[0], 0))


def test_building_the_graph_computes_nothing():
    reflectance, clear, _ = biased_cube(size=64)
    reads = []

    def read(block):
        if block.size:  # dask may probe a function with empty arrays for its output type
            reads.append(block.shape)
        return block

    lazy_refl = reflectance.copy(data=da.from_array(reflectance.values, chunks=(-1, -1, 32, 32))
                                 .map_blocks(read, dtype=np.uint16))
    lazy_clear = clear.copy(data=da.from_array(clear.values, chunks=(-1, 32, 32))
                            .map_blocks(read, dtype=bool))
    out = interpolate_corrected_composite(lazy_refl, lazy_clear, sigmas_px=SMALL_SIGMAS)
    assert reads == []
    assert isinstance(out["correction_sigma_px"].data, da.Array)
    with dask.config.set(scheduler="synchronous"):
        out.compute()
    assert reads

    # the generator's mosaic too: no read and no forward pass until computed
    from cloudfree.methods.generator import mosaic as generator_composite

    reads.clear()
    model = tiny_generator(BANDS, heads=1)
    forwards = []
    model.register_forward_hook(lambda *args: forwards.append(1))
    out = generator_composite(lazy_refl, lazy_clear, model=model, resources=None, halo_px=4,
                              sigmas_px=SMALL_SIGMAS, with_network=True)
    assert reads == [] and forwards == []
    with dask.config.set(scheduler="synchronous"):
        out.compute()
    assert reads and forwards


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=8), st.integers(0, 200),
       st.sampled_from([1, 2, 4, 8]))
def test_aligned_chunks(chunks, depth, factor):
    out = aligned_chunks(tuple(chunks), depth=depth, factor=factor)
    assert sum(out) == sum(chunks)
    if len(out) > 1:
        assert min(out) >= depth  # every neighbour can lend a full halo
        assert all(c % factor == 0 for c in out[:-1])  # chunk starts on the factor grid
    assert aligned_chunks(out, depth=depth, factor=factor) == out  # idempotent


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 1100), min_size=1, max_size=4), st.integers(0, 200),
       st.sampled_from([1, 4, 8]), st.integers(1, 600))
def test_aligned_chunks_at_most(chunks, depth, factor, at_most):
    """``at_most`` caps the width (on the grid), never below the halo a neighbour lends."""
    out = aligned_chunks(tuple(chunks), depth=depth, factor=factor, at_most=at_most)
    assert sum(out) == sum(chunks)
    if len(out) > 1:
        assert min(out) >= depth
        assert all(c % factor == 0 for c in out[:-1])
        cap = max(factor, at_most // factor * factor, -(-max(depth, 1) // factor) * factor)
        assert out[0] <= cap
        assert max(out) < cap + max(depth, cap)  # only a short last chunk joins the one before


def test_compute_tile_and_params(tmp_path):
    """The mosaic path: MosaicParams accepts the method, compute_tile runs it and records
    the tile's choice for the item."""
    from cloudfree.methods import get_method, list_methods
    from cloudfree.testing import make_items, make_tile
    from cloudfree.tile import MosaicParams, compute_tile

    assert "interpolate_corrected" in list_methods("mosaic")
    assert get_method("interpolate_corrected").targeted
    size = 48
    reflectance, clear, _ = biased_cube(size=size, n_dates=5)
    scl = np.where(clear.values[:, ::2, ::2], 4, 9).astype(np.uint16)  # 20 m SCL
    arrays = {b: reflectance.values[:, i] for i, b in enumerate(BANDS)} | {"scl": scl}
    tile = make_tile(size=size)
    items = make_items(tmp_path, arrays, tile=tile)
    params = MosaicParams(bands=BANDS, method="interpolate_corrected", target_date="2024-05-21",
                          dilation_m=0, chunksize=32)
    result = compute_tile(items, tile, params)
    assert result.attrs["parameters"]["frame_date"] == "2024-05-21"
    assert result.attrs["parameters"]["chosen_sigma_px"] in correction.SIGMAS_PX
    fill = result["fill"].values
    assert {FILL_OBSERVED, FILL_COMPOSITED} <= set(np.unique(fill))
    assert (result["reflectance"].values > 0).all()
    # the 90 % interval: 0 where observed, stated where corrected, written as an asset
    width = result["uncertainty"].values
    assert (width[:, fill == FILL_OBSERVED] == 0).all()
    assert (width[:, fill == FILL_COMPOSITED] > 0).all()
    assert (width[:, fill == FILL_COMPOSITED] < corrected.UNCERTAINTY_NODATA).all()
    from cloudfree.tile import write_tile

    written = write_tile(result, tile, base_url=str(tmp_path / "out"), fs=None, params=params)
    [asset] = [w for w in written if w.key == "uncertainty"]
    assert asset.bands == BANDS


def test_cli_offers_the_method():
    from cloudfree.cli import build_parser

    for command in (["demo"], ["mosaic", "--datetime", "2024-05-01/2024-06-01"]):
        args = build_parser().parse_args([*command, "--method", "interpolate_corrected"])
        assert args.method == "interpolate_corrected"

"""Seamless tiles: two adjacent tiles, each computed on its bounds grown by the tile halo,
equal one tile covering both: within 1 DN for reflectance, exactly for ``clear_count`` and
``fill``, for every mosaic method of the registry.

The corrected methods choose their correction once per tile (the candidate and the width by
self-validation, and the generator its test-time head) on the grown tile's pixels; two
neighbours see different pixels, so they may choose differently. Those choices are
compared, and the reflectance difference they make is bounded, not hidden.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloudfree.methods import get_method, list_methods
from cloudfree.methods._provenance import FILL_OBSERVED
from cloudfree.testing import make_items, make_tile
from cloudfree.tile import MosaicParams, compute_tile, halo_px

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
TILE_PX = 40
N_DATES = 6


def _scene(seed: int = 3) -> tuple[dict[str, np.ndarray], int]:
    """Dates over a (TILE_PX, 2 * TILE_PX) union: smooth surface, noise, clouds (SCL 9) and
    shadows (SCL 3) drawn across the shared edge at column TILE_PX."""
    rng = np.random.default_rng(seed)
    h, w = TILE_PX, 2 * TILE_PX
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([1500 + 400 * np.sin(xx / (7 + i)) + 300 * np.cos(yy / (5 + i))
                     for i in range(len(BANDS))])
    stack = np.empty((N_DATES, len(BANDS), h, w), np.uint16)
    scl = np.full((N_DATES, h, w), 4, np.uint16)
    for t in range(N_DATES):
        stack[t] = np.clip(base + 60 * t + rng.normal(0, 25, base.shape), 1001, 9000)
        for _ in range(2):
            cy, cx = rng.integers(0, h), rng.integers(TILE_PX - 12, TILE_PX + 12)
            r = rng.integers(4, 10)
            cloud = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            stack[t][:, cloud] = 7000
            scl[t][cloud] = 9
            shadow = np.roll(cloud, (3, 5), axis=(0, 1)) & ~cloud
            scl[t][shadow] = 3
    arrays = {b: stack[:, i] for i, b in enumerate(BANDS)} | {"scl": scl}
    return arrays, w


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    arrays, width = _scene()
    union = make_tile(size=TILE_PX)
    union = type(union)(tile_id="union", epsg=union.epsg, resolution_m=union.resolution_m,
                        bounds=(union.bounds[0], union.bounds[1],
                                union.bounds[0] + width * union.resolution_m, union.bounds[3]))
    items = make_items(tmp_path_factory.mktemp("seams"), arrays, tile=union)
    x0, y0, _, y1 = union.bounds
    mid = x0 + TILE_PX * union.resolution_m
    left = type(union)("left", union.epsg, (x0, y0, mid, y1), union.resolution_m)
    right = type(union)("right", union.epsg, (mid, y0, union.bounds[2], y1), union.resolution_m)
    return items, union, left, right


def _run(items, tile, method):
    # The SCL mask: the methods' seams, measured below, at the SCL's small halo (the
    # detectors' own seams: tests/unit/test_detection_dask.py).
    params = MosaicParams(method=method, bands=BANDS, chunksize=64, dilation_m=30.0,
                          target_date="2024-05-21", mask="scl")
    return compute_tile(items, tile, params)


EXACT = [m for m in list_methods("mosaic") if not get_method(m).corrected]
CORRECTED = [m for m in list_methods("mosaic") if get_method(m).corrected]


def _joined(halves, name):
    return np.concatenate([h[name].values for h in halves], axis=-1)


def _provenance_equal(whole, halves):
    for name in ("clear_count", "fill", "source_date"):
        np.testing.assert_array_equal(_joined(halves, name), whole[name].values, err_msg=name)


@pytest.mark.parametrize("method", EXACT)
def test_adjacent_tiles_equal_one_tile(tiles, method):
    items, union, left, right = tiles
    whole = _run(items, union, method)
    halves = [_run(items, t, method) for t in (left, right)]
    assert halves[0].attrs["halo_px"] == halo_px(MosaicParams(method=method, dilation_m=30.0,
                                                                  mask="scl"))
    _provenance_equal(whole, halves)
    diff = np.abs(_joined(halves, "reflectance").astype(int)
                  - whole["reflectance"].values.astype(int))
    assert diff.max() <= 1, (method, int(diff.max()))


@pytest.mark.parametrize("method", CORRECTED)
def test_corrected_methods_differ_only_by_their_per_tile_choice(tiles, method):
    """Provenance is exact and observed pixels are kept as observed; filled pixels differ
    only as much as the two tiles' own choices differ. Measured on this scene: the three
    tiles pick the same correction (the default width, 32 px, since no other beats it by
    the margin of :data:`cloudfree.methods.correction.CHOICE_MARGIN`), so
    interpolate_corrected agrees to 0 DN; before that margin the left tile picked 4 px and
    its filled pixels differed by up to 29 DN. The generator's test-time head is trained
    per tile: up to 112 DN, 16 % of values over 1 DN."""
    items, union, left, right = tiles
    whole = _run(items, union, method)
    halves = [_run(items, t, method) for t in (left, right)]
    _provenance_equal(whole, halves)
    diff = np.abs(_joined(halves, "reflectance").astype(int)
                  - whole["reflectance"].values.astype(int))
    observed = whole["fill"].values == FILL_OBSERVED
    assert observed.any() and (~observed).any()
    assert diff[:, observed].max() <= 1
    print(f"{method}: filled pixels differ by at most {int(diff.max())} DN, "
          f"{float(np.mean(diff > 1)):.2%} of values by more than 1 DN")
    assert diff.max() <= 300  # 0.03 reflectance: a choice of width, never a different fill

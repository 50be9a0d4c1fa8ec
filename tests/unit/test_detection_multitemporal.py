"""cloudfree.detection.multitemporal: what it finds on small made series (haze SCL calls
clear, a projected shadow; not a persistent land change), that chunks and adjacent tiles
computed with its halo equal one whole run, and that it runs without SCL, without sun
angles and at 20 m with only the red-edge, NIR and SWIR bands."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from cloudfree import synthetic as synth
from cloudfree.detection import multitemporal as mt
from cloudfree.detection import scl as scl_detector
from cloudfree.detection._registry import DETECTORS, DetectionInput, detect, esa_band_name
from cloudfree.errors import InvalidParameterError, MissingDetectorInputError
from cloudfree.masking import shadow_offset_px

# --- a made series: one place, 8 dates, events on known pixels ------------------------------

#: Per band: (wavelength nm, vegetation, soil, water, cloud, cirrus, skylight share).
_BANDS_10M = {
    "B02": (490, 0.030, 0.065, 0.035, 0.78, 0.34, 0.40),
    "B03": (560, 0.075, 0.095, 0.035, 0.77, 0.33, 0.36),
    "B04": (665, 0.035, 0.135, 0.018, 0.76, 0.32, 0.32),
    "B08": (842, 0.420, 0.200, 0.012, 0.74, 0.31, 0.25),
    "B11": (1610, 0.210, 0.290, 0.006, 0.52, 0.26, 0.20),
    "B12": (2190, 0.100, 0.250, 0.004, 0.36, 0.22, 0.18),
}
_BANDS_20M = {
    "B05": (705, 0.090, 0.160, 0.020, 0.76, 0.32, 0.30),
    "B06": (740, 0.280, 0.180, 0.015, 0.75, 0.31, 0.28),
    "B07": (783, 0.360, 0.190, 0.013, 0.75, 0.31, 0.26),
    "B8A": (865, 0.420, 0.210, 0.012, 0.74, 0.31, 0.25),
    "B11": (1610, 0.210, 0.290, 0.006, 0.52, 0.26, 0.20),
    "B12": (2190, 0.100, 0.250, 0.004, 0.36, 0.22, 0.18),
}
ZENITH, AZIMUTH = 40.0, 150.0
EVENT = 4  # the date with the cloud, its shadow, the haze and a decoy
VERY_DARK_DATE = 6
N, SIZE = 8, 64
CLOUD = (slice(44, 52), slice(46, 54))
HAZE = (slice(5, 20), slice(5, 20))
DECOY = (slice(5, 12), slice(50, 60))  # as dark as the shadow, where no cloud projects
VERY_DARK = (slice(5, 12), slice(30, 40))
FLOOD = (slice(54, 64), slice(0, 20))  # water from date 3 on
HARVEST = (slice(28, 42), slice(0, 14))  # bare soil from date 5 on


def _made_series(bands: Mapping[str, tuple[float, ...]], resolution_m: float, *,
                 haze_blue: float, cloud_height_m: float = 300.0) -> tuple[
                     DetectionInput, dict[str, np.ndarray]]:
    names = tuple(bands)
    table = np.array([bands[b] for b in names], np.float32)  # (C, 7)
    wavelength, veg, soil, water, cloud_s, cirrus_s, sky = (table[:, i, None, None]
                                                            for i in range(7))
    rng = np.random.default_rng(0)
    dr, dc = (int(round(o)) for o in shadow_offset_px(
        cloud_height_m=cloud_height_m, sun_zenith_deg=ZENITH, sun_azimuth_deg=AZIMUTH,
        resolution_m=resolution_m))
    shadow_at = np.zeros((SIZE, SIZE), bool)
    shadow_at[CLOUD[0].start + dr:CLOUD[0].stop + dr, CLOUD[1].start + dc:CLOUD[1].stop + dc] = 1
    cloud_at = np.zeros((SIZE, SIZE), bool)
    cloud_at[CLOUD] = True
    shadow_at &= ~cloud_at
    cube, scl = [], []
    for t in range(N):
        surface = np.broadcast_to(veg, (len(names), SIZE, SIZE)).copy()
        code = np.full((SIZE, SIZE), int(synth.SCL.VEGETATION), np.uint8)
        if t >= 3:
            surface[:, FLOOD[0], FLOOD[1]] = water
            code[FLOOD] = int(synth.SCL.WATER)
        if t >= 5:
            surface[:, HARVEST[0], HARVEST[1]] = soil
            code[HARVEST] = int(synth.SCL.NOT_VEGETATED)
        surface *= rng.normal(1.0, 0.01, surface.shape).astype(np.float32)
        shade = np.zeros((SIZE, SIZE), np.float32)
        opacity = np.zeros((SIZE, SIZE), np.float32)
        haze = np.zeros((SIZE, SIZE), np.float32)
        if t == EVENT:
            shade[shadow_at] = 0.45  # moderate: needs its cloud to count
            shade[DECOY] = 0.45
            opacity[CLOUD] = 1.0
            haze[HAZE] = haze_blue
            code[CLOUD] = int(synth.SCL.CLOUD_HIGH_PROBABILITY)  # SCL sees the thick cloud only
        if t == VERY_DARK_DATE:
            shade[VERY_DARK] = 0.9
        seen = surface * (1 - shade * (1 - sky))
        seen = seen + opacity * (cloud_s - seen)
        thin = np.clip(haze[None] * (wavelength / 490.0) ** -1.3, 0, 1)
        cube.append((seen + thin * (cirrus_s - seen)).astype(np.float32))
        scl.append(code)
    inp = DetectionInput(bands=np.stack(cube), band_names=names,
                         days=np.arange(N, dtype=np.float64) * 10.0 + 18000.43,
                         resolution_m=resolution_m, scl=np.stack(scl),
                         sun_zenith_deg=np.full(N, ZENITH), sun_azimuth_deg=np.full(N, AZIMUTH),
                         level="L2A")
    return inp, {"shadow": shadow_at, "cloud": cloud_at}


def _core(region: tuple[slice, slice], margin: int = 2) -> tuple[slice, slice]:
    return tuple(slice(s.start + margin, s.stop - margin) for s in region)  # type: ignore[return-value]


def _interior(mask: np.ndarray, margin: int = 2) -> np.ndarray:
    return np.asarray(ndimage.binary_erosion(mask, iterations=margin), bool)


def _check_events(inp: DetectionInput, truth: dict[str, np.ndarray], *, sun: bool = True,
                  haze: bool = True) -> None:
    found = mt.detect(inp)
    # Haze of the event date (SCL says vegetation): cloud, in its whole core (only where
    # a visible band lets the haze test run).
    if haze:
        assert found.cloud[EVENT][_core(HAZE)].all()
    else:
        assert not found.cloud[EVENT][_core(HAZE)].any()
    # The thick cloud, and its shadow where the cloud projects, are found...
    assert found.cloud[EVENT][truth["cloud"]].all()
    shadow = _interior(truth["shadow"])
    assert shadow.sum() >= 10
    if sun:
        assert found.shadow[EVENT][shadow].all()
    else:  # no sun angles: a moderate shadow cannot be confirmed
        assert not found.shadow[EVENT][shadow].any()
    # ... the decoy, as dark but where no cloud projects, is not.
    assert not (found.cloud | found.shadow)[EVENT][DECOY].any()
    # A very dark patch needs no confirmation.
    assert found.shadow[VERY_DARK_DATE][_core(VERY_DARK)].all()
    # The flood and the harvest persist: never flagged (away from the events' dilation).
    for region in (FLOOD, HARVEST):
        assert not found.invalid[:, region[0], region[1]].any()
    # Dates without events are clear (the very dark date but for its patch).
    for t in set(range(N)) - {EVENT, VERY_DARK_DATE}:
        assert not found.invalid[t].any(), t


def test_finds_haze_and_a_projected_shadow_but_not_a_land_change() -> None:
    inp, truth = _made_series(_BANDS_10M, 10.0, haze_blue=0.2)
    by_scl = scl_detector.detect(inp)
    assert by_scl.clear[EVENT][_core(HAZE)].all()  # SCL misses the haze ...
    assert by_scl.clear[EVENT][_interior(truth["shadow"])].all()  # ... and the shadow
    _check_events(inp, truth)
    found = mt.detect(inp)
    assert found.parameters["sun"] == "items"
    assert found.parameters["combined_with_scl"] is True
    assert found.parameters["bands"] == {"blue": "B02", "red": "B04", "nir": "B08",
                                         "swir": "B11"}
    # Every parameter is recorded, with the defaults' keys, as JSON (items carry them).
    assert set(mt.DEFAULTS) <= set(found.parameters)
    assert json.loads(json.dumps(found.parameters)) == found.parameters
    # Fainter haze than the threshold is left alone: the test can fail.
    faint, _ = _made_series(_BANDS_10M, 10.0, haze_blue=0.05)
    assert not mt.detect(faint).cloud[EVENT][_core(HAZE)].any()


def test_works_without_scl_and_without_sun_angles() -> None:
    inp, truth = _made_series(_BANDS_10M, 10.0, haze_blue=0.2)
    no_scl = dataclasses.replace(inp, scl=None)
    _check_events(no_scl, truth)
    assert mt.detect(no_scl).parameters["combined_with_scl"] is False
    no_sun = dataclasses.replace(no_scl, sun_zenith_deg=None, sun_azimuth_deg=None)
    _check_events(no_sun, truth, sun=False)
    assert mt.detect(no_sun).parameters["sun"] == "none"
    # From the place and the days instead: computed angles confirm the shadow again when
    # the place's sun is where the made shadow falls (mid-latitude summer, morning).
    days = np.floor(inp.days).astype(np.float64)
    zenith, azimuth = mt_sun_for(days, 15.0, 46.0)
    assert np.all(np.abs(zenith - 30) < 15) and np.all(np.abs(azimuth - 150) < 20)
    computed = dataclasses.replace(no_sun, lonlat=(15.0, 46.0), days=days)
    _check_events(computed, truth)
    assert mt.detect(computed).parameters["sun"] == "computed"


def mt_sun_for(days: np.ndarray, lon: float, lat: float) -> tuple[np.ndarray, np.ndarray]:
    from cloudfree.detection.sun import local_solar_days, solar_angles

    return solar_angles(local_solar_days(days, lon), lon, lat)


def test_runs_at_20_m_on_red_edge_nir_and_swir_only() -> None:
    """Without a visible band the haze test does not run (a red-edge band varies with the
    vegetation as much as faint haze raises it): the thick cloud and the shadows are still
    found, faint haze is not."""
    inp, truth = _made_series(_BANDS_20M, 20.0, haze_blue=0.2)
    assert inp.band_names == ("B05", "B06", "B07", "B8A", "B11", "B12")
    _check_events(inp, truth, haze=False)
    found = mt.detect(inp)
    assert found.parameters["bands"] == {"blue": "B05", "nir": "B8A", "swir": "B11"}
    assert found.parameters["haze_test"] is False
    at_10m, _ = _made_series(_BANDS_10M, 10.0, haze_blue=0.2)
    assert mt.detect(at_10m).parameters["haze_test"] is True
    assert DETECTORS["multitemporal"].missing(inp.band_names, has_scl=True, n_dates=N) == []


# --- chunks and tiles ------------------------------------------------------------------------


def _synthetic_series(shape: tuple[int, int], origin: tuple[float, float], resolution_m: float,
                      n: int = 8) -> DetectionInput:
    land = synth.make_landscape(shape, origin_px=origin, resolution_m=resolution_m, seed=3)
    scenes = []
    for i in range(n):
        doy = 150 + 8 * i
        weather = synth.Weather(cloud_cover=(0.0, 0.25, 0.4, 0.0, 0.15, 0.3, 0.0, 0.2)[i % 8],
                                cloud_height_m=600 + 150 * i, cirrus_cover=0.5,
                                cirrus_opacity=0.2 if i % 3 == 1 else 0.0, seed=40 + i)
        zenith, azimuth = synth.solar_position(doy, latitude_deg=46.0)
        scenes.append(synth.synth_scene(land, day_of_year=doy, weather=weather,
                                        sun_zenith_deg=zenith, sun_azimuth_deg=azimuth))
    return DetectionInput(
        bands=np.stack([s.reflectance for s in scenes]),
        band_names=tuple(esa_band_name(b) for b in synth.BANDS),
        days=np.array([17897.0 + s.day_of_year for s in scenes]), resolution_m=resolution_m,
        scl=np.stack([s.scl for s in scenes]),
        sun_zenith_deg=np.array([s.sun_zenith_deg for s in scenes]),
        sun_azimuth_deg=np.array([s.sun_azimuth_deg for s in scenes]), level="L2A")


def _window(inp: DetectionInput, rows: slice, cols: slice) -> DetectionInput:
    assert inp.scl is not None
    return dataclasses.replace(inp, bands=inp.bands[..., rows, cols], scl=inp.scl[..., rows, cols])


def test_chunks_with_the_halo_equal_the_whole_run() -> None:
    params: dict[str, Any] = {"max_shadow_m": 300.0, "opening_m": 20.0, "dilation_m": 30.0}
    inp = _synthetic_series((150, 150), (0.0, 0.0), 10.0)
    whole = mt.detect(inp, **params)
    assert whole.cloud.any() and whole.shadow.any() and (~whole.invalid).any()
    halo = math.ceil(mt.reach_m(params) / inp.resolution_m)
    assert halo == 37
    h, w = inp.bands.shape[-2:]
    for r0 in range(0, h, 50):
        for c0 in range(0, w, 50):
            rows = slice(max(r0 - halo, 0), min(r0 + 50 + halo, h))
            cols = slice(max(c0 - halo, 0), min(c0 + 50 + halo, w))
            part = mt.detect(_window(inp, rows, cols), **params)
            crop = (slice(r0 - rows.start, r0 - rows.start + 50),
                    slice(c0 - cols.start, c0 - cols.start + 50))
            for name in ("cloud", "shadow", "nodata"):
                got = getattr(part, name)[:, crop[0], crop[1]]
                want = getattr(whole, name)[:, r0:r0 + 50, c0:c0 + 50]
                assert np.array_equal(got, want), (name, r0, c0)
    # Without the halo the chunks differ from the whole run somewhere: the reach is real.
    differ = 0
    for r0 in range(0, h, 50):
        for c0 in range(0, w, 50):
            rows, cols = slice(r0, r0 + 50), slice(c0, c0 + 50)
            part = mt.detect(_window(inp, rows, cols), **params)
            differ += not np.array_equal(part.invalid, whole.invalid[:, rows, cols])
    assert differ > 0


def test_adjacent_tiles_equal_one_run_over_both() -> None:
    res = 20.0
    halo = DETECTORS["multitemporal"].halo_px(res)
    assert halo == math.ceil(mt.reach_m({}) / res) == 55
    size = 40
    both = _synthetic_series((size + 2 * halo, 2 * size + 2 * halo), (-halo, -halo), res, n=6)
    one = mt.detect(both)
    assert one.invalid.any()
    for k in range(2):
        tile = _synthetic_series((size + 2 * halo, size + 2 * halo),
                                 (-halo, k * size - halo), res, n=6)
        got = mt.detect(tile)
        inner = (slice(halo, halo + size), slice(halo, halo + size))
        for name in ("cloud", "shadow", "nodata"):
            assert np.array_equal(getattr(got, name)[:, inner[0], inner[1]],
                                  getattr(one, name)[:, halo:halo + size,
                                                     halo + k * size:halo + (k + 1) * size]), (
                                                         name, k)


# --- pieces ------------------------------------------------------------------------------------


def test_reach_follows_the_parameters() -> None:
    assert mt.reach_m({}) == 1000.0 + 2 * 20.0 + 60.0
    assert mt.reach_m({"max_shadow_m": 0, "opening_m": 0, "dilation_m": 0}) == 100.0  # SCL's
    assert mt.reach_m({"max_shadow_m": 0, "opening_m": 0, "dilation_m": 0,
                       "use_scl": False}) == 0.0


def test_bad_inputs_are_clear_errors() -> None:
    inp, _ = _made_series(_BANDS_10M, 10.0, haze_blue=0.2)
    with pytest.raises(MissingDetectorInputError, match="B11 or B12"):
        mt.detect(dataclasses.replace(inp, bands=inp.bands[:, :4],
                                      band_names=inp.band_names[:4]))
    with pytest.raises(MissingDetectorInputError, match="at least 4 dates"):
        mt.detect(dataclasses.replace(inp, bands=inp.bands[:3], days=inp.days[:3],
                                      scl=None, sun_zenith_deg=None, sun_azimuth_deg=None))
    with pytest.raises(InvalidParameterError, match="haze_threshold"):
        mt.detect(inp, haze_threshold=0.1)
    with pytest.raises(InvalidParameterError, match="dilation_m"):
        mt.detect(inp, dilation_m=-5)
    with pytest.raises(InvalidParameterError, match="sun_zenith_deg"):
        mt.detect(dataclasses.replace(inp, sun_zenith_deg=np.zeros(3)))
    # Through the registry, too; its parameters start with the detector's name.
    assert detect("multitemporal", inp).parameters["detector"] == "multitemporal"


def test_the_sparse_projection_equals_shifting_the_whole_frame() -> None:
    """Looking up each shadow candidate's cloud at every offset (few candidates) gives
    exactly the shifted-frame union (many), masked to the candidates."""
    rng = np.random.default_rng(3)
    for share in (0.02, 0.1, 0.6):
        cloud = rng.random((40, 37)) < 0.1
        where = rng.random((40, 37)) < share
        offsets = [(int(a), int(b)) for a, b in rng.integers(-8, 9, (6, 2))]
        expected = mt._project(cloud, offsets) & where
        assert expected.any()
        assert np.array_equal(mt._project(cloud, offsets, where=where), expected)

"""Detection on dask cubes (:func:`cloudfree.detection._dask.detect_cube`): the chunked mask
equals the whole run, and two adjacent tiles (each grown by the detector's halo, then
cropped) equal one run over both, on a synthetic world cube, for ``scl`` and
``multitemporal``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from cloudfree import synthetic as synth
from cloudfree.detection import get_detector
from cloudfree.detection._dask import detect_cube, detector_parameters, sun_angles
from cloudfree.errors import InvalidParameterError, MissingDetectorInputError

BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
RES = 30.0  # metres: the multitemporal halo (1.1 km) in few pixels
N_DATES = 6
TILE = 32
LATITUDE = 46.0


def _world(shape: tuple[int, int], origin: tuple[int, int] = (0, 0)
           ) -> tuple[xr.DataArray, xr.DataArray]:
    """A window of the synthetic world: (time, band, y, x) DN (0 = no data) and SCL, with
    the sun of each date as item-like coordinates."""
    land = synth.make_landscape(shape, origin_px=origin, resolution_m=RES, seed=4)
    days = 130 + 13 * np.arange(N_DATES)
    dn = np.empty((N_DATES, len(BANDS), *shape), np.uint16)
    scl = np.empty((N_DATES, *shape), np.uint16)
    zenith, azimuth = [], []
    for t, doy in enumerate(days):
        z, a = synth.solar_position(float(doy), latitude_deg=LATITUDE)
        weather = synth.Weather(cloud_cover=0.25, cirrus_cover=0.4, cirrus_opacity=0.12,
                                cloud_scale_m=1200.0, seed=10 + t)
        scene = synth.synth_scene(land, day_of_year=float(doy), weather=weather,
                                  sun_zenith_deg=z, sun_azimuth_deg=a)
        values = np.clip(np.rint(scene.reflectance * 1e4 + 1000), 1, 65535)
        dn[t] = np.where(scene.valid, values, 0).astype(np.uint16)
        scl[t] = scene.scl
        zenith.append(z)
        azimuth.append(a)
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(days - 1, "D")
    coords = {"time": times, "view:sun_elevation": ("time", 90.0 - np.array(zenith)),
              "view:sun_azimuth": ("time", np.array(azimuth))}
    cube = xr.DataArray(dn, dims=("time", "band", "y", "x"),
                        coords={**coords, "band": list(BANDS)})
    return cube, xr.DataArray(scl, dims=("time", "y", "x"), coords=coords)


def _chunked(a: xr.DataArray, size: int) -> xr.DataArray:
    return a.chunk({"time": -1, "y": size, "x": size, **({"band": 1} if "band" in a.dims
                                                            else {})})


@pytest.fixture(scope="module")
def world():
    """The union of two TILE px tiles side by side, grown by the largest halo."""
    halo = max(get_detector(n).halo_px(RES, detector_parameters(n))
               for n in ("scl", "multitemporal"))
    return _world((TILE + 2 * halo, 2 * TILE + 2 * halo), origin=(-halo, -halo)), halo


@pytest.mark.parametrize("name", ["scl", "multitemporal"])
def test_chunked_equals_whole(world, name):
    (cube, scl), _ = world
    whole = detect_cube(name, cube, scl, resolution_m=RES)
    assert not hasattr(whole.data, "dask")
    size = max(17, get_detector(name).halo_px(RES, detector_parameters(name)) + 3)
    chunked = detect_cube(name, _chunked(cube, size), _chunked(scl, size), resolution_m=RES)
    assert hasattr(chunked.data, "dask")
    assert len(chunked.data.chunks[-1]) >= 3 and len(chunked.data.chunks[-2]) >= 2
    clear = whole.values
    assert 0.2 < clear.mean() < 0.95  # a real mask: clouds flagged, most land clear
    np.testing.assert_array_equal(chunked.values, clear)
    assert chunked.attrs["detector"] == name
    assert chunked.attrs["halo_px"] == get_detector(name).halo_px(RES, detector_parameters(name))
    assert chunked.dims == ("time", "y", "x")


@pytest.mark.parametrize("name", ["scl", "multitemporal"])
def test_adjacent_tiles_equal_one_run(world, name):
    """Each tile grown by the detector's halo, then cropped, equals the run over both."""
    (cube, scl), big = world
    halo = get_detector(name).halo_px(RES, detector_parameters(name))
    off = big - halo  # the world window of this detector's grown union

    def run(x0: int, width: int) -> np.ndarray:
        window = {"y": slice(off, off + TILE + 2 * halo),
                  "x": slice(off + x0, off + x0 + width + 2 * halo)}
        clear = detect_cube(name, _chunked(cube.isel(window), 32),
                            _chunked(scl.isel(window), 32), resolution_m=RES).values
        return clear[:, halo:halo + TILE, halo:halo + width]

    union = run(0, 2 * TILE)
    joined = np.concatenate([run(0, TILE), run(TILE, TILE)], axis=-1)
    np.testing.assert_array_equal(joined, union)
    # With no halo, the tiles would disagree: the reach matters on this scene.
    bare = [detect_cube(name, *(a.isel(y=slice(big, big + TILE), x=slice(big + x, big + x + TILE))
                                for a in (cube, scl)), resolution_m=RES).values
            for x in (0, TILE)]
    assert not np.array_equal(np.concatenate(bare, axis=-1), union)


def test_auto_resolves_from_the_cube(world):
    (cube, scl), _ = world
    short = cube.isel(time=slice(0, 3))
    assert detect_cube("auto", cube, scl, resolution_m=RES).attrs["detector"] == "multitemporal"
    assert detect_cube("auto", short, scl.isel(time=slice(0, 3)),
                       resolution_m=RES).attrs["detector"] == "scl"
    out = detect_cube("multitemporal", cube, None, resolution_m=RES, params={"dilation_m": 0})
    assert out.attrs["parameters"]["dilation_m"] == 0
    assert out.attrs["parameters"]["max_shadow_m"] == 1000.0  # its defaults, recorded


def test_bad_input_names_what_is_missing(world):
    (cube, scl), _ = world
    visible = cube.sel(band=["blue", "green", "red"])
    with pytest.raises(MissingDetectorInputError, match="B08 or B8A.*would run on it: scl"):
        detect_cube("multitemporal", visible, scl, resolution_m=RES)
    with pytest.raises(MissingDetectorInputError, match="scl"):
        detect_cube("scl", cube, None, resolution_m=RES)
    with pytest.raises(InvalidParameterError, match="takes no bogus"):
        detect_cube("scl", cube, scl, resolution_m=RES, params={"bogus": 1})


def test_sun_from_coordinates_else_computed(world):
    (cube, _), _ = world
    days = np.arange(N_DATES, dtype=np.float64) + 19850.0
    zenith, azimuth = sun_angles(cube, days, None)
    np.testing.assert_allclose(zenith, 90.0 - cube["view:sun_elevation"].values)
    np.testing.assert_allclose(azimuth, cube["view:sun_azimuth"].values)
    bare = cube.drop_vars(["view:sun_elevation", "view:sun_azimuth"])
    assert sun_angles(bare, days, None) == (None, None)
    zenith, azimuth = sun_angles(bare, days, (15.0, LATITUDE))  # whole days: at 10:30 solar
    doy = [pd.Timestamp(d * 86400, unit="s").dayofyear for d in days]
    expected = [synth.solar_position(float(n), latitude_deg=LATITUDE) for n in doy]
    np.testing.assert_allclose(zenith, [z for z, _ in expected], atol=1.5)
    np.testing.assert_allclose(azimuth, [a for _, a in expected], atol=3.0)


# --------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """Items (GeoTIFFs) of the synthetic world over two adjacent TILE px tiles at RES."""
    from cloudfree.grid import Tile
    from cloudfree.testing import make_items, make_tile

    cube, scl = _world((TILE, 2 * TILE))
    arrays = {b: cube.sel(band=b).values for b in BANDS} | {"scl": scl.values}
    base = make_tile(size=TILE, resolution_m=RES)
    x0, y0, _, y1 = base.bounds
    mid, x1 = x0 + TILE * RES, x0 + 2 * TILE * RES
    union = Tile("union", base.epsg, (x0, y0, x1, y1), RES)
    items = make_items(tmp_path_factory.mktemp("detect"), arrays, tile=union, step_days=13)
    return items, union, Tile("left", base.epsg, (x0, y0, mid, y1), RES), \
        Tile("right", base.epsg, (mid, y0, x1, y1), RES)


def test_auto_mosaic_tiles_are_seamless(tiles):
    """``auto`` resolves to multitemporal on six L2A dates; its halo is the tile's, and
    two adjacent tiles equal one over both (median: exact provenance, 1 DN)."""
    import warnings

    from cloudfree.errors import CloudFreeWarning
    from cloudfree.tile import MosaicParams, compute_tile, halo_px

    items, union, left, right = tiles
    params = MosaicParams(bands=BANDS, resolution_m=RES, chunksize=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloudFreeWarning)
        whole = compute_tile(items, union, params)
        halves = [compute_tile(items, t, params) for t in (left, right)]
    assert whole.attrs["mask"]["detector"] == "multitemporal"
    assert whole.attrs["halo_px"] == halo_px(params, "multitemporal") == 37
    for name in ("clear_count", "source_date", "fill"):
        np.testing.assert_array_equal(
            np.concatenate([h[name].values for h in halves], axis=-1), whole[name].values)
    diff = np.abs(np.concatenate([h["reflectance"].values for h in halves], axis=-1).astype(int)
                  - whole["reflectance"].values.astype(int))
    assert diff.max() <= 1


def test_plan_records_the_resolved_detector(tiles):
    """The plan resolves ``auto`` per tile: the detector and its parameters are in the
    product (another mask is another item id); a detector the bands cannot feed fails
    the plan, before anything is read, naming the bands and what would run."""
    from cloudfree.grid import parse_date_window
    from cloudfree.tile import MosaicParams, plan_tile

    items, union, *_ = tiles
    window = parse_date_window("2024-05-01/2024-07-31")
    auto = plan_tile(items, union, window, MosaicParams(bands=BANDS, resolution_m=RES))
    named = plan_tile(items, union, window,
                      MosaicParams(bands=BANDS, resolution_m=RES, mask="multitemporal"))
    scl = plan_tile(items, union, window, MosaicParams(bands=BANDS, resolution_m=RES,
                                                       mask="scl"))
    assert auto.params.mask == "multitemporal" and auto.item_id == named.item_id
    assert auto.product["mask"]["detector"] == "multitemporal"
    assert auto.product["mask"]["max_shadow_m"] == 1000.0
    assert scl.item_id != auto.item_id
    assert scl.product["mask"] == {"invalid_classes": [0, 1, 3, 8, 9, 10],
                                   "dilate_classes": [3, 8, 9, 10], "dilation_m": 100.0,
                                   "opening_m": 0.0}  # as before detectors: same ids
    few = plan_tile(items[:3], union, window, MosaicParams(bands=BANDS, resolution_m=RES))
    assert few.params.mask == "scl"  # three dates: multitemporal needs four
    with pytest.raises(MissingDetectorInputError, match="B08 or B8A.*would run on it: scl"):
        plan_tile(items, union, window, MosaicParams(bands=("blue", "green", "red"),
                                                     resolution_m=RES, mask="multitemporal"))
    with pytest.raises(InvalidParameterError, match="name the detector"):
        MosaicParams(mask_params={"dilation_m": 0})


def test_cli_and_flows_offer_the_registry_detectors_and_auto(capsys):
    import jsonschema
    from prefect.utilities.callables import parameter_schema

    from cloudfree.cli import build_parser
    from cloudfree.detection import list_detectors
    from flows.aoi_mosaic import aoi_mosaic
    from flows.regional_mosaic import regional_mosaic

    choices = [*list_detectors("mosaic"), "auto"]
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]  # noqa: SLF001
    for command in ("mosaic", "plan"):
        (mask,) = [a for a in sub.choices[command]._actions if a.dest == "mask"]  # noqa: SLF001
        assert list(mask.choices) == choices and mask.default == "auto", command
    args = build_parser().parse_args(["mosaic", "--datetime", "2024-05-01/2024-06-01",
                                      "--mask", "multitemporal"])
    assert args.mask == "multitemporal"
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["plan", "--mask", "fmask"])
    assert info.value.code == 2
    from cloudfree import cli

    # bands a named detector cannot run on: exit 2 before any search or flow
    assert cli.main(["mosaic", "--bbox", "15,46,15.1,46.1", "--datetime",
                     "2024-05-01/2024-06-01", "--bands", "red,green,blue", "--mask",
                     "multitemporal"]) == 2
    assert "needs B08 or B8A; B11 or B12" in capsys.readouterr().err
    for flow in (aoi_mosaic, regional_mosaic):
        schema = parameter_schema(flow.fn).model_dump()["properties"]["mask"]
        assert schema["enum"] == choices and schema["default"] == "auto", flow.name
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate("fmask", schema)

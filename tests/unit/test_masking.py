import dask.array as da
import numpy as np
import pytest
import xarray as xr

from cloudfree.errors import InvalidParameterError
from cloudfree.masking import dilate, scl_clear_mask


def _scl(frames):
    return xr.DataArray(np.asarray(frames, dtype=np.uint16), dims=("time", "y", "x"))


def test_classes_map_to_clear():
    scl = _scl([[[4, 5, 6, 7, 11, 2], [0, 1, 3, 8, 9, 10]]])
    clear = scl_clear_mask(scl, resolution_m=10, dilation_m=0).values[0]
    assert clear[0].tolist() == [True] * 6
    assert clear[1].tolist() == [False] * 6


def test_default_classes_are_named_sentinel2_classes():
    from cloudfree import masking
    from cloudfree.sentinel2 import SCL, SCL_CLASSES

    assert masking.DEFAULT_INVALID_CLASSES == (0, 1, 3, 8, 9, 10)
    assert masking.DEFAULT_DILATE_CLASSES == (3, 8, 9, 10)
    assert masking.SCL_CLASSES is SCL_CLASSES  # one table, still importable from masking
    assert [SCL_CLASSES[c] for c in masking.DEFAULT_DILATE_CLASSES] == [
        "cloud_shadows", "cloud_medium_probability", "cloud_high_probability", "thin_cirrus"]
    assert list(SCL_CLASSES) == [int(c) for c in SCL] and all(
        type(c) is int for c in SCL_CLASSES)  # plain ints: they go into STAC JSON


def test_configurable_classes():
    scl = _scl([[[4, 7]]])
    clear = scl_clear_mask(scl, resolution_m=10, invalid_classes=[7], dilation_m=0).values
    assert clear[0, 0].tolist() == [True, False]


def test_dilation_radius_in_metres():
    frame = np.full((1, 41, 41), 4, dtype=np.uint16)
    frame[0, 20, 20] = 9
    clear = scl_clear_mask(_scl(frame), resolution_m=10, dilation_m=50).values[0]
    yy, xx = np.mgrid[:41, :41]
    dist = np.hypot(yy - 20, xx - 20)
    assert not clear[dist <= 5].any()
    assert clear[dist > 5].all()
    # 20 m pixels: the same 50 m is 2.5 px
    clear20 = scl_clear_mask(_scl(frame), resolution_m=20, dilation_m=50).values[0]
    assert not clear20[dist <= 2.5].any() and clear20[dist > 2.5].all()


def test_water_is_not_dilated():
    frame = np.full((1, 11, 11), 4, dtype=np.uint16)
    frame[0, 5, 5] = 6
    assert scl_clear_mask(_scl(frame), resolution_m=10, dilation_m=100).values.all()


def test_chunked_equals_whole():
    rng = np.random.default_rng(1)
    frames = rng.choice([4, 5, 9, 3], p=[0.6, 0.3, 0.05, 0.05], size=(3, 90, 70)).astype(np.uint16)
    whole = scl_clear_mask(_scl(frames), resolution_m=10, dilation_m=60).values
    lazy = xr.DataArray(da.from_array(frames, chunks=(3, 25, 20)), dims=("time", "y", "x"))
    chunked = scl_clear_mask(lazy, resolution_m=10, dilation_m=60).values
    np.testing.assert_array_equal(whole, chunked)


def test_unknown_class_is_rejected():
    with pytest.raises(InvalidParameterError, match="unknown SCL classes"):
        scl_clear_mask(_scl([[[4]]]), resolution_m=10, invalid_classes=[42])


def test_dilate_empty_mask_is_empty():
    assert not dilate(np.zeros((2, 5, 5), bool), radius_px=3).any()


def test_opening_removes_specks_and_keeps_clouds():
    frame = np.full((1, 40, 40), 4, dtype=np.uint16)
    frame[0, 5, 5] = 9  # a one-pixel false detection (a bright roof)
    frame[0, 20:32, 20:32] = 9  # a real cloud
    clear = scl_clear_mask(_scl(frame), resolution_m=10, dilation_m=30, opening_m=20).values[0]
    assert clear[5, 5] and clear[:12, :12].all()  # speck gone, not dilated
    assert not clear[20:32, 20:32].any()
    assert not clear[17, 26] and clear[14, 26]  # dilated by 3 px
    kept = scl_clear_mask(_scl(frame), resolution_m=10, dilation_m=30).values[0]
    assert not kept[5, 5]  # without opening the speck stays masked


def test_shadow_projection_finds_synthetic_shadows():
    from cloudfree.masking import project_shadows, shadow_offset_px
    from cloudfree.synthetic import Weather, make_scene

    size = 320
    scene = make_scene((size, size), seed=4, day_of_year=170, cloud_cover=0.15,
                       cirrus_opacity=0.0)
    cloud = scene.cloud_opacity > 0.15
    # judge only shadows whose cloud lies inside the scene (the synthetic world also
    # shades the scene from clouds outside it)
    dr, dc = (int(round(v)) for v in shadow_offset_px(
        cloud_height_m=Weather().cloud_height_m, sun_zenith_deg=scene.sun_zenith_deg,
        sun_azimuth_deg=scene.sun_azimuth_deg, resolution_m=10))
    rows, cols = np.mgrid[:size, :size]
    inside = (rows - dr >= 0) & (rows - dr < size) & (cols - dc >= 0) & (cols - dc < size)
    truth = scene.shadow_mask & ~cloud & inside
    assert truth.sum() > 200
    shadow = project_shadows(cloud, sun_zenith_deg=scene.sun_zenith_deg,
                             sun_azimuth_deg=scene.sun_azimuth_deg, resolution_m=10)
    recall = (shadow & truth).sum() / truth.sum()
    assert recall > 0.95
    assert not (shadow & cloud).any()
    # searching on the sun's side of the clouds finds far less
    wrong = project_shadows(cloud, sun_zenith_deg=scene.sun_zenith_deg,
                            sun_azimuth_deg=scene.sun_azimuth_deg + 180, resolution_m=10)
    assert (wrong & truth).sum() / truth.sum() < recall - 0.3


def test_shadow_offset_points_away_from_the_sun():
    from cloudfree.masking import shadow_offset_px

    rows, cols = shadow_offset_px(cloud_height_m=1000, sun_zenith_deg=45,
                                  sun_azimuth_deg=135, resolution_m=10)  # sun in the south-east
    assert rows < 0 and cols < 0  # shadow to the north-west
    assert np.hypot(rows, cols) == pytest.approx(100)


_DATA = __import__("cloudfree.testing", fromlist=["x"]).shared_data_dir()
L1C_CASE = str(_DATA / "s2_slovenia_2015.npz") if _DATA else ""


@pytest.mark.skipif(not _DATA, reason="needs the evaluation cases in ../shared/data")
def test_s2cloudless_on_real_l1c_agrees_with_the_reference_mask():
    from cloudfree.masking import s2cloudless_clear_mask

    case = np.load(L1C_CASE)
    clear = s2cloudless_clear_mask(case["bands"], case["band_names"], resolution_m=10,
                                   dilation_m=0, opening_m=0)
    cloud = ~clear
    ref = case["cloud_mask"]
    tp = (cloud & ref).sum()
    f1 = 2 * tp / (cloud.sum() + ref.sum())
    assert f1 > 0.95
    assert clear[[0, 3, 4]].mean() > 0.99  # the clear dates stay clear


def test_s2cloudless_needs_its_bands():
    from cloudfree.masking import s2cloudless_probability

    with pytest.raises(InvalidParameterError, match="B10"):
        s2cloudless_probability(np.zeros((1, 3, 4, 4), np.float32), ["B02", "B03", "B04"])


def test_dilation_equals_a_distance_transform_per_frame():
    """``dilate`` (row-shifted 1-D maximum filters) is exactly the Euclidean distance
    transform's ``<= radius`` per frame, at the edges too, for whole and fractional radii."""
    from scipy import ndimage

    from cloudfree.masking import erode, opening

    rng = np.random.default_rng(1)
    masks = ndimage.gaussian_filter(rng.random((4, 50, 61)), (0, 2, 2)) > 0.53
    masks[1] = rng.random((50, 61)) < 0.05
    masks[2] = False
    masks[3, :, -1] = True  # touching the edge
    for radius in (0.5, 1.0, 2.0, 2.5, 6.0, 6.5, 10.0):
        expected = np.stack([ndimage.distance_transform_edt(~m) <= radius if m.any()
                             else np.zeros_like(m) for m in masks])
        assert np.array_equal(dilate(masks, radius_px=radius), expected), radius
        assert np.array_equal(erode(masks, radius_px=radius),
                              ~dilate(~masks, radius_px=radius))
        assert np.array_equal(opening(masks, radius_px=radius),
                              dilate(erode(masks, radius_px=radius), radius_px=radius))

"""Synthetic Sentinel-2 scenes: noise, landscape, clouds, shadows, SCL and swath edge.

Windows of the world are compared exactly: every pixel is computed from its world
coordinates alone by elementwise float operations, which round the same whatever the
window's size (see ``test_reflectance_does_not_depend_on_the_window_under_threaded_blas``).
"""

import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cloudfree import synthetic as synth
from cloudfree.synthetic import SCL, LandCover


def _ndvi(refl):
    return (refl[3] - refl[2]) / (refl[3] + refl[2])


# ---------------------------------------------------------------------------- noise


def test_perlin_is_deterministic_and_seeded():
    a = synth.perlin((64, 64), scale_px=16, octaves=4, seed=3)
    b = synth.perlin((64, 64), scale_px=16, octaves=4, seed=3)
    c = synth.perlin((64, 64), scale_px=16, octaves=4, seed=4)
    assert a.dtype == np.float32 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.05


def test_perlin_statistics():
    field = synth.perlin((256, 256), scale_px=16, octaves=4, persistence=0.5, seed=1)
    assert -1.0 <= field.min() and field.max() <= 1.0
    assert abs(float(field.mean())) < 0.05
    assert 0.1 < float(field.std()) < 0.5
    # Correlated below the feature size, nearly independent far beyond it.
    near = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    far = np.corrcoef(field[:, :-64].ravel(), field[:, 64:].ravel())[0, 1]
    assert near > 0.9
    assert abs(far) < 0.2
    # More octaves add fine detail: rougher at one-pixel lag, relative to the spread.
    smooth = synth.perlin((256, 256), scale_px=16, octaves=1, seed=1)

    def roughness(f):
        return np.abs(np.diff(f, axis=1)).mean() / f.std()

    assert roughness(field) > 1.2 * roughness(smooth)


def test_perlin_anisotropic_scale_stretches_features():
    field = synth.perlin((128, 128), scale_px=(8, 64), octaves=2, seed=2)
    along_rows = np.abs(np.diff(field, axis=0)).mean()
    along_cols = np.abs(np.diff(field, axis=1)).mean()
    assert along_rows > 3 * along_cols


@pytest.mark.parametrize("axis", [0, 1])
def test_perlin_tiles_join_seamlessly(axis):
    kw = dict(scale_px=12.5, octaves=5, seed=9)
    whole = synth.perlin((48, 96) if axis else (96, 48), **kw, origin=(-30.0, 17.0))
    first = synth.perlin((48, 48), **kw, origin=(-30.0, 17.0))
    second_origin = (-30.0, 65.0) if axis else (18.0, 17.0)
    second = synth.perlin((48, 48), **kw, origin=second_origin)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=axis), whole)


def test_fbm_threshold_controls_cover():
    field = synth.perlin((256, 256), scale_px=10, octaves=6, persistence=0.55, seed=11)
    for cover in (0.1, 0.4, 0.8):
        t = synth.fbm_threshold(cover, octaves=6, persistence=0.55)
        assert abs(float((field > t).mean()) - cover) < 0.1


# ------------------------------------------------------------------------ landscape


@pytest.fixture(scope="module")
def land():
    return synth.make_landscape((256, 256), seed=0, river_y_m=1300.0)


def test_landscape_has_every_cover_class(land):
    shares = {c: float((land.land_cover == c).mean()) for c in LandCover}
    assert shares[LandCover.CROPLAND] > 0.4
    for cls in (LandCover.FOREST, LandCover.WATER, LandCover.ROAD):
        assert shares[cls] > 0.002, cls
    big = synth.make_landscape((512, 512), seed=0, resolution_m=20.0)
    assert (big.land_cover == LandCover.URBAN).mean() > 0.002
    # Many fields of 50-300 m: hundreds of parcels in 2.56 km x 2.56 km.
    assert len(np.unique(land.field_id)) > 150


def test_landscape_is_deterministic_and_seamless():
    kw = dict(seed=4, resolution_m=10.0, river_y_m=400.0)
    whole = synth.make_landscape((64, 128), origin_px=(10, 30), **kw)
    west = synth.make_landscape((64, 64), origin_px=(10, 30), **kw)
    east = synth.make_landscape((64, 64), origin_px=(10, 94), **kw)
    again = synth.make_landscape((64, 64), origin_px=(10, 30), **kw)
    np.testing.assert_array_equal(west.land_cover, again.land_cover)
    np.testing.assert_array_equal(np.hstack([west.land_cover, east.land_cover]), whole.land_cover)
    refl = np.concatenate(
        [synth.surface_reflectance(x, day_of_year=180) for x in (west, east)], axis=2
    )
    np.testing.assert_array_equal(refl, synth.surface_reflectance(whole, day_of_year=180))


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(
                (set(ln.split(":")[1].split()) for ln in fh if ln.startswith("flags")), set()
            )
    except OSError:
        return set()


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not {"avx2", "fma"} <= _cpu_flags(),
    reason="OpenBLAS's Haswell kernels need an x86-64 CPU with AVX2 and FMA",
)
def test_reflectance_does_not_depend_on_the_window_under_threaded_blas():
    """The cause of a once-flaky seam: the endmember spectra were mixed by a matrix product,
    and OpenBLAS split the pixels over threads and kernels by the window's size, so on some
    CPUs adjacent tiles differed from one wide window (by 1 DN in 1 of 8192 pixels). Here,
    OpenBLAS's AVX2 kernels on two threads made 6283 of the 49152 values differ."""
    code = textwrap.dedent(
        """
        import numpy as np
        from cloudfree import synthetic as synth

        kw = dict(seed=0, river_y_m=300.0)
        whole = synth.make_landscape((64, 128), **kw)
        halves = [synth.make_landscape((64, 64), origin_px=(0, c), **kw) for c in (0, 64)]
        wide = synth.surface_reflectance(whole, day_of_year=150)
        joined = np.concatenate([synth.surface_reflectance(h, day_of_year=150) for h in halves], 2)
        print(np.count_nonzero(joined != wide))
        """
    )
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]


def test_surface_reflectance_is_plausible(land):
    refl = synth.surface_reflectance(land, day_of_year=190)
    assert refl.shape == (6, 256, 256) and refl.dtype == np.float32
    assert 0.0 < refl.min() and refl.max() < 0.7
    water = land.water_fraction > 0.99
    forest = (land.land_cover == LandCover.FOREST) & land.forest
    assert refl[3][water].mean() < 0.04
    assert 0.2 < refl[3][forest].mean() < 0.45
    assert refl[2][forest].mean() < 0.05
    veg = (land.crop == synth.Crop.MAIZE) & (land.land_cover == LandCover.CROPLAND)
    assert 0.3 < refl[3][veg].mean() < 0.5 and refl[2][veg].mean() < 0.06


def test_crops_follow_their_seasons(land):
    field = land.land_cover == LandCover.CROPLAND
    wheat = field & (land.crop == synth.Crop.WINTER_WHEAT)
    maize = field & (land.crop == synth.Crop.MAIZE)
    spring, summer, autumn = (
        synth.surface_reflectance(land, day_of_year=d) for d in (130, 220, 290)
    )
    assert _ndvi(spring)[wheat].mean() > _ndvi(summer)[wheat].mean() + 0.3  # harvested
    assert _ndvi(summer)[maize].mean() > _ndvi(spring)[maize].mean() + 0.3  # sown late
    # Bare soil in autumn: reflectance rises from blue to swir16.
    bare = wheat & (_ndvi(autumn) < 0.2)
    assert bare.sum() > 100
    means = autumn[:, bare].mean(axis=1)
    assert means[0] < means[1] < means[2] < means[3] < means[4]


# --------------------------------------------------------------- clouds and shadows


def test_cumulus_cover_and_opacity():
    clear = synth.cumulus_opacity((64, 64), cover=0.0)
    assert not clear.any()
    cloud = synth.cumulus_opacity((256, 256), cover=0.4, resolution_m=20.0, seed=2)
    assert 0.0 <= cloud.min() and cloud.max() <= 1.0
    assert 0.2 < (cloud > 0).mean() < 0.6
    assert (cloud > 0.9).any()  # optically thick cores
    assert ((cloud > 0) & (cloud < 0.15)).any()  # and faint fringes


def test_thin_cloud_opacity_falls_with_wavelength():
    cirrus = synth.cirrus_opacity(
        (128, 128), cover=0.6, max_opacity=0.3, resolution_m=100.0, seed=5
    )
    assert 0.0 <= cirrus.min() and cirrus.max() <= 0.3 + 1e-6 and cirrus.max() > 0.1
    per_band = synth.thin_cloud_spectral_opacity(cirrus)
    hazy = cirrus > 0.05
    means = per_band[:, hazy].mean(axis=1)
    assert np.all(np.diff(means) < 0)
    assert means[-1] < 0.25 * means[0]  # the SWIR sees through


def test_scene_cirrus_brightens_blue_more_than_swir():
    scene = synth.make_scene((128, 128), seed=3, cloud_cover=0.0, cirrus_opacity=0.3)
    hazy = scene.cirrus_opacity[0] > 0.1
    assert hazy.sum() > 100
    change = np.abs(scene.reflectance - scene.clear_reflectance)[:, hazy].mean(axis=1)
    relative = change / scene.clear_reflectance[:, hazy].mean(axis=1)
    assert relative[0] > relative[3] > relative[5]


@pytest.mark.parametrize(
    ("azimuth", "sign_row", "sign_col"), [(90.0, 0, -1), (180.0, -1, 0), (135.0, -1, -1)]
)
def test_shadow_points_away_from_the_sun(azimuth, sign_row, sign_col):
    dr, dc = synth.shadow_offset_px(
        cloud_height_m=1000.0, sun_zenith_deg=45.0, sun_azimuth_deg=azimuth, resolution_m=10.0
    )
    assert np.hypot(dr, dc) == pytest.approx(100.0)
    for value, sign in ((dr, sign_row), (dc, sign_col)):
        assert (abs(value) < 1e-6) if sign == 0 else (np.sign(value) == sign)


def test_cast_shadow_moves_a_standalone_mask():
    cloud = np.zeros((32, 32), np.float32)
    cloud[10:14, 20:25] = 0.8
    shadow = synth.cast_shadow(cloud, offset_px=(-4.4, -6.6))
    assert shadow.sum() == pytest.approx(cloud.sum())
    np.testing.assert_array_equal(np.argwhere(shadow), np.argwhere(cloud) + [-4, -7])
    assert not synth.cast_shadow(cloud, offset_px=(40, 0)).any()  # moved out of the frame


def test_scene_shadows_are_displaced_clouds():
    land = synth.make_landscape((256, 256), resolution_m=20.0, seed=1)
    weather = synth.Weather(cloud_cover=0.25, cloud_height_m=1500.0, seed=8)
    scene = synth.synth_scene(
        land, day_of_year=200, weather=weather, sun_zenith_deg=40.0, sun_azimuth_deg=150.0
    )
    dr, dc = (
        round(v)
        for v in synth.shadow_offset_px(
            cloud_height_m=1500.0, sun_zenith_deg=40.0, sun_azimuth_deg=150.0, resolution_m=20.0
        )
    )
    assert dr < 0 and dc < 0  # morning sun in the south-east: shadows to the north-west
    # The shadow field is the cloud field moved by (dr, dc): cross-correlation peaks there.
    spectrum = np.fft.fft2(scene.shadow_opacity) * np.conj(np.fft.fft2(scene.cloud_opacity))
    peak = np.unravel_index(np.argmax(np.fft.ifft2(spectrum).real), (256, 256))
    assert (
        peak[0] - 256 if peak[0] > 128 else peak[0],
        peak[1] - 256 if peak[1] > 128 else peak[1],
    ) == (dr, dc)
    np.testing.assert_array_equal(  # two windows of one field
        scene.shadow_opacity[: 256 + dr, : 256 + dc], scene.cloud_opacity[-dr:, -dc:]
    )
    # Shadows darken the ground, most in the NIR, least in the blue (skylight).
    shade = scene.shadow_mask
    assert shade.sum() > 200
    ratio = scene.reflectance[:, shade].mean(axis=1) / scene.clear_reflectance[:, shade].mean(
        axis=1
    )
    assert np.all(ratio < 0.8)
    assert ratio[0] > ratio[3]


# --------------------------------------------------------------- SCL and swath edge


@pytest.fixture(scope="module")
def scene():
    return synth.make_scene(
        (256, 256), seed=5, day_of_year=200, cloud_cover=0.35, cirrus_opacity=0.2
    )


def test_scl_flags_every_visible_cloud_and_shadow(scene):
    scl = scene.scl
    assert set(np.unique(scl)) <= {int(c) for c in SCL}
    assert np.isin(scl[scene.cloud_opacity >= synth.CLOUD_MEDIUM_MIN], (8, 9)).all()
    assert (scl[scene.cloud_opacity >= synth.CLOUD_HIGH_MIN] == 9).all()
    assert (scl[scene.shadow_mask] == SCL.CLOUD_SHADOW).all()
    assert scene.shadow_mask.any() and (scene.cloud_opacity >= synth.CLOUD_HIGH_MIN).any()
    # Like Sen2Cor, the faintest fringe goes unflagged: what mask dilation is for.
    fringe = (scene.cloud_opacity > 0) & (scene.cloud_opacity < 0.05)
    assert fringe.any() and not np.isin(scl[fringe], (8, 9)).any()


def test_scl_surface_classes_match_the_truth(scene):
    untouched = (
        (scene.cloud_opacity == 0)
        & (scene.shadow_opacity < synth.WEAK_SHADOW_MIN)
        & (scene.cirrus_opacity[0] < synth.CIRRUS_MIN)
    )
    water = untouched & (scene.land_cover == LandCover.WATER)
    assert water.sum() > 10
    assert (scene.scl[water] == SCL.WATER).all()
    dense = (
        untouched & (_ndvi(scene.clear_reflectance) > 0.6) & (scene.land_cover != LandCover.WATER)
    )
    assert dense.sum() > 100 and (scene.scl[dense] == SCL.VEGETATION).all()
    bare = (
        untouched & (_ndvi(scene.clear_reflectance) < 0.3) & (scene.land_cover != LandCover.WATER)
    )
    assert bare.sum() > 100 and (scene.scl[bare] == SCL.NOT_VEGETATED).all()
    roads = untouched & (scene.land_cover == LandCover.ROAD)
    assert roads.any() and (scene.scl[roads] == SCL.NOT_VEGETATED).mean() > 0.6
    thin = (
        (scene.cirrus_opacity[0] >= synth.CIRRUS_MIN)
        & (scene.cloud_opacity < synth.CLOUD_MEDIUM_MIN)
        & (scene.shadow_opacity < synth.SHADOW_MIN)
    )
    assert thin.any() and (scene.scl[thin] == SCL.THIN_CIRRUS).all()


def test_downsample_scl_keeps_clouds_and_nodata():
    scl = np.full((4, 4), SCL.VEGETATION, np.uint8)
    scl[0, 0] = SCL.CLOUD_HIGH_PROBABILITY
    scl[0, 3] = SCL.CLOUD_SHADOW
    scl[3, 3] = SCL.NO_DATA
    scl[3, 0] = SCL.WATER
    out = synth.downsample_scl(scl)
    expected = [[SCL.CLOUD_HIGH_PROBABILITY, SCL.CLOUD_SHADOW], [SCL.WATER, SCL.NO_DATA]]
    np.testing.assert_array_equal(out, np.array(expected, np.uint8))


def test_swath_edge_zeroes_every_band_and_scl():
    edge = synth.SwathEdge(x_m=900.0, angle_deg=12.0)
    scene = synth.make_scene((128, 128), seed=2, cloud_cover=0.3, swath=edge)
    outside = ~scene.valid
    assert 0.05 < outside.mean() < 0.6
    assert (scene.reflectance[:, outside] == 0).all()
    assert (scene.scl[outside] == SCL.NO_DATA).all()
    assert (scene.reflectance[:, scene.valid] > 0).all()
    assert (scene.scl[scene.valid] != SCL.NO_DATA).all()
    # A diagonal edge: the valid width shrinks towards the south (tilted to the south-west).
    assert scene.valid[0].sum() > scene.valid[-1].sum()
    assert outside[:, -1].all() and not outside[:, 0].any()


def test_scenes_are_deterministic_and_seamless():
    kw = dict(seed=6, day_of_year=170, cloud_cover=0.4, cirrus_opacity=0.2)
    whole = synth.make_scene((64, 128), **kw)
    west = synth.make_scene((64, 64), **kw)
    east = synth.make_scene((64, 64), origin_px=(0, 64), **kw)
    np.testing.assert_array_equal(west.scl, synth.make_scene((64, 64), **kw).scl)
    np.testing.assert_array_equal(
        np.concatenate([west.reflectance, east.reflectance], axis=2), whole.reflectance
    )
    np.testing.assert_array_equal(np.hstack([west.scl, east.scl]), whole.scl)


def test_solar_position_is_plausible():
    summer = synth.solar_position(172, latitude_deg=46.0)
    autumn = synth.solar_position(290, latitude_deg=46.0)
    assert 20 < summer[0] < autumn[0] < 70
    for _, azimuth in (summer, autumn):
        assert 120 < azimuth < 170  # 10:30 local: sun in the south-east

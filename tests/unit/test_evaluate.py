import json
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from cloudfree import cli
from cloudfree.evaluation import harness as evaluate
from cloudfree.evaluation.harness import (
    BASELINES,
    RECORD_KEYS,
    Case,
    InvalidCaseError,
    MethodOutputError,
    draw_samples,
    evaluate_cases,
    format_table,
    load_case,
    paste_pool,
    target_frames,
)
from cloudfree.methods._provenance import Reconstruction
from cloudfree.testing import shared_data_dir

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
L1C = DATA / "s2_slovenia_2015.npz"
NDVI = DATA / "ndvi_slovenia_68.npz"
needs_data = pytest.mark.skipif(not L1C.exists() or not NDVI.exists(),
                                reason="real cases in /work/shared/data are missing")


def _blob(size, rng, fraction):
    """A boolean mask covering about ``fraction`` of the frame in one disc."""
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(0, size, 2)
    radius = np.sqrt(fraction * size * size / np.pi)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def make_case(n_bands=3, n_dates=8, size=24, seed=0, *, static=False, paste=False):
    """A small case: frames 0, 3, 5 clear, 1 overcast, the rest partly cloudy."""
    rng = np.random.default_rng(seed)
    surface = rng.uniform(0.05, 0.4, (n_bands, size, size)).astype(np.float32)
    trend = np.linspace(0, 0.1, n_dates, dtype=np.float32)[:, None, None, None]
    bands = surface[None] + (0 if static else trend)
    cloud = np.zeros((n_dates, size, size), bool)
    cloud[1] = True
    for t in (2, 4, 6, 7):
        cloud[t] = _blob(size, rng, 0.3)
    bands = np.where(cloud[:, None], np.float32(0.9), bands)  # bright clouds
    dates = [str(np.datetime64("2020-05-01") + np.timedelta64(10 * t, "D")) for t in range(n_dates)]
    arrays = dict(bands=bands.astype(np.float32), band_names=[f"b{i}" for i in range(n_bands)],
                  dates=np.array(dates), cloud_mask=cloud)
    if paste:
        arrays["paste_masks"] = np.stack([_blob(size, rng, f) for f in (0.1, 0.2, 0.4, 0.5)])
    return arrays


def write_case(tmp_path, name="case", **kw):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **make_case(**kw))
    return path


def test_load_case_reads_the_format(tmp_path):
    case = load_case(write_case(tmp_path, n_bands=3, paste=True))
    assert isinstance(case, Case)
    assert case.name == "case" and case.bands.shape == (8, 3, 24, 24)
    assert case.band_names == ("b0", "b1", "b2") and case.paste_masks.shape == (4, 24, 24)
    assert case.days[1] - case.days[0] == 10


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("cloud_mask"), "missing array.*cloud_mask"),
    (lambda a: a.update(bands=a["bands"][0]), "bands has shape"),
    (lambda a: a.update(band_names=["x"]), "band_names has 1 names for 3 bands"),
    (lambda a: a.update(dates=a["dates"][:2]), "dates has 2 entries"),
    (lambda a: a.update(dates=np.array(["soon"] * 8)), "not ISO dates"),
    (lambda a: a.update(cloud_mask=a["cloud_mask"][:, :3]), "cloud_mask has shape"),
    (lambda a: a.update(paste_masks=np.full((2, 24, 24), 3)), "paste_masks must be boolean"),
])
def test_load_case_errors_name_file_and_problem(tmp_path, change, message):
    arrays = make_case()
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InvalidCaseError, match=message) as info:
        load_case(path)
    assert "bad.npz" in str(info.value)


def test_load_case_missing_or_unreadable(tmp_path):
    with pytest.raises(InvalidCaseError, match="no such file"):
        load_case(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(InvalidCaseError, match="cannot be read"):
        load_case(junk)


def test_targets_pool_and_deterministic_draws(tmp_path):
    case = load_case(write_case(tmp_path))
    assert target_frames(case).tolist() == [0, 3, 5]
    pool = paste_pool(case)  # no paste_masks: the partly cloudy frames 2, 4, 6, 7
    assert len(pool) == 4 and np.array_equal(pool[0], case.cloud_mask[2])
    a = draw_samples(case, seed=0, pastes_per_target=2)
    b = draw_samples(case, seed=0, pastes_per_target=2)
    c = draw_samples(case, seed=1, pastes_per_target=2)
    assert [t for t, _ in a] == [0, 0, 3, 3, 5, 5]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, c, strict=True))
    assert not np.array_equal(a[0][1], a[1][1])  # distinct masks per target
    with_paste = load_case(write_case(tmp_path, "p", paste=True))
    assert paste_pool(with_paste) is with_paste.paste_masks


def test_hidden_excludes_the_targets_own_cloud(tmp_path):
    arrays = make_case()
    arrays["cloud_mask"][0, 0, :3] = True  # 3 px of cloud on a target: still under 1 %
    arrays["bands"][3, 1, 5, 5] = np.nan  # a missing value counts as cloud
    path = tmp_path / "c.npz"
    np.savez(path, **arrays)
    case = load_case(path)
    assert target_frames(case).tolist() == [0, 3, 5] and case.cloud_mask[3, 5, 5]
    for target, hidden in draw_samples(case, seed=0):
        assert not (hidden & case.cloud_mask[target]).any()
    for record in evaluate_cases([case], ["median", "interpolate"]):
        assert all(record[k] is not None for k in ("psnr", "ssim", "mae", "rmse", "sam"))


def test_methods_never_see_hidden_truth(tmp_path):
    case = load_case(write_case(tmp_path))
    seen = []

    def spy(series, days, target):
        seen.append((series.copy(), target))
        return np.nan_to_num(series[target], nan=0.2)

    evaluate_cases([case], {"spy": spy}, seed=0, pastes_per_target=1)
    samples = draw_samples(case, seed=0, pastes_per_target=1)
    assert len(seen) == len(samples)
    for (series, target), (t, hidden) in zip(seen, samples, strict=True):
        assert target == t and hidden.any()
        assert np.isnan(series[target][:, hidden]).all()
        visible = ~hidden & ~case.cloud_mask[target]
        np.testing.assert_array_equal(series[target][:, visible], case.bands[target][:, visible])
        assert np.isnan(series[:, 0][case.cloud_mask]).all()

    def identity(series, days, target):  # returns the target frame as it was given
        return series[target]

    with pytest.raises(MethodOutputError, match="hidden pixels are NaN"):
        evaluate_cases([case], {"identity": identity})
    with pytest.raises(MethodOutputError, match="shape"):
        evaluate_cases([case], {"flat": lambda s, d, t: s[t, 0]})


def test_metrics_of_a_plugged_in_method(tmp_path):
    case = load_case(write_case(tmp_path, n_bands=2))

    def constant(series, days, target):
        return np.full(series.shape[1:], 0.25, np.float32)

    (record,) = evaluate_cases([case], {"constant": constant}, seed=3, pastes_per_target=2)
    assert tuple(record) == RECORD_KEYS
    samples = draw_samples(case, seed=3, pastes_per_target=2)
    truth = np.concatenate([case.bands[t][:, h].ravel() for t, h in samples])
    assert record["psnr"] == pytest.approx(
        peak_signal_noise_ratio(truth, np.full_like(truth, 0.25), data_range=1.0))
    assert record["mae"] == pytest.approx(np.abs(truth - 0.25).mean(), rel=1e-6)
    assert record["hidden_px"] == sum(int(h.sum()) for _, h in samples)
    assert record["n_targets"] == 3 and record["method"] == "constant"


def test_static_scene_is_reconstructed_exactly_by_every_baseline(tmp_path):
    case = load_case(write_case(tmp_path, static=True))
    for record in evaluate_cases([case], list(BASELINES)):
        assert record["psnr"] is None or record["psnr"] > 100  # inf -> None in the records
        assert record["mae"] < 1e-6 and record["ssim"] == pytest.approx(1.0)
        assert record["sam"] == pytest.approx(0.0, abs=1e-2)


@pytest.mark.parametrize("n_bands", [1, 3, 13])
def test_any_band_set(tmp_path, n_bands):
    case = load_case(write_case(tmp_path, n_bands=n_bands, paste=True))
    records = evaluate_cases([case], ",".join(BASELINES))
    assert [r["method"] for r in records] == list(BASELINES)
    for record in records:
        assert (record["sam"] is None) == (n_bands == 1)
        assert 0 < record["mae"] < 0.2 and 0 < record["ssim"] <= 1
    by_method = {r["method"]: r for r in records}
    # the scene drifts linearly in time: interpolation is exact where both sides are clear
    assert by_method["interpolate"]["mae"] < by_method["median"]["mae"]


def test_baseline_falls_back_to_the_series_median():
    series = np.full((3, 2, 4, 4), np.nan, np.float32)
    series[:, 0, 1:, :] = 0.3
    series[:, 1, 1:, :] = 0.6
    series[0, :, 3, 3] = (0.1, 0.2)  # shifts nothing: medians stay 0.3 / 0.6
    for fn in BASELINES.values():
        out = fn(series, np.arange(3.0), 1)
        out = out.values if isinstance(out, Reconstruction) else out
        np.testing.assert_allclose(out[:, 0, :], [[0.3] * 4, [0.6] * 4])
    empty = np.full((2, 1, 3, 3), np.nan, np.float32)
    assert (BASELINES["median"](empty, np.arange(2.0), 0) == 0).all()


def test_unknown_method_and_format_table(tmp_path):
    with pytest.raises(evaluate.InvalidParameterError, match="choose from median"):
        evaluate_cases([write_case(tmp_path)], ["mean"])
    table = format_table([{"case": "c", "method": "m", "psnr": 30.123, "ssim": 0.9, "mae": 0.01,
                           "rmse": 0.02, "sam": None, "n_targets": 2, "hidden_px": 10,
                           "seconds": 0.5}])
    assert "30.12" in table and "PSNR" in table and " - " in table


def test_main_writes_json_and_prints_table(tmp_path, capsys):
    cases = [write_case(tmp_path, "one", n_bands=3), write_case(tmp_path, "two", n_bands=1)]
    out = tmp_path / "out.json"
    code = cli.main(["evaluate", *(str(p) for p in cases), "--methods", "median,interpolate",
                                                    "--seed", "2", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "one" in printed and "interpolate" in printed and "seed 2" in printed
    records = json.loads(out.read_text())
    assert [(r["case"], r["method"]) for r in records] == [
        ("one", "median"), ("one", "interpolate"), ("two", "median"), ("two", "interpolate")]
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert records[2]["sam"] is None


def test_main_reports_errors_with_exit_code(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert cli.main(["evaluate", str(write_case(tmp_path)), "--methods", "bogus"]) == 2
    assert "bogus" in capsys.readouterr().err


@needs_data
def test_real_cases_acceptance(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = cli.main(["evaluate", str(L1C), str(NDVI), "--methods", "median,bap,geomedian,interpolate",
                          "--json", str(out)])
    assert code == 0
    records = json.loads(out.read_text())
    assert len(records) == 8
    for record in records:
        assert record["psnr"] > 18 and 0.5 < record["ssim"] < 1 and record["hidden_px"] > 10_000
    l1c = [r for r in records if r["case"] == "s2_slovenia_2015"]
    assert {r["n_targets"] for r in l1c} == {3} and all(r["sam"] > 0 for r in l1c)
    assert all(r["sam"] is None for r in records if r["case"] == "ndvi_slovenia_68")


def test_bap_baseline_uses_the_blue_band_for_haze_when_named():
    # two dates equally far from the target; the earlier one (which wins a tie) is hazy
    clear_scene = np.full((2, 4, 4), 0.05, np.float32)
    hazy = clear_scene + np.float32(0.04)
    series = np.stack([hazy, np.full((2, 4, 4), np.nan, np.float32), clear_scene])
    days = np.array([0.0, 10.0, 20.0])
    blind = BASELINES["bap"](series, days, 1)
    named = BASELINES["bap"](series, days, 1, band_names=("B02", "B04"))
    assert np.allclose(blind, 0.09)  # without band names: no haze score, the tie goes first
    assert np.allclose(named, 0.05)  # with them: the haze score picks the clear date

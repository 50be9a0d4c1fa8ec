"""Evaluation through a detector's mask (``evaluate --mask``) and the scoring of masks
against a case's labels (``evaluate-masks``)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cloudfree import cli
from cloudfree.detection import Detection, DetectionInput
from cloudfree.detection import scl as scl_detector
from cloudfree.errors import MissingDetectorInputError
from cloudfree.evaluation.harness import RECORD_KEYS, draw_samples, evaluate_cases, load_case
from cloudfree.evaluation.masks import (
    MASK_RECORD_KEYS,
    confusion_figures,
    evaluate_masks,
    sample_invalid_masks,
)
from cloudfree.testing import shared_data_dir

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
UDS = DATA / "l2a_31UDS_118.npz"
BANDS = ["B02", "B03", "B04", "B08", "B11", "B12"]
SIZE = 32


def make_l2a_case(n_dates=8, *, shifted=False):
    """Frames 0, 3, 5 clear; SCL cloud (class 9) blocks on the others, a shadow (class 3)
    block on frame 4; ``cloud_mask`` = the SCL cloud and shadow blocks (shifted 5 px on
    frame 2 when ``shifted``) plus, on frame 6, a haze patch SCL misses."""
    rng = np.random.default_rng(0)
    surface = rng.uniform(0.05, 0.3, (len(BANDS), SIZE, SIZE)).astype(np.float32)
    bands = np.repeat(surface[None], n_dates, axis=0)
    scl = np.full((n_dates, SIZE, SIZE), 4, np.uint8)
    cloud = np.zeros((n_dates, SIZE, SIZE), bool)
    shadow = np.zeros_like(cloud)
    for t, (y, x) in {1: (2, 2), 2: (10, 10), 4: (4, 16), 6: (18, 4), 7: (12, 20)}.items():
        scl[t, y:y + 10, x:x + 10] = 9
        cloud[t, y:y + 10, x:x + 10] = True
        bands[t, :, y:y + 10, x:x + 10] = 0.8
    scl[4, 20:30, 20:30] = 3
    shadow[4, 20:30, 20:30] = True
    bands[4, :, 20:30, 20:30] *= 0.3
    if shifted:
        cloud[2] = np.roll(cloud[2], 5, axis=1)
    labels = cloud | shadow
    labels[6, 0:4, 24:32] = True  # haze: labelled, not in SCL
    bands[6, :, 0:4, 24:32] += 0.05
    dates = [f"2020-05-{1 + 4 * t:02d}T10:50:00" for t in range(n_dates)]
    return dict(bands=bands, band_names=np.array(BANDS), dates=np.array(dates),
                cloud_mask=labels, shadow_mask=shadow, scl=scl, crs=np.array("EPSG:32631"),
                transform=np.array([10.0, 0, 500000.0, 0, -10.0, 5600000.0]))


def write(tmp_path, name="l2a", **arrays):
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def test_load_case_reads_the_optional_arrays(tmp_path):
    case = load_case(write(tmp_path, **make_l2a_case()))
    assert case.scl.dtype == np.uint8 and case.shadow_mask[4].sum() == 100
    assert case.level == "L2A" and case.resolution_m == 10.0 and case.crs == "EPSG:32631"
    arrays = make_l2a_case()
    for key in ("scl", "shadow_mask", "crs", "transform"):
        arrays.pop(key)
    bare = load_case(write(tmp_path, "bare", **arrays))
    assert bare.scl is None and bare.level is None and bare.resolution_m == 10.0


def test_mask_figures_known_answers(tmp_path):
    exact = load_case(write(tmp_path, **make_l2a_case()))
    records = evaluate_masks(exact, "scl", {"dilation_m": 0.0})
    assert [r["class"] for r in records] == ["cloud", "shadow", "clear_date"]
    assert all(tuple(r) == MASK_RECORD_KEYS for r in records)
    cloud, shadow, dates = records
    # every SCL block is labelled; the 32 haze pixels are labelled and missed
    assert cloud["precision"] == 1.0 and cloud["agreed"] == 600
    assert cloud["recall"] == pytest.approx(600 / 632)
    assert cloud["f1"] == pytest.approx(2 * 600 / (2 * 600 + 32))
    assert shadow["f1"] == 1.0 and shadow["balanced_accuracy"] == 1.0
    # clear dates: 0, 3, 5 by both (frame 6's haze is 3 % of it)
    assert (dates["detected"], dates["labelled"], dates["agreed"]) == (3, 3, 3)
    assert dates["f1"] == 1.0 and dates["unit"] == "dates"
    shifted = load_case(write(tmp_path, "shifted", **make_l2a_case(shifted=True)))
    cloud_shifted = evaluate_masks(shifted, "scl", {"dilation_m": 0.0})[0]
    # frame 2's block shifted 5 px: 50 px agree, 50 missed, 50 false
    assert cloud_shifted["agreed"] == 550 and cloud_shifted["precision"] == pytest.approx(
        550 / 600)
    assert cloud_shifted["f1"] == pytest.approx(2 * 550 / (2 * 550 + 50 + 82))
    assert cloud_shifted["f1"] < cloud["f1"]


def test_confusion_figures_and_undefined_values():
    out = confusion_figures(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert out["precision"] == out["recall"] == out["f1"] == 0.5
    assert out["balanced_accuracy"] == 0.5
    none = confusion_figures(np.zeros(4, bool), np.zeros(4, bool))
    assert none["precision"] is None and none["f1"] is None and none["scored"] == 4


def test_shadow_figures_are_none_without_shadow_labels(tmp_path):
    arrays = make_l2a_case()
    arrays.pop("shadow_mask")
    shadow = evaluate_masks(load_case(write(tmp_path, **arrays)), "scl")[1]
    assert shadow["f1"] is None and shadow["labelled"] is None and shadow["detected"] > 100


def test_cli_evaluate_masks_json(tmp_path, capsys):
    path = write(tmp_path, **make_l2a_case())
    out = tmp_path / "masks.json"
    assert cli.main(["evaluate-masks", str(path), "--mask", "scl", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clear_date" in printed and "mask: scl" in printed
    records = json.loads(out.read_text())
    assert records == evaluate_masks(load_case(path), "scl")
    assert cli.main(["evaluate-masks", str(path), "--mask", "scl", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == records
    assert cli.main(["evaluate-masks", str(tmp_path / "nope.npz"), "--mask", "scl"]) == 2
    assert "nope.npz" in capsys.readouterr().err


def _spy_method(seen):
    def spy(series, days, target):
        seen.append((series.copy(), target))
        return np.nan_to_num(series[target], nan=0.2)
    return spy


def test_methods_see_nan_where_the_detector_flags(tmp_path):
    case = load_case(write(tmp_path, **make_l2a_case()))
    seen = []
    (record,) = evaluate_cases([case], {"spy": _spy_method(seen)}, seed=0,
                               pastes_per_target=2, mask="scl",
                               mask_params={"dilation_m": 0.0})
    assert tuple(record) == RECORD_KEYS and record["mask"] == "scl"
    samples = draw_samples(case, seed=0, pastes_per_target=2)
    assert len(seen) == len(samples)
    scl_invalid = np.isin(case.scl, (3, 9))
    for (series, target), (t, hidden) in zip(seen, samples, strict=True):
        assert target == t and hidden.any()
        expected = scl_invalid.copy()
        expected[target] |= hidden
        np.testing.assert_array_equal(np.isnan(series).all(axis=1), expected)
        np.testing.assert_array_equal(np.isnan(series).any(axis=1), expected)
    # the haze the case labels but SCL misses is seen by the methods
    assert np.isfinite(seen[0][0][6][:, 0:4, 24:32]).all()


def test_hidden_truth_never_reaches_the_detector(tmp_path):
    case = load_case(write(tmp_path, **make_l2a_case()))
    samples = draw_samples(case, seed=0, pastes_per_target=2)
    calls = []

    def recording_detector(inp: DetectionInput) -> Detection:
        calls.append(inp)
        return scl_detector.detect(inp)

    name, masks = sample_invalid_masks(case, samples, recording_detector)
    assert name == "recording_detector" and len(calls) == len(samples)
    for inp, (target, hidden) in zip(calls, samples, strict=True):
        assert np.isnan(inp.bands[target][:, hidden]).all()
        assert (inp.scl[target][hidden] == 0).all()  # SCL no data
        others = np.arange(len(case.dates)) != target
        np.testing.assert_array_equal(inp.bands[others], case.bands[others])
        assert inp.sun_zenith_deg is not None and 20 < inp.sun_zenith_deg[0] < 60
    # the shortcut for per-date detectors gives the same masks as a run per sample
    _, shortcut = sample_invalid_masks(case, samples, "scl")
    for a, b in zip(masks, shortcut, strict=True):
        np.testing.assert_array_equal(a, b)
    calls.clear()
    _, per_target = sample_invalid_masks(case, samples, recording_detector, per="target")
    targets = sorted({t for t, _ in samples})
    assert [len(calls), len(per_target)] == [len(targets), len(samples)]
    for inp, target in zip(calls, targets, strict=True):
        union = np.logical_or.reduce([h for t, h in samples if t == target])
        assert np.isnan(inp.bands[target][:, union]).all()


def test_auto_mask_and_missing_inputs(tmp_path):
    case = load_case(write(tmp_path, **make_l2a_case()))
    records = evaluate_cases([case], ["median"], seed=0, pastes_per_target=1, mask="auto")
    assert records[0]["mask"] == "multitemporal" and records[0]["hidden_px"] > 0
    samples = draw_samples(case, seed=0, pastes_per_target=1)
    name, masks = sample_invalid_masks(case, samples, "auto")
    assert name == "multitemporal" and len(masks) == len(samples)
    for invalid in masks:  # the bright SCL clouds are flagged on every sample
        assert invalid[np.isin(case.scl, (9,))].all()
    arrays = make_l2a_case()
    arrays.pop("scl")
    no_scl = load_case(write(tmp_path, "no_scl", **arrays))
    with pytest.raises(MissingDetectorInputError, match="would run on it: multitemporal"):
        evaluate_cases([no_scl], ["median"], mask="scl")


def test_cli_evaluate_states_the_mask(tmp_path, capsys):
    path = write(tmp_path, **make_l2a_case())
    out = tmp_path / "records.json"
    assert cli.main(["evaluate", str(path), "--methods", "median", "--mask", "scl",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mask: scl -> scl (detector, run per sample" in printed
    assert json.loads(out.read_text())[0]["mask"] == "scl"
    assert cli.main(["evaluate", str(path), "--methods", "median"]) == 0
    assert "mask: the case's cloud_mask" in capsys.readouterr().out


@pytest.mark.skipif(not UDS.exists(), reason="l2a_31UDS_118.npz is missing")
def test_real_l2a_crop(tmp_path):
    with np.load(UDS) as npz:
        arrays = {k: npz[k] for k in ("bands", "band_names", "dates", "cloud_mask", "scl",
                                      "crs", "transform")}
    for key in ("bands", "cloud_mask", "scl", "dates"):
        arrays[key] = arrays[key][:20] if key == "dates" else arrays[key][:20, ..., :32, :32]
    path = write(tmp_path, "uds_crop", **arrays)
    records = evaluate_masks(load_case(path), "scl")
    cloud = records[0]
    assert cloud["mask"] == "scl" and cloud["scored"] == 20 * 32 * 32
    assert 0 < cloud["f1"] <= 1 and cloud["labelled"] > 0
    (record,) = evaluate_cases([path], ["median"], seed=0, pastes_per_target=1, mask="scl")
    assert record["mask"] == "scl" and record["hidden_px"] > 0

"""The detector registry, the s2cloudless and OmniCloudMask adapters, and their bad-input
errors (library and CLI)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from cloudfree import cli
from cloudfree.detection import (
    AUTO_ORDER,
    DETECTORS,
    DetectionInput,
    choose,
    detect,
    esa_band_name,
    omnicloud,
    runnable,
)
from cloudfree.errors import DetectorWeightsError, InvalidParameterError, MissingDetectorInputError
from cloudfree.masking import s2cloudless_clear_mask
from cloudfree.testing import shared_data_dir

DATA = shared_data_dir() or Path("/nonexistent/shared/data")
L1C = DATA / "s2_slovenia_2015.npz"
L2A_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12")
WEIGHTS_ENV = DETECTORS["omnicloudmask"].weights_env
OMNICLOUDMASK_INSTALLED = importlib.util.find_spec("omnicloudmask") is not None


@pytest.fixture(autouse=True)
def _no_weights_in_env(monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


@pytest.mark.parametrize(("name", "esa"), [
    ("blue", "B02"), ("nir08", "B8A"), ("b8a", "B8A"), ("B2", "B02"), ("swir22", "B12"),
    ("cirrus", "B10"), ("B11", "B11"), ("NDVI01", "NDVI01"), (" red ", "B04"),
])
def test_esa_band_name(name, esa):
    assert esa_band_name(name) == esa


@pytest.mark.parametrize(("bands", "has_scl", "n_dates", "level", "expected"), [
    (L2A_BANDS, True, 20, "L2A", "multitemporal"),  # an L2A series
    (L2A_BANDS, True, 3, "L2A", "scl"),  # too few dates for the multi-temporal tests
    (("blue", "green", "red", "nir", "swir16"), True, 2, "L2A", "scl"),  # asset keys
    (L1C_BANDS, False, 5, "L1C", "s2cloudless"),  # L1C: its model first, series or not
    (L1C_BANDS, False, 2, "L1C", "s2cloudless"),
    (L1C_BANDS[1:], False, 5, "L1C", "multitemporal"),  # no B01: s2cloudless cannot run
    (("B05", "B06", "B07", "B8A", "B11", "B12"), True, 146, "L2A", "multitemporal"),
])
def test_auto_picks_the_first_that_can_run(bands, has_scl, n_dates, level, expected):
    assert choose("auto", bands, has_scl=has_scl, n_dates=n_dates, level=level) == expected
    assert expected in runnable(bands, has_scl=has_scl, n_dates=n_dates, level=level)
    assert expected in AUTO_ORDER


def test_missing_bands_name_them_and_the_detectors_that_would_run():
    with pytest.raises(MissingDetectorInputError) as info:
        choose("multitemporal", ("B02", "B03", "B04", "B08"), has_scl=True, n_dates=30,
               level="L2A")
    message = str(info.value)
    assert "B11 or B12" in message and "B02, B03, B04, B08" in message
    assert info.value.runnable == ["scl"] and "would run on it: scl" in message
    with pytest.raises(MissingDetectorInputError, match="L1C input .got L2A.") as info:
        choose("s2cloudless", L1C_BANDS, has_scl=True, n_dates=3, level="L2A")
    with pytest.raises(MissingDetectorInputError, match="would run on it: none"):
        choose("auto", ("NDVI01",), has_scl=False, n_dates=68)
    with pytest.raises(InvalidParameterError, match="choose one of scl"):
        choose("fmask", L2A_BANDS, has_scl=True, n_dates=3)


def test_learned_detector_runs_only_with_weights(tmp_path, monkeypatch):
    rgbn = ("B02", "B03", "B04", "B08")
    assert "omnicloudmask" not in runnable(rgbn, has_scl=False, n_dates=1)
    assert "omnicloudmask" in runnable(rgbn, has_scl=False, n_dates=1,
                                       weights={"omnicloudmask": tmp_path / "w.pth"})
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "w.pth"))
    assert "omnicloudmask" in runnable(rgbn, has_scl=False, n_dates=1)
    # never what auto picks: it needs weights the user chose
    assert choose("auto", rgbn, has_scl=True, n_dates=1, level="L2A") == "scl"


def test_halos_come_from_the_modules():
    assert DETECTORS["s2cloudless"].halo_px(10.0) == 14  # 2 x 20 m opening + 100 m
    assert DETECTORS["s2cloudless"].halo_px(20.0, {"opening_m": 0, "dilation_m": 60}) == 3
    assert DETECTORS["scl"].halo_px(10.0) == 10


@pytest.mark.skipif(not L1C.exists(), reason="s2_slovenia_2015.npz is missing")
def test_s2cloudless_adapter_matches_the_masking_function():
    with np.load(L1C) as npz:
        bands = npz["bands"][:, :, :32, :32].astype(np.float32)
        names = tuple(str(b) for b in npz["band_names"])
    bands[0, :, :4, :4] = np.nan  # no data: never cloud
    inp = DetectionInput(bands=bands, band_names=names, days=np.arange(5.0),
                         resolution_m=10.0, level="L1C")
    result = detect("s2cloudless", inp)
    clear = s2cloudless_clear_mask(bands, names, resolution_m=10.0)
    np.testing.assert_array_equal(result.invalid, ~clear)
    assert not result.shadow.any() and result.nodata[0, :4, :4].all()
    assert not (result.cloud & result.nodata).any()
    assert result.cloud[1:3].mean() > 0.9 and result.cloud[[0, 3, 4]].mean() < 0.2  # overcast
    assert result.parameters["detector"] == "s2cloudless"
    assert result.parameters["shadow"] == "not detected"
    with pytest.raises(InvalidParameterError, match="threshold"):
        detect("s2cloudless", inp, threshold=1.5)


def _rgbn_input(size=32, n_dates=2):
    rng = np.random.default_rng(0)
    bands = rng.uniform(0.02, 0.3, (n_dates, 4, size, size)).astype(np.float32)
    return DetectionInput(bands=bands, band_names=("B02", "B03", "B04", "B08"),
                          days=np.arange(float(n_dates)), resolution_m=10.0)


def _weights_files(tmp_path):
    files = {}
    files["random tensor"] = tmp_path / "random.pth"
    torch.save(torch.randn(4, 3), files["random tensor"])
    files["not torch"] = tmp_path / "junk.pth"
    files["not torch"].write_bytes(b"\x00\x01not a zip archive" * 10)
    files["empty"] = tmp_path / "empty.pth"
    torch.save({}, files["empty"])
    files["five inputs"] = tmp_path / "five.pth"
    torch.save({"layers.0.conv.weight": torch.randn(8, 5, 3, 3),
                "layers.9.0.weight": torch.randn(4, 8, 1, 1)}, files["five inputs"])
    files["two classes"] = tmp_path / "two.pth"
    torch.save({"layers.0.conv.weight": torch.randn(8, 3, 3, 3),
                "layers.9.0.weight": torch.randn(2, 8, 1, 1)}, files["two classes"])
    files["no convolutions"] = tmp_path / "linear.pth"
    torch.save({"fc.weight": torch.randn(4, 3)}, files["no convolutions"])
    return files


@pytest.mark.parametrize(("kind", "reason"), [
    ("random tensor", "holds a Tensor, not a state dict"),
    ("not torch", "cannot be read as a torch state dict"),
    ("empty", "holds an empty mapping"),
    ("five inputs", r"layers.0.conv.weight \[8, 5, 3, 3\] takes 5 input channels"),
    ("two classes", "gives 2 classes; OmniCloudMask gives 4"),
    ("no convolutions", "has no convolution weights"),
])
def test_omnicloudmask_weights_that_do_not_fit(tmp_path, kind, reason):
    path = _weights_files(tmp_path)[kind]
    with pytest.raises(DetectorWeightsError, match=reason) as info:
        detect("omnicloudmask", _rgbn_input(), weights=path)
    assert str(path) in str(info.value) and "never downloaded" in str(info.value)


def test_omnicloudmask_absent_weights(tmp_path, monkeypatch):
    with pytest.raises(DetectorWeightsError, match="no weights file was given.*"
                       + WEIGHTS_ENV):
        detect("omnicloudmask", _rgbn_input())
    with pytest.raises(DetectorWeightsError, match="no such file"):
        detect("omnicloudmask", _rgbn_input(), weights=tmp_path / "missing.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "from_env.pth"))  # the env is read too
    with pytest.raises(DetectorWeightsError, match="from_env.pth.*no such file"):
        detect("omnicloudmask", _rgbn_input())


@pytest.mark.skipif(OMNICLOUDMASK_INSTALLED, reason="the omnicloudmask package is installed")
def test_omnicloudmask_without_its_package_says_how_to_install_it(tmp_path):
    path = tmp_path / "layout_ok.pth"
    torch.save({"layers.0.conv.weight": torch.randn(8, 3, 3, 3),
                "layers.9.0.weight": torch.randn(4, 8, 1, 1)}, path)
    omnicloud.check_layout(omnicloud.load_state_dict(path), path)  # passes the checks
    with pytest.raises(InvalidParameterError, match="pip install omnicloudmask"):
        detect("omnicloudmask", _rgbn_input(), weights=path)


def _write_case(tmp_path, band_names, *, scl=True, n_dates=6, size=32):
    rng = np.random.default_rng(1)
    bands = rng.uniform(0.02, 0.3, (n_dates, len(band_names), size, size)).astype(np.float32)
    arrays = dict(bands=bands, band_names=np.array(band_names),
                  dates=np.array([f"2020-06-{d + 1:02d}T10:30:00" for d in range(n_dates)]),
                  cloud_mask=np.zeros((n_dates, size, size), bool),
                  paste_masks=np.zeros((2, size, size), bool))
    arrays["paste_masks"][:, 4:12, 4:12] = True
    if scl:
        arrays["scl"] = np.full((n_dates, size, size), 4, np.uint8)
    path = tmp_path / "case.npz"
    np.savez(path, **arrays)
    return path


def _one_error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cloudfree: error:")
    return lines[0]


@pytest.mark.parametrize("command", ["evaluate-masks", "evaluate"])
def test_cli_exits_2_with_one_line(tmp_path, capsys, command):
    rgbn = _write_case(tmp_path, ["B02", "B03", "B04", "B08"], scl=False)
    extra = ["--methods", "median"] if command == "evaluate" else []
    assert cli.main([command, str(rgbn), "--mask", "scl", *extra]) == 2
    line = _one_error_line(capsys)
    assert "'scl' cannot run" in line and "scl (the Sen2Cor scene classification" in line
    assert "B02, B03, B04, B08" in line
    assert cli.main([command, str(rgbn), "--mask", "multitemporal", *extra]) == 2
    line = _one_error_line(capsys)
    assert "B11 or B12" in line and "Detectors that would run on it: none" in line
    assert cli.main([command, str(rgbn), "--mask", "omnicloudmask", *extra]) == 2
    assert "no weights file was given" in _one_error_line(capsys)
    weights = _weights_files(tmp_path)
    assert cli.main([command, str(rgbn), "--mask", "omnicloudmask", "--weights",
                     str(weights["random tensor"]), *extra]) == 2
    assert "not a state dict" in _one_error_line(capsys)
    assert cli.main([command, str(rgbn), "--mask", "omnicloudmask", "--weights",
                     str(tmp_path / "absent.pth"), *extra]) == 2
    assert "absent.pth': no such file" in _one_error_line(capsys)

"""The CLI in-process: parsing, exit codes and the evaluate subcommand."""

import json

import pytest

from cloudfree import cli
from cloudfree.testing import shared_data_dir

DATA = shared_data_dir()
CASE = str(DATA / "s2_slovenia_2015.npz") if DATA else ""


def test_mosaic_without_an_area_is_a_clear_error(capsys):
    assert cli.main(["mosaic", "--datetime", "2024-01-01/2024-02-01"]) == 2
    assert "no area of interest given; pass --bbox or --geojson" in capsys.readouterr().err


def test_unknown_method_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["mosaic", "--bbox", "1,2,3,4", "--datetime", "2024-01-01/2024-02-01",
                  "--method", "mean"])
    assert info.value.code == 2
    assert "invalid choice: 'mean'" in capsys.readouterr().err


@pytest.mark.skipif(not DATA, reason="needs the evaluation cases in ../shared/data")
def test_evaluate_subcommand_writes_the_records(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = cli.main(["evaluate", CASE, "--methods", "median,interpolate", "--seed", "0",
                     "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "s2_slovenia_2015" in table and "interpolate" in table
    records = json.loads(out.read_text())
    assert [r["method"] for r in records] == ["median", "interpolate"]
    assert set(records[0]) >= {"case", "method", "psnr", "ssim", "mae", "rmse", "sam",
                               "n_targets", "hidden_px", "seconds"}
    assert records[1]["psnr"] > records[0]["psnr"]  # interpolation beats the median here


def test_evaluate_missing_case(capsys):
    assert cli.main(["evaluate", "missing.npz"]) == 2
    assert "missing.npz" in capsys.readouterr().err

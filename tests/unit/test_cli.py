"""The CLI in-process: parsing, exit codes and the evaluate subcommand."""

import json
import subprocess
import sys

import pytest

from cloudfree import cli
from cloudfree.methods import list_methods
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


def _subcommand(name):
    (sub,) = [a for a in cli.build_parser()._actions if a.dest == "command"]
    return sub.choices[name]


def _action(command, dest):
    (action,) = [a for a in _subcommand(command)._actions if a.dest == dest]
    return action


def test_one_tree_with_every_command():
    (sub,) = [a for a in cli.build_parser()._actions if a.dest == "command"]
    assert list(sub.choices) == ["services", "demo-catalog", "mosaic", "plan", "evaluate",
                                 "evaluate-masks", "train",
                                 "gc", "demo", "view"]
    for command in sub.choices:
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0, command


def test_method_choices_are_the_registrys():
    assert _action("mosaic", "method").choices == list_methods("mosaic")
    assert _action("demo", "method").choices == list_methods("mosaic")
    assert _action("evaluate", "methods").default == ",".join(
        list_methods("evaluation", learned=False))


def test_bad_input_is_one_line_and_exit_2(capsys):
    code = cli.main(["evaluate", "missing.npz", "--methods", "median,bogus,interpolate"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("cloudfree: error: invalid methods 'bogus': choose from ")
    assert captured.err.rstrip().endswith(", ".join(list_methods("evaluation")))


def test_cli_imports_no_flow_prefect_or_torch():
    """The CLI stays at the edge: building its tree loads no flow, Prefect or torch."""
    code = ("import sys; from cloudfree import cli; cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flows', 'prefect', 'torch')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_evaluate_missing_case(capsys):
    assert cli.main(["evaluate", "missing.npz"]) == 2
    assert "missing.npz" in capsys.readouterr().err


def test_mosaic_refuses_unknown_bands_before_any_flow(capsys):
    code = cli.main(["mosaic", "--bbox", "1,2,3,4", "--datetime", "2024-01-01/2024-02-01",
                     "--bands", "red,B13"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "invalid bands 'B13'" in err and "red (B04)" in err


def test_mosaic_passes_the_catalog_options_to_the_flow():
    from cloudfree.cli._mosaic import _flow_kwargs

    args = cli.build_parser().parse_args(
        ["mosaic", "--bbox", "1,2,3,4", "--datetime", "2024-01-01/2024-02-01", "--bands",
         "B04,nir,b8a,red", "--source", "planetary-computer", "--assume-decoding",
         "harmonized", "--signer", "none"])
    kwargs = _flow_kwargs(args)
    assert kwargs["bands"] == ["red", "nir", "nir08"]
    assert (kwargs["source"], kwargs["assume_decoding"], kwargs["signer"]) == (
        "planetary-computer", "harmonized", "none")
    default = _flow_kwargs(cli.build_parser().parse_args(
        ["mosaic", "--bbox", "1,2,3,4", "--datetime", "2024-01-01/2024-02-01"]))
    assert (default["bands"], default["source"], default["signer"]) == (None, None, None)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--source", "bogus", "invalid source 'bogus': not a catalog profile; known: "),
    ("--assume-decoding", "offset=1", "invalid --assume-decoding 'offset=1'"),
    ("--signer", "bogus", "invalid signer 'bogus': known signers: none"),
])
def test_mosaic_refuses_bad_catalog_options_before_any_flow(option, value, expected, capsys):
    code = cli.main(["mosaic", "--bbox", "1,2,3,4", "--datetime", "2024-01-01/2024-02-01",
                     option, value])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


# --------------------------------------------------------------------------- bad input (issue 13)

BOWTIE = {"type": "Polygon", "coordinates": [[[15.05, 46.0], [15.12, 46.03], [15.12, 46.0],
                                              [15.05, 46.03], [15.05, 46.0]]]}
WINDOW = "2024-04-01/2024-10-28"
AOI = "15.05,46.00,15.12,46.03"


def _geojson(tmp_path, data):
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(data))
    return str(path)


BAD_MOSAIC = {
    "epsg 999999": (lambda tmp: ["--bbox", AOI, "--datetime", WINDOW, "--epsg", "999999"],
                    ["invalid epsg 999999: no such EPSG code", "projected CRS in metres",
                     "leave --epsg out"]),
    "epsg in degrees": (lambda tmp: ["--bbox", AOI, "--datetime", WINDOW, "--epsg", "4326"],
                        ["invalid epsg 4326", "not projected in metres"]),
    "over the tile budget": (
        lambda tmp: ["--bbox", "5,40,25,55", "--datetime", WINDOW, "--tile-size", "512"],
        ["the plan exceeds the budget max_tiles (112560 > 10000)", "335 x 336 = 112560 tiles",
         "split the run into at least 12 smaller areas", "larger --tile-size",
         "CLOUDFREE_MAX_TILES=112560"]),
    "over the pixel budget": (
        lambda tmp: ["--bbox", AOI, "--datetime", WINDOW, "--tile-size", "20000"],
        ["budget max_pixels_per_tile", "20000 x 20000 px", "--tile-size of at most 16384 px",
         "CLOUDFREE_MAX_PIXELS_PER_TILE"]),
    "null geometry": (
        lambda tmp: ["--geojson", _geojson(tmp, {"type": "Feature", "properties": {},
                                                 "geometry": None}), "--datetime", WINDOW],
        ["invalid area of interest", "aoi.geojson", 'the Feature has no geometry ("geometry": '
         'null)', "Polygon or MultiPolygon"]),
    "bowtie": (lambda tmp: ["--geojson", _geojson(tmp, BOWTIE), "--datetime", WINDOW],
               ["invalid area of interest", "aoi.geojson", "not valid (Self-intersection",
                "do not self-intersect"]),
    "bad time": (lambda tmp: ["--bbox", AOI, "--datetime", "2024-01-01T99:99/2024-02-01"],
                 ["invalid date window '2024-01-01T99:99/2024-02-01'", "'2024-01-01T99:99'",
                  "hour must be in 0..23"]),
    "target date outside": (
        lambda tmp: ["--bbox", AOI, "--datetime", WINDOW, "--method", "interpolate",
                     "--target-date", "2024-12-15"],
        ["invalid target_date '2024-12-15'", "outside the window 2024-04-01/2024-10-28",
         "inside the --datetime window"]),
}


@pytest.mark.parametrize("case", list(BAD_MOSAIC))
def test_mosaic_bad_input_exits_2_before_any_service(case, tmp_path, capsys, monkeypatch):
    """Each is refused by the library's checks before Prefect starts or anything is searched
    or written: with every service port pointing at the discard port, the error is still
    the input's, not an unreachable service's."""
    for var in ("CLOUDFREE_STAC_PORT", "CLOUDFREE_S3_PORT", "CLOUDFREE_PREFECT_PORT"):
        monkeypatch.setenv(var, "9")
    argv, expected = BAD_MOSAIC[case]
    assert cli.main(["mosaic", *argv(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("cloudfree: error: ")
    for text in expected:
        assert text in captured.err, (case, text)


def test_plan_refuses_the_same_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLOUDFREE_STAC_PORT", "9")
    assert cli.main(["plan", "--bbox", "5,40,25,55", "--datetime", WINDOW,
                     "--tile-size", "512"]) == 2
    assert "budget max_tiles (112560 > 10000)" in capsys.readouterr().err
    assert cli.main(["plan", "--bbox", AOI, "--datetime", WINDOW, "--epsg", "999999"]) == 2
    assert "invalid epsg 999999" in capsys.readouterr().err

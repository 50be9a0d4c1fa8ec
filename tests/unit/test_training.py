"""Training: a tiny GAN run writes a checkpoint, a loss curve and weights, and resumes exactly."""

import dataclasses
import typing

import pytest
import torch

from cloudfree import cli
from cloudfree.errors import InvalidAOIError, InvalidParameterError
from cloudfree.models import load_generator
from cloudfree.testing import TINY_TRAINING
from cloudfree.training import TrainOptions, train
from cloudfree.training.data import SeriesSampler

torch.set_num_threads(2)


def test_sampler_is_deterministic_per_step():
    sampler = SeriesSampler(size=32, frames=4, n_landscapes=1, world_px=48, mask_pool=4)
    a, b = sampler.batch(5, 2), sampler.batch(5, 2)
    assert all((a[k] == b[k]).all() for k in a)
    assert not (sampler.batch(6, 2)["truth"] == a["truth"]).all()
    assert 0 < a["clear"].mean() < 1


def test_resume_equals_uninterrupted(tmp_path):
    full = train(TrainOptions(steps=4, out_dir=str(tmp_path / "full"), **TINY_TRAINING),
                 log=lambda *_: None)
    part = TrainOptions(steps=2, out_dir=str(tmp_path / "part"), **TINY_TRAINING)
    train(part, log=lambda *_: None)
    resumed = train(dataclasses.replace(part, steps=4,
                                        resume=str(tmp_path / "part" / "checkpoint.pt")),
                    log=lambda *_: None)
    assert resumed["step"] == full["step"] == 4
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    for key in a["generator"]:
        assert torch.allclose(a["generator"][key], b["generator"][key], atol=1e-6), key
    for key in a["discriminator"]:  # the GAN really trains: the discriminator moved too
        assert torch.allclose(a["discriminator"][key], b["discriminator"][key], atol=1e-6), key
    assert len(b["history"]) == 4 and all("adv" in h and "d" in h for h in b["history"])
    assert (tmp_path / "part" / "losses.png").stat().st_size > 0
    model, card = load_generator("default", directory=tmp_path / "part")
    assert card.training["steps_done"] == 4
    # the card records what was trained, not where or how it ran
    assert card.training["depth"] == TINY_TRAINING["depth"] and card.training["device"] == "cpu"
    assert not {"out_dir", "resume", "threads"} & set(card.training)
    assert set(b["config"]) == set(part.record()) and b["config"]["steps"] == 4


def test_cli_trains(tmp_path, capsys):
    rc = cli.main(["train", "--steps", "1", "--batch", "1", "--size", "32", "--frames", "3",
                   "--base-channels", "4", "--depth", "1", "--out", str(tmp_path),
                   "--device", "cpu", "--w-cycle", "0.5"])
    assert rc == 0
    assert (tmp_path / "default.pt").exists() and (tmp_path / "default.json").exists()
    assert '"step": 1' in capsys.readouterr().out
    _, card = load_generator("default", directory=tmp_path)
    assert card.training["w_cycle"] == 0.5 and card.training["base_channels"] == 4


def test_cli_bad_bbox_exits_2(capsys, tmp_path):
    assert cli.main(["train", "--data", "stac", "--bbox", "10,5,9,6", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cloudfree: error: invalid area of interest '10,5,9,6'")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def _train_action(dest):
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    (action,) = [a for a in sub.choices["train"]._actions if a.dest == dest]
    return action


def test_cli_train_arguments_are_the_options():
    """One declaration: every TrainOptions field is a `cloudfree train` argument with its
    default, type and description, and parsing nothing gives the default options."""
    hints = typing.get_type_hints(TrainOptions)
    for option in dataclasses.fields(TrainOptions):
        action = _train_action(option.name)
        assert action.default == option.default, option.name
        assert action.help.startswith(option.metadata["description"]), option.name
        if hints[option.name] in (int, float):
            assert action.type is hints[option.name], option.name
    assert _train_action("data").choices == ("synth", "stac", "mixed", "series", "synth+series")
    assert _train_action("out_dir").option_strings == ["--out"]
    args = cli.build_parser().parse_args(["train"])
    parsed = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions)}
    assert TrainOptions(**parsed) == TrainOptions()


def test_options_refuse_bad_values():
    with pytest.raises(InvalidParameterError, match="invalid data 'lidar'"):
        TrainOptions(data="lidar")
    with pytest.raises(InvalidParameterError, match="invalid device 'tpu'"):
        TrainOptions(device="tpu")
    with pytest.raises(InvalidAOIError, match="invalid area of interest '10,5,9,6'"):
        TrainOptions(bbox="10,5,9,6")
    assert TrainOptions(bbox="15,46,15.1,46.1").bbox == (15.0, 46.0, 15.1, 46.1)
    assert TrainOptions(bbox=[15, 46, 15.1, 46.1]).bbox == (15.0, 46.0, 15.1, 46.1)


def test_prefect_flow_parameters_are_the_options():
    """The flow takes one TrainOptions; Prefect's schema carries its fields and their
    descriptions, and validation turns a deployment's JSON into TrainOptions."""
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    from flows import train as train_flow

    schema = parameter_schema(train_flow.train).model_dump()
    assert list(schema["properties"]) == ["options"]
    (definition,) = schema["definitions"].values()
    fields = {f.name: f for f in dataclasses.fields(TrainOptions)}
    assert list(definition["properties"]) == list(fields)
    for name, prop in definition["properties"].items():
        assert prop["description"] == fields[name].metadata["description"], name
        assert prop.get("default") == (list(fields[name].default)
                                       if isinstance(fields[name].default, tuple)
                                       else fields[name].default), name
    given = {"options": {"steps": "3", "data": "mixed", "bbox": [15, 46, 15.1, 46.1]}}
    (options,) = train_flow.train.validate_parameters(given).values()
    assert options == TrainOptions(steps=3, data="mixed", bbox=(15, 46, 15.1, 46.1))
    for bad in ({"steps": "many"}, {"data": "lidar"}):
        with pytest.raises(ParameterTypeError):
            train_flow.train.validate_parameters({"options": bad})


def _series_file(path, *, band_names=("B12", "B04", "B08"), n_dates=12, size=24, seed=0):
    """An evaluation-format series: smooth reflectance, a cloud blob on every other date."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bands = rng.uniform(0.05, 0.4, (n_dates, len(band_names), size, size)).astype(np.float32)
    cloud = np.zeros((n_dates, size, size), bool)
    cloud[1::2, : size // 2, : size // 2] = True
    dates = np.array([f"2024-{1 + i // 2:02d}-{1 + 14 * (i % 2):02d}" for i in range(n_dates)])
    np.savez(path, bands=bands, band_names=np.array(band_names), dates=dates, cloud_mask=cloud)
    return bands, cloud


def test_series_file_becomes_a_training_cube(tmp_path):
    import numpy as np

    from cloudfree.training.series_data import series_cube

    bands, cloud = _series_file(tmp_path / "s.npz")
    cube = series_cube(tmp_path / "s.npz")
    # model band order, and ndvi added from red and NIR
    assert cube.bands == ("B04", "B08", "B12", "ndvi")
    assert np.array_equal(cube.reflectance[:, 0], bands[:, 1])
    assert np.array_equal(cube.reflectance[:, 2], bands[:, 0])
    assert np.array_equal(cube.clear, ~cloud)
    assert cube.source.sha256 and cube.source.datetime == "2024-01-01/2024-06-15"


def test_series_sampler_draws_the_nearest_dates(tmp_path):
    import numpy as np

    from cloudfree.training.series_data import series_cube
    from cloudfree.training.stac_data import CubeSampler

    _series_file(tmp_path / "s.npz", n_dates=20)
    cube = series_cube(tmp_path / "s.npz")
    sampler = CubeSampler(cube, size=16, frames=4, seed=3, nearest=True)
    for draw in sampler.draws(0, 8):
        days = cube.days[draw.frames]
        assert len(draw.frames) == 4 and (np.diff(days) > 0).all()
        # nearest: no date left out lies inside the span of the drawn ones
        inside = (cube.days > days.min()) & (cube.days < days.max())
        assert inside.sum() <= 2  # the drawn ones in between, nothing skipped
    batch = sampler.batch(0, 2)
    assert batch["truth"].shape == (2, 4, 14, 16, 16) and batch["known"].mean() < 1


def test_series_training_and_init(tmp_path):
    _series_file(tmp_path / "s.npz", n_dates=16, size=32)
    first = train(TrainOptions(steps=2, out_dir=str(tmp_path / "a"), data="synth+series",
                               series=str(tmp_path / "s.npz"), **TINY_TRAINING),
                  log=lambda *_: None)
    _, card = load_generator("default", directory=tmp_path / "a")
    assert "s.npz" in card.training_data and "landscapes" in card.training_data
    assert card.training["stac_sources"][0]["sha256"]
    # init: the second run starts from the first one's weights
    logs: list[str] = []
    train(TrainOptions(steps=1, out_dir=str(tmp_path / "b"), data="series",
                       series=str(tmp_path / "s.npz"), init=first["weights"], **TINY_TRAINING),
          log=logs.append)
    assert any("initialised from" in line for line in logs)


def test_series_options_refuse_bad_input(tmp_path):
    import numpy as np

    with pytest.raises(InvalidParameterError, match="--series"):
        TrainOptions(data="series")
    np.savez(tmp_path / "bad.npz", bands=np.zeros((6, 1, 8, 8), np.float32),
             band_names=np.array(["thermal"]), dates=np.array(["2024-01-01"] * 6),
             cloud_mask=np.zeros((6, 8, 8), bool))
    with pytest.raises(InvalidParameterError, match="model bands"):
        train(TrainOptions(steps=1, out_dir=str(tmp_path / "x"), data="series",
                           series=str(tmp_path / "bad.npz"), **TINY_TRAINING),
              log=lambda *_: None)
    with pytest.raises(InvalidParameterError, match="init"):
        train(TrainOptions(steps=1, out_dir=str(tmp_path / "y"), init=str(tmp_path / "no.pt"),
                           **TINY_TRAINING), log=lambda *_: None)


def test_sampler_for_gives_synth_steps_per_real_batch():
    from cloudfree.training.loop import sampler_for

    synth = SeriesSampler(size=16, frames=2, n_landscapes=1, world_px=24, mask_pool=1)
    real_a, real_b = object(), object()
    samplers = [synth, real_a, real_b]
    assert [sampler_for(s, samplers, 2) for s in range(8)] == [
        synth, synth, real_a, real_b, synth, synth, real_a, real_b]
    assert [sampler_for(s, samplers[:2]) for s in range(4)] == [synth, real_a, synth, real_a]
    with pytest.raises(InvalidParameterError, match="synth_steps"):
        TrainOptions(synth_steps=0)

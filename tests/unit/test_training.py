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
    assert _train_action("data").choices == ("synth", "stac", "mixed")
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

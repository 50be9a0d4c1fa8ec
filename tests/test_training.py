"""Training: a tiny GAN run writes a checkpoint, a loss curve and weights, and resumes exactly."""

import torch

from cloudfree.models import load_generator
from cloudfree.training import TrainConfig, main, train
from cloudfree.training.data import SeriesSampler

torch.set_num_threads(2)

TINY = dict(batch=2, size=32, frames=4, base_channels=4, depth=1, heads=2,
            n_landscapes=1, world_px=48, checkpoint_every=2)


def test_sampler_is_deterministic_per_step():
    sampler = SeriesSampler(size=32, frames=4, n_landscapes=1, world_px=48, mask_pool=4)
    a, b = sampler.batch(5, 2), sampler.batch(5, 2)
    assert all((a[k] == b[k]).all() for k in a)
    assert not (sampler.batch(6, 2)["truth"] == a["truth"]).all()
    assert 0 < a["clear"].mean() < 1


def test_resume_equals_uninterrupted(tmp_path):
    full = train(TrainConfig(steps=4, **TINY), tmp_path / "full", log=lambda *_: None)
    train(TrainConfig(steps=2, **TINY), tmp_path / "part", log=lambda *_: None)
    resumed = train(TrainConfig(steps=4, **TINY), tmp_path / "part",
                    resume=tmp_path / "part" / "checkpoint.pt", log=lambda *_: None)
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


def test_cli_main(tmp_path, capsys):
    rc = main(["--steps", "1", "--batch", "1", "--size", "32", "--frames", "3",
               "--base-channels", "4", "--depth", "1", "--out", str(tmp_path), "--device", "cpu",
               "--w-cycle", "0.5"])
    assert rc == 0
    assert (tmp_path / "default.pt").exists() and (tmp_path / "default.json").exists()
    assert '"step": 1' in capsys.readouterr().out


def test_prefect_flow_matches_deployment_entrypoint():
    from pathlib import Path

    import yaml
    from prefect import Flow

    from flows import train as train_flow

    spec = yaml.safe_load(Path("flows/prefect.yaml").read_text())
    entry = {d["name"]: d["entrypoint"] for d in spec["deployments"]}["train"]
    assert entry == "flows/train.py:train"
    assert isinstance(train_flow.train, Flow) and train_flow.train_task.retries == 0

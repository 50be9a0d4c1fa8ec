"""The generator, discriminator and weights registry (tiny models, CPU)."""

import json

import numpy as np
import pytest
import torch

from cloudfree.models import (
    PatchDiscriminator,
    canonical_band,
    load_generator,
    prepare_inputs,
    restore_outputs,
    save_generator,
)
from cloudfree.models.generator import temporal_prior
from cloudfree.models.weights import MODEL_BANDS, WEIGHTS_DIR
from cloudfree.testing import model_card, tiny_generator

torch.set_num_threads(2)


def tiny(bands=MODEL_BANDS, seed=0):
    # the head starts at zero; give it weights so outputs vary
    return tiny_generator(bands, seed=seed, head_std=0.5)


def inputs(b=1, t=4, c=14, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    clear = (torch.rand(b, t, size, size, generator=g) > 0.4).float()
    values = torch.randn(b, t, c, size, size, generator=g) * clear[:, :, None]
    doy = torch.tensor([[10.0, 40.0, 100.0, 350.0][:t]] * b)
    present = torch.ones(b, c)
    present[:, min(3, c - 1)] = 0
    return values, clear, doy, present


def test_observed_pixels_pass_through_exactly():
    model = tiny()
    values, clear, doy, present = inputs()
    values = values * present[:, None, :, None, None]
    out = model(values, clear, doy, present)
    keep = clear[:, :, None].expand_as(out).bool()
    assert torch.equal(out[keep], values[keep])
    assert out[:, :, 3].abs().max() == 0  # absent band stays 0
    gaps = ~keep & present[:, None, :, None, None].expand_as(out).bool()
    assert (out[gaps] != values[gaps]).float().mean() > 0.5  # gaps are generated


def test_temporal_prior_is_linear_interpolation():
    values = torch.zeros(1, 3, 1, 2, 2)
    values[0, 0], values[0, 2] = 1.0, 3.0
    clear = torch.ones(1, 3, 2, 2)
    clear[0, 1] = 0
    doy = torch.tensor([[360.0, 5.0, 15.0]])  # wraps over the new year: days 0, 10.25, 20.25
    prior = temporal_prior(values, clear, doy)
    expected = 1.0 + 2.0 * 10.25 / 20.25
    assert torch.allclose(prior[0, 1], torch.full((1, 2, 2), expected))
    assert torch.allclose(prior[0, 0], torch.full((1, 2, 2), 3.0))  # only one side: nearest


def test_chunked_output_matches_within_receptive_radius():
    model = tiny()
    values, clear, doy, present = inputs(size=48, seed=1)
    full = model(values, clear, doy, present)
    r = model.receptive_radius_px
    assert model.downsample_factor == 2
    lo, hi = 2, 48  # a chunk starting at an even offset; compare away from its cut edge
    part = model(values[..., lo:hi, lo:hi], clear[..., lo:hi, lo:hi], doy, present)
    inner = slice(r, None)
    assert torch.allclose(part[..., inner, inner], full[..., lo:hi, lo:hi][..., inner, inner],
                          atol=1e-5)


@pytest.mark.parametrize("absent", [[], [0, 3, 4, 5, 6, 8, 9, 13]])
def test_target_only_forward_equals_the_full_forward(absent):
    """forward_target: the encoder on every frame, the query and decoder on one frame only,
    is the full forward's frame (same weights) up to float rounding, observed pixels exact."""
    model = tiny()
    values, clear, doy, present = inputs(b=2, t=4, size=24, seed=2)
    present[:, absent] = 0
    values = values * present[:, None, :, None, None]
    clear[:, 1] = 0  # a hidden frame, as the mosaic predicts it
    with torch.inference_mode():
        full = model(values, clear, doy, present)
        for target in range(4):
            one = model.forward_target(values, clear, doy, present, target)
            assert one.shape == (2, 14, 24, 24)
            assert torch.allclose(one, full[:, target], atol=1e-5, rtol=0)
            keep = clear[:, target, None].expand_as(one).bool()
            assert torch.equal(one[keep], values[:, target][keep])
    with pytest.raises(IndexError):
        model.forward_target(values, clear, doy, present, 4)


def test_absent_bands_skipped_in_the_first_convolution_change_nothing():
    """A batch whose items present different bands runs every channel; an item alone
    skips its absent bands' (all-zero) input channels: the same output."""
    model = tiny()
    values, clear, doy, present = inputs(b=2, t=3, size=16, seed=3)
    present[1, [0, 2, 5, 6, 7, 9, 10, 11]] = 0
    values = values * present[:, None, :, None, None]
    with torch.inference_mode():
        batch = model(values, clear, doy, present)  # item 0 has every band: nothing skipped
        alone = model(values[1:], clear[1:], doy[1:], present[1:])
    assert torch.allclose(batch[1:], alone, atol=1e-5, rtol=0)


def test_discriminator_patch_logits():
    disc = PatchDiscriminator(n_bands=3, base_channels=4)
    frame = torch.randn(2, 3, 32, 32)
    logits = disc(frame, frame, torch.ones(2, 1, 32, 32), torch.ones(2, 3))
    assert logits.shape == (2, 1, 4, 4)


def test_band_names_and_round_trip():
    assert canonical_band("nir08") == "B8A" and canonical_band("swir16") == "B11"
    assert canonical_band("B8A") == "B8A" and canonical_band("NDVI01") == "ndvi"
    card = model_card("t")
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 0.5, (3, 2, 8, 8)).astype(np.float32)
    values[1, :, 2, 2] = np.nan
    batch = prepare_inputs(values, np.array([16000.0, 16010.0, 16020.0]), ["red", "nir08"], card)
    assert batch["values"].shape == (1, 3, 14, 8, 8)
    assert batch["band_present"][0].tolist() == [float(b in ("B04", "B8A")) for b in MODEL_BANDS]
    assert batch["clear"][0, 1, 2, 2] == 0 and batch["clear"].sum() == 3 * 64 - 1
    back = restore_outputs(batch["values"], ["red", "nir08"], card)
    ok = np.isfinite(values)
    assert np.allclose(back[ok], values[ok], atol=1e-6)


def test_save_and_load_weights_only(tmp_path):
    model = tiny(seed=3)
    card = model_card("tiny", "9.9", architecture={"base_channels": 4, "depth": 1, "heads": 2})
    save_generator(model, card, tmp_path)
    torch.load(tmp_path / "tiny.pt", weights_only=True)  # plain tensors only
    loaded, card2 = load_generator("tiny", directory=tmp_path)
    assert card2 == card and not loaded.training
    values, clear, doy, present = inputs()
    assert torch.allclose(loaded(values, clear, doy, present), model(values, clear, doy, present),
                          atol=2e-2)  # weights are stored in half precision


@pytest.mark.skipif(not (WEIGHTS_DIR / "default.pt").exists(), reason="no shipped weights")
def test_shipped_weights_small_and_loadable():
    assert (WEIGHTS_DIR / "default.pt").stat().st_size <= 20 * 2 ** 20
    model, card = load_generator()
    assert card.bands == MODEL_BANDS and card.version
    assert json.loads((WEIGHTS_DIR / "default.json").read_text())["name"] == "default"
    values, clear, doy, present = (x for x in inputs(t=3, size=16))
    out = model(values, clear, doy[:, :3], present)
    assert torch.isfinite(out).all()


def test_receptive_radius_holds_for_depth_two():
    model = tiny_generator(("B02", "B03"), seed=1, depth=2, head_std=0.5)
    values, clear, doy, present = inputs(c=2, size=96, seed=2)
    present[:] = 1
    r, lo = model.receptive_radius_px, model.downsample_factor * 2
    assert r < 48 - lo
    with torch.no_grad():
        full = model(values, clear, doy, present)
        part = model(values[..., lo:, lo:], clear[..., lo:, lo:], doy, present)
    assert torch.allclose(part[..., r:, r:], full[..., lo:, lo:][..., r:, r:], atol=1e-5)

"""The ``network`` method: the generator network alone, its residual scaled by self-validation."""

import numpy as np
import pytest
import torch

from cloudfree.methods import evaluation_function, list_methods
from cloudfree.methods.interpolate import interpolate_at
from cloudfree.methods.network import fit_alpha, network_frame
from cloudfree.models.generator import Generator
from cloudfree.models.weights import MODEL_BANDS, ModelCard, default_normalisation

BANDS = ("B04", "B08", "B11")


def _series(n_dates=10, size=32, seed=0):
    """Smooth fields with a seasonal swing; a cloud blob on every other date, and a
    hidden square on the target (frame 4) where a method must fill."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([0.1 + 0.2 * np.sin(3 * xx + k) * np.cos(2 * yy) ** 2 for k in range(3)])
    days = 19000.0 + 8 * np.arange(n_dates)
    series = np.stack([base * (1 + 0.1 * np.sin(t / 3)) for t in range(n_dates)]).astype(np.float32)
    series += rng.normal(0, 0.002, series.shape).astype(np.float32)
    truth = series[4].copy()
    cloudy = (yy - 0.3) ** 2 + (xx - 0.6) ** 2 < 0.05
    series[1::2][:, :, cloudy] = np.nan
    hidden = (yy > 0.5) & (xx < 0.5)
    series[4][:, hidden] = np.nan
    return series, days, truth, hidden


def _noisy_model():
    """A network whose residual is noise: what the method must learn to ignore."""
    torch.manual_seed(0)
    model = Generator(bands=MODEL_BANDS, base_channels=4, depth=1, heads=2)
    torch.nn.init.normal_(model.head.weight, std=2.0)
    card = ModelCard(name="noise", version="0", bands=MODEL_BANDS,
                     normalisation=default_normalisation(), training_data="none")
    return model.eval(), card


def test_fit_alpha_is_the_clipped_least_squares_scale():
    rng = np.random.default_rng(1)
    residual = rng.normal(size=(3, 20, 20))
    held = np.zeros((20, 20), bool)
    held[:10] = True
    error = np.stack([0.5 * residual[0], -residual[1], 3 * residual[2], rng.normal(size=(20, 20))])
    error[0] += rng.normal(0, 0.01, (20, 20))
    residual = np.concatenate([residual, rng.normal(size=(1, 20, 20))])
    alpha = fit_alpha(residual, error, held)
    assert alpha[0] == pytest.approx(0.5, abs=0.02)
    assert alpha[1] == 0.0 and alpha[2] == 1.0  # clipped to [0, 1]
    assert alpha[3] == 0.0  # an unrelated residual gains by chance only: not used
    few = np.zeros_like(held)
    few[0, :5] = True
    assert (fit_alpha(residual, error, few) == 0).all()  # too few pixels: the prior stands


def test_observed_pixels_pass_through_and_gaps_are_filled():
    model, card = _noisy_model()
    series, days, _, hidden = _series()
    filled, alpha = network_frame(model, card, series, days, 4, BANDS)
    visible = np.isfinite(series[4]).all(axis=0)
    assert np.array_equal(filled[:, visible], series[4][:, visible])  # bit-exact
    assert np.isfinite(filled[:, hidden]).all()
    assert ((alpha >= 0) & (alpha <= 1)).all()


def test_a_useless_network_falls_back_to_its_prior():
    model, card = _noisy_model()
    series, days, truth, hidden = _series()
    filled, alpha = network_frame(model, card, series, days, 4, BANDS)
    usable = np.isfinite(series).all(axis=1)
    prior = interpolate_at(series, usable, days, float(days[4]))
    err_network = np.mean((filled[:, hidden] - truth[:, hidden]) ** 2)
    err_prior = np.mean((prior[:, hidden] - truth[:, hidden]) ** 2)
    assert alpha.max() < 0.1
    assert err_network <= 1.02 * err_prior


def test_network_is_an_evaluation_method():
    assert "network" in list_methods("evaluation") and "network" not in list_methods("mosaic")
    series, days, truth, hidden = _series()
    out = evaluation_function("network")(series, days, 4, band_names=BANDS)
    assert out.shape == truth.shape and np.isfinite(out).all()

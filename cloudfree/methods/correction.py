"""Residual correction: fit a gap-filler's prediction to the target date's own visible pixels.

A temporal gap-filler (linear interpolation between clear dates, or the generator) predicts a
frame from the *other* dates. Where the target frame itself is visible, the difference
``observed - predicted`` is known; it is mostly a smooth per-date bias (haze, illumination,
phenology that moved on since the neighbouring dates) and it carries into the gaps. The
correction spreads that residual into the gaps by normalised Gaussian convolution (a
weighted average of the visible residual, weights a Gaussian of the distance):

    filled = predicted + G_sigma * (visible * residual) / G_sigma * visible

The width ``sigma`` is chosen per call by self-validation on the visible pixels only: the
series' own cloud masks (else random discs) are pasted onto visible pixels, the residual is
spread from the rest, and the width that best predicts the pasted pixels wins. No hidden
pixel takes part, so this is a method like any other (it uses only what it is given).

Everything here is plain numpy/scipy (no torch). :mod:`cloudfree.methods.corrected` runs it
on whole frames and on dask cubes for ``interpolate_corrected`` and the
generator's evaluation method (:mod:`cloudfree.methods._generator_eval`) uses the same functions on
the network's prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Widths of the residual spreading tried by self-validation (pixels).
SIGMAS_PX: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0)
#: The Gaussian kernel is cut at ``TRUNCATE * sigma`` (scipy's default), which is also the
#: halo a chunked run needs to be exact.
TRUNCATE = 4.0
#: Fewer visible pixels than this in a held-out mask (or in the frame) and it is skipped.
MIN_PIXELS = 20


def kernel_radius(sigma: float) -> int:
    """The reach in pixels of :func:`spread` at ``sigma`` (scipy's kernel radius)."""
    return int(TRUNCATE * float(sigma) + 0.5)


def _kernel(sigma: float) -> np.ndarray:
    """scipy's truncated, normalised 1-D Gaussian (``gaussian_filter1d``'s weights)."""
    radius = kernel_radius(sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x * x)
    kernel: np.ndarray = phi / phi.sum()
    return kernel


class _GaussianBank:
    """``gaussian_filter(x, sigma, mode="reflect", truncate=TRUNCATE)`` of (H, W) images at
    several sigmas, by FFT: each image is reflect-padded by the widest kernel's radius
    (what scipy's ``reflect`` mode reads beyond the edge), transformed once, multiplied by
    each sigma's separable kernel spectrum and transformed back.

    The kernels are scipy's own truncated ones (:func:`_kernel`), so the reach stays
    :func:`kernel_radius` and the results equal scipy's up to float64 rounding (about
    1e-16 of the stack's largest value; the direct filter costs ``4 sigma`` multiply-adds
    per pixel and axis, this a few FFTs per image whatever the sigmas). The padded length
    exceeds the image by twice the radius, so the circular convolution never wraps where
    an output is wanted."""

    def __init__(self, shape: tuple[int, int], sigmas: Sequence[float]) -> None:
        self.shape = shape
        self.sigmas = tuple(float(s) for s in sigmas)
        self.pad = max(kernel_radius(s) for s in sigmas)
        self._spectra: dict[tuple[int, ...], list[np.ndarray]] = {}

    def _kernels(self, size: tuple[int, ...]) -> list[np.ndarray]:
        """Each sigma's kernel spectrum for an FFT of ``size`` (cached)."""
        if size in self._spectra:
            return self._spectra[size]
        from scipy import fft

        spectra = []
        for sigma in self.sigmas:
            kernel = _kernel(sigma)
            radius = (len(kernel) - 1) // 2
            per_axis = []
            for axis, n in enumerate(size):
                circular = np.zeros(n)
                circular[:radius + 1] = kernel[radius:]  # centred at index 0, wrapped
                if radius:
                    circular[-radius:] = kernel[:radius]
                per_axis.append(fft.fft(circular) if axis == 0 else fft.rfft(circular))
            spectra.append(per_axis[0][:, None] * per_axis[1][None, :])
        self._spectra[size] = spectra
        return spectra

    def filtered(self, image: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """A (H, W) image filtered at every sigma: (len(sigmas), H, W) float64, or at the
        pixels ``where`` (H, W) only: (len(sigmas), n). One image at a time, so that the
        transient memory is a few padded copies of one image, not of a stack.

        With ``where``, only what its pixels need is computed: a side of the image is
        padded only when a pixel of ``where`` lies within the radius of it (a chunk's core
        lies a halo of at least the radius inside its neighbours' sides, and the circular
        convolution's wrap then stays in the halo), and the inverse transform's second
        pass (along rows) runs only for the rows that hold one. Measured on a 640 px chunk
        with a halo on two sides: 40 ms a filtering, against 106 ms for the whole image."""
        from scipy import fft

        pad, (h, w) = self.pad, self.shape
        if where is None:
            pads, rows = ((pad, pad), (pad, pad)), np.arange(h)
        else:
            rows = np.flatnonzero(np.any(where, axis=1))
            cols = np.flatnonzero(np.any(where, axis=0))
            if not rows.size:
                return np.empty((len(self.sigmas), 0))
            pads = ((pad if rows[0] < pad else 0, pad if rows[-1] >= h - pad else 0),
                    (pad if cols[0] < pad else 0, pad if cols[-1] >= w - pad else 0))
        padded = np.pad(np.asarray(image, np.float64), pads, mode="symmetric")  # = reflect
        size = tuple(fft.next_fast_len(n, real=True) for n in padded.shape)
        spectrum = fft.rfft2(padded, s=size)
        del padded
        (top, _), (left, _) = pads
        kernels = self._kernels(size)
        if where is None:
            out = np.empty((len(kernels), h, w))
            for i, kernel in enumerate(kernels):
                out[i] = fft.irfft2(spectrum * kernel, s=size)[top:top + h, left:left + w]
            return out
        out = np.empty((len(kernels), int(np.count_nonzero(where))))
        for i, kernel in enumerate(kernels):
            columns = fft.ifft(spectrum * kernel, axis=0)[top + rows]
            out[i] = fft.irfft(columns, n=size[1], axis=1)[:, left:left + w][where[rows]]
        return out


def _spread_at(residual: np.ndarray, visible: np.ndarray, bank: _GaussianBank,
               where: np.ndarray | None) -> np.ndarray:
    """(len(sigmas), C, ...) spread residual at every sigma of ``bank``, at ``where``."""
    weight = bank.filtered(visible, where)
    valid = weight > 1e-8
    weight = np.maximum(weight, 1e-8)
    out = np.empty((weight.shape[0], residual.shape[0], *weight.shape[1:]))
    for c, channel in enumerate(residual):
        out[:, c] = np.where(valid, bank.filtered(np.where(visible, channel, 0.0), where)
                             / weight, 0.0)
    return out


def spread(residual: np.ndarray, visible: np.ndarray, sigma: float,
           where: np.ndarray | None = None) -> np.ndarray:
    """Normalised Gaussian convolution of a (C, H, W) residual known where ``visible``:
    (C, H, W), or (C, n) at the pixels ``where`` (H, W) only.

    Pixels farther than :func:`kernel_radius` from every visible pixel get 0 (no
    correction), not an extrapolation from nothing. Computed by FFT
    (:class:`_GaussianBank`): scipy's ``gaussian_filter`` (reflect mode, truncated at
    :data:`TRUNCATE` sigma) up to float64 rounding."""
    spread_residual: np.ndarray = _spread_at(residual, visible,
                                             _GaussianBank(visible.shape, [sigma]), where)[0]
    return spread_residual


def held_out_errors(residual: np.ndarray, visible: np.ndarray, held: np.ndarray,
                    sigmas: Sequence[float] = SIGMAS_PX, *, scored: np.ndarray | None = None
                    ) -> np.ndarray:
    """(len(sigmas), C) summed squared error, per sigma and channel, of spreading a (C, H, W)
    ``residual`` from the ``visible`` pixels not ``held`` onto the ``held`` ones.

    ``scored`` (H, W) limits the pixels summed: a chunk scores only its core, so that sums
    over chunks add up to the whole image's (the halo only gives context). Each masked
    channel is transformed once for all sigmas (:class:`_GaussianBank`), and the spread
    is kept only at the summed pixels."""
    keep = visible & ~held
    summed = held if scored is None else held & scored
    if not summed.any():
        return np.zeros((len(sigmas), residual.shape[0]))
    spread_held = _spread_at(residual, keep, _GaussianBank(visible.shape, sigmas), summed)
    errors: np.ndarray = ((spread_held - residual[:, summed][None]) ** 2).sum(axis=2)
    return errors




def held_out_plan(cloud_fraction: np.ndarray, target: int, rng: np.random.Generator,
                  count: int, shape: tuple[int, int]
                  ) -> tuple[list[int], list[tuple[int, int, float]]]:
    """Which held-out masks the self-validation uses, decided from per-frame cloud
    fractions alone: ``(frames whose cloud mask is used, discs (cy, cx, radius) in pixels
    of an image of ``shape``)``, ``count`` in all.

    Apart from the masks themselves, so that a chunked run decides once for the whole
    image (from fractions summed over chunks) and every chunk draws the same masks."""
    fraction = np.asarray(cloud_fraction)
    pool = [int(i) for i in np.flatnonzero((fraction > 0.05) & (fraction < 0.8))
            if i != target]
    frames = [pool[i] for i in rng.permutation(len(pool))[:count]]
    h, w = shape
    discs: list[tuple[int, int, float]] = []
    while len(frames) + len(discs) < count:
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        radius = rng.uniform(0.1, 0.3) * min(h, w)
        discs.append((int(cy), int(cx), float(radius)))
    return frames, discs


def disc_mask(rows: np.ndarray, cols: np.ndarray, disc: tuple[int, int, float]) -> np.ndarray:
    """The (len(rows), len(cols)) part of a held-out disc ``(cy, cx, radius)`` at these
    global pixel rows and columns (a chunk passes its own)."""
    cy, cx, radius = disc
    inside: np.ndarray = (rows[:, None] - cy) ** 2 + (cols[None, :] - cx) ** 2 <= radius ** 2
    return inside




#: The self-validation keeps the default pair (the first candidate at the widest sigma)
#: unless another one predicts the held-out pixels with at least this share less squared
#: error. Near-ties are common (the errors of two widths often differ by 1-2 %), and an
#: argmin would break them by noise, differently in two adjacent tiles that see nearly the
#: same pixels: a seam at their edge. Within the margin the default wins everywhere, and a
#: tile leaves it only when its pixels clearly ask for it (at worst a 5 % larger squared
#: error than the best pair, about 2.5 % in RMSE).
CHOICE_MARGIN = 0.05


def best_pair(errors: np.ndarray, sigmas: Sequence[float] = SIGMAS_PX) -> tuple[int, float]:
    """``(candidate index, sigma)`` as the self-validation picks from a (candidates, sigmas)
    table of held-out squared errors, each choice with the margin :data:`CHOICE_MARGIN`:

    - *the width of each candidate*: its widest sigma, unless another of its sigmas has at
      least that share less error (then the least);
    - *the candidate*: the first one with any error, unless another has (at its width) at
      least that share less error than it (then the one with the least).

    So a candidate's width is the one it would get alone (a tile whose second candidate
    wins corrects it exactly as a method with that candidate alone would), and near-ties
    keep the defaults. A candidate whose errors are all 0 (no usable held-out mask) never
    wins; with none usable: the first candidate, the widest sigma."""
    table = np.asarray(errors, np.float64)
    usable = [index for index, row in enumerate(table) if row.any()]
    if not usable:
        return 0, float(sigmas[-1])
    widths = {index: _margin_choice(table[index]) for index in usable}
    first = usable[0]
    best = min(usable, key=lambda index: table[index, widths[index]])
    if table[best, widths[best]] < (1.0 - CHOICE_MARGIN) * table[first, widths[first]]:
        return best, float(sigmas[widths[best]])
    return first, float(sigmas[widths[first]])


def _margin_choice(errors: np.ndarray) -> int:
    """The index of the last (widest) entry of ``errors``, unless the least has at least
    :data:`CHOICE_MARGIN` less; then the least's."""
    least = int(np.argmin(errors))
    return least if errors[least] < (1.0 - CHOICE_MARGIN) * errors[-1] else len(errors) - 1


def correct(predicted: np.ndarray, observed: np.ndarray, visible: np.ndarray,
            sigma: float) -> np.ndarray:
    """``predicted`` plus the spread residual; visible pixels come out as observed."""
    residual = np.where(visible, observed - predicted, 0.0)
    filled = predicted + spread(residual, visible, sigma)
    return np.where(visible[None], observed, filled)






def fill_with_series_median(reconstruction: np.ndarray, series: np.ndarray) -> np.ndarray:
    """NaN pixels of a (C, H, W) reconstruction -> the per-band median of every usable
    value of the (T, C, H, W) series (every date and pixel), else 0."""
    gaps = np.isnan(reconstruction)
    if not gaps.any():
        return reconstruction
    usable = np.isfinite(series).all(axis=1)  # (T, H, W)
    per_band = np.zeros(series.shape[1], np.float32)
    for band in range(series.shape[1]):
        values = series[:, band][usable]
        if values.size:
            per_band[band] = np.median(values)
    return np.where(gaps, per_band[:, None, None], reconstruction)

__all__ = ["CHOICE_MARGIN", "MIN_PIXELS", "SIGMAS_PX", "TRUNCATE", "best_pair", "correct", "disc_mask",
           "fill_with_series_median", "held_out_errors", "held_out_plan", "kernel_radius",
           "spread"]

"""Evaluation: hide real cloud masks on clear frames, reconstruct them, score the hidden pixels.

The protocol (DESIGN.md, "Evaluation protocol"), as implemented here:

**Case.** An ``.npz`` with ``bands`` (T, C, H, W) float reflectance 0..1, ``band_names``
(C,), ``dates`` (T,) ISO strings, ``cloud_mask`` (T, H, W) bool (real clouds and shadows)
and optionally ``paste_masks`` (K, H, W) bool, ``scl`` (T, H, W) Sen2Cor classes,
``shadow_mask`` (T, H, W) bool (the shadows among ``cloud_mask``), ``crs`` and
``transform`` (6 floats, rasterio order). Any band set works (13-band L1C, RGB, 1-band
NDVI). Non-finite values in ``bands`` count as cloud.

**Targets.** Every frame whose cloud fraction (``cloud_mask`` or non-finite) is below 1 %.

**Pasted masks.** The pool is the case's ``paste_masks`` when it has them, else the
``cloud_mask`` of its frames with a cloud fraction between 5 % and 80 % (partial clouds:
an overcast frame hides everything and says nothing about edges). For every target, in
date order, ``pastes_per_target`` distinct masks (default 3, fewer when the pool is
smaller) are drawn from the pool with ``numpy.random.default_rng(seed)``, a fresh
generator per case, so a case's draws do not depend on the other cases in the run. Each
paste is one sample. The hidden pixels of a sample are the pasted mask minus the target's
own cloud (whose truth is not clear).

**What a method sees.** The whole series with NaN wherever ``cloud_mask`` is set, and on
the target frame also NaN on the hidden pixels; the target's other pixels are observed
and visible. A method therefore never sees hidden truth. It gets a fresh copy per call.

**What a method returns.** The (C, H, W) reconstruction of the target frame, finite on
every hidden pixel: a NaN there raises :class:`MethodOutputError` (a method with no
observation must decide what to put there). Or a
:class:`~cloudfree.methods._provenance.Reconstruction`: that array with the half-width
(C, H, W) of its 90 % interval, ``values ± half_width`` (None: no interval; a negative
half-width raises :class:`MethodOutputError`, a NaN one holds nothing). The methods are the registry's
(:mod:`cloudfree.methods`), each called through the same numpy core the mosaics run; the
baselines (:data:`BASELINES`) fall back, where they find no clear observation, to the
per-band median of all usable values of the series (every date and pixel), else 0. A
method that accepts a ``band_names`` keyword also gets the case's band names. The learned
methods are imported only when named.

**With a detector's mask** (``mask=NAME``, a detector of :mod:`cloudfree.detection` or
``auto``, or a callable ``DetectionInput -> Detection``). Targets, pasted masks, hidden
pixels and truth stay as the case defines them (from its ``cloud_mask``); only what the
methods see changes: NaN where the detector flags (cloud, shadow or no data), computed
from the case's raw bands (and its ``scl``), instead of the case's ``cloud_mask``. The
detector runs **per sample** (:func:`cloudfree.evaluation.masks.sample_invalid_masks`),
on the series as the method sees it on the target frame: the target's hidden pixels set
to NaN (and their SCL to no data) first, so hidden truth never reaches it. A detector
whose result on a date depends on that date alone
(:attr:`~cloudfree.detection.DetectorSpec.per_date`: scl, s2cloudless, omnicloudmask)
runs once on the whole series and again on the target frame of each sample, which gives
the same masks; the others (multitemporal) run on the whole series of each sample.
``mask_per="target"`` runs them once per target frame instead, with the union of its
samples' hidden pixels set to NaN: fewer runs, a little less data. Per sample is the
default: on ``l2a_31UDS_118`` (75 samples, 25 targets) with ``multitemporal``, median and
interpolate, it took 125 s against 38 s per target on a shared 2-core machine, and the
scores differed by at most 0.01 dB. Sun angles come from the case's ``crs``/``transform``
and dates, the resolution from its ``transform`` (else 10 m). A detector that cannot run
on a case raises :class:`~cloudfree.errors.MissingDetectorInputError`. Records carry
``mask``: the resolved detector, or ``case``.

**Metrics.** The scored frame is the target with the method's values pasted into the
hidden pixels (the observed pixels stay as observed, as a gap filler would leave them).
On the hidden pixels of all samples of a case pooled together: PSNR (data range 1) and
RMSE from the pooled squared error, MAE, SAM (degrees, over bands; undefined for one
band), and SSIM: the Gaussian SSIM map of each whole frame, averaged over the hidden
pixels (and bands). For a method that states an interval, ``coverage_90``: the share of
hidden pixel-band values inside it (calibrated: near 0.9), and ``interval_width``: its
mean half-width (reflectance). Undefined values, and both of these for a method without
an interval, are ``None`` in the records and JSON.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudfree.detection import esa_band_name
from cloudfree.errors import (
    InvalidCaseError,
    InvalidParameterError,
    MethodOutputError,
)
from cloudfree.evaluation import metrics
from cloudfree.methods import MethodFn, days_since_epoch, evaluation_function, list_methods
from cloudfree.methods._provenance import Reconstruction

if TYPE_CHECKING:
    from cloudfree.evaluation.masks import DetectorFn, MaskPer

MAX_TARGET_CLOUD = 0.01
PASTE_CLOUD_RANGE = (0.05, 0.80)
DEFAULT_PASTES = 3
RECORD_KEYS = ("case", "method", "mask", "psnr", "ssim", "mae", "rmse", "sam", "coverage_90",
               "interval_width", "n_targets", "hidden_px", "seconds")
#: ``mask`` of the records made with the case's own ``cloud_mask``.
CASE_MASK = "case"
DEFAULT_RESOLUTION_M = 10.0

@dataclass
class Case:
    """One evaluation case (see the module docstring)."""

    bands: np.ndarray  # (T, C, H, W) float32
    band_names: tuple[str, ...]
    dates: tuple[str, ...]  # ISO
    cloud_mask: np.ndarray  # (T, H, W) bool; non-finite band values included
    paste_masks: np.ndarray | None  # (K, H, W) bool
    name: str
    scl: np.ndarray | None = None  # (T, H, W) uint8 Sen2Cor classes
    shadow_mask: np.ndarray | None = None  # (T, H, W) bool
    crs: str | None = None
    transform: tuple[float, ...] | None = None  # affine, rasterio order

    @property
    def days(self) -> np.ndarray:
        """(T,) float days since 1970-01-01."""
        return days_since_epoch(np.asarray(self.dates))

    @property
    def level(self) -> str | None:
        """``L2A`` with an SCL band, ``L1C`` with B10 (cirrus, absent from L2A), else None."""
        if self.scl is not None:
            return "L2A"
        if "B10" in {esa_band_name(b) for b in self.band_names}:
            return "L1C"
        return None

    @property
    def resolution_m(self) -> float:
        """The pixel size from the transform, else :data:`DEFAULT_RESOLUTION_M`."""
        if self.transform is not None and self.transform[0]:
            return abs(float(self.transform[0]))
        return DEFAULT_RESOLUTION_M


def load_case(path: str | Path) -> Case:
    """Read and check an evaluation case; raises :class:`InvalidCaseError`."""
    path = Path(path)
    if not path.is_file():
        raise InvalidCaseError(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # numpy raises many kinds for a bad archive
        raise InvalidCaseError(path, f"cannot be read as .npz ({exc})") from exc
    missing = [k for k in ("bands", "band_names", "dates", "cloud_mask") if k not in arrays]
    if missing:
        raise InvalidCaseError(path, f"missing array(s) {', '.join(missing)}")
    bands = arrays["bands"]
    if bands.ndim != 4 or not np.issubdtype(bands.dtype, np.number):
        raise InvalidCaseError(path, f"bands has shape {bands.shape} and dtype {bands.dtype}, "
                                     "expected a numeric (T, C, H, W) array")
    n_dates, n_bands, height, width = bands.shape
    band_names = tuple(str(b) for b in np.atleast_1d(arrays["band_names"]))
    if len(band_names) != n_bands:
        raise InvalidCaseError(path, f"band_names has {len(band_names)} names for {n_bands} bands")
    dates = tuple(str(d) for d in np.atleast_1d(arrays["dates"]))
    if len(dates) != n_dates:
        raise InvalidCaseError(path, f"dates has {len(dates)} entries for {n_dates} frames")
    try:
        days_since_epoch(np.asarray(dates))
    except ValueError as exc:
        raise InvalidCaseError(path, f"dates are not ISO dates ({exc})") from exc
    masks = {}
    for key, lead in (("cloud_mask", n_dates), ("paste_masks", None), ("shadow_mask", n_dates)):
        if key not in arrays:
            continue
        mask = arrays[key]
        if mask.ndim != 3 or mask.shape[1:] != (height, width) or (
                lead is not None and mask.shape[0] != lead):
            want = f"({lead if lead is not None else 'K'}, {height}, {width})"
            raise InvalidCaseError(path, f"{key} has shape {mask.shape}, expected {want}")
        if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
            raise InvalidCaseError(path, f"{key} must be boolean (0/1)")
        masks[key] = mask.astype(bool)
    scl = None
    if "scl" in arrays:
        scl = arrays["scl"]
        if scl.shape != (n_dates, height, width) or not np.issubdtype(scl.dtype, np.integer):
            raise InvalidCaseError(path, f"scl has shape {scl.shape} and dtype {scl.dtype}, "
                                         f"expected integer ({n_dates}, {height}, {width})")
        scl = scl.astype(np.uint8)
    crs = str(arrays["crs"]) if "crs" in arrays else None
    transform = None
    if "transform" in arrays:
        values = np.asarray(arrays["transform"], dtype=np.float64).ravel()
        if values.size < 6 or not np.isfinite(values[:6]).all():
            raise InvalidCaseError(path, f"transform has {values.size} values, expected 6 "
                                         "finite affine coefficients (rasterio order)")
        transform = tuple(float(v) for v in values[:6])
    bands = bands.astype(np.float32)
    cloud = masks["cloud_mask"] | ~np.isfinite(bands).all(axis=1)
    return Case(bands=bands, band_names=band_names, dates=dates, cloud_mask=cloud,
                paste_masks=masks.get("paste_masks"), name=path.stem, scl=scl,
                shadow_mask=masks.get("shadow_mask"), crs=crs, transform=transform)


def target_frames(case: Case) -> np.ndarray:
    """Indices of the frames under :data:`MAX_TARGET_CLOUD` cloud."""
    return np.flatnonzero(case.cloud_mask.mean(axis=(1, 2)) < MAX_TARGET_CLOUD)


def paste_pool(case: Case) -> np.ndarray:
    """The masks pasted onto targets: ``paste_masks``, else the case's partial clouds."""
    if case.paste_masks is not None and len(case.paste_masks):
        return case.paste_masks
    fraction = case.cloud_mask.mean(axis=(1, 2))
    lo, hi = PASTE_CLOUD_RANGE
    pool: np.ndarray = case.cloud_mask[(fraction >= lo) & (fraction <= hi)]
    return pool


def draw_samples(case: Case, *, seed: int, pastes_per_target: int = DEFAULT_PASTES
                 ) -> list[tuple[int, np.ndarray]]:
    """The (target index, hidden mask) samples of a case, deterministic in ``seed``."""
    targets, pool = target_frames(case), paste_pool(case)
    if not targets.size:
        raise InvalidCaseError(case.name, f"no frame has under {MAX_TARGET_CLOUD:.0%} cloud")
    if not len(pool):
        lo, hi = PASTE_CLOUD_RANGE
        raise InvalidCaseError(case.name, "no masks to paste: no paste_masks and no frame "
                                          f"with {lo:.0%}..{hi:.0%} cloud")
    rng = np.random.default_rng(seed)
    samples = []
    for target in targets:
        picks = rng.choice(len(pool), size=min(pastes_per_target, len(pool)), replace=False)
        for pick in picks:
            samples.append((int(target), pool[pick] & ~case.cloud_mask[target]))
    return samples


#: The non-learned methods of the registry, and every method the evaluation knows.
BASELINES: dict[str, MethodFn] = {name: evaluation_function(name)
                                  for name in list_methods("evaluation", learned=False)}
METHODS: tuple[str, ...] = list_methods("evaluation")


def _accepts_band_names(method: Callable[..., Any]) -> bool:
    """Whether a method takes the case's band names as the ``band_names`` keyword."""
    try:
        return "band_names" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _split_output(out: Any, name: str, case: str, target: int, shape: tuple[int, ...]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """A method's output as (values, half-width or None), the half-width checked."""
    if not isinstance(out, Reconstruction):
        return np.asarray(out), None
    if out.half_width is None:
        return np.asarray(out.values), None
    width = np.asarray(out.half_width, np.float32)
    if width.shape != shape:
        raise MethodOutputError(name, case, target,
                                f"returned a half-width of shape {width.shape}, expected {shape}")
    if (width < 0).any():
        raise MethodOutputError(name, case, target, "returned a negative half-width")
    return np.asarray(out.values), width


def evaluate_case(
    case: Case,
    methods: Mapping[str, MethodFn],
    *,
    seed: int = 0,
    pastes_per_target: int = DEFAULT_PASTES,
    mask: str | DetectorFn | None = None,
    mask_params: Mapping[str, Any] | None = None,
    mask_per: MaskPer = "sample",
) -> list[dict[str, Any]]:
    """Score every method on one case; one record per method (keys :data:`RECORD_KEYS`).
    ``mask``: None for the case's ``cloud_mask``, else the detector the methods see the
    series through (module docstring), run with ``mask_params``."""
    samples = draw_samples(case, seed=seed, pastes_per_target=pastes_per_target)
    days = case.days
    mask_name, invalid_masks = CASE_MASK, None
    if mask is not None:
        from cloudfree.evaluation.masks import sample_invalid_masks

        mask_name, invalid_masks = sample_invalid_masks(case, samples, mask, mask_params,
                                                        per=mask_per)
    observed = np.where(case.cloud_mask[:, None], np.float32(np.nan), case.bands)
    # non-finite truth (never hidden, it counts as cloud) must not spread NaN through
    # the SSIM windows: 0 in both the truth and the scored frame
    truths = np.nan_to_num(np.stack([case.bands[t] for t, _ in samples]), nan=0.0,
                           posinf=0.0, neginf=0.0)
    hidden = np.stack([h for _, h in samples])
    records = []
    for name, method in methods.items():
        extra = {"band_names": case.band_names} if _accepts_band_names(method) else {}
        frames, seconds = [], 0.0
        widths: list[np.ndarray | None] = []
        for index, ((target, sample_hidden), truth) in enumerate(
                zip(samples, truths, strict=True)):
            if invalid_masks is None:
                series = observed.copy()
            else:
                series = np.where(invalid_masks[index][:, None], np.float32(np.nan), case.bands)
            series[target][:, sample_hidden] = np.nan
            start = time.perf_counter()
            out = method(series, days.copy(), target, **extra)
            seconds += time.perf_counter() - start
            pred, width = _split_output(out, name, case.name, target, truth.shape)
            if pred.shape != truth.shape:
                raise MethodOutputError(name, case.name, target,
                                        f"returned shape {pred.shape}, expected {truth.shape}")
            bad = int((~np.isfinite(pred[:, sample_hidden])).any(axis=0).sum())
            if bad:
                raise MethodOutputError(name, case.name, target,
                                        f"{bad} hidden pixels are NaN or infinite")
            frames.append(np.where(sample_hidden, pred, truth))
            widths.append(width)
        pred_all = np.stack(frames)
        coverage = width_mean = None
        stated = [w for w in widths if w is not None]
        if len(stated) == len(widths):
            width_all = np.stack(stated)
            coverage = _finite_or_none(metrics.interval_coverage(truths, pred_all, width_all,
                                                                 hidden))
            width_mean = _finite_or_none(metrics.mean_half_width(width_all, hidden))
        records.append({
            "case": case.name,
            "method": name,
            "mask": mask_name,
            "psnr": _finite_or_none(metrics.psnr(truths, pred_all, hidden)),
            "ssim": _finite_or_none(metrics.ssim_hidden_mean(truths, pred_all, hidden)),
            "mae": _finite_or_none(metrics.mae(truths, pred_all, hidden)),
            "rmse": _finite_or_none(metrics.rmse(truths, pred_all, hidden)),
            "sam": _finite_or_none(metrics.sam_degrees(truths, pred_all, hidden)),
            "coverage_90": None if coverage is None else round(coverage, 4),
            "interval_width": None if width_mean is None else round(width_mean, 5),
            "n_targets": len({t for t, _ in samples}),
            "hidden_px": int(hidden.sum()),
            "seconds": round(seconds, 4),
        })
    return records


def resolve_methods(methods: Sequence[str] | Mapping[str, MethodFn]) -> dict[str, MethodFn]:
    """Method names (of the registry, comma-separated or a sequence) or a name -> function
    mapping, as a mapping; the learned methods are imported only when named."""
    if isinstance(methods, Mapping):
        return dict(methods)
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InvalidParameterError("methods", ",".join(unknown) or "",
                                    f"choose from {', '.join(METHODS)}")
    return {m: evaluation_function(m) for m in methods}


def evaluate_cases(
    paths: Sequence[str | Path | Case],
    methods: Sequence[str] | Mapping[str, MethodFn],
    *,
    seed: int = 0,
    pastes_per_target: int = DEFAULT_PASTES,
    mask: str | DetectorFn | None = None,
    mask_params: Mapping[str, Any] | None = None,
    mask_per: MaskPer = "sample",
) -> list[dict[str, Any]]:
    """Evaluate every method on every case (paths or loaded :class:`Case` objects).

    ``mask``: None (the case's ``cloud_mask``) or a detector name (``auto`` included) or
    function the methods see the series through; see the module docstring.

    Returns one record per case and method, with the keys of :data:`RECORD_KEYS`:
    metrics (``None`` where undefined), ``coverage_90`` and ``interval_width`` (the
    method's 90 % interval: share of hidden values inside, mean half-width; ``None``
    without one), ``mask`` (the resolved detector, or ``case``),
    ``n_targets`` (target frames), ``hidden_px`` (scored pixels over all samples) and
    ``seconds`` (time inside the method).
    """
    resolved = resolve_methods(methods)
    if pastes_per_target < 1:
        raise InvalidParameterError("pastes_per_target", pastes_per_target, "give at least 1")
    records: list[dict[str, Any]] = []
    for item in paths:
        case = item if isinstance(item, Case) else load_case(item)
        records += evaluate_case(case, resolved, seed=seed, pastes_per_target=pastes_per_target,
                                 mask=mask, mask_params=mask_params, mask_per=mask_per)
    return records


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table, one row per case and method."""
    columns = [("case", "case", "{}"), ("method", "method", "{}"), ("mask", "mask", "{}"),
               ("PSNR dB", "psnr", "{:.2f}"),
               ("SSIM", "ssim", "{:.4f}"), ("MAE", "mae", "{:.4f}"), ("RMSE", "rmse", "{:.4f}"),
               ("SAM deg", "sam", "{:.2f}"), ("cover90", "coverage_90", "{:.3f}"),
               ("±width", "interval_width", "{:.4f}"), ("targets", "n_targets", "{}"),
               ("hidden px", "hidden_px", "{}"), ("seconds", "seconds", "{:.2f}")]
    rows = [[title for title, _, _ in columns]]
    for record in records:
        rows.append(["-" if record.get(key) is None else fmt.format(record[key])
                     for _, key, fmt in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ("BASELINES", "CASE_MASK", "DEFAULT_PASTES", "METHODS", "RECORD_KEYS", "Case",
           "MethodFn", "draw_samples", "evaluate_case", "evaluate_cases", "format_table",
           "load_case", "paste_pool", "resolve_methods", "target_frames")

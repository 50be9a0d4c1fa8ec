"""Cloud detectors on evaluation cases: what a detector sees of a case, the masks the
methods see per sample under ``evaluate --mask`` (the protocol is in
:mod:`cloudfree.evaluation.harness`), and the scores of a detector's masks against a
case's labels (``evaluate-masks``).

For the scores, a detector of :mod:`cloudfree.detection` (or ``auto``) runs on a whole
case as it is: its raw bands, its ``scl`` when it has one. Three records per case:

- ``cloud``: the detector's cloud or shadow (invalid but not no data) against the case's
  ``cloud_mask``, which holds real clouds *and* their shadows, per pixel;
- ``shadow``: the detector's shadow against the case's ``shadow_mask``; the figures are
  None when the case has no shadow labels;
- ``clear_date``: per date, whether it is clear (under 1 % of its pixels flagged, as
  :data:`~cloudfree.evaluation.harness.MAX_TARGET_CLOUD` picks the evaluation's target
  frames), the detector's call against the case's.

Pixels with no data (no finite value in any band, or every band 0, or SCL no data: the
detector's ``nodata``) are left out of the pixel figures. Precision, recall and F1 are of
the positive class (cloud, shadow, clear date); balanced accuracy is the mean of the
true-positive and true-negative rates. A figure whose denominator is 0 is None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cloudfree.detection import Detection, DetectionInput, esa_band_name
from cloudfree.errors import InvalidParameterError
from cloudfree.evaluation.harness import MAX_TARGET_CLOUD, Case, load_case

MASK_RECORD_KEYS = ("case", "mask", "class", "unit", "precision", "recall", "f1",
                    "balanced_accuracy", "detected", "labelled", "agreed", "scored")
CLASSES = ("cloud", "shadow", "clear_date")

DetectorFn = Callable[[DetectionInput], Detection]
MaskPer = Literal["sample", "target"]


def detection_input(case: Case, bands: np.ndarray | None = None,
                    scl: np.ndarray | None = None, *,
                    frames: np.ndarray | slice | None = None) -> DetectionInput:
    """What a detector sees of a case's ``frames`` (default all): its raw bands and SCL,
    or ``bands``/``scl`` given for those frames instead; sun angles from the case's grid
    and dates when it has ``crs`` and ``transform``."""
    select = slice(None) if frames is None else frames
    data = case.bands[select] if bands is None else bands
    classes = (None if case.scl is None else case.scl[select]) if scl is None else scl
    days = case.days
    zenith = azimuth = None
    lonlat = None
    if case.crs is not None and case.transform is not None:
        from cloudfree.detection.sun import lonlat_of, overpass_angles

        lonlat = lonlat_of(case.crs, case.transform, case.bands.shape)
        zenith, azimuth = overpass_angles(days, *lonlat)
        zenith, azimuth = zenith[select], azimuth[select]
    return DetectionInput(
        bands=np.ascontiguousarray(data, dtype=np.float32),
        band_names=tuple(esa_band_name(b) for b in case.band_names), days=days[select],
        resolution_m=case.resolution_m,
        scl=None if classes is None else np.ascontiguousarray(classes),
        sun_zenith_deg=zenith, sun_azimuth_deg=azimuth, lonlat=lonlat, level=case.level)


def resolve_mask(case: Case, mask: str | DetectorFn, params: Mapping[str, Any] | None = None
                 ) -> tuple[str, DetectorFn, bool]:
    """The detector a case is masked with: (resolved name, function, whether its result on
    a date depends on that date alone). ``auto`` and names are checked against the case
    (:func:`cloudfree.detection.choose`); a callable is used as given."""
    from cloudfree.detection import DETECTORS, choose, detect

    options = dict(params or {})
    if callable(mask):
        return getattr(mask, "__name__", "custom"), mask, False
    weights = {mask: options["weights"]} if options.get("weights") else None
    name = choose(mask, [esa_band_name(b) for b in case.band_names],
                  has_scl=case.scl is not None, n_dates=len(case.dates), level=case.level,
                  weights=weights)
    spec = DETECTORS[name]
    if spec.weights_env is None:  # weights are a learned detector's parameter only
        options.pop("weights", None)

    def run(inp: DetectionInput) -> Detection:
        return detect(name, inp, **options)

    return name, run, spec.per_date


def case_detection(case: Case, mask: str | DetectorFn,
                   params: Mapping[str, Any] | None = None) -> tuple[str, Detection]:
    """A detector run on a whole case as it is (raw bands, its SCL): (resolved name,
    result)."""
    name, run, _ = resolve_mask(case, mask, params)
    return name, run(detection_input(case))


def sample_invalid_masks(case: Case, samples: Sequence[tuple[int, np.ndarray]],
                         mask: str | DetectorFn, params: Mapping[str, Any] | None = None, *,
                         per: MaskPer = "sample") -> tuple[str, list[np.ndarray]]:
    """(resolved name, one (T, H, W) mask per sample): where the methods see NaN under the
    detector, run with the sample's hidden pixels (``per="target"``: the union of the
    target's hidden pixels) set to NaN; see the module docstring."""
    if per not in ("sample", "target"):
        raise InvalidParameterError("mask_per", per, "give 'sample' or 'target'")
    name, run, per_date = resolve_mask(case, mask, params)

    def hide(target: int, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        frame = case.bands[target].copy()
        frame[:, hidden] = np.nan
        scl = None if case.scl is None else case.scl[target].copy()
        if scl is not None:
            scl[hidden] = 0  # SCL.NO_DATA: the hidden pixels' classes are truth too
        return frame, scl

    if per_date:  # exact: only the target frame changes from one sample to the next
        base = run(detection_input(case)).invalid
        out = []
        for target, hidden in samples:
            frame, scl = hide(target, hidden)
            one = run(detection_input(case, frame[None], None if scl is None else scl[None],
                                      frames=np.array([target])))
            invalid = base.copy()
            invalid[target] = one.invalid[0] | hidden
            out.append(invalid)
        return name, out
    keys = ([(i, target, hidden) for i, (target, hidden) in enumerate(samples)]
            if per == "sample" else
            [(target, target, np.logical_or.reduce([h for t, h in samples if t == target]))
             for target in sorted({t for t, _ in samples})])
    cache: dict[int, np.ndarray] = {}
    for key, target, hidden in keys:
        bands = case.bands.copy()
        frame, scl = hide(target, hidden)
        bands[target] = frame
        scl_series = None
        if case.scl is not None and scl is not None:
            scl_series = case.scl.copy()
            scl_series[target] = scl
        cache[key] = run(detection_input(case, bands, scl_series)).invalid
    out = []
    for i, (target, hidden) in enumerate(samples):
        invalid = cache[i if per == "sample" else target].copy()
        invalid[target] |= hidden
        out.append(invalid)
    return name, out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def confusion_figures(detected: np.ndarray, labelled: np.ndarray,
                      scored: np.ndarray | None = None) -> dict[str, Any]:
    """Precision, recall, F1, balanced accuracy and the counts of boolean ``detected``
    against ``labelled``, on the ``scored`` elements (default all)."""
    keep = np.ones(detected.shape, bool) if scored is None else np.asarray(scored, bool)
    det, lab = np.asarray(detected, bool)[keep], np.asarray(labelled, bool)[keep]
    tp = int((det & lab).sum())
    fp = int((det & ~lab).sum())
    fn = int((~det & lab).sum())
    tn = int((~det & ~lab).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    specificity = _ratio(tn, tn + fp)
    balanced = (None if recall is None or specificity is None
                else (recall + specificity) / 2)
    return {"precision": precision, "recall": recall, "f1": f1,
            "balanced_accuracy": balanced, "detected": tp + fp, "labelled": tp + fn,
            "agreed": tp, "scored": int(keep.sum())}


def evaluate_masks(case: Case | str | Path, mask: str | DetectorFn,
                   params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The ``cloud``, ``shadow`` and ``clear_date`` records (keys
    :data:`MASK_RECORD_KEYS`) of detector ``mask`` on one case (module docstring)."""
    loaded = case if isinstance(case, Case) else load_case(case)
    name, detection = case_detection(loaded, mask, params)
    nodata = detection.nodata | ~np.isfinite(loaded.bands).all(axis=1)
    data = ~nodata
    flagged = detection.invalid & ~detection.nodata
    base = {"case": loaded.name, "mask": name}
    records = [{**base, "class": "cloud", "unit": "px",
                **confusion_figures(flagged, loaded.cloud_mask, data)}]
    if loaded.shadow_mask is not None:
        shadow = confusion_figures(detection.shadow, loaded.shadow_mask, data)
    else:
        shadow = dict.fromkeys(("precision", "recall", "f1", "balanced_accuracy",
                                "labelled", "agreed"))
        shadow |= {"detected": int((detection.shadow & data).sum()),
                   "scored": int(data.sum())}
    records.append({**base, "class": "shadow", "unit": "px", **shadow})
    detector_clear = detection.invalid.mean(axis=(1, 2)) < MAX_TARGET_CLOUD
    case_clear = loaded.cloud_mask.mean(axis=(1, 2)) < MAX_TARGET_CLOUD
    records.append({**base, "class": "clear_date", "unit": "dates",
                    **confusion_figures(detector_clear, case_clear)})
    return [{key: record[key] for key in MASK_RECORD_KEYS} for record in records]


def evaluate_masks_cases(paths: Sequence[str | Path | Case], mask: str | DetectorFn,
                         params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """:func:`evaluate_masks` on every case, records concatenated."""
    records: list[dict[str, Any]] = []
    for item in paths:
        records += evaluate_masks(item, mask, params)
    return records


def format_mask_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table, one row per case and class."""
    columns = [("case", "case", "{}"), ("mask", "mask", "{}"), ("class", "class", "{}"),
               ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
               ("F1", "f1", "{:.3f}"), ("bal. acc.", "balanced_accuracy", "{:.3f}"),
               ("detected", "detected", "{}"), ("labelled", "labelled", "{}"),
               ("agreed", "agreed", "{}"), ("scored", "scored", "{}"), ("unit", "unit", "{}")]
    rows = [[title for title, _, _ in columns]]
    for record in records:
        rows.append(["-" if record.get(key) is None else fmt.format(record[key])
                     for _, key, fmt in columns])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(w) if i < 3 or i == len(columns) - 1 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


__all__ = ("CLASSES", "MASK_RECORD_KEYS", "DetectorFn", "MaskPer", "case_detection",
           "confusion_figures", "detection_input", "evaluate_masks", "evaluate_masks_cases",
           "format_mask_table", "resolve_mask", "sample_invalid_masks")

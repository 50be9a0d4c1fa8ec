"""Evaluation: hide real cloud masks on clear frames, reconstruct them with every method of
the registry, and score the hidden pixels (PSNR, SSIM, MAE, RMSE, SAM), with the case's
cloud mask or a detector's; and score detectors' masks against a case's labels."""

from cloudfree.evaluation.harness import (
    BASELINES,
    METHODS,
    Case,
    evaluate_cases,
    format_table,
    load_case,
)
from cloudfree.evaluation.masks import evaluate_masks, evaluate_masks_cases, format_mask_table

__all__ = ("BASELINES", "METHODS", "Case", "evaluate_cases", "evaluate_masks",
           "evaluate_masks_cases", "format_mask_table", "format_table", "load_case")

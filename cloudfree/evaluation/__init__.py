"""Evaluation: hide real cloud masks on clear frames, reconstruct them with every method of
the registry, and score the hidden pixels (PSNR, SSIM, MAE, RMSE, SAM)."""

from cloudfree.evaluation.harness import (
    BASELINES,
    METHODS,
    Case,
    evaluate_cases,
    format_table,
    load_case,
)

__all__ = ("BASELINES", "METHODS", "Case", "evaluate_cases", "format_table", "load_case")

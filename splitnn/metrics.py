"""Reconstruction metrics. Every function states nothing about scale: FSHA reports MSE on [-1, 1],
UnSplit on [0, 1] (the same images give 4x the MSE on [-1, 1]); say which scale a number uses."""
from __future__ import annotations

import numpy as np


def _pair(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse_per_image(a, b) -> np.ndarray:
    """Mean squared error of each image (axis 0 indexes images)."""
    a, b = _pair(a, b)
    return ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)


def mse(a, b) -> float:
    """Mean squared error over every element."""
    a, b = _pair(a, b)
    return float(((a - b) ** 2).mean())


def psnr(a, b, data_range: float) -> np.ndarray:
    """Per-image PSNR in dB for images whose values span ``data_range`` (1 for [0, 1], 2 for [-1, 1])."""
    err = mse_per_image(a, b)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range ** 2 / err)


def rescale(x, from_range=(-1.0, 1.0), to_range=(0.0, 1.0)) -> np.ndarray:
    """Map values linearly between pixel scales (FSHA's [-1, 1] to UnSplit's [0, 1] by default)."""
    lo, hi = from_range
    nlo, nhi = to_range
    return (np.asarray(x, np.float64) - lo) / (hi - lo) * (nhi - nlo) + nlo

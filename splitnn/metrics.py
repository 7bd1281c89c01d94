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


def ssim(a, b, data_range: float) -> np.ndarray:
    """Per-image structural similarity (Wang et al. 2004) of image batches [N, H, W, C], as He et al. (ACSAC 2019)
    report next to PSNR; scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window), channels
    averaged. ``data_range`` as for :func:`psnr`."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    if a.ndim != 4:
        raise ValueError(f"ssim expects image batches [N, H, W, C], got shape {a.shape}")
    return np.array([structural_similarity(x, y, data_range=data_range, channel_axis=-1) for x, y in zip(a, b)])


def trivial_baselines(targets, train_mean, black: float = 0.0) -> dict:
    """The per-image MSE of two answers that use no attack at all: the all-black image (every pixel ``black``: 0 on
    [0, 1], -1 on [-1, 1]) and the training set's mean image. An inversion whose error is not below both has
    recovered nothing image-specific. Values on the targets' scale."""
    t = np.asarray(targets, np.float64)
    m = np.asarray(train_mean, np.float64)
    if m.shape != t.shape[1:]:
        raise ValueError(f"train_mean must have one image's shape {t.shape[1:]}, got {m.shape}")
    return dict(black=mse_per_image(t, np.full_like(t, float(black))),
                mean_image=mse_per_image(t, np.broadcast_to(m, t.shape)))


def image_scores(x_hat, targets, data_range: float = 1.0) -> dict:
    """Per-image MSE, PSNR (dB) and SSIM of reconstructions against their targets, on one pixel scale."""
    return dict(mse=mse_per_image(x_hat, targets), psnr=psnr(x_hat, targets, data_range),
                ssim=ssim(x_hat, targets, data_range))

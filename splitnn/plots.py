"""Image grids and curves written to PNG files (headless: the Agg backend is used when no display is set)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY") and "MPLBACKEND" not in os.environ:
    import matplotlib

    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _to_display(x, value_range):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[..., None]
    lo, hi = value_range
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    if x.shape[-1] == 3 and np.allclose(x[..., 0], x[..., 1]) and np.allclose(x[..., 0], x[..., 2]):
        x = x[..., :1]  # tiled grayscale (FSHA's MNIST): show it as gray
    return x


def save_figure(fig, path, dpi=100) -> Path:
    """Write ``fig`` to ``path`` (PNG; parent folders created), close it and return the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def image_grid_figure(rows, titles=None, value_range=(-1.0, 1.0), scale=1.0, suptitle=None):
    """A matplotlib figure with one row of images per entry of ``rows`` (each an array [N, H, W, C] or
    [N, H, W]); ``titles`` labels the rows."""
    rows = [np.asarray(r) for r in rows]
    if not rows or any(r.ndim not in (3, 4) or len(r) == 0 for r in rows):
        raise ValueError("rows must be a non-empty list of non-empty image batches [N, H, W(, C)]")
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, squeeze=False,
                             figsize=(scale * ncols * 1.1, scale * len(rows) * 1.2 + (0.4 if suptitle else 0)))
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(row):
                img = _to_display(row[j], value_range)
                if img.shape[-1] == 1:
                    ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(img)
        if titles is not None:
            axes[i, 0].set_title(titles[i], fontsize=8, loc="left")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def save_image_grid(rows, path, titles=None, value_range=(-1.0, 1.0), scale=1.0, suptitle=None) -> Path:
    """Write :func:`image_grid_figure` to ``path`` (PNG) and return the path."""
    fig = image_grid_figure(rows, titles=titles, value_range=value_range, scale=scale, suptitle=suptitle)
    return save_figure(fig, path)


def save_curves(curves: dict, path, xlabel="iteration", ylabel="", title=None, logy=False,
                references: dict | None = None) -> Path:
    """Plot named curves ``{label: (x, y)}`` (and dashed ``references`` the same way) into one PNG."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label)
    for label, (x, y) in (references or {}).items():
        ax.plot(x, y, "--", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)

"""Small data sets for the attacks: MNIST subsets (flattened, [0, 1], float64) and a synthetic stand-in.
TensorFlow-free (``splitnn.data.load_raw`` reads the original archives)."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Data:
    x_train: np.ndarray   # [N, D] float64 in [0, 1]
    y_train: np.ndarray   # [N] int
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple = (28, 28)
    name: str = "mnist"

    @property
    def d(self) -> int:
        return self.x_train.shape[1]

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Data":
        return dataclasses.replace(self, x_train=self.x_train[:n_train], y_train=self.y_train[:n_train],
                                   x_test=self.x_test[:n_test], y_test=self.y_test[:n_test])


def mnist(n_train: int = 2000, n_test: int = 1000) -> Data:
    """The first ``n_train`` MNIST training and ``n_test`` test images, pixels / 255 as float64 [N, 784]."""
    from splitnn.data import load_raw

    for name, v, hi in (("n_train", n_train, 60_000), ("n_test", n_test, 10_000)):
        if isinstance(v, bool) or int(v) != v or not 1 <= v <= hi:
            raise ValueError(f"{name} must be an integer in [1, {hi}], got {v!r}")
    raw = load_raw("mnist")
    flat = lambda a, n: a[:n].reshape(n, -1).astype(np.float64) / 255.0  # noqa: E731
    return Data(flat(raw.x_train, n_train), raw.y_train[:n_train].astype(np.int64),
                flat(raw.x_test, n_test), raw.y_test[:n_test].astype(np.int64))


def synthetic(n_train: int = 400, n_test: int = 200, side: int = 8, n_classes: int = 10, seed: int = 0) -> Data:
    """Class prototypes in [0, 1] (``side x side`` images, a zero border like MNIST's) plus noise, clipped."""
    rng = np.random.default_rng(seed)
    inner = np.zeros((side, side), dtype=bool)
    inner[1:-1, 1:-1] = True
    protos = rng.uniform(0, 1, (n_classes, side * side)) * inner.ravel()

    def draw(n):
        y = rng.integers(0, n_classes, n)
        x = np.clip(protos[y] + rng.normal(0, 0.3, (n, side * side)), 0, 1) * inner.ravel()
        return x, y
    xt, yt = draw(n_train)
    xv, yv = draw(n_test)
    return Data(xt, yt, xv, yv, (side, side), "synthetic")

"""The two models both simulations train, their configuration, batch schedule and NumPy evaluation.

* ``lr``: softmax ("multinomial logistic") regression, ``logits = x W + b``.
* ``mlp``: one hidden ReLU layer, ``logits = ReLU(x W1 + b1) W2 + b2``.

Training is plain SGD on the (per-example weighted) mean cross-entropy, ``theta <- theta - lr * grad``, over a
fixed schedule of batches (:func:`schedule`), so that the protocol and the plaintext simulation see the same
batches in the same order. TensorFlow-free.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from covert_mpc.deviations import PARAMS
from covert_mpc.ring import Ring, check_ring

ARCHS = ("lr", "mlp")
ARITHMETIC = ("ideal", "fixed")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """``arithmetic='ideal'``: float arithmetic (``dtype``); ``'fixed'``: every wire rounded to 2^-f and wrapped
    into Z_2^k, as the protocol computes."""
    arch: str = "lr"
    hidden: int = 32
    lr: float = 0.5
    batch_size: int = 50
    epochs: int = 5
    seed: int = 0
    arithmetic: str = "ideal"
    k: int = 64
    f: int = 16

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arithmetic not in ARITHMETIC:
            raise ValueError(f"arithmetic must be one of {ARITHMETIC}, got {self.arithmetic!r}")
        check_ring(self.k, self.f)
        for name in ("batch_size", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.arch == "mlp" and int(self.hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    @property
    def ring(self) -> Ring:
        return Ring(self.k, self.f)

    @property
    def param_names(self) -> tuple:
        return PARAMS[self.arch]

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)


def init_params(config: TrainConfig, d: int, n_classes: int = 10) -> dict:
    """Initial parameters (float64 NumPy): zeros for logistic regression; Glorot-uniform weights and zero biases
    for the MLP, from ``config.seed``. In fixed-point mode they are rounded to 2^-f."""
    rng = np.random.default_rng(config.seed)
    if config.arch == "lr":
        params = {"W": np.zeros((d, n_classes)), "b": np.zeros(n_classes)}
    else:
        h = config.hidden
        lim1, lim2 = np.sqrt(6.0 / (d + h)), np.sqrt(6.0 / (h + n_classes))
        params = {"W1": rng.uniform(-lim1, lim1, (d, h)), "b1": np.zeros(h),
                  "W2": rng.uniform(-lim2, lim2, (h, n_classes)), "b2": np.zeros(n_classes)}
    if config.arithmetic == "fixed":
        ring = config.ring
        params = {k: ring.quantize(v) for k, v in params.items()}
    return params


def schedule(n: int, batch_size: int, epochs: int, seed: int = 0) -> list:
    """Batches of global indices: a fresh permutation each epoch, the incomplete last batch dropped."""
    if n < batch_size:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({n} examples)")
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        out.extend(perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size))
    return out


def dims(config: TrainConfig, d: int, n_classes: int = 10) -> dict:
    shapes = {k: v.shape for k, v in init_params(config.replace(arithmetic="ideal"), d, n_classes).items()}
    return {"D": d, "H": config.hidden if config.arch == "mlp" else 0, "C": n_classes, "shapes": shapes}


# ------------------------------------------------------------------------------------------- evaluation

def logits(params: dict, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if "W" in params:
        return x @ params["W"] + params["b"]
    h = np.maximum(x @ params["W1"] + params["b1"], 0.0)
    return h @ params["W2"] + params["b2"]


def predict(params: dict, x) -> np.ndarray:
    return np.argmax(logits(params, x), axis=1)


def accuracy(params: dict, x, y) -> float:
    return float(np.mean(predict(params, x) == np.asarray(y)))


def per_example_loss(params: dict, x, y) -> np.ndarray:
    """Cross-entropy of each example (float64, stable)."""
    z = logits(params, x)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(z)), np.asarray(y)]

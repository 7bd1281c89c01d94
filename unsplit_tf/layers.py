"""The flat layer tables of MnistNet and CifarNet (paper Appendix A; original ``unsplit/models.py``) and the
split-depth checks.

Backend-free on purpose: the Keras models (:mod:`unsplit_tf.models`) and the TensorFlow im2col forward
(:mod:`unsplit_tf.functional`) are both built from these tables.
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One flat layer of the original network."""
    index: int
    kind: str                 # 'conv', 'relu', 'pool', 'dense', 'sigmoid'
    name: str = ""            # the original module name for layers with parameters (conv1, fc3, ...)
    in_units: int = 0         # input channels (conv) or input features (dense)
    out_units: int = 0        # output channels (conv) or output features (dense)
    kernel: int = 0
    padding: str = "valid"    # 'valid' (MnistNet, no padding) or 'same' (CifarNet, k3/p1/s1)
    param_index: int = -1     # position of the weight in PyTorch's parameters(); the bias is param_index + 1

    @property
    def has_params(self) -> bool:
        return self.kind in ("conv", "dense")

    @property
    def fan_in(self) -> int:
        return self.in_units * self.kernel * self.kernel if self.kind == "conv" else self.in_units

    @property
    def init_bound(self) -> float:
        """PyTorch's default bound 1/sqrt(fan_in) for both the weight and the bias."""
        return 1.0 / math.sqrt(self.fan_in)


def _specs(rows):
    out, p = [], 0
    for i, row in enumerate(rows):
        kind = row[0]
        if kind == "conv":
            _, name, cin, cout, k, pad = row
            out.append(LayerSpec(i, kind, name, cin, cout, k, pad, p))
            p += 2
        elif kind == "dense":
            _, name, fin, fout = row
            out.append(LayerSpec(i, kind, name, fin, fout, param_index=p))
            p += 2
        else:
            out.append(LayerSpec(i, kind))
    return tuple(out)


#: Flat layer tables of the original ``MnistNet`` and ``CifarNet`` (``unsplit/models.py``), one entry per layer
#: including ReLU, sigmoid and max-pooling, in the order the original applies them.
ARCHITECTURES = {
    "mnist": _specs([
        ("conv", "conv1", 1, 8, 5, "valid"), ("relu",), ("pool",),
        ("conv", "conv2", 8, 16, 5, "valid"), ("relu",), ("pool",),
        ("dense", "fc1", 256, 120), ("relu",),
        ("dense", "fc2", 120, 84), ("relu",),
        ("dense", "fc3", 84, 10),
    ]),
    "cifar": _specs([
        ("conv", "conv11", 3, 64, 3, "same"), ("relu",),
        ("conv", "conv12", 64, 64, 3, "same"), ("relu",), ("pool",),
        ("conv", "conv21", 64, 128, 3, "same"), ("relu",),
        ("conv", "conv22", 128, 128, 3, "same"), ("relu",), ("pool",),
        ("conv", "conv31", 128, 128, 3, "same"), ("relu",),
        ("conv", "conv32", 128, 128, 3, "same"), ("relu",), ("pool",),
        ("dense", "fc1", 2048, 512), ("sigmoid",),
        ("dense", "fc2", 512, 10),
    ]),
}
INPUT_SHAPES = {"mnist": (28, 28, 1), "cifar": (32, 32, 3)}
PARAM_COUNTS = {"mnist": 45_278, "cifar": 1_609_546}
#: Split depths the original README allows (and the paper evaluates).
SPLIT_DEPTHS = {"mnist": range(1, 7), "cifar": range(1, 9)}


def arch_for_dataset(dataset: str) -> str:
    """'mnist' (MnistNet) for mnist / f_mnist, 'cifar' (CifarNet) for cifar, as in the original demos."""
    from splitnn.data import canonical_name

    name = canonical_name(dataset)
    if name in ("mnist", "fashion_mnist"):
        return "mnist"
    if name == "cifar10":
        return "cifar"
    raise ValueError(f"UnSplit has no network for dataset {dataset!r}; expected mnist, f_mnist or cifar.")


def check_split_depth(arch: str, split_depth: int) -> int:
    """Validate a split depth for the demos/paper (1-6 MNIST-like, 1-8 CIFAR); return it as an int."""
    allowed = SPLIT_DEPTHS[arch]
    try:
        d = int(split_depth)
    except (TypeError, ValueError):
        raise ValueError(f"split depth must be an integer, got {split_depth!r}") from None
    if d != split_depth or d not in allowed:
        net = "MnistNet (mnist, f_mnist)" if arch == "mnist" else "CifarNet (cifar)"
        raise ValueError(f"split depth {split_depth!r} is out of range for {net}: expected "
                         f"{allowed.start}-{allowed.stop - 1}.")
    return d

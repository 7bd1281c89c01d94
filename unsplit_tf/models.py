"""UnSplit's two target networks, MnistNet and CifarNet, in Keras 3.

Both networks are addressed by a **flat layer index** that counts every layer of the original, ReLU, sigmoid and
max-pooling included (paper Appendix A; original ``unsplit/models.py``). ``model(x, start=s, end=e)`` applies
layers ``s..e`` *inclusive* and returns the output after layer ``e``; the client of a split at depth ``d`` runs
``model(x, end=d)`` and the server runs ``model(h, start=d + 1)``.

Faithful details, all reproduced:

* **PyTorch default initialisation** (``kaiming_uniform(a=sqrt(5))``): kernels and biases are
  U(-1/sqrt(fan_in), +1/sqrt(fan_in)) with fan_in = in_channels*k*k (conv) or in_features (linear). The Keras
  defaults (Glorot kernel, zero bias) are not used: the clone starts from this initialisation, and the attack's
  statistics depend on it.
* **PyTorch's flatten order**: the models run in NHWC (TensorFlow's CPU layout), but the tensor is transposed to
  NCHW before it is flattened for the first linear layer, so ``fc1``'s weight is PyTorch's transposed and a
  ``state_dict`` moves between the frameworks without changing any output (see :mod:`unsplit_tf.torch_interop`).
  A server that starts at the first linear layer accepts the pooled NHWC tensor and flattens it itself.
* **Parameter order** equals PyTorch's ``parameters()``: ``model.weights[8]`` is MnistNet's ``fc3`` weight and
  ``model.weights[14]`` CifarNet's ``fc2`` weight (the original's ``grad_index``).

Fixed quirk of the original (``forward`` in ``unsplit/models.py``): the original's partial forward compared the
*relative* position inside the convolutional block with ``end`` when ``0 < start``, so e.g. MnistNet ``start=3,
end=4`` returned ``None``. Here ``start`` and ``end`` are always **absolute** indices; split composition
``model(model(x, end=k), start=k+1) == model(x)`` holds for every ``k``.

Not reproduced: the original's unused ``get_params`` / ``restore_initial_params`` helpers and the ``initial``
attribute (never called; CifarNet's copy was a reference, so "restore" was a no-op).
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from unsplit_tf.layers import (ARCHITECTURES, INPUT_SHAPES, PARAM_COUNTS, SPLIT_DEPTHS, LayerSpec,  # noqa: F401
                               arch_for_dataset, check_split_depth)


class _TorchUniform(keras.initializers.Initializer):
    """U(-bound, bound) with the bound fixed at construction (PyTorch's default bias initialisation)."""

    def __init__(self, bound, seed=None):
        self.bound = float(bound)
        self.seed = seed
        self._inner = keras.initializers.RandomUniform(-self.bound, self.bound, seed=seed)

    def __call__(self, shape, dtype=None):
        return self._inner(shape, dtype=dtype)

    def get_config(self):
        return {"bound": self.bound, "seed": self.seed}


def torch_kernel_initializer(seed=None):
    """Keras equivalent of PyTorch's kaiming_uniform(a=sqrt(5)): limit sqrt(3 * (1/3) / fan_in) = 1/sqrt(fan_in)."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


def torch_bias_initializer(fan_in, seed=None):
    return _TorchUniform(1.0 / math.sqrt(fan_in), seed=seed)


class SplitNet(keras.Model):
    """A network addressed by flat layer index; see the module docstring.

    Args:
        arch: 'mnist' (MnistNet) or 'cifar' (CifarNet).
        seed: optional int; every layer's initializer is seeded from it (the original sets no seeds).
        dtype: 'float32' (default, as the original) or 'float64' (cross-checks).
    """

    def __init__(self, arch: str, seed: int | None = None, dtype="float32", name=None, **kwargs):
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
        super().__init__(name=name or {"mnist": "MnistNet", "cifar": "CifarNet"}[arch], dtype=dtype, **kwargs)
        self.arch = arch
        self.specs = ARCHITECTURES[arch]
        self.seed = seed
        self.flat_layers = []
        for spec in self.specs:
            self.flat_layers.append(self._make_layer(spec, seed, dtype))
        self.last_index = len(self.specs) - 1
        self.first_dense_index = next(s.index for s in self.specs if s.kind == "dense")
        self.image_shape = INPUT_SHAPES[arch]
        self(ops.zeros((1,) + self.image_shape, dtype=dtype))  # build every layer (weights in PyTorch order)

    @staticmethod
    def _make_layer(spec: LayerSpec, seed, dtype):
        def sub_seed(k):
            return None if seed is None else int(seed) * 1000 + 2 * spec.index + k

        if spec.kind == "conv":
            return keras.layers.Conv2D(
                spec.out_units, spec.kernel, strides=1, padding=spec.padding, name=spec.name, dtype=dtype,
                kernel_initializer=torch_kernel_initializer(sub_seed(0)),
                bias_initializer=torch_bias_initializer(spec.fan_in, sub_seed(1)))
        if spec.kind == "dense":
            return keras.layers.Dense(
                spec.out_units, name=spec.name, dtype=dtype,
                kernel_initializer=torch_kernel_initializer(sub_seed(0)),
                bias_initializer=torch_bias_initializer(spec.fan_in, sub_seed(1)))
        if spec.kind == "relu":
            return keras.layers.ReLU(name=f"relu_{spec.index}", dtype=dtype)
        if spec.kind == "pool":
            return keras.layers.MaxPooling2D(2, 2, padding="valid", name=f"pool_{spec.index}", dtype=dtype)
        if spec.kind == "sigmoid":
            return keras.layers.Activation("sigmoid", name=f"sigmoid_{spec.index}", dtype=dtype)
        raise ValueError(spec.kind)

    # ------------------------------------------------------------------------------------------------ forward
    def check_range(self, start: int, end: int | None) -> tuple[int, int]:
        end = self.last_index if end is None else int(end)
        start = int(start)
        if not (0 <= start <= end <= self.last_index):
            raise ValueError(f"{self.name}: layer range start={start}, end={end} is invalid; expected "
                             f"0 <= start <= end <= {self.last_index} (absolute flat indices).")
        return start, end

    def call(self, x, start=0, end=None):
        start, end = self.check_range(start, end)
        for i in range(start, end + 1):
            if i == self.first_dense_index and len(x.shape) == 4:
                x = flatten_chw(x)
            x = self.flat_layers[i](x)
        return x

    def forward(self, x, start=0, end=None):
        """Alias of ``call`` under the original's name."""
        return self(x, start=start, end=end)

    # ----------------------------------------------------------------------------------------- parameters
    def layer_weights(self, index: int):
        """[kernel, bias] variables of flat layer ``index`` ([] for layers without parameters)."""
        return list(self.flat_layers[index].weights)

    def range_weights(self, start: int = 0, end: int | None = None):
        """Variables of layers start..end in PyTorch parameter order."""
        start, end = self.check_range(start, end)
        return [w for i in range(start, end + 1) for w in self.layer_weights(i)]

    def client_weights(self, split_depth: int):
        return self.range_weights(0, split_depth)

    def server_weights(self, split_depth: int):
        return self.range_weights(split_depth + 1, self.last_index) if split_depth < self.last_index else []

    def get_param_values(self):
        return [np.array(ops.convert_to_numpy(w)) for w in self.weights]

    def set_param_values(self, values):
        if len(values) != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} arrays, got {len(values)}")
        for w, v in zip(self.weights, values):
            if tuple(w.shape) != tuple(np.shape(v)):
                raise ValueError(f"{w.path}: shape {tuple(w.shape)} expected, got {tuple(np.shape(v))}")
            w.assign(np.asarray(v, dtype=w.dtype))

    def copy_from(self, other: "SplitNet"):
        self.set_param_values(other.get_param_values())
        return self

    def smashed_shape(self, split_depth: int) -> tuple:
        """Per-sample output shape (NHWC) of layers 0..split_depth."""
        return tuple(self(ops.zeros((1,) + self.image_shape, self.dtype), end=split_depth).shape[1:])

    def get_config(self):
        return {"arch": self.arch, "seed": self.seed, "dtype": self.dtype_policy.name, "name": self.name}


class MnistNet(SplitNet):
    """The original's MnistNet (1x28x28 input, 11 flat layers, 45,278 parameters; flat table in
    :data:`unsplit_tf.layers.ARCHITECTURES`)."""

    def __init__(self, seed: int | None = None, dtype="float32", name=None, **kwargs):
        kwargs.pop("arch", None)
        super().__init__("mnist", seed=seed, dtype=dtype, name=name, **kwargs)


class CifarNet(SplitNet):
    """The original's CifarNet (3x32x32 input, 18 flat layers, 1,609,546 parameters; flat table in
    :data:`unsplit_tf.layers.ARCHITECTURES`)."""

    def __init__(self, seed: int | None = None, dtype="float32", name=None, **kwargs):
        kwargs.pop("arch", None)
        super().__init__("cifar", seed=seed, dtype=dtype, name=name, **kwargs)


def build_model(arch: str, seed: int | None = None, dtype="float32", name=None) -> SplitNet:
    return (MnistNet if arch == "mnist" else CifarNet)(seed=seed, dtype=dtype, name=name)


def flatten_chw(x):
    """Flatten an NHWC tensor in PyTorch's C,H,W order (what ``x.view(-1, C*H*W)`` does on NCHW)."""
    x = ops.transpose(x, (0, 3, 1, 2))
    return ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))


def label_split_index(arch: str, client_depth: int) -> int:
    """Last server layer for label inference with ``client_depth`` linear layers on the client.

    Depth 1 is the original ``label_inference_demo.py``; depth 2 is the paper's Table 3 row 2 (not in the code).

    Depth 1: the client holds only the last linear layer (server end 9 for MnistNet, 16 for CifarNet).
    Depth 2: the client holds the last two linear layers and the activation between them (server end 7 / 14).
    """
    dense = [s.index for s in ARCHITECTURES[arch] if s.kind == "dense"]
    if not 1 <= int(client_depth) <= len(dense):
        raise ValueError(f"client depth {client_depth!r} out of range for {arch}: expected 1-{len(dense)}")
    return dense[-int(client_depth)] - 1


__all__ = ["LayerSpec", "ARCHITECTURES", "INPUT_SHAPES", "PARAM_COUNTS", "SPLIT_DEPTHS", "SplitNet", "MnistNet",
           "CifarNet", "build_model", "arch_for_dataset", "check_split_depth", "flatten_chw", "label_split_index",
           "torch_kernel_initializer", "torch_bias_initializer"]

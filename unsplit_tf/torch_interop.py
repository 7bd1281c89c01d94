"""Move weights between the original PyTorch MnistNet/CifarNet and the Keras models, without changing outputs.

A ``state_dict`` uses the original module names: ``conv1.weight, conv1.bias, conv2.*, fc1.*, fc2.*, fc3.*``
(MnistNet) or ``conv11.* conv12.* conv21.* conv22.* conv31.* conv32.* fc1.* fc2.*`` (CifarNet). Values may be
``torch.Tensor``s or NumPy arrays; **torch is never imported** unless :func:`export_state_dict` is asked for
tensors.

Layouts (PyTorch NCHW / Keras NHWC): conv weight [out, in, kh, kw] <-> Keras [kh, kw, in, out] (transpose (2, 3, 1, 0));
linear weight [out, in] <-> Keras [in, out]. Because the Keras models flatten in PyTorch's C,H,W order, ``fc1``
needs only that transpose.
"""
from __future__ import annotations

import keras
import numpy as np

from unsplit_tf.models import ARCHITECTURES, SplitNet


def state_dict_keys(arch: str) -> list:
    """The original parameter names in ``parameters()`` order."""
    return [f"{s.name}.{p}" for s in ARCHITECTURES[arch] if s.has_params for p in ("weight", "bias")]


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _torch_to_keras(kind: str, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if value.ndim == 2:
        return np.transpose(value, (1, 0))
    return value


def _keras_to_torch(value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if value.ndim == 2:
        return np.transpose(value, (1, 0))
    return value


def load_state_dict(model: SplitNet, state_dict, strict: bool = True, prefix: str = "") -> SplitNet:
    """Copy a PyTorch ``state_dict`` of the original network into ``model`` (in place; returns it).

    ``strict``: unexpected keys are an error (missing keys always are). ``prefix`` is stripped from the keys
    (e.g. ``'module.'``). Values are cast to the model's dtype.
    """
    keys = state_dict_keys(model.arch)
    given = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in dict(state_dict).items()}
    missing = [k for k in keys if k not in given]
    if missing:
        raise KeyError(f"state_dict lacks {missing} for {model.name}; expected keys {keys}")
    unexpected = [k for k in given if k not in keys]
    if strict and unexpected:
        raise KeyError(f"state_dict has unexpected keys {unexpected} for {model.name}; expected {keys}")
    for key, var in zip(keys, model.weights):
        value = _torch_to_keras(key, _to_numpy(given[key]))
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"{key}: PyTorch shape {tuple(_to_numpy(given[key]).shape)} does not fit "
                             f"{var.path} of shape {tuple(var.shape)}")
        var.assign(value.astype(var.dtype))
    return model


def export_state_dict(model: SplitNet, as_torch: bool = False) -> dict:
    """The model's parameters as a PyTorch ``state_dict`` (NumPy arrays, or ``torch.Tensor``s if ``as_torch``)."""
    out = {}
    for key, var in zip(state_dict_keys(model.arch), model.weights):
        out[key] = np.ascontiguousarray(_keras_to_torch(np.asarray(keras.ops.convert_to_numpy(var))))
    if as_torch:
        import torch  # optional dependency, imported only here

        out = {k: torch.from_numpy(v.copy()) for k, v in out.items()}
    return out


__all__ = ["state_dict_keys", "load_state_dict", "export_state_dict"]

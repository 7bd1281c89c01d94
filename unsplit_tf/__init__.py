"""UnSplit (Erdogan, Kupcu, Cicek, WPES 2022) in Keras 3: model inversion, model stealing and label inference
against split learning, written once in ``keras.ops`` on :mod:`splitnn.backend` and run on TensorFlow (the default)
or JAX (``KERAS_BACKEND=jax``). See ``docs`` for the faithful defaults and the options.

Modules mirror the original: :mod:`unsplit_tf.models` (MnistNet, CifarNet), :mod:`unsplit_tf.attacks`
(``model_inversion_stealing``, ``label_inference``), :mod:`unsplit_tf.util` (TV, l2, targets, test score);
plus :mod:`unsplit_tf.optim` (PyTorch-exact Adam), :mod:`unsplit_tf.training`, :mod:`unsplit_tf.torch_interop`,
the two demos, :mod:`unsplit_tf.keras_client` (the attacks against any Keras client) and
:mod:`unsplit_tf.functional` (an optional im2col forward for MnistNet/CifarNet, TensorFlow only: the CPU fast path).

The names below are imported on first access (importing the package loads no backend).
"""
import importlib

_EXPORTS = {
    "InversionConfig": "attacks", "InversionResult": "attacks", "LabelInferenceResult": "attacks",
    "invert_images": "attacks", "label_inference": "attacks", "model_inversion_stealing": "attacks",
    "model_inversion_stealing_batched": "attacks", "run_label_inference": "attacks",
    "CifarNet": "models", "MnistNet": "models", "build_model": "models", "TorchAdam": "optim",
    "invert_keras_client": "keras_client", "label_inference_keras": "keras_client",
    "model_inversion_stealing_keras": "keras_client", "observed_gradients": "keras_client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

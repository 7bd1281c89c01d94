"""UnSplit (Erdogan, Kupcu, Cicek, WPES 2022) in Keras 3: model inversion, model stealing and label inference
against split learning, written once in ``keras.ops`` on :mod:`splitnn.backend` and run on TensorFlow (the default)
or JAX (``KERAS_BACKEND=jax``). See ``docs`` for the faithful defaults and the options.

Modules mirror the original: :mod:`unsplit_tf.models` (MnistNet, CifarNet), :mod:`unsplit_tf.attacks`
(``model_inversion_stealing``, ``label_inference``), :mod:`unsplit_tf.util` (TV, l2, targets, test score);
plus :mod:`unsplit_tf.optim` (PyTorch-exact Adam), :mod:`unsplit_tf.training`, :mod:`unsplit_tf.torch_interop`,
the two demos, :mod:`unsplit_tf.keras_client` (the attacks against any Keras client),
:mod:`unsplit_tf.functional` (an optional im2col forward for MnistNet/CifarNet, TensorFlow only: the CPU fast path),
the paper's comparisons: :mod:`unsplit_tf.he_attacks` (He et al.'s white-box, black-box and query-free inversions),
:mod:`unsplit_tf.comparisons` (Fig. 3a, Table 4, Table 5), :mod:`unsplit_tf.fsha_comparison` (Fig. 3b), and
:mod:`unsplit_tf.diagnostics` (what the inversion recovers: a per-round trace, baselines).

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
    "HeConfig": "he_attacks", "white_box_inversion": "he_attacks", "train_inverse_network": "he_attacks",
    "black_box_inversion": "he_attacks", "query_free_inversion": "he_attacks",
    "run_comparison": "comparisons", "trace_inversion": "diagnostics",
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

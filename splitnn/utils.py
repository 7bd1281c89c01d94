"""Small helpers for split models: shapes, parameter counts, seeding."""
from __future__ import annotations

import numpy as np


def closest_name(name, valid, cutoff: float = 0.6):
    """The valid name closest to a misspelt ``name`` (difflib's ratio at least ``cutoff``), or None: for the
    "did you mean ...?" hint of an error message."""
    import difflib

    match = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=cutoff)
    return match[0] if match else None


def feature_shape(model_or_shape) -> tuple:
    """Per-sample output shape of a Keras model (batch axis dropped), or a shape given directly."""
    shape = getattr(model_or_shape, "output_shape", model_or_shape)
    if isinstance(shape, list):
        raise ValueError("models with several outputs cannot be split-learning parts")
    shape = tuple(None if d is None else int(d) for d in shape)
    if hasattr(model_or_shape, "output_shape"):
        shape = shape[1:]
    return shape


def check_output_shape(model_or_shape, expected, what: str) -> tuple:
    """Raise a ValueError naming both shapes unless ``model_or_shape`` produces ``expected`` per sample."""
    got = feature_shape(model_or_shape)
    expected = tuple(int(d) for d in expected)
    if got != expected:
        raise ValueError(f"{what}: output shape per sample is {got}, expected {expected}.")
    return got


def per_sample_output_shape(model, input_shape, what: str) -> tuple:
    """Output shape of ``model`` (batch axis dropped) on one zero input; works for functional and subclassed
    models on any Keras backend. A model that fails on that input, or has several outputs, is a ValueError."""
    try:
        out = model(np.zeros((1,) + tuple(input_shape), np.float32), training=False)
    except Exception as err:  # the user's model: report what it was given
        raise ValueError(f"{what} cannot be applied to inputs of shape {tuple(input_shape)}: {err}") from err
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(f"{what} must have a single output, got {type(out).__name__}")
    return tuple(int(d) for d in out.shape[1:])


def count_params(model) -> int:
    """Keras ``count_params()``: trainable and non-trainable weights (BatchNorm statistics included)."""
    return int(model.count_params())


def set_seed(seed: int | None, deterministic: bool = False) -> None:
    """Seed Python, NumPy and Keras (TensorFlow too under its backend); optionally enable TF op determinism for
    repeatable runs. The same as :func:`splitnn.backend.set_seed`."""
    from splitnn import backend

    backend.set_seed(seed, deterministic)


def seed_generator_states(model) -> list:
    """The state variables of a Keras model's seed generators (Dropout and other random layers).

    A ``tf.train.Checkpoint`` of a Keras 3 model saves its layers' weights but not these states, so a run resumed
    from such a checkpoint would draw other Dropout masks than the uninterrupted run; checkpoints add this list.
    """
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def config_differences(saved: dict, current: dict, ignore=()) -> dict:
    """``{key: (saved value, current value)}`` for every key whose values differ (a key missing on one side counts
    as None there), keys in ``ignore`` left out: what a checkpoint's stored settings and a resumed run disagree on."""
    return {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
            if k not in ignore and saved.get(k) != current.get(k)}


def json_default(obj):
    """``json.dump``'s ``default`` for NumPy values: scalars as Python numbers, arrays as lists, else ``str``."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` through a temporary file in the same folder renamed into place: a reader
    (or a resumed run) sees the whole file or none. Returns the path."""
    import contextlib
    import json
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, default=json_default)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

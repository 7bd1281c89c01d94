"""MNIST pipeline of the client-side attack (original ``ClientSideAttack/dataset.py``).

The training split is used at its native 28x28x1 (no resize, no channel tiling), scaled with
``x / 127.5 - 1`` and clipped to [-1, 1], and shuffled with a buffer of 10,000 that is reshuffled on
every pass: a ``tf.data`` pipeline under Keras' TensorFlow backend (as in the original), a
:class:`splitnn.streams.ArrayStream` (the same buffered shuffle, drawn with NumPy) under JAX. Batching
(``drop_remainder=True``) and repetition are done by :class:`ClientSideAttack.server.Server`, as in the original.
The test split is returned too; the attack does not use it (the package uses it to check the judge classifier and
honest accuracy).
"""

import numpy as np

from splitnn import data as _data

#: Shuffle buffer of the original pipeline.
SHUFFLE_BUFFER = 10_000

__all__ = ["SHUFFLE_BUFFER", "preprocess", "load_mnist_arrays", "load_mnist"]


def preprocess(images):
    """uint8 [N, 28, 28] (or [N, 28, 28, 1]) -> float32 [N, 28, 28, 1] in [-1, 1]."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"expected grayscale images [N, H, W] or [N, H, W, 1], got shape {x.shape}")
    x = x.astype(np.float32) / 127.5 - 1.0
    return np.clip(x, -1.0, 1.0)


def load_mnist_arrays(name="mnist"):
    """Return ``(x_train, y_train, x_test, y_test)``: float32 images in [-1, 1], uint8 labels."""
    raw = _data.load_raw(name)
    return (preprocess(raw.x_train), np.asarray(raw.y_train),
            preprocess(raw.x_test), np.asarray(raw.y_test))


def load_mnist(name="mnist", seed=None):
    """Return ``(xpriv, xtest)`` as unbatched streams of ``(image, label)`` (original ``load_mnist``).

    ``xpriv`` (the training split) is shuffled with a 10,000 buffer, reshuffled each pass;
    ``seed`` makes that order reproducible. ``xtest`` is not shuffled (the original shuffles it the
    same way, but never uses it). Labels keep the Keras dtype (uint8, shape []). Under TensorFlow both are
    ``tf.data`` datasets; under JAX :class:`splitnn.streams.ArrayStream` objects (no TensorFlow needed).
    """
    from splitnn import backend
    from splitnn.streams import ArrayStream

    x_train, y_train, x_test, y_test = load_mnist_arrays(name)
    if not backend.is_tensorflow():
        return (ArrayStream(x_train, y_train, shuffle_buffer=SHUFFLE_BUFFER, seed=seed),
                ArrayStream(x_test, y_test, shuffle_buffer=None))
    import tensorflow as tf  # only under TensorFlow

    xpriv = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(
        SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    xtest = tf.data.Dataset.from_tensor_slices((x_test, y_test))
    return xpriv, xtest

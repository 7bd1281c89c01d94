"""FSHA's datasets, mirroring the original ``datasets.py`` API and semantics.

Each dataset is a stream of ``(image, label)`` pairs (``tf.data`` under Keras' TensorFlow backend,
:class:`splitnn.streams.ArrayStream` under JAX): images float32 32x32x3 in [-1, 1] (28x28
grayscale cast to float, tiled to 3 channels, bilinearly resized to 32x32 on the 0-255 values, scaled with
x/127.5 - 1, clipped), labels uint8 scalars as Keras gives them. Every stream is shuffled with a buffer of
10,000, reshuffled on each pass. Xpriv is the train split and Xpub the test split.

Differences from the original, all without effect on the values: the preprocessing runs once over the whole
array instead of per element inside the pipeline, in NumPy (the same bilinear kernel as ``tf.image.resize``,
equal to float32 rounding), and scikit-learn / TFDS are not imported. The arrays (:func:`load_arrays`) need no
TensorFlow; only the ``tf.data`` streams do (under JAX nothing here imports it).
"""
from __future__ import annotations

import functools

import numpy as np

from splitnn import backend
from splitnn import data as _data
from splitnn.plots import image_grid_figure
from splitnn.streams import SHUFFLE_BUFFER, ArrayStream
IMAGE_SHAPE = (32, 32, 3)


def _bilinear_taps(in_size: int, out_size: int):
    """Source rows (lower, upper) and weights of TF's bilinear resize with half-pixel centres."""
    scale = np.float32(in_size / out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(src)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    return lower, upper, (src - floor).astype(np.float32)


def resize_bilinear(x: np.ndarray, size) -> np.ndarray:
    """``tf.image.resize(x, size)`` (bilinear, half-pixel centres, no antialiasing) in NumPy, float32, for
    images [N, H, W, C].

    Same taps, weights and operation order as TensorFlow's kernel (top and bottom rows interpolated
    along x, then along y), so the FSHA images need no TensorFlow (the JAX runner's GPU machines have
    none). Equal to TensorFlow's output bit for bit (tested)."""
    x = np.asarray(x, np.float32)
    y_lo, y_hi, y_w = _bilinear_taps(x.shape[1], size[0])
    x_lo, x_hi, x_w = _bilinear_taps(x.shape[2], size[1])
    # rows first (a gather along axis 1), then columns: the arrays stay [N, h, w, C]
    top, bottom = np.take(x, y_lo, axis=1), np.take(x, y_hi, axis=1)
    x_w = x_w[None, None, :, None]

    def along_x(rows):
        left, right = np.take(rows, x_lo, axis=2), np.take(rows, x_hi, axis=2)
        return left + (right - left) * x_w
    top, bottom = along_x(top), along_x(bottom)
    return top + (bottom - top) * y_w[None, :, None, None]


def preprocess(x_uint8, batch: int = 8192) -> np.ndarray:
    """FSHA's image transform on an array [N, 28, 28] (or [N, H, W, C]) of uint8 values."""
    x = np.asarray(x_uint8)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected images [N, H, W] or [N, H, W, 1|3], got shape {x.shape}")
    out = np.empty((x.shape[0],) + IMAGE_SHAPE, np.float32)
    for start in range(0, x.shape[0], batch):
        chunk = resize_bilinear(x[start:start + batch].astype(np.float32), IMAGE_SHAPE[:2])
        # grayscale: resized once and then tiled (the original tiles first; the channels are identical either way)
        out[start:start + batch] = np.clip(chunk / np.float32(127.5) - np.float32(1.0), -1.0, 1.0)
    return out


def make_dataset(x, y, shuffle: bool = True):
    """An unbatched stream of ``(image, label)`` over already preprocessed images, shuffled with the original's
    buffer of 10,000 (reshuffled every pass): a ``tf.data`` dataset under Keras' TensorFlow backend, a
    :class:`splitnn.streams.ArrayStream` (the same semantics without TensorFlow) under JAX."""
    if not backend.is_tensorflow():
        return ArrayStream(x, y, shuffle_buffer=SHUFFLE_BUFFER if shuffle else None)
    import tensorflow as tf  # here, so that the NumPy loaders work without TensorFlow

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, reshuffle_each_iteration=True)
    return ds


@functools.lru_cache(maxsize=2)
def _splits_cached(name: str, root):
    raw = _data.load_raw(name)
    arrays = preprocess(raw.x_train), raw.y_train, preprocess(raw.x_test), raw.y_test
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _splits(name: str):
    """Preprocessed train/test arrays, cached per process (keyed by the mirror in use)."""
    root = _data.data_dir()
    return _splits_cached(name, None if root is None else str(root))


def load_arrays(name: str):
    """``(x_train, y_train, x_test, y_test)`` of ``mnist`` or ``fashion_mnist`` as preprocessed, read-only NumPy
    arrays (x_train is Xpriv, x_test Xpub). Needs no TensorFlow."""
    key = _data.canonical_name(name)
    if key not in ("mnist", "fashion_mnist"):
        raise _data.UnknownDatasetError(
            f"FSHA's loaders cover mnist and fashion_mnist; {name!r} has no FSHA preprocessing here "
            f"(use load_omniglot for Omniglot).")
    return _splits(key)


def load_dataset(name: str):
    """``(xpriv, xpub)`` streams for ``mnist`` or ``fashion_mnist`` (any alias :mod:`splitnn.data` knows)."""
    xtr, ytr, xte, yte = load_arrays(name)
    return make_dataset(xtr, ytr), make_dataset(xte, yte)


def load_mnist():
    """Xpriv = MNIST train (60,000), Xpub = MNIST test (10,000)."""
    return load_dataset("mnist")


def load_fashion_mnist():
    """Xpriv = Fashion-MNIST train (60,000), Xpub = Fashion-MNIST test (10,000)."""
    return load_dataset("fashion_mnist")


def remove_class(x, y, class_to_remove):
    """Split arrays into (the examples not of ``class_to_remove``, the examples of it)."""
    y = np.asarray(y)
    keep = y != class_to_remove
    return (x[keep], y[keep]), (x[~keep], y[~keep])


def load_mnist_mangled(class_to_remove):
    """The "mangled" public set: Xpub lacks one class.

    Returns ``(xpriv, xpub, xremoved_examples, xpriv_other)``: the full train split; the test split without
    the class; the train images of the class (for evaluation); the train images of every other class.
    """
    if int(class_to_remove) not in range(10) or int(class_to_remove) != class_to_remove:
        raise ValueError(f"class_to_remove must be an integer digit 0-9, got {class_to_remove!r}")
    xtr, ytr, xte, yte = _splits("mnist")
    (xpub, ypub), _ = remove_class(xte, yte, class_to_remove)
    (xother, yother), (xremoved, yremoved) = remove_class(xtr, ytr, class_to_remove)
    return (make_dataset(xtr, ytr), make_dataset(xpub, ypub),
            make_dataset(xremoved, yremoved), make_dataset(xother, yother))


def load_omniglot(legacy_transform: bool = False, small: bool = False):
    """``(xpriv, xpub)`` from Omniglot (background set = Xpriv, evaluation set = Xpub), 32x32x3.

    The original's short-lived loader mapped images to [0, 2] with |x/127.5 - 2| (inverting them), which does
    not fit the tanh decoder; by default the images are inverted (ink bright, as there) but kept in [-1, 1].
    ``legacy_transform=True`` reproduces the [0, 2] range. Like the original, every label is 1.
    ``small=True`` uses the two small background subsets (the only ones in the shared offline mirror).
    """
    raw = _data.load_raw("omniglot", omniglot_small=small)

    def transform(x):
        x = 255 - np.asarray(x)  # ink bright on dark, as the original's |x - 1| inversion
        img = preprocess(x)
        return img + 1.0 if legacy_transform else img
    ones = lambda x: np.ones(len(x), np.uint8)  # noqa: E731
    return (make_dataset(transform(raw.x_train), ones(raw.x_train)),
            make_dataset(transform(raw.x_test), ones(raw.x_test)))


def getImagesDS(X, n):  # noqa: N802 (original name)
    """Stack the first ``n`` images of an unbatched ``(image, label)`` stream into one array."""
    images = [np.asarray(x) for x, _ in X.take(n)]
    if len(images) < n:
        raise ValueError(f"the stream has only {len(images)} images, {n} requested")
    return np.stack(images)


def plot(X, titles=None):
    """Show a row of images in [-1, 1] (after (X+1)/2); returns the matplotlib figure."""
    return image_grid_figure([np.asarray(X)], titles=titles, value_range=(-1.0, 1.0))

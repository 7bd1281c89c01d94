"""FSHA's data pipeline: the original datasets.py semantics."""
import numpy as np
import pytest
import tensorflow as tf
from available_data import needs

from fsha import datasets
from splitnn import data


@needs("mnist")
def test_preprocess_matches_the_original_order_of_operations():
    raw = data.load_raw("mnist")
    x = datasets.preprocess(raw.x_train[:4])
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
    # by hand: float cast, 3 channels, bilinear resize on 0-255, /127.5 - 1
    ref = tf.image.resize(tf.cast(raw.x_train[:4, :, :, None], tf.float32), (32, 32), method="bilinear")
    ref = np.tile(ref.numpy() / 127.5 - 1.0, (1, 1, 1, 3))
    np.testing.assert_allclose(x, ref, atol=1e-6)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.array_equal(x[..., 0], x[..., 2])


@pytest.mark.parametrize("size", [(32, 32), (7, 9), (13, 29), (40, 11)])
def test_numpy_resize_equals_tf_image_resize(size):
    """The NumPy bilinear resize (so the arrays need no TensorFlow) is TensorFlow's, bit for bit."""
    x = np.random.default_rng(0).uniform(0, 255, (3, 13, 29, 2)).astype(np.float32)
    np.testing.assert_array_equal(datasets.resize_bilinear(x, size), tf.image.resize(x, size).numpy())


@needs("mnist")
def test_load_mnist_streams():
    xpriv, xpub = datasets.load_mnist()
    assert int(xpriv.cardinality()) == 60000 and int(xpub.cardinality()) == 10000
    img, label = next(iter(xpriv))
    assert img.shape == (32, 32, 3) and img.dtype == tf.float32
    assert label.dtype == tf.uint8 and label.shape == ()
    imgs = datasets.getImagesDS(xpub, 5)
    assert imgs.shape == (5, 32, 32, 3) and -1.0 <= imgs.min() and imgs.max() <= 1.0


@needs("mnist")
def test_mangled_mnist_counts():
    xpriv, xpub, xremoved, xother = datasets.load_mnist_mangled(0)
    assert int(xpriv.cardinality()) == 60000
    assert int(xpub.cardinality()) == 9020
    assert int(xremoved.cardinality()) == 5923
    assert int(xother.cardinality()) == 54077
    assert all(int(y) != 0 for _, y in xpub.take(500))
    assert all(int(y) == 0 for _, y in xremoved.take(100))


def test_bad_inputs():
    with pytest.raises(ValueError, match="class_to_remove"):
        datasets.load_mnist_mangled(10)
    with pytest.raises(data.UnknownDatasetError, match="mnist and fashion_mnist"):
        datasets.load_dataset("cifar10")
    with pytest.raises(ValueError, match="expected images"):
        datasets.preprocess(np.zeros((2, 28), np.uint8))


def test_omniglot_loader_on_synthetic_images(monkeypatch):
    """load_omniglot on synthetic 105x105 pages (the loader itself, with the raw arrays stubbed): default
    [-1, 1] with the ink bright, legacy [0, 2] (the original's |x/127.5 - 2|), every label 1."""
    paper = np.full((3, 105, 105), 255, np.uint8)
    paper[:, 40:60, 40:60] = 0  # a square of ink
    raw = data.RawData("omniglot", paper, np.arange(3), paper[:2], np.arange(2), source="synthetic")
    asked = {}

    def fake_load_raw(name, **kw):
        asked.update(kw, name=name)
        return raw
    monkeypatch.setattr(datasets._data, "load_raw", fake_load_raw)
    for legacy, (lo, hi) in ((False, (-1.0, 1.0)), (True, (0.0, 2.0))):
        xpriv, xpub = datasets.load_omniglot(legacy_transform=legacy, small=True)
        x, y = next(iter(xpriv.batch(3)))
        assert x.shape == (3, 32, 32, 3) and y.numpy().tolist() == [1, 1, 1]
        assert float(x[0, 0, 0, 0]) == lo and float(x[0, 16, 16, 0]) == hi  # background dark, ink bright
        np.testing.assert_array_equal(x.numpy(), datasets.preprocess(255 - paper) + (1.0 if legacy else 0.0))
        assert len(list(xpub)) == 2
    assert asked == {"name": "omniglot", "omniglot_small": True}

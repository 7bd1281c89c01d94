"""Property inference (FSHA_binary_property) and the property datasets (paper §3.5; the original ``FSHA.py``,
class ``FSHA_binary_property``)."""
import numpy as np
import pytest
import tensorflow as tf

from fsha import architectures, properties
from fsha.FSHA import FSHA_binary_property
from splitnn.data import MissingDataError

IMG = (16, 16, 3)
BATCH = 8
HP = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-3, 'lr_tilde': 1e-3, 'lr_D': 1e-3}


def stream(n, seed, labels=None, shape=IMG):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n,) + shape).astype(np.float32)
    y = rng.integers(0, 2, size=n).astype(np.uint8) if labels is None else labels
    return tf.data.Dataset.from_tensor_slices((x, y))


def nets(shape=IMG):
    n = architectures.small_networks(shape, width=4, z_channels=8, critic_width=8)
    del n['decoder']  # the decoder slot holds the property head
    return n


def make(hparams=HP, xpriv=None, xpub=None):
    return FSHA_binary_property(xpriv or stream(32, 0), xpub or stream(32, 1), 5, BATCH, hparams, **nets())


def test_step_returns_five_finite_values_and_log_has_five_columns():
    m = make()
    assert tuple(m.decoder.output.shape[1:]) == (1,) and m.decoder.count_params() == 4 * 4 * 8 + 1
    x, y = next(iter(stream(BATCH, 2).batch(BATCH)))  # y: uint8 [B]
    logits = m.decoder(m.f(x, training=True), training=False)
    want = np.mean((logits.numpy()[:, 0] > 0) == y.numpy())
    out = m.train_step(x, x, y, y)
    assert len(out) == 5 and all(np.isfinite(float(v)) for v in out)
    assert float(out[3]) == pytest.approx(want)  # private accuracy before the update
    log = m(3, progress_bar=False, log_frequency=1)  # the original crashes here (4-column LOG)
    assert log.shape == (3, 5) and np.isfinite(log).all()
    assert ((log[:, 3:] >= 0) & (log[:, 3:] <= 1)).all()
    steps, means = m.running_mean_history  # log_frequency=1: each running mean is its step's row
    assert steps.tolist() == [0, 1, 2] and means.shape == (3, 5)
    np.testing.assert_allclose(means, log)
    np.testing.assert_array_equal(m.validation_history[1], means[:, 3])  # private accuracy


@pytest.mark.parametrize('labels', [
    np.array([1, 1, 1, 0], np.uint8),
    np.array([[1], [1], [1], [0]], np.int32),
    np.array([True, True, True, False]),
    np.array([[1.0], [1.0], [1.0], [0.0]], np.float32),
    np.array([1, 1, 1, 0], np.int64),
])
def test_accuracy_for_every_label_form(labels):
    m = make()
    logits = tf.constant([[2.0], [-1.0], [0.3], [-0.2]])  # predictions 1, 0, 1, 0
    acc = float(m.accuracy(m.prepare_labels(labels), logits))
    assert acc == pytest.approx(0.75)  # a [B] vector against [B, 1] predictions would give 0.5 here


def test_bad_labels_rejected():
    m = make()
    with pytest.raises(ValueError, match=r'\[B\] or \[B, 1\]'):
        m.prepare_labels(np.zeros((4, 2), np.uint8))
    with pytest.raises(TypeError, match='dtype string'):
        m.prepare_labels(np.array(['a', 'b']))
    with pytest.raises(ValueError, match='per example'):
        make(xpriv=stream(32, 0, labels=np.zeros((32, 2), np.uint8)))
    with pytest.raises(TypeError, match='string'):
        make(xpub=stream(32, 0, labels=np.array(['x'] * 32)))


def test_multiclass_head():
    m = make(dict(HP, class_num=3), xpriv=stream(32, 0, labels=np.arange(32) % 3),
             xpub=stream(32, 1, labels=(np.arange(32) % 3).astype(np.uint8)))
    assert tuple(m.decoder.output.shape[1:]) == (3,)
    log = m(2, progress_bar=False, log_frequency=1)
    assert log.shape == (2, 5) and np.isfinite(log).all()
    logits = tf.constant([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0]])
    assert float(m.accuracy(m.prepare_labels(np.array([0, 1, 0, 0], np.uint8)), logits)) == pytest.approx(0.75)
    assert 0 <= m.scoreAttack(stream(16, 5, labels=np.arange(16) % 3), progress_bar=False) <= 1


def test_binary_property_helper():
    ds = stream(10, 0, labels=np.arange(10, dtype=np.uint8))
    labels = [int(y) for _, y in properties.binary_property(ds, properties.label_less_than(5))]
    assert labels == [1] * 5 + [0] * 5


def celeba_like(n):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 218, 178, 3), dtype=np.uint8)
    attributes = {a: rng.integers(0, 2, size=n).astype(bool) for a in properties.CELEBA_ATTRIBUTES}
    attributes['Smiling'] = np.arange(n) % 2 == 0
    return tf.data.Dataset.from_tensor_slices({'image': images, 'attributes': attributes})


def test_celeba_stream_on_synthetic_data_runs_the_attack():
    ds = properties.celeba_property_stream(celeba_like(8), 'Smiling', image_size=32)
    x, y = next(iter(ds.batch(8)))
    assert x.shape == (8, 32, 32, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) >= -1 and float(tf.reduce_max(x)) <= 1
    assert y.dtype == tf.uint8 and y.numpy().tolist() == [1, 0] * 4
    m = FSHA_binary_property(ds, ds, 5, 4, HP, **nets((32, 32, 3)))
    log = m(2, progress_bar=False, log_frequency=1)
    assert log.shape == (2, 5) and np.isfinite(log).all()
    with pytest.raises(ValueError, match='unknown CelebA attribute'):
        properties.celeba_property_stream(celeba_like(2), 'Smiles')


def test_celeba_missing_data_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv('SPLITNN_DATA_DIR', str(tmp_path))
    with pytest.raises(MissingDataError) as err:
        properties.load_celeba_property('Smiling')
    message = str(err.value)
    assert str(tmp_path / 'celeba' / 'celeb_a') in message and 'never downloads' in message


def test_celeba_failed_download_names_the_mirror(monkeypatch):
    tfds = pytest.importorskip('tensorflow_datasets')
    monkeypatch.delenv('SPLITNN_DATA_DIR', raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError('Failed to connect to drive.google.com')
    monkeypatch.setattr(tfds, 'load', offline)
    with pytest.raises(MissingDataError) as err:
        properties.load_celeba_property('Smiling')
    message = str(err.value)
    assert 'drive.google.com' in message and 'SPLITNN_DATA_DIR' in message and 'celeba/celeb_a/' in message


@pytest.mark.parametrize('private_head', ['training', 'inference'])
def test_private_head_mode_decides_whether_the_heads_statistics_see_private_data(private_head):
    """class_num = 3 (the head has BatchNorm): with the original's 'training' mode the head's moving statistics
    after a step depend on the private batch; with 'inference' they do not. Same weights, same public batch."""
    import keras

    def head_stats(private_seed):
        keras.utils.set_random_seed(0)
        labels = (np.arange(8) % 3).astype(np.uint8)
        m = FSHA_binary_property(stream(8, private_seed, labels=labels), stream(8, 1, labels=labels), 5, BATCH,
                                 dict(HP, class_num=3), private_head=private_head, **nets())
        m(1, progress_bar=False)
        return [v.numpy() for v in m.decoder.non_trainable_variables]

    a, b = head_stats(10), head_stats(11)
    assert a and len(a) == len(b)
    same = all(np.array_equal(u, v) for u, v in zip(a, b))
    assert same == (private_head == 'inference')


def test_bad_private_head_mode():
    with pytest.raises(ValueError, match="private_head"):
        FSHA_binary_property(stream(8, 0), stream(8, 1), 5, BATCH, HP, private_head='eval', **nets())

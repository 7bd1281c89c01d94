"""Binary-property datasets for :class:`fsha.FSHA.FSHA_binary_property` (not in the original).

The original ships no loader for the attribute datasets of the paper (CelebA, UTKFace) and never published the
property-inference hyperparameters, so the offline demonstration uses a property derived from MNIST or
Fashion-MNIST labels, e.g. "digit < 5" (:func:`load_mnist_property`). :func:`load_celeba_property` reads a CelebA
attribute through tensorflow-datasets.
"""

import os
from pathlib import Path

import numpy as np
from keras import ops

from splitnn.data import DATA_DIR_ENV, MissingDataError
from splitnn.streams import ArrayStream

CELEBA_ATTRIBUTES = (
    '5_o_Clock_Shadow', 'Arched_Eyebrows', 'Attractive', 'Bags_Under_Eyes', 'Bald', 'Bangs', 'Big_Lips',
    'Big_Nose', 'Black_Hair', 'Blond_Hair', 'Blurry', 'Brown_Hair', 'Bushy_Eyebrows', 'Chubby', 'Double_Chin',
    'Eyeglasses', 'Goatee', 'Gray_Hair', 'Heavy_Makeup', 'High_Cheekbones', 'Male', 'Mouth_Slightly_Open',
    'Mustache', 'Narrow_Eyes', 'No_Beard', 'Oval_Face', 'Pale_Skin', 'Pointy_Nose', 'Receding_Hairline',
    'Rosy_Cheeks', 'Sideburns', 'Smiling', 'Straight_Hair', 'Wavy_Hair', 'Wearing_Earrings', 'Wearing_Hat',
    'Wearing_Lipstick', 'Wearing_Necklace', 'Wearing_Necktie', 'Young')
CELEBA_TFDS_NAME = 'celeb_a'
SHUFFLE_BUFFER = 10_000


def binary_property(ds, predicate):
    """Map an ``(image, label)`` stream to ``(image, uint8 property)`` with ``predicate(label) -> bool tensor``
    (a ``tf.data`` stream, or an :class:`~splitnn.streams.ArrayStream` whose labels are mapped at once)."""
    if isinstance(ds, ArrayStream):
        labels = np.asarray(ops.convert_to_numpy(predicate(ds.labels))).astype(np.uint8)
        return ArrayStream(ds.images, labels, ds.shuffle_buffer, ds.seed)
    import tensorflow as tf

    def to_property(x, y):
        return x, tf.cast(predicate(y), tf.uint8)
    return ds.map(to_property, num_parallel_calls=tf.data.AUTOTUNE)


def label_less_than(threshold):
    """Predicate "label < threshold" (on MNIST with 5: digits 0-4 vs 5-9, a balanced property)."""
    return lambda y: ops.cast(y, 'int32') < int(threshold)


def load_mnist_property(threshold=5, dataset='mnist'):
    """``(xpriv, xpub)`` of MNIST (or ``dataset='fashion_mnist'``) with the property label "label < threshold"."""
    from fsha import datasets

    xpriv, xpub = datasets.load_dataset(dataset)
    predicate = label_less_than(threshold)
    return binary_property(xpriv, predicate), binary_property(xpub, predicate)


def celeba_preprocess(image, image_size=32):
    """CelebA image (218x178x3 uint8) -> central 178x178 square, bilinear resize, float32 in [-1, 1]."""
    import tensorflow as tf  # CelebA comes through tensorflow-datasets

    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3 or image.shape[-1] != 3:
        raise ValueError(f'expected one RGB image [H, W, 3], got shape {image.shape}')
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(h, w)
    image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size))
    return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def celeba_property_stream(ds, attribute, image_size=32):
    """Map a TFDS-style CelebA stream of ``{'image', 'attributes': {name: bool}}`` to ``(image, uint8)``."""
    _check_attribute(attribute)
    import tensorflow as tf

    def to_pair(example):
        return (celeba_preprocess(example['image'], image_size),
                tf.cast(example['attributes'][attribute], tf.uint8))
    return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)


def _check_attribute(attribute):
    if attribute not in CELEBA_ATTRIBUTES:
        raise ValueError(f'unknown CelebA attribute {attribute!r}; one of: {", ".join(CELEBA_ATTRIBUTES)}')


def celeba_data_dir():
    """``$SPLITNN_DATA_DIR/celeba`` when the variable is set, else None (TFDS's default data_dir)."""
    root = os.environ.get(DATA_DIR_ENV, '').strip()
    return Path(root).expanduser() / 'celeba' if root else None


def load_celeba_property(attribute, image_size=32, splits=('train', 'test')):
    """``(xpriv, xpub)`` CelebA streams (train, test by default) labelled with one binary attribute.

    With ``SPLITNN_DATA_DIR`` set, reads the prepared TFDS dataset from ``$SPLITNN_DATA_DIR/celeba`` and never
    downloads; a missing dataset raises :class:`splitnn.data.MissingDataError` naming the folder expected.
    Without it, TFDS downloads and prepares CelebA in its default data_dir (about 1.4 GB); a failed download
    raises :class:`~splitnn.data.MissingDataError` with TFDS's error and the mirror layout that would replace it.
    Images: central square crop, resized to ``image_size`` (our choice; the paper's CelebA pipeline was not
    released).
    """
    _check_attribute(attribute)
    data_dir = celeba_data_dir()
    if data_dir is not None:
        prepared = sorted(p.parent for p in (data_dir / CELEBA_TFDS_NAME).glob('*/dataset_info.json'))
        if not prepared:
            raise MissingDataError(
                f'CelebA not found: {DATA_DIR_ENV} is set, so the loader reads the prepared TFDS dataset from '
                f'{data_dir} and never downloads. Expected {data_dir / CELEBA_TFDS_NAME}/<version>/ '
                f'(dataset_info.json and the celeb_a-<split>.tfrecord-* files), as written by '
                f'`tfds build celeb_a --data_dir {data_dir}` on a machine with network access.')
    try:
        import tensorflow_datasets as tfds
    except Exception as err:  # e.g. protobuf conflicts; see the shared data README
        raise ImportError(f'load_celeba_property needs tensorflow-datasets, which failed to import: {err}') from err
    kwargs = {'data_dir': str(data_dir), 'download': False} if data_dir is not None else {}
    try:
        streams = tfds.load(CELEBA_TFDS_NAME, split=list(splits), shuffle_files=False, **kwargs)
    except Exception as err:  # a failed download (no network, Google Drive quota) comes in several types
        if data_dir is not None:
            raise
        # Not necessarily a download (e.g. a misspelt split), so the message quotes TFDS and says "if".
        raise MissingDataError(
            f'tensorflow-datasets could not load CelebA: {err}\nIf the download failed (no network), set '
            f'{DATA_DIR_ENV} to an offline mirror whose celeba/{CELEBA_TFDS_NAME}/<version>/ holds the prepared '
            f'TFDS dataset (`tfds build celeb_a --data_dir <mirror>/celeba` on a machine with network access).'
        ) from err
    return tuple(celeba_property_stream(ds, attribute, image_size).shuffle(SHUFFLE_BUFFER) for ds in streams)


def property_balance(ds, n=10_000):
    """Fraction of positives among the first ``n`` labels of an ``(image, property)`` stream."""
    if isinstance(ds, ArrayStream):
        return float(np.mean(ds.labels[:n]))
    labels = np.concatenate([y.numpy().reshape(-1) for _, y in ds.take(n).batch(1024)])
    return float(labels.mean())

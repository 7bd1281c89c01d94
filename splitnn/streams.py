"""Data streams without TensorFlow: what the loaders return under Keras' JAX backend.

:class:`ArrayStream` is an unbatched stream of ``(image, label)`` pairs over NumPy arrays with the semantics of
the originals' ``tf.data`` pipelines: ``shuffle(10_000, reshuffle_each_iteration=True)`` (the same buffer algorithm,
:func:`splitnn.data.buffered_shuffle`, drawn from a NumPy generator: the same kind of order, another random
stream), then ``batch(batch_size, drop_remainder=True).repeat()`` by :meth:`ArrayStream.batches`. Its batch
iterator's position (pass order, index, generator state) is part of a checkpoint, so a resumed run continues the
data where it stopped.

Under TensorFlow the loaders keep returning ``tf.data`` datasets, and the attacks accept both kinds.
"""
from __future__ import annotations

import numpy as np

from splitnn.data import buffered_shuffle

SHUFFLE_BUFFER = 10_000


class ArrayStream:
    """``ArrayStream(images, labels=None, shuffle_buffer=10_000, seed=None)``: an unbatched, shuffled stream.

    ``shuffle_buffer=None`` keeps the arrays' order (no shuffling); ``labels=None`` gives every image label 0.
    Iterating yields one pass of ``(image, label)`` pairs in a fresh order (each pass another order, as
    ``reshuffle_each_iteration=True``); ``batches`` starts its own sequence of passes from the stream's seed.
    """

    def __init__(self, images, labels=None, shuffle_buffer=SHUFFLE_BUFFER, seed=None):
        self.images = np.asarray(images)
        if self.images.ndim < 2:
            raise ValueError(f'images must have a leading example axis and a per-example shape, got shape '
                             f'{self.images.shape}')
        if labels is None:
            labels = np.zeros(len(self.images), np.uint8)
        self.labels = np.asarray(labels)
        if len(self.labels) != len(self.images):
            raise ValueError(f'{len(self.images)} images but {len(self.labels)} labels')
        if shuffle_buffer is not None and (isinstance(shuffle_buffer, bool) or int(shuffle_buffer) < 1):
            raise ValueError(f'shuffle_buffer must be a positive int or None, got {shuffle_buffer!r}')
        self.shuffle_buffer = None if shuffle_buffer is None else int(shuffle_buffer)
        # unseeded: a seed from NumPy's global generator, so that seeding it (splitnn.backend.set_seed) before
        # building the streams fixes their order, as seeding TensorFlow fixes a tf.data shuffle's
        self.seed = int(np.random.randint(2 ** 31 - 1)) if seed is None else seed
        self._rng = np.random.default_rng(seed)

    @property
    def element_shape(self):
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def label_shape(self):
        return tuple(int(d) for d in self.labels.shape[1:])

    def __len__(self):
        return len(self.images)

    def order(self, rng=None):
        """One pass's order of the examples."""
        rng = self._rng if rng is None else rng
        if self.shuffle_buffer is None:
            return np.arange(len(self))
        return buffered_shuffle(len(self), self.shuffle_buffer, rng)

    def __iter__(self):
        for i in self.order():
            yield self.images[i], self.labels[i]

    def take(self, n):
        """A stream of the first ``n`` examples of a fresh pass (in the arrays' order when unshuffled), like
        ``tf.data``'s ``take`` (which, on a reshuffled stream, draws another subset on every pass)."""
        idx = self.order()[:int(n)]
        return ArrayStream(self.images[idx], self.labels[idx], self.shuffle_buffer, self.seed)

    def filter_labels(self, keep):
        """A stream of the examples whose label satisfies ``keep(labels) -> bool mask``."""
        mask = np.asarray(keep(self.labels), bool)
        return ArrayStream(self.images[mask], self.labels[mask], self.shuffle_buffer, self.seed)

    def batches(self, batch_size, seed=None):
        """Endless batches (remainder of each pass dropped, a new order every pass): a :class:`BatchIterator`."""
        return BatchIterator(self, batch_size, seed=self.seed if seed is None else seed)


class BatchIterator:
    """Endless ``(images, labels)`` batches of an :class:`ArrayStream`; ``state()`` / ``set_state()`` for
    checkpoints (the current pass's order, the position in it and the generator's state)."""

    def __init__(self, stream, batch_size, seed=None):
        if len(stream) < batch_size:
            raise ValueError(f'the stream has {len(stream)} examples, fewer than one batch of {batch_size}')
        self.stream, self.batch_size = stream, int(batch_size)
        self.rng = np.random.default_rng(seed)
        self._order, self._pos = np.zeros(0, np.int64), 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._pos + self.batch_size > len(self._order):
            self._order, self._pos = self.stream.order(self.rng), 0
        idx = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.stream.images[idx], self.stream.labels[idx]

    def state(self):
        return {'order': self._order.copy(), 'position': np.int64(self._pos),
                'rng': np.frombuffer(repr(self.rng.bit_generator.state).encode(), np.uint8)}

    def set_state(self, state):
        import ast
        self._order = np.asarray(state['order'], np.int64)
        self._pos = int(state['position'])
        self.rng.bit_generator.state = ast.literal_eval(bytes(np.asarray(state['rng'], np.uint8)).decode())

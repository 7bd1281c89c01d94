"""Honest single-client split learning, the baseline FSHA hijacks (not in the original).

The client holds f and its labelled private data; the server holds s (here: a ResBlock, ReLU and a dense task head on
the flattened features) and trains it, while f receives the task gradient. Compare its task accuracy with a
hijacked run:

* ``HonestSplitTraining(xpriv, id_setup=3)(iterations)`` then ``evaluate(xtest)``: what honest training reaches;
* ``HonestSplitTraining(xpriv, client=attack.f, train_client=False)``: a task head trained on top of the frozen,
  hijacked f, i.e. how much task information the hijacked features still carry (the hijacked run itself trains
  no task model at all).

Client and server each have their own Adam optimizer, as two parties would.
"""

import numbers

import keras
import numpy as np
from keras import layers, ops

from fsha import architectures
from fsha.FSHA import FSHA, _batched, _image_spec, _positive_int, as_stream
from splitnn import backend
from splitnn.streams import ArrayStream
from splitnn.utils import check_output_shape, per_sample_output_shape, set_seed


FSHA_infer = FSHA._infer


def default_server(z_shape, num_classes=10, name='server'):
    """Server network plus task head on features of shape ``z_shape``, producing logits."""
    inp = keras.Input(tuple(z_shape))
    if len(z_shape) == 3:
        x = architectures.res_block(inp, z_shape[-1])
        x = layers.Flatten()(layers.Activation('relu')(x))
    else:
        x = layers.Dense(256, activation='relu')(layers.Flatten()(inp))
    return keras.Model(inp, layers.Dense(num_classes)(x), name=name)


class HonestSplitTraining:
    """Train client f and server s on private labels with cross-entropy; LOG columns (task_loss, task_accuracy)."""

    LOG_COLUMNS = ('task_loss', 'task_accuracy')

    def __init__(self, xpriv, id_setup=3, batch_size=64, num_classes=10, lr=1e-3, *, client=None, server=None,
                 train_client=True, seed=None, resblock_bn=False):
        self.batch_size = _positive_int(batch_size, 'batch_size')
        self.num_classes = _positive_int(num_classes, 'num_classes', minimum=2)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
            raise ValueError(f'lr must be a number > 0, got {lr!r}')
        if seed is not None:
            set_seed(int(seed))
        xpriv = as_stream(xpriv, 'xpriv')
        label_spec, self.input_shape = _image_spec(xpriv, 'xpriv')
        if label_spec is None:
            raise ValueError('xpriv must yield (image, label) pairs: honest training needs the labels')
        self.train_client = bool(train_client)
        self.xpriv = xpriv
        self.f = client if client is not None else architectures.SETUPS[id_setup][0](
            self.input_shape, resblock_bn=resblock_bn)
        self.z_shape = per_sample_output_shape(self.f, self.input_shape, 'client network f')
        self.s = server if server is not None else default_server(self.z_shape, self.num_classes)
        check_output_shape(per_sample_output_shape(self.s, self.z_shape, 'server s'), (self.num_classes,),
                           'server s (one logit per class)')
        self.optimizer_client = keras.optimizers.Adam(lr)
        self.optimizer_server = keras.optimizers.Adam(lr)
        self.optimizer_client.build(self.f.trainable_variables)
        self.optimizer_server.build(self.s.trainable_variables)
        self.iteration = 0
        self._iterator = None
        self._acc_mean = 0.0  # running sum of accuracy / L since the last logged step (continues across calls)
        self._history = []  # (step, running-mean task accuracy) at every logged step
        self._variables = (self.f.trainable_variables + self.s.trainable_variables + self.f.non_trainable_variables
                           + self.s.non_trainable_variables + self.optimizer_client.variables
                           + self.optimizer_server.variables)
        self._step_fn = backend.StatefulStep(self.pure_step, self._variables)
        self._eval_fn = backend.compile(self._correct)

    @staticmethod
    def _labels(y):
        y = ops.convert_to_tensor(y)
        if len(y.shape) not in (1, 2) or (len(y.shape) == 2 and y.shape[1] != 1):
            raise ValueError(f'labels must have shape [B] or [B, 1], got {tuple(y.shape)}')
        return ops.reshape(ops.cast(y, 'int32'), [-1])

    def pure_step(self, values, x, y):
        """One step as a pure function of the state's values (see :class:`splitnn.backend.StatefulStep`):
        cross-entropy of s(f(x)); f (if trained) and s each take an Adam step on its gradient."""
        y = self._labels(y)
        sizes = [len(self.f.trainable_variables), len(self.s.trainable_variables),
                 len(self.f.non_trainable_variables), len(self.s.non_trainable_variables),
                 len(self.optimizer_client.variables)]
        cuts = np.cumsum(sizes)
        f_tv, s_tv, f_ntv, s_ntv, oc, os_ = (values[:cuts[0]], values[cuts[0]:cuts[1]], values[cuts[1]:cuts[2]],
                                              values[cuts[2]:cuts[3]], values[cuts[3]:cuts[4]], values[cuts[4]:])

        def fn(params, x, y):
            z, new_f = self.f.stateless_call(params[0], f_ntv, x, training=self.train_client)
            logits, new_s = self.s.stateless_call(params[1], s_ntv, z, training=True)
            loss = ops.mean(ops.sparse_categorical_crossentropy(y, logits, from_logits=True))
            return (loss,), (logits, new_f, new_s)

        wrt = ([(0, 0)] if self.train_client else []) + [(0, 1)]
        (loss,), (logits, f_ntv, s_ntv), grads = backend.loss_grads(fn, (f_tv, s_tv), wrt, x, y)
        if self.train_client:
            f_tv, oc = backend.apply_gradients(self.optimizer_client, oc, grads[0], f_tv)
        s_tv, os_ = backend.apply_gradients(self.optimizer_server, os_, grads[-1], s_tv)
        accuracy = ops.mean(ops.cast(ops.equal(ops.cast(ops.argmax(logits, -1), 'int32'), y), 'float32'))
        return list(f_tv) + list(s_tv) + list(f_ntv) + list(s_ntv) + list(oc) + list(os_), (loss, accuracy)

    def train_step(self, x, y):
        """One step on the batch ``(x, y)``; returns ``(task_loss, task_accuracy)``."""
        return self._step_fn(x, y)

    @property
    def accuracy_history(self):
        """``(steps, values)``: the running-mean training accuracy at every logged step of every call (what
        ``verbose`` prints): step 0 alone, then the mean over steps (k-1)L+1 .. kL at step kL, as in FSHA."""
        steps = np.array([s for s, _ in self._history], np.int64)
        return steps, np.array([v for _, v in self._history], np.float64)

    def __call__(self, iterations, log_frequency=500, verbose=False, progress_bar=True):
        """Train; LOG rows are single steps every ``log_frequency``; verbose prints the running-mean accuracy
        (kept in :attr:`accuracy_history`). Step numbers continue across calls, like FSHA's."""
        iterations = _positive_int(iterations, 'iterations', minimum=0)
        log_frequency = _positive_int(log_frequency, 'log_frequency')
        if self._iterator is None:
            self._iterator = _batched(self.xpriv, self.batch_size)
        start = self.iteration
        first = -(-start // log_frequency) * log_frequency
        LOG = np.zeros((max(0, -(-(start + iterations - first) // log_frequency)), 2))
        bar = keras.utils.Progbar(iterations) if progress_bar and iterations else None
        acc_mean, j = self._acc_mean, 0
        for i in range(iterations):
            step = start + i
            x, y = next(self._iterator)
            row = np.array([float(v) for v in self._step_fn(x, y)])
            acc_mean = row[1] if step == 0 else acc_mean + row[1] / log_frequency
            if step % log_frequency == 0:
                LOG[j] = row
                j += 1
                self._history.append((step, float(acc_mean)))
                if verbose:
                    print('log--%02d%%-%07d] task accuracy: %0.4f' % (int(i / iterations * 100), step, acc_mean))
                acc_mean = 0.0
            self.iteration = step + 1
            self._acc_mean = acc_mean
            if bar is not None:
                bar.update(i + 1)
        return LOG

    def _correct(self, values, x, y):
        nf = len(self.f.variables)
        logits = FSHA_infer(self.s, values[nf:], FSHA_infer(self.f, values[:nf], x))
        return ops.sum(ops.cast(ops.equal(ops.cast(ops.argmax(logits, -1), 'int32'), self._labels(y)), 'float32'))

    def evaluate(self, dataset, batch_size=256):
        """Task accuracy (inference mode) over an unbatched ``(image, label)`` stream."""
        dataset = as_stream(dataset, 'dataset')
        if isinstance(dataset, ArrayStream):
            batches = ((dataset.images[i:i + batch_size], dataset.labels[i:i + batch_size])
                       for i in range(0, len(dataset), batch_size))
        else:
            batches = dataset.batch(batch_size)
        values = backend.variable_values(self.f.variables + self.s.variables)
        correct, total = 0.0, 0
        for x, y in batches:
            correct += float(self._eval_fn(values, x, y))
            total += int(x.shape[0])
        if total == 0:
            raise ValueError('evaluate: the dataset is empty')
        return correct / total

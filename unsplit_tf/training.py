"""Training the split target model and measuring the stolen clone (original ``model_inversion_demo.py`` and
``unsplit/util.py``, ``get_test_score``).

Target training as in the original ``model_inversion_demo.py``: client (layers 0..d) and server (d+1..end) are
independently initialised full copies of the network; every step computes ``server(client(x, end=d),
start=d+1)``, the mean cross-entropy from logits, and steps the **server, then the client**, each with its own
PyTorch-exact AMSGrad Adam (lr 1e-3). Batches of 64 from a fresh shuffle every epoch, **last partial batch
kept** (938 batches per epoch for MNIST-like data, 782 for CIFAR-10).

Clone accuracy, the two metrics, each on the original's sampler (~1,820 random draws with replacement, see
:func:`unsplit_tf.util.repo_sampler_indices`) and on the full test set:

* ``repo_literal``: the original demo's printed "Clone test score": the **real client's** layers 0..d followed by
  the **clone's** layers d+1..end, which nothing trains (so it sits near chance). Reported because the original
  prints it, clearly labelled.
* ``intended``: the clone's layers 0..d followed by the trained **server**: a functionally similar clone in the
  paper's sense (consistent with the paper's Table 2 values).
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
from keras import ops

from splitnn import backend

from unsplit_tf.models import SplitNet
from unsplit_tf.optim import TorchAdam, make_optimizer
from unsplit_tf.util import get_test_score, mean


@dataclasses.dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float  # %, the original's get_test_score(client, server, ...) with the chosen sampler
    seconds: float


@dataclasses.dataclass
class TrainHistory:
    epochs: list = dataclasses.field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.epochs[-1].accuracy if self.epochs else float("nan")


def _ce(logits, labels):
    return mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def make_train_step(client: SplitNet, server: SplitNet, split_depth: int, optimizer: str = "torch",
                    jit_compile: bool = True):
    """A compiled step: forward through client 0..d and server d+1..end, CE, step server then client.

    A pure step on :class:`splitnn.backend.StatefulStep` (one ``tf.function``, XLA with ``jit_compile``, under
    TensorFlow; ``jax.jit`` under JAX); ``step(x, y)`` returns the loss."""
    cvars = client.client_weights(split_depth)
    svars = server.server_weights(split_depth)
    if optimizer == "torch":
        opt_c, opt_s = TorchAdam().build(cvars), TorchAdam().build(svars)
        slots_c, slots_s = opt_c.slots(cvars), opt_s.slots(svars)

        def update(opt, slot_values, grads, values, variables):
            return opt.stateless_step(values, grads, slot_values)
    else:
        opt_c, opt_s = make_optimizer(optimizer), make_optimizer(optimizer)
        opt_c.build(cvars)
        opt_s.build(svars)
        slots_c, slots_s = list(opt_c.variables), list(opt_s.variables)

        def update(opt, slot_values, grads, values, variables):
            return backend.apply_gradients(opt, slot_values, grads, values, variables)
    nc, ns, noc = len(cvars), len(svars), len(slots_c)

    def loss_fn(params, x, y):
        mapping = list(zip(cvars + svars, list(params[0]) + list(params[1])))
        with keras.StatelessScope(state_mapping=mapping):
            logits = server(client(x, end=split_depth), start=split_depth + 1)
        return (_ce(logits, y),), None

    def step(values, x, y):
        c, s = values[:nc], values[nc:nc + ns]
        oc, os_ = values[nc + ns:nc + ns + noc], values[nc + ns + noc:]
        (loss,), _, (gs, gc) = backend.loss_grads(loss_fn, (c, s), [(0, 1), (0, 0)], x, y)
        s, os_ = update(opt_s, os_, gs, s, svars)
        c, oc = update(opt_c, oc, gc, c, cvars)
        return list(c) + list(s) + list(oc) + list(os_), loss

    stateful = backend.StatefulStep(step, cvars + svars + slots_c + slots_s,
                                    jit_compile=jit_compile and backend.is_tensorflow())
    return stateful


def train_split(client: SplitNet, server: SplitNet, x_train, y_train, split_depth: int, epochs: int = 10,
                batch_size: int = 64, x_test=None, y_test=None, sampler: str = "repo", seed=None,
                max_batches: int | None = None, optimizer: str = "torch", jit_compile: bool = True,
                printer=print, on_epoch_end=None) -> TrainHistory:
    """Train client + server as the original demo does; prints "Epoch: e Loss: L Acc: A" per epoch.

    ``max_batches`` truncates every epoch (tiny budgets only; not original). ``on_epoch_end(epoch)`` is called
    after each epoch (e.g. to attack after every epoch for the paper's Fig. 2).
    """
    rng = np.random.default_rng(seed)
    x_train = np.asarray(x_train)
    y_train = np.asarray(y_train).reshape(-1).astype(np.int32)
    step = make_train_step(client, server, split_depth, optimizer, jit_compile)
    history = TrainHistory()
    n = len(y_train)
    for epoch in range(int(epochs)):
        start = time.perf_counter()
        order = rng.permutation(n)
        total, batches = 0.0, 0
        for s in range(0, n, batch_size):  # last partial batch kept
            if max_batches is not None and batches >= max_batches:
                break
            sel = order[s:s + batch_size]
            total += float(step(x_train[sel].astype(client.dtype), y_train[sel]))
            batches += 1
        loss = total / max(batches, 1)
        acc = float("nan")
        if x_test is not None:
            acc = get_test_score(client, server, x_test, y_test, split_depth, sampler=sampler, rng=rng)
        history.epochs.append(EpochLog(epoch, loss, acc, time.perf_counter() - start))
        if printer is not None:
            printer(f"Epoch: {epoch} Loss: {loss} Acc: {acc}")
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return history


@dataclasses.dataclass
class CloneAccuracy:
    """Clone accuracies in % (see module docstring). ``*_repo``: the repo's sampler (``repo_count`` effective
    draws); ``*_full``: the whole test set of ``n_test`` images."""
    repo_literal_repo: float
    repo_literal_full: float
    intended_repo: float
    intended_full: float
    repo_count: int
    n_test: int

    def lines(self, partial_label: str = "", split_depth: int | None = None) -> list:
        """The two lines the demo prints: the original demo's "Clone test score" (labelled as the original's metric,
        on its sampler) and the meaningful clone accuracy (clone bottom + trained server top, full test split)."""
        tag = f" [{partial_label}]" if partial_label else ""
        bottom = "0..end of the client" if split_depth is None else f"0..{int(split_depth)}"
        top = "above the split" if split_depth is None else f"{int(split_depth) + 1}..end"
        return [
            f"Clone test score: {self.repo_literal_repo:.2f}%  (the original demo's metric: the real client's layers "
            f"{bottom} followed by the clone's layers {top}, which the attack never trains, so it measures an "
            f"untrained top and sits near chance; the original's sampler, {self.repo_count} random test draws){tag}",
            f"Clone accuracy: {self.intended_full:.2f}%  (the stolen client: the clone's layers {bottom} followed by "
            f"the trained server's layers {top}; full test split, {self.n_test} images){tag}",
        ]


def clone_accuracies(client: SplitNet, server: SplitNet, clone: SplitNet, x_test, y_test, split_depth: int,
                     rng=None, count: int = 2000, sampler_metrics: bool = True) -> CloneAccuracy:
    """Both clone metrics on the repo sampler (same draws for both) and on the full test set.

    ``sampler_metrics=False`` skips the two repo-sampler evaluations (``*_repo`` are NaN), for callers that report
    the full-set metrics only; the sampler's indices are still drawn, so ``rng`` advances as it otherwise would."""
    from unsplit_tf.util import accuracy, repo_sampler_indices

    y_test = np.asarray(y_test).reshape(-1)
    idx = repo_sampler_indices(len(y_test), count, rng)

    def literal(xb):
        return clone(client(ops.cast(xb, client.dtype), end=split_depth), start=split_depth + 1)

    def intended(xb):
        return server(clone(ops.cast(xb, clone.dtype), end=split_depth), start=split_depth + 1)

    def on_sampler(predict):
        return accuracy(predict, x_test, y_test, idx) if sampler_metrics else float("nan")
    return CloneAccuracy(on_sampler(literal), accuracy(literal, x_test, y_test),
                         on_sampler(intended), accuracy(intended, x_test, y_test),
                         int(len(idx)), int(len(y_test)))


__all__ = ["train_split", "make_train_step", "TrainHistory", "EpochLog", "CloneAccuracy", "clone_accuracies"]

"""NoPeek: distance-correlation defense for honest split learning, and a small trade-off study.

The client minimises ``alpha1 * dCor(x, client(x)) + task_loss`` (NoPeek; the same term as the
client-side defense of the original ``FSHA_distcor.py``). Here the
split model is trained honestly: one forward pass, one optimizer step on the summed loss. The dCor
term does not depend on the server's weights, so the server's gradient is that of the task loss
alone and the client's gradient is that of the full NoPeek objective (this is the "one step on the
summed loss" alternative to the attack's two Adam steps; the FSHA_dc attack itself, with its two Adam
steps, lives in ``fsha/FSHA_distcor.py``).

* :class:`NoPeekSplitModel` - a ``keras.Model`` made of any client and server network (built-in or
  user-supplied), trained with ``compile`` / ``fit`` on ``(x, y)`` data. ``fit`` and ``evaluate``
  report ``loss``, ``task_loss``, ``dcor`` (plain dCor of the batch, whatever the penalty form) and
  ``accuracy``.
* :func:`tradeoff_study` - for a few ``alpha1`` values: task accuracy, held-out dCor of the trained
  client, and the reconstruction MSE of an honest-but-curious server that trains a decoder on
  public data (:class:`TradeoffResult`). ``benchmarks/nopeek_tradeoff.py`` runs it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np
from keras import layers, ops

from splitnn import backend

from defenses.distcor import (_LOG_FLOOR, DCOR_FORMS, DEFAULT_EPS,
                                           distance_correlation)

__all__ = [
    "validate_alpha",
    "check_split_compatible",
    "NoPeekSplitModel",
    "mnist_client",
    "mnist_server",
    "inversion_decoder",
    "heldout_dcor",
    "train_inversion_decoder",
    "TradeoffResult",
    "tradeoff_study",
    "format_table",
]


# --------------------------------------------------------------------------- validation


def validate_alpha(alpha1, name="alpha1") -> float:
    """Return ``alpha1`` as a float, or raise if it is not a finite real number >= 0."""
    if isinstance(alpha1, (bool, np.bool_)) or not isinstance(alpha1, (int, float, np.integer,
                                                                        np.floating)):
        raise TypeError(f"{name} must be a finite real number >= 0 (the weight of the dCor term); "
                        f"got {alpha1!r} of type {type(alpha1).__name__}")
    value = float(alpha1)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite real number >= 0 (the weight of the dCor term); "
                         f"got {alpha1!r}")
    return value


def _shape_tuple(shape):
    return tuple(None if d is None else int(d) for d in shape)


def _single_output_shape(model, what):
    outputs = getattr(model, "outputs", None)
    if outputs is None:
        return None
    if len(outputs) != 1:
        raise ValueError(f"the {what} must have a single output, got {len(outputs)}")
    return _shape_tuple(outputs[0].shape)


def _client_output_shape(client, input_shape=None):
    """Per-batch output shape ``(None, ...)`` of the client, or None when it cannot be known yet."""
    if input_shape is None:
        shape = _single_output_shape(client, "client")
        if shape is not None:
            return shape
        return None
    full = (None,) + tuple(int(d) for d in input_shape)
    try:
        out = client(keras.KerasTensor(full, dtype="float32"))  # symbolic call (builds it)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"the client network does not accept inputs of shape {full}: {err}") from err
    if isinstance(out, (list, tuple, dict)):
        raise ValueError("the client must have a single output")
    return _shape_tuple(out.shape)


def check_split_compatible(client, server, input_shape=None):
    """Check that ``server`` accepts the output of ``client``; return the smashed shape ``(None, ...)``.

    ``input_shape`` (per sample) is needed only for clients without a ``keras.Input``. Returns None
    when the client's output shape cannot be determined yet (the check then runs at build time).
    Raises ``ValueError`` naming both shapes when they do not fit.
    """
    for what, net in (("client", client), ("server", server)):
        if not isinstance(net, keras.layers.Layer):
            raise TypeError(f"the {what} must be a keras Model or Layer, got {type(net).__name__}")
    smashed = _client_output_shape(client, input_shape)
    if smashed is None:
        return None
    server_inputs = getattr(server, "inputs", None)
    if server_inputs is not None:
        if len(server_inputs) != 1:
            raise ValueError(f"the server must have a single input, got {len(server_inputs)}")
        expected = _shape_tuple(server_inputs[0].shape)
        ok = len(expected) == len(smashed) and all(
            e is None or s is None or e == s for e, s in zip(expected[1:], smashed[1:]))
        if not ok:
            raise ValueError(f"the server expects inputs of shape {expected[1:]} per sample but the "
                             f"client outputs smashed data of shape {smashed[1:]}")
        return smashed
    try:  # server without an Input: trace it symbolically (this builds it)
        server(keras.KerasTensor(smashed, dtype="float32"))
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"the server does not accept the client's smashed data of shape "
                         f"{smashed[1:]} per sample: {err}") from err
    return smashed


# --------------------------------------------------------------------------- the model


def _hits(y, y_pred):
    """Per-sample argmax hits (1.0 / 0.0); integer labels ([B] or [B, 1]) or one-hot labels ([B, K])."""
    y = ops.convert_to_tensor(y)
    if len(y.shape) == len(y_pred.shape) and y.shape[-1] is not None and y.shape[-1] > 1:
        y = ops.argmax(y, axis=-1)
    y = ops.reshape(ops.cast(y, 'int32'), [-1])
    hits = ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), 'int32'), y)
    return ops.cast(hits, 'float32')


def _reduce_loss(value):
    value = ops.convert_to_tensor(value)
    return ops.mean(value) if len(value.shape) else value


class NoPeekSplitModel(keras.Model):
    """Split model ``server(client(x))`` trained with the NoPeek client loss.

    ``loss = alpha1 * dCor(x, client(x)) + task_loss(y, server(client(x)))``, one optimizer step on
    all weights per batch. ``dCor`` is :func:`defenses.distance_correlation` between the raw input
    batch and the smashed batch, both flattened per sample (plain dCor by default; ``dcor_form="log"``
    penalises ``log dCor`` instead, an option only). With ``alpha1 = 0`` this is plain split
    learning. Note that dCor is a batch statistic: its value depends on the batch size.

    Args:
      client, server: Keras models/layers. The server must accept the client's output. Checked at
        construction when the client has a ``keras.Input`` (or ``input_shape`` is given), else on
        the first call, ``fit``, ``evaluate`` or ``predict`` (a ``ValueError`` naming both shapes).
      alpha1: weight of the dCor term, a finite real number >= 0.
      dcor_form: ``"plain"`` (default, as the original) or ``"log"``.
      eps: clamp on squared distances inside dCor (1e-7 as the original).
      input_shape: per-sample input shape, only needed for a client without ``keras.Input``.

    ``compile(optimizer="adam", loss=None, **kwargs)``: ``loss`` is the task loss (default: sparse
    categorical cross-entropy on logits, i.e. the server outputs logits); any Keras loss name,
    object or callable ``(y_true, y_pred) -> scalar or per-sample``. Other keyword arguments go to
    ``keras.Model.compile`` (``jit_compile``, ``run_eagerly``, ``steps_per_execution``); compiled
    ``metrics`` are not supported: the model reports ``loss``, ``task_loss``, ``dcor`` and
    ``accuracy`` itself (means over the epoch's batches; accuracy over its samples). Accuracy is
    the argmax hit rate, for integer labels or one-hot labels (same rank as the predictions).

    ``alpha1`` is baked into the traced train function: build a new model to change it. Written on Keras'
    ``call`` / ``compute_loss`` / ``compute_metrics`` hooks, so Keras' own training step runs it on the
    TensorFlow and the JAX backend alike.
    """

    def __init__(self, client, server, alpha1, *, dcor_form="plain", eps=DEFAULT_EPS,
                 input_shape=None, name="nopeek_split_model", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha1 = validate_alpha(alpha1)
        if dcor_form not in DCOR_FORMS:
            raise ValueError(f"dcor_form must be one of {DCOR_FORMS}; got {dcor_form!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) \
                or eps < 0:
            raise ValueError(f"eps must be a finite real number >= 0 (default {DEFAULT_EPS}); "
                             f"got {eps!r}")
        self.dcor_form = dcor_form
        self.eps = float(eps)
        self.client = client
        self.server = server
        self.smashed_shape = check_split_compatible(client, server, input_shape)
        self.task_loss_fn = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.dcor_tracker = keras.metrics.Mean(name="dcor")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    # -- keras plumbing
    def _ensure_compatible(self, input_shape):
        # clients without keras.Input: checked once the input shape is known (Python, trace time)
        if self.smashed_shape is None:
            self.smashed_shape = check_split_compatible(self.client, self.server,
                                                        tuple(input_shape)[1:])

    def build(self, input_shape):
        self._ensure_compatible(input_shape)
        super().build(input_shape)

    def compile(self, optimizer="adam", loss=None, **kwargs):
        if kwargs.get("metrics") or kwargs.get("weighted_metrics"):
            raise ValueError("NoPeekSplitModel reports loss, task_loss, dcor and accuracy itself; "
                             "compiled metrics are not supported")
        if kwargs.get("loss_weights") is not None:
            raise ValueError("loss_weights is not supported; alpha1 weights the dCor term")
        super().compile(optimizer=optimizer, **kwargs)
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        elif isinstance(loss, str):
            loss = keras.losses.get(loss)
        if not callable(loss):
            raise TypeError(f"loss must be a Keras loss, a loss name or a callable; got {loss!r}")
        self.task_loss_fn = loss

    @property
    def metrics(self):
        return [self.loss_tracker, self.task_loss_tracker, self.dcor_tracker,
                self.accuracy_tracker]

    # -- the loss: Keras' own training and evaluation steps (on every backend) call these
    def call(self, x, training=False):
        self._ensure_compatible(x.shape)
        smashed = self.client(x, training=training)
        # the smashed batch of this forward pass, for compute_loss (called next, in the same trace)
        self._smashed = smashed
        return self.server(smashed, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``alpha1 * dCor(x, client(x)) + task_loss(y, y_pred)``; also updates the loss, task_loss and dcor
        trackers."""
        if self.task_loss_fn is None:
            raise RuntimeError("call compile() before training or evaluating NoPeekSplitModel")
        if y is None:
            raise ValueError("NoPeekSplitModel needs (x, y) data: labels are required for the task loss")
        if sample_weight is not None:
            raise ValueError("sample weights are not supported by NoPeekSplitModel")
        task = ops.cast(_reduce_loss(self.task_loss_fn(y, y_pred)), "float32")
        dcor = distance_correlation(x, self._smashed, eps=self.eps)
        if self.dcor_form == "plain":
            penalty = dcor
        else:  # same floor as distance_correlation(log=True)
            penalty = ops.log(ops.maximum(dcor, ops.cast(_LOG_FLOOR, dcor.dtype)))
        loss = self.alpha1 * ops.cast(penalty, "float32") + task
        self.loss_tracker.update_state(loss)
        self.task_loss_tracker.update_state(task)
        self.dcor_tracker.update_state(ops.cast(dcor, "float32"))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.accuracy_tracker.update_state(_hits(y, y_pred))
        return {m.name: m.result() for m in self.metrics}


# --------------------------------------------------------------------------- built-in networks


def mnist_client(input_shape=(28, 28, 1), filters=(16, 32), name="client"):
    """Small client: [Conv(f, 3, same, ReLU) -> MaxPool 2] per entry of ``filters``.

    MNIST 28x28x1 -> smashed 7x7x32 with the defaults.
    """
    inp = keras.Input(tuple(input_shape))
    h = inp
    for f in filters:
        h = layers.Conv2D(f, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D(2)(h)
    return keras.Model(inp, h, name=name)


def mnist_server(smashed_shape, num_classes=10, hidden=128, name="server"):
    """Small server: Flatten -> Dense(hidden, ReLU) -> Dense(num_classes) logits."""
    inp = keras.Input(tuple(smashed_shape))
    h = layers.Flatten()(inp)
    h = layers.Dense(hidden, activation="relu")(h)
    return keras.Model(inp, layers.Dense(num_classes)(h), name=name)


def inversion_decoder(smashed_shape, output_shape=(28, 28, 1), base=32, name="inversion_decoder"):
    """The curious server's decoder: smashed data -> image in [0, 1].

    Flatten -> Dense(H/4 * W/4 * base, ReLU) -> 2 x [ConvT(stride 2, ReLU)] -> Conv(C, sigmoid).
    Works for any smashed shape (fully connected first layer); H and W must be divisible by 4.
    """
    h_out, w_out, c_out = (int(d) for d in output_shape)
    if h_out % 4 or w_out % 4:
        raise ValueError(f"output_shape height and width must be divisible by 4, got {output_shape}")
    inp = keras.Input(tuple(smashed_shape))
    h = layers.Flatten()(inp)
    h = layers.Dense((h_out // 4) * (w_out // 4) * base, activation="relu")(h)
    h = layers.Reshape((h_out // 4, w_out // 4, base))(h)
    h = layers.Conv2DTranspose(base, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(base // 2, 3, strides=2, padding="same", activation="relu")(h)
    out = layers.Conv2D(c_out, 3, padding="same", activation="sigmoid")(h)
    return keras.Model(inp, out, name=name)


# --------------------------------------------------------------------------- study pieces


def _stateless_predict(model):
    def predict(values, x):
        n = len(model.trainable_variables)
        return model.stateless_call(values[:n], values[n:], x, training=False)[0]
    return predict


def _ordered(model):
    """``model.trainable_variables + model.non_trainable_variables`` (stateless_call's order)."""
    return model.trainable_variables + model.non_trainable_variables


def _predict(model, x, batch_size=256):
    variables = _ordered(model)
    fn = backend.compile(_stateless_predict(model))
    values = backend.variable_values(variables)
    out = [backend.to_numpy(fn(values, x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0)


def heldout_dcor(client, x, batch_size=64, eps=DEFAULT_EPS):
    """Mean over full batches of ``batch_size`` of dCor(x_batch, client(x_batch)) on held-out data."""
    n_batches = len(x) // batch_size
    if n_batches == 0:
        raise ValueError(f"need at least batch_size={batch_size} samples, got {len(x)}")

    forward = _stateless_predict(client)
    one = backend.compile(lambda values, xb: distance_correlation(xb, forward(values, xb), eps=eps))
    weights = backend.variable_values(_ordered(client))
    values = [float(one(weights, x[i * batch_size:(i + 1) * batch_size])) for i in range(n_batches)]
    return float(np.mean(values))


def train_inversion_decoder(client, x_public, x_eval, epochs=5, batch_size=64,
                            learning_rate=1e-3, seed=0, verbose=0):
    """Honest-but-curious server: train a decoder smashed -> image on public (image, client(image))
    pairs, then reconstruct ``x_eval`` from its smashed data. Returns ``(reconstructions,
    per-image MSE on the input scale)``."""
    z_public = _predict(client, x_public)
    z_eval = _predict(client, x_eval)
    backend.set_seed(seed)
    dec = inversion_decoder(z_public.shape[1:], output_shape=x_public.shape[1:])
    dec.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    dec.fit(z_public, x_public, epochs=epochs, batch_size=batch_size, verbose=verbose,
            shuffle=True)
    rec = _predict(dec, z_eval)
    mse = ((rec.astype(np.float64) - x_eval.astype(np.float64)) ** 2).reshape(len(x_eval), -1)
    return rec, mse.mean(axis=1)


@dataclasses.dataclass
class TradeoffResult:
    """One row of :func:`tradeoff_study`. MSEs are on the [0, 1] pixel scale."""

    alpha1: float
    accuracy: float            # task accuracy on the held-out evaluation images
    dcor: float                # mean dCor(x, client(x)) over held-out batches of dcor_batch_size
    inversion_mse: float       # mean per-image MSE of the curious server's reconstructions
    baseline_mse: float        # MSE of always answering the public mean image (no information)
    train_task_loss: float     # task loss of the last training epoch
    train_dcor: float          # mean batch dCor of the last training epoch
    dcor_batch_size: int
    train_seconds: float
    originals: np.ndarray = dataclasses.field(repr=False, default=None)
    reconstructions: np.ndarray = dataclasses.field(repr=False, default=None)


def tradeoff_study(alphas: Sequence[float] = (0.0, 1.0, 5.0, 20.0), *, data=None,
                   train_size: int = 10000, epochs: int = 2, batch_size: int = 64,
                   learning_rate: float = 1e-3, decoder_epochs: int = 5,
                   public_size: Optional[int] = None, dcor_batch_size: int = 64,
                   client_fn: Optional[Callable] = None, server_fn: Optional[Callable] = None,
                   n_examples: int = 8, seed: int = 0, verbose: int = 0,
                   log: Optional[Callable[[str], None]] = None) -> list:
    """NoPeek trade-off on MNIST: for each ``alpha1``, train a split model with the NoPeek loss,
    then measure the task accuracy, the held-out dCor and a curious server's inversion MSE.

    Data: ``data`` is an object with ``x_train, y_train, x_test, y_test`` (images float in [0, 1],
    NHWC; default ``splitnn.data.load_unsplit("mnist")``). The split model trains on the first
    ``train_size`` training images. The test split is cut in two halves: the first is the server's
    *public* data (``public_size`` images of it; images and their smashed data through the trained
    client), on which it trains :func:`inversion_decoder`; the second half is the held-out
    evaluation set for accuracy, dCor and the reconstruction MSE.

    Every alpha starts from the same seed (same initial weights and batch order). ``client_fn``
    (``input_shape -> model``) and ``server_fn`` (``smashed_shape -> model``) replace the built-in
    networks. Returns a list of :class:`TradeoffResult`, one per alpha, in order.
    """
    alphas = [validate_alpha(a, name=f"alphas[{i}]") for i, a in enumerate(alphas)]
    if not alphas:
        raise ValueError("alphas must hold at least one value")
    if data is None:
        from splitnn.data import load_unsplit
        data = load_unsplit("mnist")
    say = log or (lambda msg: None)
    x_train = np.asarray(data.x_train[:train_size], np.float32)
    y_train = np.asarray(data.y_train[:train_size]).astype(np.int64)
    x_test = np.asarray(data.x_test, np.float32)
    y_test = np.asarray(data.y_test).astype(np.int64)
    half = len(x_test) // 2
    x_pub = x_test[:half][:public_size] if public_size else x_test[:half]
    x_eval, y_eval = x_test[half:], y_test[half:]
    baseline = float(((x_eval.astype(np.float64) - x_pub.mean(0, dtype=np.float64)) ** 2).mean())
    client_fn = client_fn or mnist_client
    server_fn = server_fn or mnist_server

    results = []
    for alpha in alphas:
        backend.set_seed(seed)
        client = client_fn(x_train.shape[1:])
        server = server_fn(_client_output_shape(client, x_train.shape[1:])[1:])
        model = NoPeekSplitModel(client, server, alpha)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate))
        t0 = time.perf_counter()
        hist = model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=True,
                         verbose=verbose)
        seconds = time.perf_counter() - t0
        logits = _predict(model, x_eval)
        accuracy = float((logits.argmax(-1) == y_eval).mean())
        dcor = heldout_dcor(client, x_eval, batch_size=dcor_batch_size)
        rec, mse = train_inversion_decoder(client, x_pub, x_eval, epochs=decoder_epochs,
                                           batch_size=batch_size, seed=seed, verbose=verbose)
        res = TradeoffResult(
            alpha1=alpha, accuracy=accuracy, dcor=dcor, inversion_mse=float(mse.mean()),
            baseline_mse=baseline, train_task_loss=float(hist.history["task_loss"][-1]),
            train_dcor=float(hist.history["dcor"][-1]), dcor_batch_size=dcor_batch_size,
            train_seconds=seconds, originals=x_eval[:n_examples].copy(),
            reconstructions=rec[:n_examples].copy())
        say(f"alpha1={alpha:g}: accuracy={accuracy:.4f} dCor={dcor:.4f} "
            f"inversion MSE={res.inversion_mse:.4f} ({seconds:.0f}s training)")
        results.append(res)
    return results


def format_table(results) -> str:
    """Plain-text table of :func:`tradeoff_study` results."""
    lines = [f"{'alpha1':>8} {'accuracy':>9} {'dCor':>7} {'inv. MSE':>9} {'baseline':>9}",
             "-" * 46]
    for r in results:
        lines.append(f"{r.alpha1:>8g} {r.accuracy:>9.4f} {r.dcor:>7.4f} {r.inversion_mse:>9.4f} "
                     f"{r.baseline_mse:>9.4f}")
    return "\n".join(lines)

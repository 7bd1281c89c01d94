"""The plaintext simulation: SGD in Keras (``keras.ops``), with the adversary's deviations as operations on the
computation, as the paper evaluates its attacks [our reconstruction].

One compiled step (``splitnn.backend.compile``: a ``tf.function`` under TensorFlow, ``jax.jit`` under JAX) per
model, arithmetic and dtype; the deviations of a step enter as dense arrays (:func:`covert_mpc.deviations.step_arrays`)
so every attack reuses the same compiled step:

* additive errors on the hidden pre-activation and on the logits (constants added to the wire);
* the input shift of the first product's opened Beaver value (``z += delta @ stop_gradient(W)``: forward only);
* the ReLU as the product of its comparison bit and the pre-activation, ``h = stop_gradient(b') * z`` with
  ``b' = b + flip (1 - 2 b) + offset``, so that autodiff gives the protocol's backward pass ``dz = b' * dh``;
* the output error ``p - y + delta`` and per-example weights (gradient scaling ``C`` / zeroing ``0``) in the
  cotangent of the logits (a custom-gradient cross-entropy head; equal to Keras' cross-entropy gradient when
  honest, which a test checks);
* gradient shifts ``theta <- theta - lr (g + s)``.

``arithmetic='fixed'``: every wire the protocol truncates (each product of two fixed-point values, the softmax
output, the scaled output error, the updates) is rounded to 2^-f (half up) and wrapped into [-2^(k-1-f),
2^(k-1-f)), forward and backward (custom gradients), so that it computes what :func:`covert_mpc.protocol.train_secure`
computes. In float64 these roundings are exact as long as the values need at most 53 bits at scale 2^-2f (true
for the models here at moderate magnitudes). Under JAX, float64 needs ``jax_enable_x64``; without it the default
dtype is float32.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from covert_mpc import models
from covert_mpc.deviations import step_arrays
from splitnn import backend


def default_dtype() -> str:
    return "float64" if backend.float64_enabled() else "float32"


def _upstream(args, upstream):
    # keras.ops.custom_gradient passes the incoming gradient positionally under TensorFlow, as ``upstream`` under JAX
    return args[0] if upstream is None else upstream


@dataclasses.dataclass
class PlainRun:
    params: dict       # final parameters (NumPy float64)
    losses: np.ndarray  # per-step mean cross-entropy of the batch
    config: object
    dtype: str


class PlaintextTrainer:
    """SGD on ``config.arch`` in Keras with modelled deviations. ``run`` trains from given parameters over a
    batch schedule; one compiled step serves every deviation."""

    def __init__(self, config: models.TrainConfig, d: int, n_classes: int = 10, dtype: str | None = None):
        self.config = config
        self.d, self.n_classes = int(d), int(n_classes)
        self.dtype = dtype or default_dtype()
        if self.dtype == "float64" and not backend.float64_enabled():
            raise ValueError("float64 under Keras' JAX backend needs jax_enable_x64 (else JAX computes in float32)")
        self.dims = models.dims(config, self.d, self.n_classes)
        self.fixed = config.arithmetic == "fixed"
        self.scale = float(2 ** config.f)
        self.half = float(2 ** (config.k - 1))
        self.modulus = float(2 ** config.k)
        self._step = backend.compile(self._pure_step)

    # ------------------------------------------------------------------------------------ fixed-point pieces
    def q(self, x):
        """Round to 2^-f (half up) and wrap into the ring (identity in ideal arithmetic)."""
        if not self.fixed:
            return x
        t = ops.floor(x * self.scale + 0.5)
        wrapped = ops.mod(t + self.half, self.modulus) - self.half
        t = ops.where(ops.logical_or(t >= self.half, t < -self.half), wrapped, t)
        return t / self.scale

    def qmatmul(self, a, b, shift):
        """``q((a + shift) @ b)``; backward ``q(g b^T)``, ``q(a^T g)`` (the unshifted ``a``: the protocol's
        backward products are separate multiplications)."""
        q = self.q

        @backend.custom_gradient
        def _qmm(a, b, shift):
            def grad(*args, upstream=None):
                g = _upstream(args, upstream)
                return q(ops.matmul(g, ops.transpose(b))), q(ops.matmul(ops.transpose(a), g)), ops.zeros_like(shift)
            return q(ops.matmul(a + shift, b)), grad
        return _qmm(a, b, shift)

    def head(self, z, y1h, out_err, coef):
        """Mean cross-entropy; its gradient w.r.t. the logits is ``q(q(q(softmax z) - y + out_err) * coef)``
        with ``coef = q(w * lr / B)`` per example: the protocol's scaled output error."""
        q = self.q

        @backend.custom_gradient
        def _head(z, y1h, out_err, coef):
            p = ops.softmax(z, axis=-1)
            ce = -ops.mean(ops.sum(y1h * ops.log_softmax(z, axis=-1), axis=-1))

            def grad(*args, upstream=None):
                g = _upstream(args, upstream)
                e = q(q(q(p) - y1h + out_err) * ops.expand_dims(coef, -1))
                return e * g, ops.zeros_like(y1h), ops.zeros_like(out_err), ops.zeros_like(coef)
            return ce, grad
        return _head(z, y1h, out_err, coef)

    # --------------------------------------------------------------------------------------------- the step
    def forward(self, p: dict, x, arrays: dict):
        if self.config.arch == "lr":
            return self.qmatmul(x, p["W"], arrays["input_shift"]) + p["b"] + arrays["logits"]
        z1 = self.qmatmul(x, p["W1"], arrays["input_shift"]) + p["b1"] + arrays["hidden"]
        b = ops.cast(z1 >= 0, z1.dtype)
        bp = b + arrays["flip"] * (1.0 - 2.0 * b) + arrays["offset"]
        h = ops.stop_gradient(bp) * z1
        return self.qmatmul(h, p["W2"], ops.zeros_like(h)) + p["b2"] + arrays["logits"]

    def _pure_step(self, values, x, y1h, arrays, shifts):
        names = self.config.param_names
        batch = ops.shape(x)[0]
        lr = self.config.lr
        coef = self.q(arrays["weight"] * (lr / batch))

        def fn(vals):
            z = self.forward(dict(zip(names, vals)), x, arrays)
            return self.head(z, y1h, arrays["output_error"], coef), z

        loss, _, grads = backend.value_and_grad(fn, list(values))
        new = [self.q(v - g - self.q(lr * s)) for v, g, s in zip(values, grads, shifts)]
        return new, loss

    def run(self, x, y, params: dict | None = None, batches=None, deviations=(), step_offset: int = 0,
            config: models.TrainConfig | None = None) -> PlainRun:
        """Train from ``params`` (default :func:`covert_mpc.models.init_params`) over ``batches`` (default the
        config's schedule) with ``deviations``; step numbers start at ``step_offset``. ``config`` may differ from
        the trainer's in epochs, batch size and seed only (the defaults of ``params`` and ``batches``)."""
        cfg, dt = config or self.config, self.dtype
        if _step_key(cfg) != _step_key(self.config):
            raise ValueError("config differs from the trainer's in what the compiled step depends on")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must be [N, {self.d}], got shape {x.shape}")
        y = np.asarray(y)
        if self.fixed:
            x = cfg.ring.quantize(x)
        if params is None:
            params = models.init_params(cfg, self.d, self.n_classes)
        if batches is None:
            batches = models.schedule(len(x), cfg.batch_size, cfg.epochs, cfg.seed)
        names = cfg.param_names
        values = [ops.convert_to_tensor(np.asarray(params[n], dtype=np.float64), dtype=dt) for n in names]
        y1h = np.eye(self.n_classes)[y]
        tensor = lambda a: ops.convert_to_tensor(np.asarray(a, dtype=np.float64), dtype=dt)  # noqa: E731
        losses = []
        for t, rows in enumerate(batches):
            a = step_arrays(deviations, t + step_offset, rows, self.dims)
            arrays = {"weight": a.weight, "output_error": a.output_error, "logits": a.logits,
                      "input_shift": a.input_shift}
            if cfg.arch == "mlp":
                arrays.update(hidden=a.hidden, flip=a.flip, offset=a.offset)
            arrays = {k: tensor(v) for k, v in arrays.items()}
            shifts = [tensor(a.grad_shift[n]) for n in names]
            values, loss = self._step(values, tensor(x[rows]), tensor(y1h[rows]), arrays, shifts)
            losses.append(loss)
        out = {n: backend.to_numpy(v).astype(np.float64) for n, v in zip(names, values)}
        return PlainRun(out, np.array([float(backend.to_numpy(v)) for v in losses]), cfg, dt)


_TRAINERS: dict = {}


def _step_key(c: models.TrainConfig) -> tuple:
    return (c.arch, c.hidden if c.arch == "mlp" else 0, float(c.lr), c.arithmetic, c.k, c.f)


def trainer(config: models.TrainConfig, d: int, n_classes: int = 10, dtype: str | None = None) -> PlaintextTrainer:
    """A cached :class:`PlaintextTrainer` (one compiled step per configuration)."""
    key = (_step_key(config), int(d), int(n_classes), dtype or default_dtype(), keras.backend.backend())
    if key not in _TRAINERS:
        _TRAINERS[key] = PlaintextTrainer(config, d, n_classes, dtype)
    return _TRAINERS[key]


def train(x, y, config: models.TrainConfig, deviations=(), params=None, batches=None, n_classes: int = 10,
          dtype: str | None = None, step_offset: int = 0) -> PlainRun:
    """Train ``config`` in the clear with the modelled ``deviations`` (see :class:`PlaintextTrainer`)."""
    x = np.asarray(x)
    return trainer(config, x.shape[1], n_classes, dtype).run(x, y, params, batches, deviations, step_offset, config)

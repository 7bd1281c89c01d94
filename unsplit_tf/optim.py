"""A PyTorch-exact Adam (with AMSGrad) for TensorFlow, and the functional update rules UnSplit's loops use.

Why not ``keras.optimizers.Adam(amsgrad=True)``? The two rules differ in where epsilon enters (spec §9):

* PyTorch (1.8, the original's): ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g*g``; ``vmax = max(vmax, v)``;
  ``p -= (lr / (1-b1**t)) * (m / (sqrt(vmax) / sqrt(1-b2**t) + eps))`` with eps = 1e-8.
* Keras 3: ``p -= lr*sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(vmax) + eps_hat)`` with eps_hat = 1e-7 by default.

They agree only if eps_hat = eps*sqrt(1-b2**t), which changes with t; the inversion re-creates its optimizers per
image, so the early steps (where the gap is largest) matter. :class:`TorchAdam` is therefore the default for
everything UnSplit does here (inversion, clone, target training, label-inference training). The Keras rule is
available as :func:`keras_adam_update` (and ``optimizer='keras'`` in the attack), documented as an alternative.

Numerics: as in PyTorch, the bias corrections are computed in float64 (PyTorch computes them as Python floats)
and the learning rate is kept as a Python float, never a float32 variable (1e-3 in float32 is 1.00000005e-3,
which alone would move a float64 trajectory by more than 1e-10 within a few dozen steps).
"""
from __future__ import annotations

import tensorflow as tf

BETA1 = 0.9
BETA2 = 0.999
TORCH_EPS = 1e-8
KERAS_EPS = 1e-7


def _bias_terms(step, dtype, lr, beta1, beta2):
    """(lr / (1 - b1^t), sqrt(1 - b2^t)) computed in float64 and cast to ``dtype`` (PyTorch's Python floats)."""
    t = tf.cast(step, tf.float64)
    bc1 = 1.0 - tf.pow(tf.constant(beta1, tf.float64), t)
    bc2 = 1.0 - tf.pow(tf.constant(beta2, tf.float64), t)
    return tf.cast(lr / bc1, dtype), tf.cast(tf.sqrt(bc2), dtype), tf.cast(lr * tf.sqrt(bc2) / bc1, dtype)


def torch_adam_update(param, grad, m, v, vmax, step, lr=1e-3, beta1=BETA1, beta2=BETA2, eps=TORCH_EPS,
                      amsgrad=True):
    """One PyTorch Adam step as a pure function. ``step`` is the 1-based step number (a scalar tensor).

    Returns ``(param, m, v, vmax)``. With ``amsgrad=False`` ``vmax`` is passed through unchanged.
    """
    dtype = param.dtype
    step_size, bc2_sqrt, _ = _bias_terms(step, dtype, lr, beta1, beta2)
    m = m * tf.constant(beta1, dtype) + grad * tf.constant(1.0 - beta1, dtype)
    v = v * tf.constant(beta2, dtype) + (grad * grad) * tf.constant(1.0 - beta2, dtype)
    if amsgrad:
        vmax = tf.maximum(vmax, v)
        denom = tf.sqrt(vmax) / bc2_sqrt + tf.constant(eps, dtype)
    else:
        denom = tf.sqrt(v) / bc2_sqrt + tf.constant(eps, dtype)
    param = param - step_size * (m / denom)
    return param, m, v, vmax


def keras_adam_update(param, grad, m, v, vmax, step, lr=1e-3, beta1=BETA1, beta2=BETA2, eps=KERAS_EPS,
                      amsgrad=True):
    """One step of the Keras 3 Adam rule (``keras.optimizers.Adam``), as a pure function.

    alpha_t = lr*sqrt(1-b2^t)/(1-b1^t); m += (g-m)(1-b1); v += (g^2-v)(1-b2); p -= alpha_t*m/(sqrt(vhat)+eps).
    """
    dtype = param.dtype
    _, _, alpha = _bias_terms(step, dtype, lr, beta1, beta2)
    m = m + (grad - m) * tf.constant(1.0 - beta1, dtype)
    v = v + (grad * grad - v) * tf.constant(1.0 - beta2, dtype)
    if amsgrad:
        vmax = tf.maximum(vmax, v)
        denom = tf.sqrt(vmax) + tf.constant(eps, dtype)
    else:
        denom = tf.sqrt(v) + tf.constant(eps, dtype)
    param = param - alpha * m / denom
    return param, m, v, vmax


UPDATE_RULES = {"torch": torch_adam_update, "keras": keras_adam_update}


def update_rule(name: str):
    if name not in UPDATE_RULES:
        raise ValueError(f"optimizer {name!r} unknown; expected one of {sorted(UPDATE_RULES)} "
                         f"('torch' = PyTorch-exact AMSGrad Adam, the faithful default)")
    return UPDATE_RULES[name]


class TorchAdam:
    """PyTorch's ``torch.optim.Adam`` (AMSGrad on by default, as UnSplit uses it) over ``tf.Variable``s.

    * State (``m``, ``v``, ``vmax`` and a step count) is created **per variable** on its first gradient, and
      variables whose gradient is ``None`` are skipped, exactly like PyTorch's ``p.grad is None`` check (the
      original's client optimizer covers the whole network, but only layers 0..d ever get gradients).
    * Call :meth:`build` with the variables before using :meth:`apply_gradients` inside a ``tf.function`` (state
      variables cannot be created lazily there).

    Args: lr, betas, eps and amsgrad as in PyTorch (defaults 1e-3, (0.9, 0.999), 1e-8, True).
    """

    def __init__(self, lr: float = 1e-3, betas=(BETA1, BETA2), eps: float = TORCH_EPS, amsgrad: bool = True):
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.amsgrad = bool(amsgrad)
        self._state = {}

    def _key(self, var):
        return id(var)

    def build(self, variables):
        for var in variables:
            if self._key(var) not in self._state:
                zeros = tf.zeros(var.shape, var.dtype)
                self._state[self._key(var)] = (
                    tf.Variable(zeros, trainable=False), tf.Variable(zeros, trainable=False),
                    tf.Variable(zeros, trainable=False), tf.Variable(0, dtype=tf.int64, trainable=False))
        return self

    def state(self, var):
        """(m, v, vmax, step) variables of ``var`` (after its first step or :meth:`build`)."""
        return self._state[self._key(var)]

    def apply_gradients(self, grads_and_vars):
        for grad, var in grads_and_vars:
            if grad is None:
                continue
            if self._key(var) not in self._state:
                self.build([var])
            m, v, vmax, step = self._state[self._key(var)]
            step.assign_add(1)
            new_p, new_m, new_v, new_vmax = torch_adam_update(
                var, tf.convert_to_tensor(grad, var.dtype), m, v, vmax, step, self.lr, self.beta1, self.beta2,
                self.eps, self.amsgrad)
            m.assign(new_m)
            v.assign(new_v)
            vmax.assign(new_vmax)
            var.assign(new_p)

    def step(self, grads, variables):
        """``apply_gradients(zip(grads, variables))``."""
        self.apply_gradients(zip(grads, variables))

    def reset(self):
        """Forget all state (what re-creating the PyTorch optimizer does)."""
        self._state = {}


def make_optimizer(name: str = "torch", lr: float = 1e-3, keras_epsilon: float = KERAS_EPS):
    """TorchAdam (default, faithful) or ``keras.optimizers.Adam(amsgrad=True)`` (alternative)."""
    if name == "torch":
        return TorchAdam(lr=lr)
    if name == "keras":
        import keras

        return keras.optimizers.Adam(learning_rate=lr, amsgrad=True, epsilon=keras_epsilon)
    raise ValueError(f"optimizer {name!r} unknown; expected 'torch' or 'keras'")


__all__ = ["TorchAdam", "torch_adam_update", "keras_adam_update", "update_rule", "make_optimizer",
           "TORCH_EPS", "KERAS_EPS"]

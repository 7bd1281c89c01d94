"""A PyTorch-exact Adam (with AMSGrad) in ``keras.ops``, and the functional update rules UnSplit's loops use.

Why not ``keras.optimizers.Adam(amsgrad=True)``? The two rules differ in where epsilon enters (PyTorch's
``torch.optim.Adam(amsgrad=True)``, which the original uses everywhere, against Keras 3's ``Adam``):

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

import math

import keras
from keras import ops

from splitnn import backend

BETA1 = 0.9
BETA2 = 0.999
TORCH_EPS = 1e-8
KERAS_EPS = 1e-7


def _bias_terms(step, dtype, lr, beta1, beta2):
    """(lr / (1 - b1^t), sqrt(1 - b2^t), lr sqrt(1 - b2^t) / (1 - b1^t)) cast to ``dtype``.

    Computed in float64 where the backend has it (PyTorch's Python floats); under JAX without x64, in float32
    through ``expm1`` (1 - b^t = -expm1(t log b), accurate to a few ulp, where ``1 - b^t`` would lose digits).
    """
    if backend.float64_enabled():
        t = ops.cast(step, "float64")
        bc1 = 1.0 - ops.power(ops.convert_to_tensor(beta1, "float64"), t)
        bc2 = 1.0 - ops.power(ops.convert_to_tensor(beta2, "float64"), t)
    else:
        t = ops.cast(step, "float32")
        bc1 = -ops.expm1(t * math.log(beta1))
        bc2 = -ops.expm1(t * math.log(beta2))
    return (ops.cast(lr / bc1, dtype), ops.cast(ops.sqrt(bc2), dtype),
            ops.cast(lr * ops.sqrt(bc2) / bc1, dtype))


def _const(value, dtype):
    return ops.convert_to_tensor(value, dtype)


def torch_adam_update(param, grad, m, v, vmax, step, lr=1e-3, beta1=BETA1, beta2=BETA2, eps=TORCH_EPS,
                      amsgrad=True):
    """One PyTorch Adam step as a pure function. ``step`` is the 1-based step number (a scalar tensor).

    Returns ``(param, m, v, vmax)``. With ``amsgrad=False`` ``vmax`` is passed through unchanged.
    """
    dtype = keras.backend.standardize_dtype(param.dtype)
    step_size, bc2_sqrt, _ = _bias_terms(step, dtype, lr, beta1, beta2)
    m = m * _const(beta1, dtype) + grad * _const(1.0 - beta1, dtype)
    v = v * _const(beta2, dtype) + (grad * grad) * _const(1.0 - beta2, dtype)
    if amsgrad:
        vmax = ops.maximum(vmax, v)
        denom = ops.sqrt(vmax) / bc2_sqrt + _const(eps, dtype)
    else:
        denom = ops.sqrt(v) / bc2_sqrt + _const(eps, dtype)
    param = param - step_size * (m / denom)
    return param, m, v, vmax


def keras_adam_update(param, grad, m, v, vmax, step, lr=1e-3, beta1=BETA1, beta2=BETA2, eps=KERAS_EPS,
                      amsgrad=True):
    """One step of the Keras 3 Adam rule (``keras.optimizers.Adam``), as a pure function.

    alpha_t = lr*sqrt(1-b2^t)/(1-b1^t); m += (g-m)(1-b1); v += (g^2-v)(1-b2); p -= alpha_t*m/(sqrt(vhat)+eps).
    """
    dtype = keras.backend.standardize_dtype(param.dtype)
    _, _, alpha = _bias_terms(step, dtype, lr, beta1, beta2)
    m = m + (grad - m) * _const(1.0 - beta1, dtype)
    v = v + (grad * grad - v) * _const(1.0 - beta2, dtype)
    if amsgrad:
        vmax = ops.maximum(vmax, v)
        denom = ops.sqrt(vmax) + _const(eps, dtype)
    else:
        denom = ops.sqrt(v) + _const(eps, dtype)
    param = param - alpha * m / denom
    return param, m, v, vmax


UPDATE_RULES = {"torch": torch_adam_update, "keras": keras_adam_update}


def update_rule(name: str):
    if name not in UPDATE_RULES:
        raise ValueError(f"optimizer {name!r} unknown; expected one of {sorted(UPDATE_RULES)} "
                         f"('torch' = PyTorch-exact AMSGrad Adam, the faithful default)")
    return UPDATE_RULES[name]


class TorchAdam:
    """PyTorch's ``torch.optim.Adam`` (AMSGrad on by default, as UnSplit uses it) over Keras variables.

    * State (``m``, ``v``, ``vmax`` and a step count) is created **per variable** on its first gradient, and
      variables whose gradient is ``None`` are skipped, exactly like PyTorch's ``p.grad is None`` check (the
      original's client optimizer covers the whole network, but only layers 0..d ever get gradients).
    * Call :meth:`build` with the variables before stepping inside a compiled function (state variables cannot
      be created there). :meth:`slots` and :meth:`stateless_step` give the update as a pure function of values,
      for :class:`splitnn.backend.StatefulStep` steps.

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
                def zeros(name):
                    return keras.Variable(ops.zeros(var.shape, var.dtype), trainable=False, name=name)
                self._state[self._key(var)] = (zeros("m"), zeros("v"), zeros("vmax"),
                                               keras.Variable(0, dtype="int32", trainable=False, name="step"))
        return self

    def state(self, var):
        """(m, v, vmax, step) variables of ``var`` (after its first step or :meth:`build`)."""
        return self._state[self._key(var)]

    def slots(self, variables):
        """The state variables of ``variables`` (built), flattened: m, v, vmax, step per variable."""
        self.build(variables)
        return [s for var in variables for s in self._state[self._key(var)]]

    def stateless_step(self, values, grads, slot_values):
        """Pure update: ``(new_values, new_slot_values)`` for values/grads of the variables whose slots
        ``slot_values`` are (in the order of :meth:`slots`)."""
        new_values, new_slots = [], []
        for i, (p, g) in enumerate(zip(values, grads)):
            m, v, vmax, step = slot_values[4 * i:4 * i + 4]
            step = step + 1
            p, m, v, vmax = torch_adam_update(p, ops.cast(g, p.dtype), m, v, vmax, step, self.lr, self.beta1,
                                              self.beta2, self.eps, self.amsgrad)
            new_values.append(p)
            new_slots += [m, v, vmax, step]
        return new_values, new_slots

    def apply_gradients(self, grads_and_vars):
        for grad, var in grads_and_vars:
            if grad is None:
                continue
            slots = self.slots([var])
            (new_p,), new_slots = self.stateless_step([ops.convert_to_tensor(var)], [grad],
                                                      [ops.convert_to_tensor(s) for s in slots])
            for s, value in zip(slots, new_slots):
                s.assign(value)
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
        return keras.optimizers.Adam(learning_rate=lr, amsgrad=True, epsilon=keras_epsilon)
    raise ValueError(f"optimizer {name!r} unknown; expected 'torch' or 'keras'")


__all__ = ["TorchAdam", "torch_adam_update", "keras_adam_update", "update_rule", "make_optimizer",
           "TORCH_EPS", "KERAS_EPS"]

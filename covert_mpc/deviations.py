"""Deviations of the active party, described once for both simulations.

A :class:`Deviation` names *where* the corrupt party 1 deviates (a wire, the opened value of a Beaver product, the
shared bit of the ReLU comparison, a parameter update) and *when* (training steps, global example indices, units).
The same list drives the real protocol (:class:`covert_mpc.protocol.Adversary` turns it into changes of party 1's
shares) and the plaintext simulation (:mod:`covert_mpc.plaintext` turns it into operations on the computation),
which is what the bridge tests compare. TensorFlow-free.

Kinds (``site`` in brackets):

* ``error`` (``hidden``, ``logits``, ``output_error``): an additive error ``value`` on a wire. In the protocol party
  1 adds ``encode(value)`` to its share, which adds exactly ``value`` (to 2^-f) to the decoded wire. ``hidden`` is
  the first layer's pre-activation (before the comparison), ``logits`` the last one's, ``output_error`` the
  softmax output error ``p - y`` (before the public scaling by the learning rate / batch size).
* ``beaver`` (``input``): a shift ``value`` of the opened ``d = x - a`` of the first layer's forward product
  ``x @ W``, at ``(example, unit = input feature)``: the product becomes ``(x + delta) @ W`` (forward only).
* ``flip`` (``relu``): party 1 XORs 1 into its Boolean share of the comparison bit: ``b -> 1 - b``.
* ``offset`` (``relu``): party 1 adds the integer ``value`` to its arithmetic share of the bit:
  ``b -> b + delta``, used by ``ReLU(z) = b z`` in the forward pass *and* by ``dz = b g`` in the backward pass.
* ``gradient_shift`` (a parameter name: ``W``/``b`` for logistic regression, ``W1``/``b1``/``W2``/``b2``):
  the update becomes ``theta - lr (g + value)``; in the protocol party 1 adds ``encode(-lr * value)`` to its
  share of the updated parameter. ``value`` has the parameter's shape (or broadcasts to it).
* ``weight`` (no site): per-example loss weight (``0``: gradient zeroing, ``C``: gradient scaling). Plaintext
  only: an additive attacker cannot multiply a secret by ``C`` directly; in the protocol its effects are reached
  through ``output_error`` (a shift of the example's output error) or ``offset`` (a scaled comparison bit).

``steps``, ``examples`` (global indices into the training set) and ``units`` are ``None`` (all), an int or a
sequence of ints.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

KINDS = ("error", "beaver", "flip", "offset", "gradient_shift", "weight")
WIRES = ("hidden", "logits", "output_error")
PARAMS = {"lr": ("W", "b"), "mlp": ("W1", "b1", "W2", "b2")}


def _indices(value, what):
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value))
    if arr.dtype.kind not in "iu" and not (arr.size == 0):
        raise ValueError(f"{what} must be None, an int or a sequence of ints, got {value!r}")
    return tuple(int(v) for v in arr.ravel())


@dataclasses.dataclass(frozen=True)
class Deviation:
    kind: str
    site: str | None = None
    value: object = 0.0
    steps: tuple | None = None
    examples: tuple | None = None
    units: tuple | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown deviation kind {self.kind!r}; expected one of {KINDS}")
        allowed = {"error": WIRES, "beaver": ("input",), "flip": ("relu",), "offset": ("relu",),
                   "weight": (None,)}.get(self.kind)
        if allowed is not None and self.site not in allowed:
            raise ValueError(f"a {self.kind!r} deviation acts on {allowed}, not {self.site!r}")
        if self.kind == "gradient_shift" and self.site not in PARAMS["lr"] + PARAMS["mlp"]:
            raise ValueError(f"gradient_shift names a parameter ({PARAMS}), not {self.site!r}")
        object.__setattr__(self, "steps", _indices(self.steps, "steps"))
        object.__setattr__(self, "examples", _indices(self.examples, "examples"))
        object.__setattr__(self, "units", _indices(self.units, "units"))
        if self.kind == "gradient_shift" and (self.examples is not None or self.units is not None):
            raise ValueError("gradient_shift acts on a whole parameter: give the shift as an array, not units/examples")

    def active(self, step: int) -> bool:
        return self.steps is None or step in self.steps


# ----------------------------------------------------------------------------------------------- constructors

def error(wire: str, value, *, steps=None, examples=None, units=None) -> Deviation:
    """Additive error ``value`` on ``wire`` (``hidden``, ``logits`` or ``output_error``)."""
    return Deviation("error", wire, value, steps, examples, units)


def beaver_shift(value, *, steps=None, examples=None, units=None) -> Deviation:
    """Shift of the opened input operand of the first forward product at (examples, input features ``units``)."""
    return Deviation("beaver", "input", value, steps, examples, units)


def flip_relu(*, steps=None, examples=None, units=None) -> Deviation:
    """``b -> 1 - b`` for the ReLU comparison bits of the chosen hidden units."""
    return Deviation("flip", "relu", 1, steps, examples, units)


def offset_relu(delta, *, steps=None, examples=None, units=None) -> Deviation:
    """``b -> b + delta`` for the ReLU comparison bits (forward and backward pass)."""
    return Deviation("offset", "relu", delta, steps, examples, units)


def gradient_shift(param: str, value, *, steps=None) -> Deviation:
    """The update of ``param`` becomes ``param - lr * (grad + value)``."""
    return Deviation("gradient_shift", param, np.asarray(value, dtype=np.float64), steps)


def weight(value, *, steps=None, examples=None) -> Deviation:
    """Loss weight ``value`` for the chosen examples (0: zeroing, C: scaling); plaintext only."""
    return Deviation("weight", None, value, steps, examples)


# ------------------------------------------------------------------------------------------ per-step arrays

@dataclasses.dataclass
class StepArrays:
    """What the deviations do in one step, as dense arrays over the batch (zeros / ones when honest)."""
    weight: np.ndarray          # [B]
    output_error: np.ndarray    # [B, C]
    logits: np.ndarray          # [B, C]
    hidden: np.ndarray          # [B, H]
    flip: np.ndarray            # [B, H] (0 / 1)
    offset: np.ndarray          # [B, H]
    input_shift: np.ndarray     # [B, D]
    grad_shift: dict            # param -> array of its shape
    any: bool = False


def step_arrays(deviations: Sequence[Deviation], step: int, rows, dims: dict) -> StepArrays:
    """Dense arrays of the deviations active at ``step`` for the batch of global indices ``rows``.

    ``dims``: ``{'D': inputs, 'H': hidden units (0 for logistic regression), 'C': classes, 'shapes': {param:
    shape}}``.
    """
    rows = np.asarray(rows)
    B, D, H, C = len(rows), dims["D"], dims["H"], dims["C"]
    out = StepArrays(np.ones(B), np.zeros((B, C)), np.zeros((B, C)), np.zeros((B, H)), np.zeros((B, H)),
                     np.zeros((B, H)), np.zeros((B, D)), {p: np.zeros(s) for p, s in dims["shapes"].items()})
    for dev in deviations:
        if not dev.active(step):
            continue
        if dev.kind == "gradient_shift":
            if dev.site not in out.grad_shift:
                raise ValueError(f"gradient_shift on {dev.site!r}, but the model's parameters are "
                                 f"{tuple(out.grad_shift)}")
            out.grad_shift[dev.site] = out.grad_shift[dev.site] + np.broadcast_to(
                dev.value, out.grad_shift[dev.site].shape)
            out.any = True
            continue
        if dev.examples is None:
            sel = np.arange(B)
        else:
            sel = np.flatnonzero(np.isin(rows, dev.examples))
            if sel.size == 0:
                continue
        if dev.kind == "weight":
            out.weight[sel] = out.weight[sel] * float(dev.value)
            out.any = True
            continue
        target = {("error", "hidden"): out.hidden, ("error", "logits"): out.logits,
                  ("error", "output_error"): out.output_error, ("beaver", "input"): out.input_shift,
                  ("flip", "relu"): out.flip, ("offset", "relu"): out.offset}[(dev.kind, dev.site)]
        if target.shape[1] == 0:
            raise ValueError(f"a {dev.kind!r} deviation on {dev.site!r} needs a hidden layer (arch='mlp')")
        units = np.arange(target.shape[1]) if dev.units is None else np.asarray(dev.units)
        if units.size and (units.max() >= target.shape[1] or units.min() < 0):
            raise ValueError(f"units {dev.units} out of range for {dev.site!r} with {target.shape[1]} columns")
        if dev.kind == "flip":
            target[np.ix_(sel, units)] = 1.0 - target[np.ix_(sel, units)]  # two flips cancel
        else:
            target[np.ix_(sel, units)] += dev.value
        out.any = True
    return out

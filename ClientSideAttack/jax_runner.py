"""The client-side GAN attack on Keras 3's JAX backend, without TensorFlow (spec ``fsha.md`` §9).

Why: the GPU machines lent to this project have JAX but no TensorFlow. This module runs the attack of
:mod:`ClientSideAttack.server` / :mod:`ClientSideAttack.clients` (the reference) with the **same Keras
networks** (:mod:`ClientSideAttack.archs`, pure Keras) and the same training semantics, holding the
parameters as JAX arrays and calling the models through ``model.stateless_call``. It imports no
TensorFlow, directly or indirectly (``tests/test_clientside_jax.py`` checks this with TensorFlow
blocked, and cross-checks losses, gradients, weights and optimizer state against the TF
implementation from identical weights, batches and noise).

Set ``KERAS_BACKEND=jax`` before Keras is first imported; :class:`ClientSideAttackJax` raises otherwise.

What is the same as the TF implementation
-----------------------------------------
* Networks, 11 classes, fake class 10, target class, batch 256, Adam(1e-4) with Keras defaults
  (beta_1 0.9, beta_2 0.999, epsilon 1e-7, bias correction folded into the step size exactly as
  ``keras.optimizers.Adam.update_step`` does it).
* One step = one forward through client ``step0`` -> server -> client ``step1`` and **one** Adam
  update of the server's variables plus the client's group in that phase:

  ========== =============================================================== ==================
  phase      forward                                                         trained
  ========== =============================================================== ==================
  honest     x -> f(train) -> s(no flag) -> ff(train) -> CE(y)               s, f, ff
  generator  z -> G(train) -> f(train) -> scale_up -> s(no flag) ->          s, G
             scale_down -> ff(train) -> CE(target class)
  poison     z -> G(train) -> f(train) -> s(no flag) -> ff(train) -> CE(10)  s, f, ff
  ========== =============================================================== ==================

  "no flag" means ``stateless_call`` without ``training``, exactly like ``self.s(a)`` in the TF
  server, so the server's Dropout is inactive (``server_training`` changes it, as in the TF server).
  BatchNorm statistics of G and the Dropout seed state of f are updated by every step that runs them
  in training mode (G's statistics in poisoning steps too).
* :func:`scale_up` / :func:`scale_down`: identity forward; the backward pass multiplies the
  gradient by ``factor`` resp. **divides** it by ``factor`` (a true IEEE division, like the TF op;
  XLA would otherwise rewrite ``dy / c`` into ``dy * (1/c)``, which is off by up to one ulp).
* Optimizer modes: ``"shared"`` (default, faithful) is one Keras Adam built over the union of all
  variables: per-variable moments and **one** iteration counter that advances on every step, while
  the moments of variables that get no gradient in a step are left untouched (this is what
  ``keras.optimizers.Adam.apply`` does with a subset of its variables: ``update_step`` runs only for
  the variables passed, then ``iterations`` is incremented once). ``"per_group"`` is one Adam (moments
  and counter) per distinct trained variable set: {s, G} for generator steps, {s, f, ff} for honest
  and poisoning steps.
* Schedule (:meth:`ClientSideAttackJax.__call__`): every iteration visits [malicious] + honest
  clients in that order; the malicious client does a generator step at even values of the running
  iteration counter and a poisoning step at odd ones; every honest client takes the next batch of
  one shared data stream. f and ff are shared by all clients (the original's set-up).

What differs from the TF implementation, and why
------------------------------------------------
* **Random streams.** Initial weights (Keras initialisers), Dropout masks (Keras' JAX backend draws
  them with ``jax.random``), the latent noise and the data order come from different generators than
  under TensorFlow, so a run with the same seed is a different sample of the same procedure. The
  tests remove this by loading TF's initial weights, feeding the same batches and noise and
  replacing Dropout's mask by a fixed one on both sides.
* **Data order.** The TF pipeline is ``shuffle(10_000, reshuffle_each_iteration=True)`` -> ``batch(256,
  drop_remainder=True)`` -> ``repeat()``. Here the same buffered-shuffle algorithm (fill a buffer of
  10,000; emit a uniformly chosen element and refill its slot from the input) runs in NumPy once per
  pass over the data, and every pass drops its last incomplete batch, as TF does. Only the random
  stream differs (NumPy PCG64 instead of TF's Philox).
* **Latent noise** is drawn on the host with NumPy (``standard_normal``, float32) instead of
  ``tf.random.Generator.normal``; both are N(0, 1).
* **Numerics.** XLA and TF's kernels round differently (convolution accumulation order, softmax
  cross-entropy, ``pow``). Measured on CPU against TF with oneDNN disabled (3 iterations, 9 steps):
  losses within 2e-7 relative, gradients and Adam moments within 4e-6 of each array's largest
  entry, weights within 0.0012 learning rates. TF's default oneDNN float32 CPU kernels were seen up
  to ~1e-3 relative off a float64 evaluation of the same step (Keras-JAX float32: ~1e-6), so
  comparisons with a default TF CPU run are looser. On recent NVIDIA GPUs, JAX's default matmul
  precision and TF both allow TF32 for float32 convolutions and matmuls (the benchmark's
  ``--precision highest`` forces full float32).
* **Compilation.** One ``jax.jit`` program per phase, shared by all runners of a process (see
  ``_COMPILED``); the TF server traces one ``tf.function`` per client kind and phase. Same math.
* **Judge.** :class:`JaxJudge` is the same Keras classifier and loads the same cached
  ``.weights.h5`` file as :class:`ClientSideAttack.judge.Judge`. If no cached weights exist it trains
  one here with the same recipe (3 epochs, batch 128, Adam 1e-3, NumPy ``RandomState(1234)``
  shuffling, Glorot initialisers seeded 1234+k); the initial weights then come from JAX's random
  stream, so the judge is a different sample of the same recipe. Its metadata says
  ``"trained_with": "keras-jax"``.
* Only the original's topology is supported: one malicious client first, then ``honest_clients``
  honest clients that share f and ff with it (``build_attack``'s set-up); the TF server also accepts
  arbitrary client lists.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import keras
import numpy as np

from splitnn.data import buffered_shuffle  # noqa: F401 (re-exported)
from splitnn.utils import config_differences

from . import archs
from .dataset import SHUFFLE_BUFFER, load_mnist_arrays, preprocess  # noqa: F401 (preprocess: re-exported)
from .judge import (JUDGE_VERSION, TRAIN_BATCH, TRAIN_EPOCHS, TRAIN_LR, TRAIN_SEED, Judge, cache_dir,  # noqa: F401
                    make_judge_model)
from .settings import (GENERATOR, GRADIENT_FACTOR, HONEST, OPTIMIZER_MODES, PHASES, POISON,
                       check_training_options, validate_factor)

#: Keras Adam defaults.
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7
#: Model keys of the runner.
MODEL_NAMES = ("s", "f", "ff", "generator")
#: Variable groups trained per phase (the server's first, as in ``Server.step_variables``).
TRAINED = {HONEST: ("s", "f", "ff"), GENERATOR: ("s", "generator"), POISON: ("s", "f", "ff")}
CHECKPOINT_FORMAT = "clientside-jax-v1"

__all__ = [
    "GRADIENT_FACTOR", "HONEST", "GENERATOR", "POISON", "OPTIMIZER_MODES", "SHUFFLE_BUFFER",
    "JUDGE_VERSION", "validate_factor", "scale_up", "scale_down", "adam_update", "preprocess",
    "load_mnist_arrays", "buffered_shuffle", "ClientSideAttackJax", "make_judge_model",
    "train_judge_model", "cache_dir", "JaxJudge",
]


def _require_jax_backend(what):
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"{what} needs Keras' JAX backend, but Keras runs on "
                           f"{keras.backend.backend()!r}: set KERAS_BACKEND=jax before importing keras")


# ------------------------------------------------------------------------------------------------
# gradient scaling
# ------------------------------------------------------------------------------------------------

def _as_factor(factor, dtype):
    # Arrays (the runner passes the factor as a jit argument) are not validated, since their value may
    # be a tracer; anything else must be a finite real number > 0.
    if not isinstance(factor, (jax.Array, np.ndarray)):
        factor = validate_factor(factor)
    return jnp.asarray(factor, dtype)


@jax.custom_vjp
def _scale_up(x, factor):
    return x


def _scale_up_fwd(x, factor):
    return x, factor


def _scale_up_bwd(factor, dy):
    return dy * factor.astype(dy.dtype), jnp.zeros_like(factor)


_scale_up.defvjp(_scale_up_fwd, _scale_up_bwd)


@jax.custom_vjp
def _scale_down(x, factor):
    return x


def _scale_down_fwd(x, factor):
    return x, factor


def _scale_down_bwd(factor, dy):
    # XLA rewrites ``dy / broadcast(c)`` into ``dy * broadcast(1/c)`` (one ulp off), also when c is a
    # runtime argument. The barrier hides the broadcast from that rewrite, so this is a true division
    # like the TF op's DivNoNan (factor > 0).
    den = jax.lax.optimization_barrier(jnp.broadcast_to(factor.astype(dy.dtype), dy.shape))
    return dy / den, jnp.zeros_like(factor)


_scale_down.defvjp(_scale_down_fwd, _scale_down_bwd)


def scale_up(x, factor=GRADIENT_FACTOR):
    """Identity in the forward pass; multiplies the incoming gradient by ``factor``."""
    x = jnp.asarray(x)
    return _scale_up(x, _as_factor(factor, x.dtype))


def scale_down(x, factor=GRADIENT_FACTOR):
    """Identity in the forward pass; divides the incoming gradient by ``factor`` (true division)."""
    x = jnp.asarray(x)
    return _scale_down(x, _as_factor(factor, x.dtype))


# ------------------------------------------------------------------------------------------------
# Adam, as keras.optimizers.Adam.update_step computes it
# ------------------------------------------------------------------------------------------------

def adam_update(params, grads, opt, learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2,
                epsilon=ADAM_EPSILON):
    """One Keras-Adam apply to the pytree ``params``; returns ``(new_params, new_opt)``.

    ``opt`` is ``{"t": iterations (int scalar), "m": pytree like params, "v": same}``. The formulas
    and their evaluation order are those of ``keras.optimizers.Adam.update_step`` (Keras 3.15)::

        t' = iterations + 1;  alpha = lr * sqrt(1 - beta_2**t') / (1 - beta_1**t')
        m += (g - m) * (1 - beta_1);  v += (g**2 - v) * (1 - beta_2)
        p -= (m * alpha) / (sqrt(v) + epsilon)

    followed by ``iterations += 1``. Variables outside ``params`` are not touched (the caller keeps
    their moments), which is Keras' behaviour for variables not passed to ``apply``.
    """
    t = opt["t"]

    def one(p, g, m, v):
        dtype = p.dtype
        lr = jnp.asarray(learning_rate, dtype)
        step = (t + 1).astype(dtype)
        b1p = jnp.power(jnp.asarray(beta_1, dtype), step)
        b2p = jnp.power(jnp.asarray(beta_2, dtype), step)
        alpha = lr * jnp.sqrt(1 - b2p) / (1 - b1p)
        g = g.astype(dtype)
        m = m + (g - m) * (1 - beta_1)
        v = v + (jnp.square(g) - v) * (1 - beta_2)
        return p - (m * alpha) / (jnp.sqrt(v) + epsilon), m, v

    out = jax.tree_util.tree_map(one, params, grads, opt["m"], opt["v"])
    is_triple = lambda x: isinstance(x, tuple) and len(x) == 3  # noqa: E731
    new_p = jax.tree_util.tree_map(lambda x: x[0], out, is_leaf=is_triple)
    new_m = jax.tree_util.tree_map(lambda x: x[1], out, is_leaf=is_triple)
    new_v = jax.tree_util.tree_map(lambda x: x[2], out, is_leaf=is_triple)
    return new_p, {"t": t + 1, "m": new_m, "v": new_v}


# ------------------------------------------------------------------------------------------------
# data (NumPy only; mirrors ClientSideAttack/dataset.py)
# ------------------------------------------------------------------------------------------------

def _rng_state(rng):
    return json.dumps(rng.bit_generator.state)


def _rng_from_state(text):
    state = json.loads(str(text))
    bitgen = getattr(np.random, state["bit_generator"])()
    bitgen.state = state
    return np.random.Generator(bitgen)


# ------------------------------------------------------------------------------------------------
# the runner
# ------------------------------------------------------------------------------------------------

def _stateless(models, name, params, states, new_states, x, training):
    model = models[name]
    if training is None:  # no flag at all, like ``self.s(a)`` in the TF server
        y, new_states[name] = model.stateless_call(params[name], states[name], x)
    else:
        y, new_states[name] = model.stateless_call(params[name], states[name], x, training=training)
    return y


def _step_loss(models, phase, server_training, trained, fixed, states, inputs, labels, consts):
    """Loss of one step and the updated non-trainable state (the graph of the TF step).

    ``consts``: ``factor`` (float32), ``target`` and ``fake`` (int32) as runtime arguments, so that one
    compiled program serves every configuration."""
    params = {**fixed, **trained}
    new_states = dict(states)

    def call(name, x, training):
        return _stateless(models, name, params, states, new_states, x, training)

    if phase == HONEST:
        a = call("f", inputs, True)
    else:
        a = call("f", call("generator", inputs, True), True)
        if phase == GENERATOR:
            a = _scale_up(a, consts["factor"].astype(a.dtype))
    out = call("s", a, server_training)
    batch = inputs.shape[0]
    if phase == GENERATOR:
        out = _scale_down(out, consts["factor"].astype(out.dtype))
        labels = jnp.full((batch,), consts["target"], jnp.int32)
    elif phase == POISON:
        labels = jnp.full((batch,), consts["fake"], jnp.int32)
    logits = call("ff", out, True)
    loss = jnp.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return loss, new_states


# Compiled programs, shared by all runners of this process: they depend only on the architecture
# (always built by ``archs``; the Keras models of the runner that first needs a program serve as its
# template, ``stateless_call`` takes every value as an argument), the phase and the server's training
# flag. Everything configurable is an argument, so a second runner (a resumed checkpoint, the other
# optimizer mode) compiles nothing new.
_COMPILED = {}


def _compiled(kind, phase, server_training, models):
    key = (kind, phase, server_training, keras.config.floatx())
    fn = _COMPILED.get(key)
    if fn is not None:
        return fn
    if kind == "step":
        grad = jax.value_and_grad(
            lambda *a: _step_loss(models, phase, server_training, *a), has_aux=True)

        def step(trained, fixed, states, opt, inputs, labels, consts, lr):
            (loss, new_states), grads = grad(trained, fixed, states, inputs, labels, consts)
            new_trained, new_opt = adam_update(trained, grads, opt, lr)
            # the gradients are returned too (one extra device buffer per step, dropped by
            # train_step), so that compute_gradients reports what this very program applies
            return loss, new_trained, new_states, new_opt, grads
        fn = jax.jit(step)
    elif kind == "generate":
        g, training = models["generator"], phase
        fn = jax.jit(lambda p, s, z: g.stateless_call(p, s, z, training=training)[0])
    elif kind == "predict":
        def predict(params, states, x):
            for name in ("f", "s", "ff"):
                x = models[name].stateless_call(params[name], states[name], x, training=False)[0]
            return x
        fn = jax.jit(predict)
    else:
        raise ValueError(f"unknown program kind {kind!r}")
    _COMPILED[key] = fn
    return fn


def _check_int(value, what, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


class ClientSideAttackJax:
    """The client-side attack (one malicious + ``honest_clients`` honest clients) on Keras-JAX.

    Parameters mirror :func:`ClientSideAttack.server.build_attack` / :class:`~ClientSideAttack.server.Server`:

    honest_clients : int >= 0 (original 10)
    target_class : digit 0..9 (original 1)
    gradient_factor : float > 0 (original 1e5)
    batch_size : int >= 1 (original 256)
    learning_rate : float > 0 (original 1e-4)
    optimizer : "shared" (faithful default) or "per_group"
    seed : int or None. Seeds Keras' initialisers and Dropout seed states
        (``keras.utils.set_random_seed(seed)``), the data order (``seed``) and the noise (``seed + 1``,
        as the TF malicious client). None draws one from NumPy's global RNG.
    data : None (MNIST training split via ``splitnn.data``) or ``(x, y)``: float images
        [N, 28, 28, 1] in [-1, 1] and integer labels [N] in 0..10, N >= batch_size.
    fake_class : int (original 10)
    server_training : None (faithful: no flag), True or False; the server's training flag.
    shuffle_buffer : int, None or 0. 10,000 as the original; None = full permutation per pass;
        0 = no shuffling (batches in the given order, used by the tests).

    State lives in :attr:`params` / :attr:`states` (dicts ``model -> list of jax arrays``, trainable
    resp. non-trainable in ``model.trainable_variables`` / ``model.non_trainable_variables`` order),
    :attr:`opt` (``key -> {"t", "m", "v"}``) and :attr:`iteration`. The Keras models in
    :attr:`models` only provide the computation; :meth:`sync_to_models` copies the state into them.
    """

    def __init__(self, honest_clients=10, target_class=1, gradient_factor=GRADIENT_FACTOR,
                 batch_size=256, learning_rate=1e-4, optimizer="shared", seed=None, data=None,
                 fake_class=archs.FAKE_CLASS, server_training=None, shuffle_buffer=SHUFFLE_BUFFER):
        _require_jax_backend("ClientSideAttackJax")
        self.honest_clients = _check_int(honest_clients, "honest_clients", 0)
        if (isinstance(target_class, bool) or not isinstance(target_class, numbers.Integral)
                or not 0 <= int(target_class) <= 9):
            raise ValueError(f"target_class must be an integer digit in 0..9, got {target_class!r}")
        self.target_class = int(target_class)
        self.fake_class = _check_int(fake_class, "fake_class", 0)
        if self.fake_class == self.target_class:
            raise ValueError(f"fake_class ({self.fake_class}) must differ from target_class")
        if self.fake_class >= archs.NUM_CLASSES:
            raise ValueError(f"fake_class {self.fake_class} needs more than {archs.NUM_CLASSES} outputs")
        self.gradient_factor = validate_factor(gradient_factor)
        self.batch_size, self.learning_rate, self.optimizer_mode, self.server_training = check_training_options(
            batch_size, learning_rate, optimizer, server_training)
        if shuffle_buffer is not None:
            shuffle_buffer = _check_int(shuffle_buffer, "shuffle_buffer", 0)
        self.shuffle_buffer = shuffle_buffer
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self.seed = _check_int(seed, "seed", 0)
        self.latent_dim = archs.LATENT_DIM

        self._x, self._y = self._check_data(data)

        # same creation order as build_attack (f, ff, G, then the server)
        keras.utils.set_random_seed(self.seed)
        self.models = {"f": archs.make_f(), "ff": archs.make_ff(), "generator": archs.make_generator()}
        self.models["s"] = archs.make_s()
        self.params, self.states = {}, {}
        self.sync_from_models()
        self.opt = self._fresh_optimizers()
        self.iteration = 0
        self._data_rng = np.random.default_rng(self.seed)
        self._noise_rng = np.random.default_rng(self.seed + 1)
        self._order, self._pos = None, 0
        self._const_arrays = None
        self._lr = jnp.asarray(self.learning_rate, jnp.float32)

    # -- construction ---------------------------------------------------------------------------
    def _check_data(self, data):
        if data is None:
            x, y, _, _ = load_mnist_arrays()
        else:
            if not (isinstance(data, (tuple, list)) and len(data) == 2):
                raise TypeError("data must be None or a pair (x, y) of arrays")
            x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
        if x.ndim != 4 or x.shape[1:] != archs.IMAGE_SHAPE:
            raise ValueError(f"images must have shape (N, 28, 28, 1), got {x.shape}")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or y.max() >= archs.NUM_CLASSES):
            raise ValueError(f"labels must lie in 0..{archs.NUM_CLASSES - 1}")
        if len(x) < self.batch_size and self.honest_clients:
            raise ValueError(f"{len(x)} images give no complete batch of {self.batch_size}")
        return x, y.astype(np.int32)

    @property
    def clients(self):
        """Client kinds in visiting order: ``["malicious"] + ["honest"] * honest_clients``."""
        return ["malicious"] + ["honest"] * self.honest_clients

    def optimizer_key(self, phase):
        """Key in :attr:`opt` of the optimizer that a step in ``phase`` applies."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}, expected one of {PHASES}")
        if self.optimizer_mode == "shared":
            return "shared"
        return "+".join(sorted(TRAINED[phase]))

    def _fresh_optimizers(self):
        groups = {}
        for phase in PHASES:
            key = self.optimizer_key(phase)
            names = set(TRAINED[phase]) if self.optimizer_mode == "per_group" else set(MODEL_NAMES)
            groups.setdefault(key, set()).update(names)
        zeros = lambda name: [jnp.zeros_like(p) for p in self.params[name]]  # noqa: E731
        return {key: {"t": jnp.asarray(0, jnp.int32),
                      "m": {n: zeros(n) for n in MODEL_NAMES if n in names},
                      "v": {n: zeros(n) for n in MODEL_NAMES if n in names}}
                for key, names in groups.items()}

    def sync_from_models(self):
        """Read parameters and non-trainable state from the Keras models (after ``set_weights``)."""
        for name, m in self.models.items():
            self.params[name] = [jnp.asarray(v.value) for v in m.trainable_variables]
            self.states[name] = [jnp.asarray(v.value) for v in m.non_trainable_variables]

    def sync_to_models(self):
        """Write the runner's parameters and non-trainable state into the Keras models."""
        for name, m in self.models.items():
            for var, val in zip(m.trainable_variables, self.params[name]):
                var.assign(val)
            for var, val in zip(m.non_trainable_variables, self.states[name]):
                var.assign(val)

    def set_model_weights(self, weights):
        """``weights``: ``{model: model.get_weights()-style list}`` for any of ``s, f, ff, generator``
        (e.g. exported from the TF implementation). Optimizer state is not changed."""
        unknown = set(weights) - set(MODEL_NAMES)
        if unknown:
            raise ValueError(f"unknown model names {sorted(unknown)}; expected some of {MODEL_NAMES}")
        self.sync_to_models()
        for name, w in weights.items():
            self.models[name].set_weights([np.asarray(a) for a in w])
        self.sync_from_models()

    def get_model_weights(self):
        """``{model: list of NumPy arrays}`` in ``model.get_weights()`` order."""
        self.sync_to_models()
        return {name: [np.asarray(a) for a in m.get_weights()] for name, m in self.models.items()}

    # -- compiled steps -------------------------------------------------------------------------
    def _consts(self):
        if self._const_arrays is None:
            self._const_arrays = {"factor": jnp.asarray(self.gradient_factor, jnp.float32),
                                  "target": jnp.asarray(self.target_class, jnp.int32),
                                  "fake": jnp.asarray(self.fake_class, jnp.int32)}
        return self._const_arrays

    def _split(self, phase):
        names = TRAINED[phase]
        trained = {n: self.params[n] for n in names}
        fixed = {n: p for n, p in self.params.items() if n not in names}
        return trained, fixed

    def _check_inputs(self, phase, inputs, labels):
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}, expected one of {PHASES}")
        inputs = np.asarray(inputs, np.float32) if not isinstance(inputs, jax.Array) else inputs
        want = archs.IMAGE_SHAPE if phase == HONEST else (self.latent_dim,)
        if inputs.ndim != 1 + len(want) or tuple(inputs.shape[1:]) != want:
            raise ValueError(f"{phase} step expects inputs of shape (B,) + {want}, got {tuple(inputs.shape)}")
        if phase == HONEST:
            if labels is None:
                raise ValueError("an honest step needs labels")
            labels = jnp.asarray(labels, jnp.int32)
            if labels.shape != (inputs.shape[0],):
                raise ValueError(f"labels must have shape ({inputs.shape[0]},), got {labels.shape}")
        else:
            labels = None  # the attacker makes its own labels
        return inputs, labels

    def _run_step(self, phase, inputs, labels):
        inputs, labels = self._check_inputs(phase, inputs, labels)
        trained, fixed = self._split(phase)
        opt = self.opt[self.optimizer_key(phase)]
        sub = {"t": opt["t"], "m": {n: opt["m"][n] for n in trained}, "v": {n: opt["v"][n] for n in trained}}
        fn = _compiled("step", phase, self.server_training, self.models)
        return fn(trained, fixed, self.states, sub, inputs, labels, self._consts(), self._lr)

    def train_step(self, phase, inputs, labels=None):
        """One split-learning step (one Adam apply); returns the loss (a JAX scalar)."""
        loss, new_trained, new_states, new_opt, _ = self._run_step(phase, inputs, labels)
        self.params.update(new_trained)
        self.states = new_states
        opt = self.opt[self.optimizer_key(phase)]
        opt["t"] = new_opt["t"]
        opt["m"].update(new_opt["m"])
        opt["v"].update(new_opt["v"])
        return loss

    def compute_gradients(self, phase, inputs, labels=None):
        """Loss and gradients of one step without applying it (the runner's state is unchanged):
        ``(loss, grads)``, ``grads`` a dict ``model -> list`` over the group trained in ``phase``.
        Runs the training step's own compiled program and discards its updates."""
        loss, _, _, _, grads = self._run_step(phase, inputs, labels)
        return loss, grads

    # -- data and noise -------------------------------------------------------------------------
    def _new_order(self):
        n = len(self._x)
        if self.shuffle_buffer == 0:
            return np.arange(n)
        return buffered_shuffle(n, self.shuffle_buffer, self._data_rng)

    def next_batch(self):
        """Next ``(x, y)`` batch of the shared honest-client stream (NumPy)."""
        b = self.batch_size
        if self._order is None or self._pos + b > len(self._order):
            # a new pass: reshuffle; the previous pass's incomplete tail is dropped
            if len(self._x) < b:
                raise ValueError(f"{len(self._x)} images give no complete batch of {b}")
            self._order, self._pos = self._new_order(), 0
        idx = self._order[self._pos:self._pos + b]
        self._pos += b
        return self._x[idx], self._y[idx]

    def sample_noise(self, n):
        """``z ~ N(0, 1)`` of shape [n, latent_dim] (float32) from the runner's noise generator."""
        n = _check_int(n, "n", 1)
        return self._noise_rng.standard_normal((n, self.latent_dim), dtype=np.float32)

    @staticmethod
    def phase_for(iteration):
        """Original schedule: generator step at even iterations, poisoning step at odd ones."""
        return GENERATOR if iteration % 2 == 0 else POISON

    # -- training loop --------------------------------------------------------------------------
    def __call__(self, iterations, callback=None, callback_every=None, verbose=False):
        """Run ``iterations`` iterations; return ``(honest_losses, generator_losses)`` as float lists.

        Same contract as ``Server.__call__``: ``callback(runner, iteration)`` after every
        ``callback_every`` iterations of the running counter and after the last one.
        """
        iterations = _check_int(iterations, "iterations", 0)
        if callback_every is not None:
            callback_every = _check_int(callback_every, "callback_every", 1)
        honest, gen = [], []
        t0 = time.perf_counter()
        for i in range(iterations):
            it = self.iteration
            for kind in self.clients:
                if kind == "malicious":
                    phase = self.phase_for(it)
                    loss = self.train_step(phase, self.sample_noise(self.batch_size))
                    if phase == GENERATOR:
                        gen.append(loss)
                else:
                    x, y = self.next_batch()
                    honest.append(self.train_step(HONEST, x, y))
            self.iteration += 1
            done, last = self.iteration, i == iterations - 1
            due = last or (callback_every and done % callback_every == 0)
            if verbose and due:
                jax.block_until_ready(self.params)
                print(f"iteration {done}: {(i + 1) / (time.perf_counter() - t0):.2f} it/s", flush=True)
            if callback is not None and due:
                callback(self, done)
        # one device-to-host transfer per list
        return ([float(v) for v in np.asarray(jnp.stack(honest))] if honest else [],
                [float(v) for v in np.asarray(jnp.stack(gen))] if gen else [])

    # -- sampling and evaluation ----------------------------------------------------------------
    def generate(self, n, training=True, batch_size=250, z=None):
        """``n`` generated images (NumPy float32 in [-1, 1]) in chunks of ``batch_size``.

        Like ``BadClient.generate``: training mode by default (BatchNorm uses each chunk's batch
        statistics, as the original samples), and G's stored statistics are left unchanged.
        """
        n = _check_int(n, "n", 1)
        batch_size = _check_int(batch_size, "batch_size", 1)
        if z is None:
            z = self.sample_noise(n)
        z = np.asarray(z, np.float32)
        if z.shape != (n, self.latent_dim):
            raise ValueError(f"z must have shape ({n}, {self.latent_dim}), got {z.shape}")
        fn = _compiled("generate", bool(training), None, self.models)
        out = [np.asarray(fn(self.params["generator"], self.states["generator"], z[i:i + batch_size]))
               for i in range(0, n, batch_size)]
        return np.concatenate(out, axis=0)

    def predict_logits(self, x, batch_size=1000):
        """Inference-mode logits of ``f -> s -> ff`` (NumPy)."""
        fn = _compiled("predict", None, None, self.models)
        x = np.asarray(x, np.float32)
        return np.concatenate([np.asarray(fn(self.params, self.states, x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)], axis=0)

    def accuracy(self, x, y, batch_size=1000):
        """Fraction of ``x`` whose argmax over all outputs equals ``y``."""
        pred = self.predict_logits(x, batch_size).argmax(axis=1)
        return float(np.mean(pred == np.asarray(y).astype(np.int64)))

    def optimizer_state(self):
        """``{key: {"iterations": int, "m": {model: [np]}, "v": {model: [np]}}}``."""
        return {k: {"iterations": int(o["t"]),
                    "m": {n: [np.asarray(a) for a in l] for n, l in o["m"].items()},
                    "v": {n: [np.asarray(a) for a in l] for n, l in o["v"].items()}}
                for k, o in self.opt.items()}

    # -- checkpoints ----------------------------------------------------------------------------
    def config(self):
        return {"format": CHECKPOINT_FORMAT, "honest_clients": self.honest_clients,
                "target_class": self.target_class, "gradient_factor": self.gradient_factor,
                "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "optimizer": self.optimizer_mode, "seed": self.seed, "fake_class": self.fake_class,
                "server_training": self.server_training, "shuffle_buffer": self.shuffle_buffer,
                "num_images": int(len(self._x))}

    def save(self, path, extra=None):
        """Write all state (weights, BN statistics, Dropout seed states, optimizer moments and
        counters, iteration, RNG states, data order and position) to ``path`` (.npz, written
        atomically). ``extra``: dict of NumPy-convertible values stored alongside (``extra/<key>``)."""
        path = Path(path)
        arrays = {"config": np.asarray(json.dumps(self.config())),
                  "iteration": np.asarray(self.iteration, np.int64),
                  "noise_rng": np.asarray(_rng_state(self._noise_rng)),
                  "data_rng": np.asarray(_rng_state(self._data_rng)),
                  "data_pos": np.asarray(self._pos, np.int64),
                  "data_order": (np.asarray(self._order, np.int64) if self._order is not None
                                 else np.zeros(0, np.int64)),
                  "has_order": np.asarray(self._order is not None)}
        for name in MODEL_NAMES:
            for i, a in enumerate(self.params[name]):
                arrays[f"param/{name}/{i}"] = np.asarray(a)
            for i, a in enumerate(self.states[name]):
                arrays[f"state/{name}/{i}"] = np.asarray(a)
        for key, o in self.opt.items():
            arrays[f"opt/{key}/t"] = np.asarray(o["t"], np.int64)
            for which in ("m", "v"):
                for name, lst in o[which].items():
                    for i, a in enumerate(lst):
                        arrays[f"opt/{key}/{which}/{name}/{i}"] = np.asarray(a)
        for k, v in (extra or {}).items():
            arrays[f"extra/{k}"] = np.asarray(v)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return path

    def restore(self, path):
        """Load a checkpoint written by :meth:`save` into this runner (its configuration must match,
        except ``seed``); returns the ``extra`` dict."""
        with np.load(Path(path), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        cfg = json.loads(str(data["config"]))
        mine = self.config()
        diff = config_differences(cfg, mine, ignore=("seed",))
        if diff:
            raise ValueError(f"checkpoint {path} was written with a different configuration "
                             f"(checkpoint, runner): {diff}")

        def load_list(prefix, like):
            out = []
            for i, ref in enumerate(like):
                a = data[f"{prefix}/{i}"]
                if a.shape != tuple(ref.shape):
                    raise ValueError(f"checkpoint {prefix}/{i} has shape {a.shape}, expected {tuple(ref.shape)}")
                out.append(jnp.asarray(a, ref.dtype))
            return out

        for name in MODEL_NAMES:
            self.params[name] = load_list(f"param/{name}", self.params[name])
            self.states[name] = load_list(f"state/{name}", self.states[name])
        for key, o in self.opt.items():
            o["t"] = jnp.asarray(int(data[f"opt/{key}/t"]), jnp.int32)
            for which in ("m", "v"):
                for name in list(o[which]):
                    o[which][name] = load_list(f"opt/{key}/{which}/{name}", o[which][name])
        self.iteration = int(data["iteration"])
        self.seed = int(cfg["seed"])
        self._noise_rng = _rng_from_state(data["noise_rng"])
        self._data_rng = _rng_from_state(data["data_rng"])
        self._order = data["data_order"] if bool(data["has_order"]) else None
        self._pos = int(data["data_pos"])
        return {k[len("extra/"):]: v for k, v in data.items() if k.startswith("extra/")}

    @classmethod
    def from_checkpoint(cls, path, data=None):
        """A runner built with the checkpoint's configuration and its state; returns
        ``(runner, extra)``. ``data`` as in the constructor (default MNIST)."""
        with np.load(Path(path), allow_pickle=False) as z:
            cfg = json.loads(str(z["config"]))
        if cfg.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
        runner = cls(honest_clients=cfg["honest_clients"], target_class=cfg["target_class"],
                     gradient_factor=cfg["gradient_factor"], batch_size=cfg["batch_size"],
                     learning_rate=cfg["learning_rate"], optimizer=cfg["optimizer"], seed=cfg["seed"],
                     data=data, fake_class=cfg["fake_class"], server_training=cfg["server_training"],
                     shuffle_buffer=cfg["shuffle_buffer"])
        return runner, runner.restore(path)


# ------------------------------------------------------------------------------------------------
# judge (same Keras classifier and cache as ClientSideAttack/judge.py)
# ------------------------------------------------------------------------------------------------

def train_judge_model(x_train, y_train, epochs=TRAIN_EPOCHS, batch_size=TRAIN_BATCH,
                      lr=TRAIN_LR, seed=TRAIN_SEED, verbose=False):
    """The recipe of ``judge.train_judge_model`` on Keras-JAX: Adam(lr) (Keras semantics, see
    :func:`adam_update`), batches of a NumPy ``RandomState(seed)`` permutation per epoch, the
    incomplete last batch dropped. Returns the Keras model with the trained weights."""
    _require_jax_backend("train_judge_model")
    model = make_judge_model(seed)
    params = [jnp.asarray(v.value) for v in model.trainable_variables]
    states = [jnp.asarray(v.value) for v in model.non_trainable_variables]
    opt = {"t": jnp.asarray(0, jnp.int32), "m": [jnp.zeros_like(p) for p in params],
           "v": [jnp.zeros_like(p) for p in params]}

    def loss_fn(params, x, y):
        logits, _ = model.stateless_call(params, states, x, training=True)
        return jnp.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))

    @jax.jit
    def step(params, opt, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params, opt = adam_update(params, grads, opt, lr)
        return loss, params, opt

    rng = np.random.RandomState(seed)
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train).astype(np.int32)
    n = len(x_train)
    loss = None
    for epoch in range(epochs):
        perm = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            loss, params, opt = step(params, opt, x_train[idx], y_train[idx])
        if verbose and loss is not None:
            print(f"judge epoch {epoch + 1}/{epochs}: last batch loss {float(loss):.4f}", flush=True)
    for var, val in zip(model.trainable_variables, params):
        var.assign(val)
    return model


class JaxJudge(Judge):
    """:class:`ClientSideAttack.judge.Judge` on Keras-JAX: same model, same cache files (a cached ``.weights.h5``
    serves both backends); a judge trained here is marked ``"trained_with": "keras-jax"`` in the cache."""

    TRAINED_WITH = "keras-jax"

    def __init__(self, model, info=None):
        _require_jax_backend("JaxJudge")
        super().__init__(model, info)
        self._logits = jax.jit(lambda p, s, x: model.stateless_call(p, s, x, training=False)[0])

    @staticmethod
    def train(x_train, y_train, epochs=TRAIN_EPOCHS, verbose=False):
        return train_judge_model(x_train, y_train, epochs=epochs, verbose=verbose)

    def logits(self, images):
        params = [v.value for v in self.model.trainable_variables]
        states = [v.value for v in self.model.non_trainable_variables]
        return np.asarray(self._logits(params, states, images))

"""The one place that touches TensorFlow or JAX: gradients, compilation, seeding, stateful steps.

Every attack in the package is written once, in ``keras.ops`` and ``Model.stateless_call`` /
``Optimizer.stateless_apply``, as a *pure* step ``step(state, *inputs) -> (new_state, outputs)``. This module
supplies what Keras leaves to the backend:

* :func:`loss_grads` -- several losses from one forward pass and the gradient of each w.r.t. its own group of
  values (a persistent ``tf.GradientTape`` under TensorFlow, one ``jax.vjp`` under JAX);
* :func:`input_gradient` -- the gradient of ``sum(fn(x))`` w.r.t. ``x`` that stays differentiable (double
  back-propagation, for the WGAN-GP penalty);
* :func:`custom_gradient` -- ``keras.ops.custom_gradient`` (both backends);
* :func:`compile` -- ``tf.function`` under TensorFlow, ``jax.jit`` under JAX;
* :class:`StatefulStep` -- binds a pure step to Keras variables: under TensorFlow the reads, the pure step and
  the assignments form one ``tf.function`` (the package's training steps stay ``tf.function`` steps), under JAX
  the pure step is jitted and its results are assigned to the variables afterwards;
* :func:`set_seed` and :func:`uniform` (stateless draws from an explicit ``[2]`` integer key).

Under ``KERAS_BACKEND=jax`` nothing here (or anywhere in the package) imports TensorFlow.
"""
from __future__ import annotations

import random

import keras
import numpy as np

BACKEND = keras.backend.backend()
if BACKEND not in ('tensorflow', 'jax'):
    raise ImportError(f"the package runs on Keras' TensorFlow or JAX backend, not {BACKEND!r} "
                      '(set KERAS_BACKEND=tensorflow or jax before Keras is first imported)')

if BACKEND == 'tensorflow':
    import tensorflow as tf
else:
    import jax
    import jax.numpy as jnp


def is_tensorflow() -> bool:
    return BACKEND == 'tensorflow'


def is_jax() -> bool:
    return BACKEND == 'jax'


def quiet_retracing() -> None:
    """Silence TensorFlow's Python-side notices (e.g. retracing warnings when a notebook builds fresh models and
    compiled steps per setting); nothing to do under JAX."""
    if is_tensorflow():
        import tensorflow as tf
        tf.get_logger().setLevel('ERROR')


# ------------------------------------------------------------------------------------------------ gradients

def loss_grads(fn, params, wrt, *args):
    """Losses from one evaluation of ``fn`` and the gradients asked for.

    ``fn(params, *args) -> (losses, aux)``: ``params`` a tuple of groups (each a list of tensors), ``losses`` a
    tuple of scalars, ``aux`` anything (not differentiated). ``wrt`` is a list of ``(loss_index, group_index)``
    pairs; the result is ``(losses, aux, grads)`` with ``grads[k]`` the list of gradients of
    ``losses[wrt[k][0]]`` w.r.t. ``params[wrt[k][1]]`` (zeros where a value does not reach the loss). All
    gradients are taken at the same ``params``.
    """
    params = tuple(list(g) for g in params)
    if BACKEND == 'tensorflow':
        with tf.GradientTape(persistent=True) as tape:
            for group in params:
                tape.watch(group)
            losses, aux = fn(params, *args)
        grads = [tape.gradient(losses[i], params[j], unconnected_gradients=tf.UnconnectedGradients.ZERO)
                 for i, j in wrt]
        del tape
        return tuple(losses), aux, grads
    losses, vjp, aux = jax.vjp(lambda p: tuple(fn(p, *args)), params, has_aux=True)
    grads = []
    for i, j in wrt:
        cotangent = tuple(jnp.ones_like(l) if k == i else jnp.zeros_like(l) for k, l in enumerate(losses))
        grads.append(list(vjp(cotangent)[0][j]))
    return losses, aux, grads


def value_and_grad(fn, params, *args):
    """``(loss, aux, grads)`` of ``fn(params, *args) -> (loss, aux)`` w.r.t. the list ``params``."""
    (loss,), aux, (grads,) = loss_grads(lambda p, *a: _single(fn(p[0], *a)), (params,), [(0, 0)], *args)
    return loss, aux, grads


def _single(out):
    loss, aux = out
    return (loss,), aux


def input_gradient(fn, x):
    """``(dS/dx, aux)`` where ``fn(x) -> (y, aux)`` and ``S = sum(y)``; differentiable again (double backprop).

    With samples that do not interact (no batch statistics), row ``b`` of the result is the gradient of
    ``y[b]`` w.r.t. ``x[b]``, as the WGAN-GP penalty needs.
    """
    if BACKEND == 'tensorflow':
        with tf.GradientTape() as tape:
            tape.watch(x)
            y, aux = fn(x)
        return tape.gradient(y, x), aux
    y, vjp, aux = jax.vjp(fn, x, has_aux=True)
    return vjp(jnp.ones_like(y))[0], aux


custom_gradient = keras.ops.custom_gradient


# ----------------------------------------------------------------------------------------------- optimizers

class _BaseAssignments:
    """Within a ``StatelessScope``, TensorFlow's optimizer writes straight to its ``tf.Variable``s (for
    ``tf.distribute``) instead of recording the updates in the scope; for the duration of the block the optimizer
    uses the backend-independent update path, which records them. A no-op under JAX."""

    _METHODS = ('assign', 'assign_add', 'assign_sub', '_backend_update_step', '_apply_weight_decay')

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def __enter__(self):
        if BACKEND == 'tensorflow':
            from keras.src.optimizers.base_optimizer import BaseOptimizer
            for name in self._METHODS:
                setattr(self.optimizer, name, getattr(BaseOptimizer, name).__get__(self.optimizer))
            # the slots are indexed by the tf.Variable's id; in the scope ``variable.value`` is the mapped tensor
            tf_key = type(self.optimizer)._var_key.__get__(self.optimizer)
            self.optimizer._var_key = lambda v: v._value._unique_id if isinstance(v, keras.Variable) else tf_key(v)
        return self

    def __exit__(self, *exc):
        if BACKEND == 'tensorflow':
            for name in self._METHODS + ('_var_key',):
                self.optimizer.__dict__.pop(name, None)
        return False


def apply_gradients(optimizer, optimizer_values, grads, values, variables=None):
    """One optimizer update as a pure function: ``(new_values, new_optimizer_values)``.

    ``optimizer_values`` are the current values of ``optimizer.variables`` (slots, iteration counter, learning
    rate); ``values`` those of ``variables`` (default: every variable the optimizer was built on). ``variables``
    may be a subset of those (one optimizer shared by several networks, each step updating its own part): as with
    Keras' stateful ``optimizer.apply(grads, variables)``, the other variables and their slots are left untouched
    and the iteration counter advances by one. The same update rule as ``apply_gradients`` on both backends
    (``Optimizer.stateless_apply`` alone is refused by TensorFlow's optimizer).
    """
    variables = list(optimizer._trainable_variables if variables is None else variables)
    values, optimizer_values = list(values), list(optimizer_values)
    if len(values) != len(variables) or len(grads) != len(variables):
        raise ValueError(f'apply_gradients: {len(variables)} variables, {len(values)} values, {len(grads)} grads')
    if len(optimizer_values) != len(optimizer.variables):
        raise ValueError(f'apply_gradients: the optimizer has {len(optimizer.variables)} variables, '
                         f'got {len(optimizer_values)} values')
    mapping = list(zip(variables, values)) + list(zip(optimizer.variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping) as scope, _BaseAssignments(optimizer):
        optimizer.apply(list(grads), variables)

    def current(v, old):
        new = scope.get_current_value(v)
        return old if new is None else new
    return ([current(v, old) for v, old in zip(variables, values)],
            [current(v, old) for v, old in zip(optimizer.variables, optimizer_values)])


# ------------------------------------------------------------------------------------------------ compiling

def compile(fn, jit_compile=False):  # noqa: A001 (the backend's compile, not the builtin)
    """``fn`` compiled for the backend: ``tf.function`` (XLA with ``jit_compile``) or ``jax.jit``.

    No AutoGraph under TensorFlow: the package's steps use Python control flow only on static values, and
    AutoGraph re-reads source files when it traces (a file edited during a long run once made it convert the
    wrong method).
    """
    if BACKEND == 'tensorflow':
        return tf.function(fn, jit_compile=bool(jit_compile), autograph=False)
    return jax.jit(fn)


def variable_values(variables):
    """The current values of Keras variables (tensors, in order; under TensorFlow a read of each variable now,
    not the variable itself, so that later assignments cannot change what the step computed from it)."""
    if BACKEND == 'tensorflow':
        return [tf.identity(v.value) for v in variables]
    return [v.value for v in variables]


def assign(variables, values):
    for v, value in zip(variables, values):
        v.assign(value)


class StatefulStep:
    """A pure step run against Keras variables.

    ``step(values, *inputs) -> (new_values, outputs)`` where ``values`` is the list of the current values of
    ``variables`` (the networks' trainable and non-trainable weights, the optimizers' slots, ...). Calling the
    object reads the variables, runs the compiled step and assigns the new values; it returns ``outputs``. Under
    TensorFlow the read, step and assignment are one ``tf.function`` (a graph); under JAX the step is jitted.
    """

    def __init__(self, step, variables, jit_compile=False):
        self.variables = list(variables)
        self.step = step
        if BACKEND == 'tensorflow':
            def graph_step(*inputs):
                new_values, outputs = step(variable_values(self.variables), *inputs)
                assign(self.variables, new_values)
                return outputs
            self._fn = compile(graph_step, jit_compile=jit_compile)
        else:
            self._fn = compile(step)

    def __call__(self, *inputs):
        if BACKEND == 'tensorflow':
            return self._fn(*inputs)
        new_values, outputs = self._fn(variable_values(self.variables), *inputs)
        assign(self.variables, new_values)
        return outputs


# -------------------------------------------------------------------------------------------------- random

def set_seed(seed, deterministic=False):
    """Seed Python, NumPy and Keras (and TensorFlow's global generator under TensorFlow); with
    ``deterministic``, TensorFlow's op determinism too."""
    if seed is not None:
        if BACKEND == 'tensorflow':
            keras.utils.set_random_seed(int(seed))
        else:
            # keras.utils.set_random_seed would import TensorFlow whenever it is installed (to seed tf.data);
            # the rest of what it does: the global seed, a fresh global SeedGenerator, Python's and NumPy's seeds
            from keras.src.backend.common import global_state
            from keras.src.random import seed_generator
            from keras.src.utils import rng_utils
            global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, int(seed))
            global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
        random.seed(int(seed))
        np.random.seed(int(seed))
    if deterministic and BACKEND == 'tensorflow':
        tf.config.experimental.enable_op_determinism()


def step_key(seed, step):
    """A stateless ``[2]`` integer key for ``step`` of a run seeded with ``seed`` (both may be tensors): int32 under
    TensorFlow (``tf.random.stateless_*``), uint32 under JAX (raw PRNG key data)."""
    dtype = 'int32' if BACKEND == 'tensorflow' else 'uint32'
    return keras.ops.stack([keras.ops.cast(seed, dtype), keras.ops.cast(step, dtype)])


def uniform(shape, key, dtype='float32'):
    """U(0, 1) draws of ``shape`` from the stateless key of :func:`step_key` (same key, same draws)."""
    if BACKEND == 'tensorflow':
        return tf.random.stateless_uniform(shape, seed=key, dtype=dtype)
    return jax.random.uniform(jax.random.wrap_key_data(key), shape, dtype=dtype)


def normal(shape, key, dtype='float32'):
    """N(0, 1) draws of ``shape`` from the stateless key of :func:`step_key`."""
    if BACKEND == 'tensorflow':
        return tf.random.stateless_normal(shape, seed=key, dtype=dtype)
    return jax.random.normal(jax.random.wrap_key_data(key), shape, dtype=dtype)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def float64_enabled() -> bool:
    """Whether float64 tensors really are float64: always under TensorFlow; under JAX only with ``jax_enable_x64``
    (otherwise JAX silently computes in float32). (Appended for UnSplit's float64 Adam bias corrections.)"""
    if BACKEND == 'tensorflow':
        return True
    return bool(jax.config.jax_enable_x64)


def true_divide(x, divisor):
    """``x / divisor`` as one IEEE division per element, also in compiled code: Grappler and XLA rewrite a division
    by a constant into a multiplication by its reciprocal, which is up to one ulp off. ``divisor`` must be nonzero.
    (Appended for the client-side attack's ``scale_down``, which divides the gradient by exactly the factor.)"""
    if BACKEND == 'tensorflow':
        return tf.math.divide_no_nan(x, tf.cast(divisor, x.dtype))  # DivNoNan is not rewritten; = x / d for d != 0
    # the barrier hides the broadcast divisor from the algebraic simplifier
    den = jax.lax.optimization_barrier(jnp.broadcast_to(jnp.asarray(divisor, x.dtype), jnp.shape(x)))
    return x / den

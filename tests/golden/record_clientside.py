"""Records the golden trajectory of the client-side GAN attack (``tests/golden/clientside.json``).

Recorded once from the TensorFlow implementation as it was before the attack was rewritten on
``splitnn.backend`` (GradientTape / tf.function / tf.data); ``tests/test_clientside_golden.py`` replays the same
set-up on the current implementation, under TensorFlow and under JAX, and compares.

Nothing depends on an initialiser or a random stream of either backend:

* every variable is set from a NumPy generator (Glorot-sized kernels, small biases, BatchNorm scales and
  moving statistics around their defaults);
* the honest clients' batches are a fixed array, batched in order (no shuffling);
* the malicious client's latent noise is drawn from a NumPy table, the k-th draw getting row k;
* Dropout masks (the client front ``f`` runs in training mode) come from a NumPy table indexed by the counter
  of the layer's Keras seed generator, so the k-th training-mode call of ``f`` gets mask k on any backend.

Set-up: one malicious client (target 1, factor 1e5) then two honest clients, all sharing ``f`` and ``ff``;
batch 8; 10 server iterations (30 steps: generator, honest, honest, poisoning, honest, honest, ...), one shared
Adam(1e-4). Recorded per step: the loss, a digest (sum, L2 norm) of every float variable of the server ``s``,
``f``, ``ff`` and ``G`` (BatchNorm moving statistics included) and of the Adam moments of each network, and the
Adam iteration counter; at step 0 (before training) the same digest of the gradients of each step kind.

    python tests/golden/record_clientside.py    # TensorFlow; writes tests/golden/clientside.json
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("clientside.json")

BATCH = 8
HONEST_CLIENTS = 2
ITERATIONS = 10
TARGET = 1
FACTOR = 1e5
N_DATA = 64
N_DRAWS = 64  # rows of the noise and mask tables (more than the run uses)
DROPOUT_RATE = 0.3
ROLES = ("s", "f", "ff", "G")


# ------------------------------------------------------------------------------------------- fixed inputs

def fixed_data():
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (N_DATA, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, N_DATA).astype(np.uint8)
    return x, y


def noise_table():
    return np.random.default_rng(12).standard_normal((N_DRAWS, BATCH, 100)).astype(np.float32)


def mask_table():
    return np.random.default_rng(13).uniform(size=(N_DRAWS, BATCH, 14, 14, 64)) >= DROPOUT_RATE


def set_fixed_weights(models):
    """Set every variable of ``models`` (a dict role -> keras.Model) from NumPy generators; seed generator
    states to ``[k, 0]`` (their counters index the mask table)."""
    for k, role in enumerate(ROLES):
        rng = np.random.default_rng(100 + k)
        for v in models[role].variables:
            shape, name = tuple(v.shape), v.path.split("/")[-1]
            if "int" in str(v.dtype):  # a seed generator's [seed, counter]
                v.assign(np.array([k, 0], dtype=str(v.dtype)))
                continue
            if name == "kernel":
                fan_in, fan_out = int(np.prod(shape[:-1])), int(shape[-1])
                if len(shape) == 4 and "transpose" in v.path:
                    fan_in, fan_out = int(np.prod(shape[:2])) * shape[3], int(np.prod(shape[:2])) * shape[2]
                value = rng.normal(0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
            elif name in ("gamma", "moving_variance"):
                value = 1.0 + 0.1 * np.abs(rng.normal(size=shape))
            else:  # bias, beta, moving_mean
                value = 0.05 * rng.normal(size=shape)
            v.assign(value.astype(str(v.dtype)))


def patch_dropout(masks):
    """Replace Keras' backend dropout by one that takes mask ``counter % len(masks)`` of its seed generator
    (a pure function of the generator's state, so it works inside tf.function and jax.jit alike)."""
    import keras
    from keras.src import backend as kbackend
    from keras.src.random.seed_generator import draw_seed

    table = keras.ops.convert_to_tensor(np.asarray(masks, np.float32))
    original = kbackend.random.dropout

    def dropout(inputs, rate, noise_shape=None, seed=None):
        state = draw_seed(seed)
        k = keras.ops.mod(keras.ops.cast(state[1], "int32"), len(masks))
        keep = keras.ops.take(table, k, axis=0)
        return inputs * keras.ops.cast(keep, inputs.dtype) / keras.ops.cast(1.0 - rate, inputs.dtype)

    kbackend.random.dropout = dropout
    return lambda: setattr(kbackend.random, "dropout", original)


def feed_noise(bad, table):
    """The malicious client's k-th noise draw is ``table[k]``."""
    count = iter(range(len(table)))
    bad.sample_noise = lambda n: table[next(count)][:int(n)]


# ------------------------------------------------------------------------------------------------ digests

def digest(values):
    return [[float(np.sum(a)), float(np.sqrt(np.sum(np.square(a))))]
            for a in (np.asarray(v, np.float64) for v in values)]


def float_variables(model):
    return [v for v in model.variables if "float" in str(v.dtype)]


def adam_slots(optimizer, variables):
    """``(momentum, velocity)`` slot variables of ``variables`` in a built Keras Adam."""
    index = {id(v): i for i, v in enumerate(optimizer._trainable_variables)}
    return [(optimizer._momentums[index[id(v)]], optimizer._velocities[index[id(v)]]) for v in variables]


def state_digest(models, optimizer):
    out = {}
    for role in ROLES:
        m = models[role]
        out[role] = digest([v.numpy() for v in float_variables(m)])
        slots = adam_slots(optimizer, m.trainable_variables)
        out[f"adam_{role}"] = digest([s.numpy() for pair in slots for s in pair])
    out["adam_iterations"] = int(np.asarray(optimizer.iterations))
    return out


def compare(record, golden, rtol):
    """Largest relative deviation of ``record`` from ``golden`` and a list of failures beyond ``rtol``.

    A norm or a loss is compared relative to its recorded value; a digest's sum relative to the larger of its
    value and the same array's norm (sums of gradients cancel to near zero, where rounding dominates)."""
    worst, failures = 0.0, []

    def check(path, got, want, scale):
        nonlocal worst
        dev = abs(got - want) / max(abs(want), scale, 1e-30)
        worst = max(worst, dev)
        if dev > rtol:
            failures.append(f"{path}: got {got!r}, want {want!r} (rel {dev:.3g})")

    def walk(path, got, want):
        if isinstance(want, dict):
            for k in want:
                walk(f"{path}.{k}", got[k], want[k])
        elif isinstance(want, list) and want and isinstance(want[0], list):
            for i, (g, w) in enumerate(zip(got, want)):
                check(f"{path}[{i}].sum", g[0], w[0], abs(w[1]))
                check(f"{path}[{i}].norm", g[1], w[1], 0.0)
        elif isinstance(want, list):
            for i, (g, w) in enumerate(zip(got, want)):
                walk(f"{path}[{i}]", g, w)
        elif isinstance(want, str):
            if got != want:
                failures.append(f"{path}: got {got!r}, want {want!r}")
        elif isinstance(want, int) and not isinstance(want, bool):
            if got != want:
                failures.append(f"{path}: got {got}, want {want}")
                worst = float("inf")
        else:
            check(path, float(got), float(want), 0.0)

    walk("", record, golden)
    return worst, failures


# ---------------------------------------------------------------------------------------------- recording

def main():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(ROOT))
    import keras
    import tensorflow as tf

    from ClientSideAttack import GENERATOR, HONEST, POISON, BadClient, Client, Server, archs

    keras.utils.set_random_seed(0)
    f, ff, g, s = archs.make_f(), archs.make_ff(), archs.make_generator(), archs.make_s()
    models = {"s": s, "f": f, "ff": ff, "G": g}
    bad = BadClient(f, ff, g, target_class=TARGET, gradient_factor=FACTOR, seed=1)
    clients = [bad] + [Client(f, ff, name=f"honest{i}") for i in range(HONEST_CLIENTS)]
    x, y = fixed_data()
    srv = Server(s, clients, tf.data.Dataset.from_tensor_slices((x, y)), BATCH)
    set_fixed_weights(models)
    restore_dropout = patch_dropout(mask_table())
    noise = noise_table()

    # step-0 gradients of each step kind from the initial state (the state restored after each)
    snapshot = [(v, v.numpy().copy()) for m in models.values() for v in m.variables]
    grads0 = {}
    for kind, client, inputs, labels, phase in [
            ("honest", clients[1], x[:BATCH], y[:BATCH], HONEST),
            ("generator", bad, noise[0], None, GENERATOR),
            ("poison", bad, noise[0], None, POISON)]:
        loss, grads, variables = srv.compute_gradients(client, tf.constant(inputs),
                                                       None if labels is None else tf.constant(labels), phase)
        by_id = {id(v): gr for v, gr in zip(variables, grads)}
        grads0[kind] = {"loss": float(loss)}
        for role in ROLES:
            gs = [by_id[id(v)].numpy() for v in models[role].trainable_variables if id(v) in by_id]
            if gs:
                grads0[kind][role] = digest(gs)
        for v, value in snapshot:
            v.assign(value)

    feed_noise(bad, noise)
    steps = []
    train_step = srv.train_step

    def recording_step(client, inputs, labels=None, phase=HONEST):
        loss = train_step(client, inputs, labels, phase)
        steps.append({"client": client.name, "phase": phase, "loss": float(loss),
                      **state_digest(models, srv.optimizer)})
        return loss

    srv.train_step = recording_step
    honest, gen = srv(ITERATIONS)
    restore_dropout()
    golden = {"description": __doc__.splitlines()[0],
              "recorded_with": f"ClientSideAttack (TensorFlow implementation), keras {keras.__version__}, "
                               f"tensorflow {tf.__version__}",
              "batch": BATCH, "honest_clients": HONEST_CLIENTS, "iterations": ITERATIONS,
              "grads0": grads0, "steps": steps,
              "honest_losses": honest, "generator_losses": gen}
    OUT.write_text(json.dumps(golden, indent=1))
    print(f"wrote {OUT}: {len(steps)} steps, last losses {steps[-3]['loss']:.6f} {steps[-1]['loss']:.6f}")


if __name__ == "__main__":
    main()

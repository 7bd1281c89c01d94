"""Cost of the distance-correlation term per batch, relative to one client step of FSHA level 4.

    .venv/bin/python benchmarks/dcor_cost.py [--batch 64] [--repeats 20] [--xla]

Timed (each compiled with ``tf.function`` and warmed up, then called round-robin ``--repeats``
times; median and minimum per call):

* ``dCor fwd``: ``distance_correlation(x, z)`` for x = [B, 32, 32, 3] (3,072 features) and smashed
  z = [B, 4, 4, 256] (4,096 features), the shapes of FSHA's level 4;
* ``dCor fwd+bwd``: the same plus its gradient with respect to z (what reaches the client);
* ``client step``: forward and backward (gradients of all weights, no optimizer update) of the
  level-4 client network f (``fsha.architectures.resnet(..., 4)``, 1.85 M parameters) on the batch,
  with ``mean(z)`` standing in for the server's loss;
* ``client step + dCor``: the same step with ``alpha1 * dCor(x, z)`` added to the loss (the marginal
  cost of the defense inside one step).

The cost of dCor is O(B^2 (p + q)): two Gram matrices [B, B] from 3,072- and 4,096-feature rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def level4_client():
    from fsha.architectures import resnet

    return resnet((32, 32, 3), 4), "fsha.architectures.resnet((32, 32, 3), 4)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--alpha1", type=float, default=1.0)
    parser.add_argument("--xla", action="store_true", help="also time dCor with jit_compile=True")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from defenses import distance_correlation
    from splitnn.timing import time_round_robin

    rng = np.random.default_rng(0)
    b = args.batch
    x = tf.constant(rng.uniform(-1, 1, size=(b, 32, 32, 3)), tf.float32)
    z = tf.constant(rng.normal(size=(b, 4, 4, 256)), tf.float32)
    f, source = level4_client()
    variables = f.trainable_variables
    alpha1 = tf.constant(args.alpha1, tf.float32)

    def dcor_fwd(xx, zz):
        return distance_correlation(xx, zz)

    def dcor_fwd_bwd(xx, zz):
        with tf.GradientTape() as tape:
            tape.watch(zz)
            v = distance_correlation(xx, zz)
        return v, tape.gradient(v, zz)

    @tf.function
    def client_step(xx):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(f(xx, training=True))
        return loss, tape.gradient(loss, variables)

    @tf.function
    def client_step_dcor(xx):
        with tf.GradientTape() as tape:
            zz = f(xx, training=True)
            loss = tf.reduce_mean(zz) + alpha1 * distance_correlation(xx, zz)
        return loss, tape.gradient(loss, variables)

    def run(fn, *a):
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(*a))

    fns = {"dCor fwd": run(tf.function(dcor_fwd), x, z),
           "dCor fwd+bwd": run(tf.function(dcor_fwd_bwd), x, z)}
    if args.xla:
        fns["dCor fwd (XLA)"] = run(tf.function(dcor_fwd, jit_compile=True), x, z)
        fns["dCor fwd+bwd (XLA)"] = run(tf.function(dcor_fwd_bwd, jit_compile=True), x, z)
    fns["client step (fwd+bwd of f)"] = run(client_step, x)
    fns["client step + dCor term"] = run(client_step_dcor, x)
    times = time_round_robin(fns, args.repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    step = med["client step (fwd+bwd of f)"]
    step_best = best["client step (fwd+bwd of f)"]

    print(f"batch {b}: x {tuple(x.shape)}, smashed {tuple(z.shape)}; client f = {source}, "
          f"{f.count_params():,} params; device {tf.config.list_logical_devices()[-1].name}; "
          f"{args.repeats} interleaved rounds")
    print(f"{'what':<28} {'median ms':>10} {'min ms':>9} {'ratio (median)':>15} {'ratio (min)':>12}")
    for name in fns:
        print(f"{name:<28} {1e3 * med[name]:>10.2f} {1e3 * best[name]:>9.2f} "
              f"{med[name] / step:>15.4f} {best[name] / step_best:>12.4f}")
    diff = [a - c for a, c in zip(times["client step + dCor term"],
                                  times["client step (fwd+bwd of f)"])]
    print(f"marginal cost of the dCor term inside a client step (median of paired differences): "
          f"{1e3 * statistics.median(diff):.2f} ms ({statistics.median(diff) / step:+.1%})")
    rows = med
    return rows


if __name__ == "__main__":
    main()

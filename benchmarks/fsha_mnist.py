"""FSHA on MNIST in the reference configuration (spec fsha.md §10): level 4, batch 64, WGAN, GP 500,
learning rates 1e-5 / 1e-5 / 1e-4. Prints the running-mean validation curve, the final reconstruction error
on held-out private images, steps per second, and the cost of one attack step relative to a bare
forward + backward pass of the same four networks.

Held-out images: Xpriv is the MNIST training split. The client's stream here is training images
``--heldout`` .. 59,999 and ``scoreAttack`` runs on the first ``--heldout`` training images, which f never
processes during the attack. (In FSHA the private set is itself the target, so scoring seen images would be
legitimate too; unseen ones rule out any memorisation by f.) MSE is on the [-1, 1] scale.

Reference target (GPU, notebook-era architecture): about 0.02-0.03 after 10,000 iterations
(``--iterations 10000 --architecture notebook``). On a CPU a level-4 step takes seconds: use a small N.

    .venv/bin/python benchmarks/fsha_mnist.py --iterations 20 --log-frequency 5
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsha import datasets  # noqa: E402
from fsha.FSHA import FSHA, REFERENCE_HPARAMS, mse  # noqa: E402
from splitnn.data import load_raw  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--iterations', type=int, default=200)
    p.add_argument('--level', type=int, default=4, choices=(1, 2, 3, 4))
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--architecture', default='final', choices=('final', 'notebook'))
    p.add_argument('--seed', type=int, default=None)
    p.add_argument('--jit', action='store_true', help='XLA-compile the training step')
    p.add_argument('--log-frequency', type=int, default=500)
    p.add_argument('--heldout', type=int, default=1000, help='first N training images, never given to f')
    p.add_argument('--timing-reps', type=int, default=5, help='repetitions of the bare forward+backward timing')
    return p.parse_args(argv)


def bare_forward_backward(attack, jit):
    """Forward + backward of f, pilot, decoder and D on one batch pair: no GP, no optimizer updates."""
    variables = (attack.f.trainable_variables + attack.tilde_f.trainable_variables
                 + attack.decoder.trainable_variables + attack.D.trainable_variables)

    @tf.function(jit_compile=jit)
    def step(x_private, x_public):
        with tf.GradientTape() as tape:
            z_private = attack.f(x_private, training=True)
            z_public = attack.tilde_f(x_public, training=True)
            loss = (tf.reduce_mean(attack.D(z_private, training=True))
                    + tf.reduce_mean(attack.D(z_public, training=True))
                    + mse(x_public, attack.decoder(z_public, training=True))
                    + mse(x_private, attack.decoder(z_private, training=True)))
        grads = tape.gradient(loss, variables)
        return loss, tf.add_n([tf.reduce_sum(g) for g in grads])
    return step


def main(argv=None):
    args = parse_args(argv)
    raw = load_raw('mnist')
    n = args.heldout
    held_out = datasets.make_dataset(datasets.preprocess(raw.x_train[:n]), raw.y_train[:n], shuffle=False)
    xpriv = datasets.make_dataset(datasets.preprocess(raw.x_train[n:]), raw.y_train[n:])
    xpub = datasets.make_dataset(datasets.preprocess(raw.x_test), raw.y_test)
    attack = FSHA(xpriv, xpub, args.level - 1, args.batch, REFERENCE_HPARAMS, architecture=args.architecture,
                  seed=args.seed, jit_compile=args.jit)
    print(f'level {args.level}, batch {args.batch}, architecture {args.architecture}, jit {args.jit}, '
          f'hparams {REFERENCE_HPARAMS}; Xpriv = MNIST train[{n}:], held out = train[:{n}]')

    # First call: one step, which includes tracing; timed separately.
    t0 = time.perf_counter()
    attack(1, verbose=True, progress_bar=False, log_frequency=args.log_frequency)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    log = attack(args.iterations - 1, verbose=True, progress_bar=args.iterations > 50 and sys.stdout.isatty(),
                 log_frequency=args.log_frequency)
    elapsed = time.perf_counter() - t0
    steps = max(args.iterations - 1, 1)
    print(f'first step (incl. tracing): {first:.2f} s; then {steps / elapsed:.3f} steps/s '
          f'({elapsed / steps:.3f} s/step over {steps} steps)')

    bare = bare_forward_backward(attack, args.jit)
    (xp, _), (xq, _) = next(iter(tf.data.Dataset.zip((attack.client_dataset, attack.attacker_dataset))))
    bare(xp, xq)[0].numpy()  # trace
    times = []
    for _ in range(args.timing_reps):
        t0 = time.perf_counter()
        bare(xp, xq)[1].numpy()
        times.append(time.perf_counter() - t0)
    bare_s = float(np.median(times))
    print(f'bare forward+backward of f, pilot, decoder, D: {bare_s:.3f} s; attack step / bare = '
          f'{elapsed / steps / bare_s:.2f}')

    score = attack.scoreAttack(held_out, progress_bar=False)
    print(f'final scoreAttack on {n} held-out private images ([-1, 1] MSE) after {attack.iteration} '
          f'iterations: {score:.4f}')
    return log, score


if __name__ == '__main__':
    main()

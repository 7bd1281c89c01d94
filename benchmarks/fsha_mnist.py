"""FSHA on MNIST in the reference configuration (the original notebooks' setting): level 4, batch 64, WGAN, GP 500,
learning rates 1e-5 / 1e-5 / 1e-4. Prints the running-mean validation curve, the final reconstruction error
on held-out private images, steps per second, and the cost of one attack step relative to a bare
forward + backward pass of the same four networks.

Held-out images: Xpriv is the MNIST training split. The client's stream here is training images
``--heldout`` .. 59,999 and ``scoreAttack`` runs on the first ``--heldout`` training images, which f never
processes during the attack. (In FSHA the private set is itself the target, so scoring seen images would be
legitimate too; unseen ones rule out any memorisation by f.) MSE is on the [-1, 1] scale.

Reference target (issue #3, notebook-era architecture): running-mean validation <= 0.03 after 10,000
iterations (``--iterations 10000 --architecture notebook``; the original notebooks end at 0.0193-0.0267).
On a CPU a level-4 step takes 1-3 s, so the 10,000 steps take hours: ``--checkpoint-dir`` makes the run
resumable (the same command continues from the latest checkpoint there, counting iterations globally) and
``--max-seconds`` stops it in time, checkpointed, with exit status 3. ``--out`` writes a JSON summary, the log
figure (with the original's curve) and reconstructions.

The backend is Keras' (``KERAS_BACKEND=tensorflow`` by default, ``jax`` on a GPU machine without TensorFlow):
the same attack code runs on both, and a checkpoint written by one is continued by the other.

    .venv/bin/python benchmarks/fsha_mnist.py --iterations 20 --log-frequency 5
    KERAS_BACKEND=jax .venv/bin/python benchmarks/fsha_mnist.py --iterations 20 --log-frequency 5
    .venv/bin/python benchmarks/fsha_mnist.py --iterations 10000 --architecture notebook --seed 0 \
        --checkpoint-dir ~/fsha-ref --max-seconds 7000 --out results/fsha_mnist
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's C++ info lines, unless the user chose a level
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsha import datasets, reference, runs  # noqa: E402
from fsha.FSHA import FSHA, REFERENCE_HPARAMS  # noqa: E402
from splitnn.data import load_raw  # noqa: E402
from splitnn.notebook import machine  # noqa: E402
from splitnn.backend import set_seed  # noqa: E402

TARGET_MSE = 0.03  # running-mean validation after 10,000 iterations (issue #3)


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
    runs.add_run_arguments(p)
    args = p.parse_args(argv)
    runs.check_run_arguments(p, args)
    if args.log_frequency < 1:
        p.error(f'--log-frequency must be >= 1, got {args.log_frequency}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.seed is not None:  # before the streams: their shuffle order (a new one in each resumed process)
        set_seed(runs.stream_seed(args.seed, args.checkpoint_dir))
    raw = load_raw('mnist')
    n = args.heldout
    held_out = datasets.make_dataset(datasets.preprocess(raw.x_train[:n]), raw.y_train[:n], shuffle=False)
    xpriv = datasets.make_dataset(datasets.preprocess(raw.x_train[n:]), raw.y_train[n:])
    xpub = datasets.make_dataset(datasets.preprocess(raw.x_test), raw.y_test)
    ckpt = {} if not args.checkpoint_dir else {'checkpoint_dir': Path(args.checkpoint_dir).expanduser(),
                                               'checkpoint_every': args.checkpoint_every}
    attack = FSHA(xpriv, xpub, args.level - 1, args.batch, REFERENCE_HPARAMS, architecture=args.architecture,
                  seed=args.seed, jit_compile=args.jit, **ckpt)
    print(f'machine: {machine()}')
    print(f'level {args.level}, batch {args.batch}, architecture {args.architecture}, jit {args.jit}, '
          f'seed {args.seed}, hparams {REFERENCE_HPARAMS}; Xpriv = MNIST train[{n}:], held out = train[:{n}]',
          flush=True)

    step_s = runs.train_resumable(attack, args.iterations, log_frequency=args.log_frequency,
                                  checkpoint_every=args.checkpoint_every, max_seconds=args.max_seconds,
                                  checkpoint_dir=args.checkpoint_dir)

    bare_s = runs.time_bare_step(attack, args.timing_reps, args.jit)
    print(f'bare forward+backward of f, pilot, decoder, D: {bare_s:.3f} s; attack step / bare = '
          + (f'{step_s / bare_s:.2f}' if step_s else 'n/a (this process ran no steps after its first)'))

    val_steps, validation = attack.validation_history
    if args.architecture == 'notebook' and args.level == 4 and args.batch == 64:
        print(reference.comparison_table(val_steps, validation, 'FSHA'))
    score = attack.scoreAttack(held_out, progress_bar=False)
    print(f'final scoreAttack on {n} held-out private images ([-1, 1] MSE) after {attack.iteration} '
          f'iterations: {score:.4f}')
    if args.architecture == 'notebook' and args.level == 4:
        print('acceptance (ranges read from the original notebooks\' fresh runs, notebook architecture; one seed):')
        print(reference.format_acceptance(reference.acceptance_report(val_steps, validation, TARGET_MSE)))
    if args.out:
        runs.write_outputs(args.out, attack, raw.x_train[:8], name='fsha_mnist', reference_name='FSHA', summary={
            'benchmark': 'fsha_mnist', 'level': args.level, 'batch': args.batch, 'architecture': args.architecture,
            'seed': args.seed, 'hparams': REFERENCE_HPARAMS, 'seconds_per_step': step_s,
            'step_over_bare': step_s / bare_s if step_s else None, 'score_attack_heldout': score,
            'target': TARGET_MSE})
    return attack, score


if __name__ == '__main__':
    main()

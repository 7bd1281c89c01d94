"""FSHA against the distance-correlation defense in the configuration of the original
``FSHA_with_distance_cor.ipynb`` (the original's setting): level 4, batch 64, WGAN, GP 500, learning rates
1e-5 / 1e-5 / 1e-4, client dCor weight alpha1 = 10,000, attacker scale alpha2 = 50, notebook-era architecture.

Prints:

* the running-mean validation curve (private-batch reconstruction MSE, [-1, 1] scale) next to the original
  notebook's stored curve (``fsha.reference``), and the batch dCor(x, f(x)) at the same iterations;
* ``scoreAttack`` on held-out private images: the first ``--heldout`` MNIST training images never enter the
  client's stream (as in ``benchmarks/fsha_mnist.py``);
* steps per second after the first (tracing) step;
* the cost of the defense per batch: forward + backward of dCor(x, z) for x = [B, 32, 32, 3] and the smashed
  z = f(x) ([B, 4, 4, 256] at level 4), against a forward + backward pass of the client network f (gradients of
  all its weights), both as ``tf.function`` on the same batch, timed round-robin, median of ``--timing-reps``.

Target (GPU, ``--iterations 10000``, notebook architecture): the original ends at 0.0267 (iteration 9,500);
a faithful run should end at or below 0.035. On a CPU a level-4 step takes seconds, so use a small N, or make
the run resumable: ``--checkpoint-dir`` continues from the latest checkpoint there (``--iterations`` is the total),
``--max-seconds`` stops in time, checkpointed, with exit status 3, and ``--out`` writes a JSON summary, the log
figure (with the original's curve) and reconstructions.

    .venv/bin/python benchmarks/fsha_distcor.py --iterations 20 --log-frequency 5
    .venv/bin/python benchmarks/fsha_distcor.py --iterations 10000 --checkpoint-dir ~/fsha-dc \
        --max-seconds 7000 --out results/fsha_distcor
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from defenses.distcor import distance_correlation  # noqa: E402
from fsha import datasets, reference, runs  # noqa: E402
from fsha.FSHA_distcor import FSHA_dc  # noqa: E402
from splitnn.data import load_raw  # noqa: E402
from splitnn.notebook import machine  # noqa: E402
from splitnn.timing import time_round_robin  # noqa: E402
from splitnn.backend import set_seed  # noqa: E402

TARGET_MSE = 0.035  # validation after 10,000 iterations (GPU, notebook architecture)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--iterations', type=int, default=20, help='training steps (the original: 10000)')
    p.add_argument('--level', type=int, default=4, choices=(1, 2, 3, 4), help='split level (original: 4)')
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--alpha1', type=float, default=10_000.0, help="client's dCor weight")
    p.add_argument('--alpha2', type=float, default=50.0, help="attacker's scale on the adversarial loss")
    p.add_argument('--architecture', default='notebook', choices=('notebook', 'final'),
                   help="'notebook' (as the stored curve) or 'final' (released default; no stored curve)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--jit', action='store_true', help='XLA-compile the training step')
    p.add_argument('--log-frequency', type=int, default=500, help='validation window (running mean), in steps')
    p.add_argument('--heldout', type=int, default=1000, help='first N training images, never given to f')
    p.add_argument('--timing-reps', type=int, default=20, help='rounds of the dCor / client-step timing')
    runs.add_run_arguments(p)
    args = p.parse_args(argv)
    runs.check_run_arguments(p, args)
    if args.iterations < 1:
        p.error(f'--iterations must be >= 1, got {args.iterations}')
    if args.log_frequency < 1:
        p.error(f'--log-frequency must be >= 1, got {args.log_frequency}')
    if not 0 < args.heldout < 60_000 or args.heldout < args.batch:
        p.error(f'--heldout must be in [--batch, 60000), got {args.heldout}')
    return args


def load_streams(heldout, seed):
    """(xpriv, held_out, xpub): MNIST train[heldout:], train[:heldout] (unshuffled), test; ``seed`` sets
    the streams' shuffle order (see :func:`fsha.runs.stream_seed`)."""
    set_seed(seed)
    raw = load_raw('mnist')
    x_train = datasets.preprocess(raw.x_train)
    xpriv = datasets.make_dataset(x_train[heldout:], raw.y_train[heldout:])
    held_out = datasets.make_dataset(x_train[:heldout], raw.y_train[:heldout], shuffle=False)
    xpub = datasets.make_dataset(datasets.preprocess(raw.x_test), raw.y_test)
    return xpriv, held_out, xpub


def dcor_cost(f, x, reps):
    """Median seconds of dCor forward+backward and of f's forward+backward on the batch ``x`` (compiled for the
    backend, timed round-robin)."""
    import keras

    from splitnn import backend

    tv, ntv = backend.variable_values(f.trainable_variables), backend.variable_values(f.non_trainable_variables)
    z = f.stateless_call(tv, ntv, x, training=True)[0]

    def dcor_fwd_bwd(zz, xx):
        d, _, (g,) = backend.value_and_grad(lambda p, xs: (distance_correlation(xs, p[0]), None), [zz], xx)
        return d, g

    def client_fwd_bwd(params, xx):
        # stands in for the loss whose gradient f receives
        loss_fn = lambda p, xs: (keras.ops.mean(f.stateless_call(p, ntv, xs, training=True)[0]), None)  # noqa: E731
        loss, _, grads = backend.value_and_grad(loss_fn, params, xx)
        return loss, grads

    dcor_c, client_c = backend.compile(dcor_fwd_bwd), backend.compile(client_fwd_bwd)

    def block(fn, *a):
        return lambda: [backend.to_numpy(t) for t in keras.tree.flatten(fn(*a))]

    times = time_round_robin({'dcor': block(dcor_c, z, x), 'client': block(client_c, tv, x)}, reps)
    return {k: statistics.median(v) for k, v in times.items()}, tuple(z.shape)


def main(argv=None):
    args = parse_args(argv)
    xpriv, held_out, xpub = load_streams(args.heldout, runs.stream_seed(args.seed, args.checkpoint_dir))
    hparams = dict(reference.METADATA['hparams'], alpha1=args.alpha1, alpha2=args.alpha2)
    ckpt = {} if not args.checkpoint_dir else {'checkpoint_dir': Path(args.checkpoint_dir).expanduser(),
                                               'checkpoint_every': args.checkpoint_every}
    attack = FSHA_dc(xpriv, xpub, args.level - 1, args.batch, hparams, architecture=args.architecture,
                     seed=args.seed, jit_compile=args.jit, **ckpt)
    L = args.log_frequency
    print(f'machine: {machine()}')
    print(f'FSHA_dc: level {args.level}, batch {args.batch}, architecture {args.architecture!r}, jit {args.jit}, '
          f'seed {args.seed}, {args.iterations} iterations, validation every {L}; hparams {hparams}; '
          f'Xpriv = MNIST train[{args.heldout}:], held out = train[:{args.heldout}]')
    comparable = (args.level, args.batch, args.architecture, args.alpha1, args.alpha2) == (
        4, 64, 'notebook', 10_000.0, 50.0)
    ref_name = 'FSHA_with_distance_cor'
    if not comparable:
        print('note: not the stored run\'s configuration (level 4, batch 64, notebook architecture, '
              'alpha1 10000, alpha2 50); its curve is shown for orientation only')

    step_s = runs.train_resumable(attack, args.iterations, log_frequency=L, checkpoint_every=args.checkpoint_every,
                                  max_seconds=args.max_seconds, checkpoint_dir=args.checkpoint_dir)

    val_steps, validation = attack.validation_history
    _, dcor_means = reference.running_mean_curve(attack, 'dcor')
    curve = reference.reference(ref_name)
    ref = dict(zip(curve.iterations, curve.values))
    print(f"\n{'iteration':>9}  {'validation':>10}  {'original':>8}  {'dCor (mean)':>11}")
    for s, v, d in zip(val_steps, validation, dcor_means):
        r = f'{ref[s]:.4f}' if s in ref else '-'
        print(f'{s:>9}  {v:>10.4f}  {r:>8}  {d:>11.4f}')
    print(f'{curve.label}: {curve.final} at iteration {curve.iterations[-1]}')

    score = attack.scoreAttack(held_out, progress_bar=False)
    n_scored = args.heldout // args.batch * args.batch
    print(f'\nfinal scoreAttack on {n_scored} held-out private images after {attack.iteration} iterations: '
          f'{score:.4f} ([-1, 1] MSE; {score / 4:.4f} on [0, 1])')
    if comparable:
        print('acceptance (the original notebooks\' fresh runs, notebook architecture; one seed):')
        print(reference.format_acceptance(reference.acceptance_report(val_steps, validation, TARGET_MSE)))
    else:
        print(f'target (validation <= {TARGET_MSE} at iteration 9,500 of 10,000, reference configuration) not '
              'checked: another configuration')

    x = attack._next_batches()[0]
    med, z_shape = dcor_cost(attack.f, x, args.timing_reps)
    print(f'\ndCor cost per batch (median of {args.timing_reps} round-robin timings, compiled; {machine()}):')
    print(f'  dCor forward+backward, x {tuple(x.shape)} vs smashed {z_shape}: {1e3 * med["dcor"]:.2f} ms')
    print(f'  client f forward+backward (all {attack.f.count_params():,} params): {1e3 * med["client"]:.2f} ms')
    print(f'  ratio dCor / client step: {med["dcor"] / med["client"]:.3f}')
    if step_s:
        print(f'  whole attack step (FSHA_dc, measured above): {1e3 * step_s:.1f} ms')
    if args.out:
        runs.write_outputs(args.out, attack, load_raw('mnist').x_train[:8], name='fsha_distcor',
                           reference_name=ref_name, summary={
                               'benchmark': 'fsha_distcor', 'level': args.level, 'batch': args.batch,
                               'architecture': args.architecture, 'seed': args.seed, 'hparams': hparams,
                               'seconds_per_step': step_s, 'score_attack_heldout': float(score),
                               'dcor_running_mean': [float(d) for d in dcor_means],
                               'dcor_ms': 1e3 * med['dcor'], 'client_step_ms': 1e3 * med['client'],
                               'target': TARGET_MSE})
    return attack, score


if __name__ == '__main__':
    main()

"""Long FSHA runs for the TensorFlow benchmarks (``benchmarks/fsha_mnist.py``, ``benchmarks/fsha_distcor.py``):
time-limited, resumable training and the files a finished run leaves behind.

A 10,000-step level-4 run takes hours on a CPU. With a ``checkpoint_dir`` the attack restores itself when it is
built (``FSHA(..., checkpoint_dir=...)``) and saves every ``checkpoint_every`` steps; :func:`train_resumable`
trains up to a *total* number of iterations, so the same command continues a stopped run, and it stops in time
(exit status :data:`STOPPED`) when ``max_seconds`` is set.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from splitnn import checkpoints
from splitnn.notebook import machine
from splitnn.timing import timed_resumable_run
from splitnn.utils import config_differences

from . import datasets, reference

#: Exit status of a benchmark stopped by its time limit with its progress checkpointed.
STOPPED = 3


def add_run_arguments(parser):
    """The benchmarks' flags for long runs: ``--checkpoint-dir``, ``--checkpoint-every``, ``--max-seconds``,
    ``--out``; check them with :func:`check_run_arguments` after parsing."""
    parser.add_argument('--checkpoint-dir', default=None,
                        help='resume from the latest checkpoint here (if any) and save to it; --iterations is the '
                             'total')
    parser.add_argument('--checkpoint-every', type=int, default=250)
    parser.add_argument('--max-seconds', type=float, default=None,
                        help='stop training after about this long (checkpointed, exit status 3; run again to go on)')
    parser.add_argument('--out', default=None, help='folder for the JSON summary and figures')
    return parser


#: Flags that may change between the calls of one resumed run (they steer the run, not the experiment).
RUN_CONTROL = ('iterations', 'checkpoint_dir', 'checkpoint_every', 'max_seconds', 'out', 'timing_reps')


def check_run_arguments(parser, args):
    """``parser.error`` for a time limit without a checkpoint folder or a checkpoint interval below 1. With a
    checkpoint folder, the experiment's other flags are stored there (``run_config.json``) by the first call, and
    a later call that asks for another experiment is refused: the checkpoint holds no hyperparameters, so it
    would otherwise continue the old run under the new settings."""
    if args.max_seconds is not None and not args.checkpoint_dir:
        parser.error('--max-seconds needs --checkpoint-dir (the progress is kept there)')
    if args.checkpoint_every < 1:
        parser.error(f'--checkpoint-every must be >= 1, got {args.checkpoint_every}')
    if args.checkpoint_dir:
        config = {k: v for k, v in sorted(vars(args).items()) if k not in RUN_CONTROL}
        path = Path(args.checkpoint_dir).expanduser() / 'run_config.json'
        if path.exists():
            saved = json.loads(path.read_text())
            diff = config_differences(saved, config)
            if diff:
                parser.error(f'{args.checkpoint_dir} holds a run with other settings (checkpoint, arguments): '
                             f'{diff}; use another --checkpoint-dir or the same arguments')
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config, indent=1))
    return args


def checkpoint_iteration(checkpoint_dir) -> int:
    """The iteration of the latest checkpoint in ``checkpoint_dir`` (0 when there is none), read from its
    name (``ckpt-N.npz``, the number :class:`fsha.FSHA.FSHA` saves under) without building the networks."""
    if not checkpoint_dir:
        return 0
    numbers = checkpoints.checkpoint_numbers(Path(checkpoint_dir).expanduser())
    return numbers[-1] if numbers else 0


def stream_seed(seed, checkpoint_dir):
    """The global seed to set before the data streams are built: ``seed`` for a fresh run; for a run resumed at
    iteration N, a seed mixed from (seed, N). A checkpoint does not hold the streams' position, so a resumed
    process starts a new shuffled pass; with the fresh run's seed that pass would replay the order the run began
    with in every process. None stays None (an unseeded order)."""
    if seed is None:
        return None
    start = checkpoint_iteration(checkpoint_dir)
    if not start:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, start]).generate_state(1)[0] >> 1)


def _latest_checkpoint(attack):
    """Absolute path of the attack's newest checkpoint file, or None (no checkpoint_dir, or none written)."""
    manager = getattr(attack, 'checkpoint_manager', None)
    latest = manager.latest_checkpoint if manager is not None else None
    return None if latest is None else Path(latest).resolve()


def train_resumable(attack, iterations, *, log_frequency, checkpoint_every=250, max_seconds=None,
                    checkpoint_dir=None):
    """Train ``attack`` until it has done ``iterations`` steps in all (restored steps count), printing the
    original's verbose validation lines. The first step of this process is timed apart (tracing).

    Returns the seconds per step after the first, or None when this process trained fewer than two steps.
    When ``max_seconds`` cuts the run short it prints where the checkpoint is and exits with :data:`STOPPED`.
    """
    if max_seconds is not None and attack.checkpoint_manager is None:
        raise ValueError('max_seconds needs an attack built with checkpoint_dir (the progress is kept there)')

    def run(k):
        attack(k, log_frequency=log_frequency, verbose=True, progress_bar=k > 50 and sys.stdout.isatty())
        sys.stdout.flush()

    first, steps, elapsed, stopped = timed_resumable_run(run, max(0, iterations - attack.iteration),
                                                         checkpoint_every, max_seconds, start=attack.iteration)
    if stopped:
        print(f'stopped at iteration {attack.iteration} of {iterations} after {first + elapsed:.0f} s '
              f'({elapsed / max(steps, 1):.3f} s/step); checkpoint {_latest_checkpoint(attack)}: run the same '
              'command again to continue', flush=True)
        sys.exit(STOPPED)
    if first:  # this process trained: say where the closing checkpoint is
        latest = _latest_checkpoint(attack)
        if latest is not None:
            print(f'wrote checkpoint {latest}', flush=True)
    if not steps:
        print(f'iteration {attack.iteration} of {iterations}: '
              + ('nothing left to train' if not first else 'one step trained here, no steady-state timing'))
        return None
    step_s = elapsed / steps
    print(f'first step (incl. tracing): {first:.2f} s; then {1 / step_s:.3f} steps/s '
          f'({step_s:.3f} s/step over {steps} steps)', flush=True)
    return step_s


def keras_backend():
    import keras
    return keras.backend.backend()


def write_outputs(out, attack, images, *, name, reference_name, summary, columns=None):
    """Write ``{name}.json`` (``summary`` plus the validation curve and the acceptance report against
    ``summary['target']``, :func:`fsha.reference.acceptance_report`), ``{name}_log.png`` (the LOG panels with the
    original notebook's curve) and
    ``{name}_reconstructions.png`` (``images``, raw uint8 MNIST, and their reconstructions) to ``out``, and print
    the absolute path of each file written."""
    from splitnn.plots import save_image_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference.save_log_figure(attack, out / f'{name}_log.png', reference_name=reference_name, columns=columns,
                              suptitle=f'{type(attack).__name__}, {machine()}')
    x = datasets.preprocess(images)
    rec, _ = attack.attack(x)
    save_image_grid([x, rec], out / f'{name}_reconstructions.png', value_range=(-1.0, 1.0),
                    suptitle=f'top: held-out private images; bottom: {type(attack).__name__} reconstructions')
    steps, values = attack.validation_history
    summary = dict(summary, machine=machine(), backend=keras_backend(), iterations=attack.iteration,
                   validation_steps=[int(s) for s in steps], validation=[float(v) for v in values])
    summary['acceptance'] = reference.acceptance_report(steps, values, summary.get('target'))
    (out / f'{name}.json').write_text(json.dumps(summary, indent=1))
    for written in (f'{name}.json', f'{name}_log.png', f'{name}_reconstructions.png'):
        print(f'wrote {(out / written).resolve()}')
    return summary


def bare_forward_backward(attack, jit=False):
    """``step(x_private, x_public) -> (loss, checksum)``: forward + backward of f, pilot, decoder and D on one
    batch pair, no GP and no optimizer update (the cost an attack step cannot go below), compiled for the
    backend like the attack's step."""
    import keras

    from fsha.FSHA import mse
    from splitnn import backend

    nets = (attack.f, attack.tilde_f, attack.decoder, attack.D)
    sizes = [len(n.trainable_variables) for n in nets]

    def loss_fn(params, ntv, x_private, x_public):
        tv, rest = [], list(params)
        for k in sizes:
            tv.append(rest[:k])
            rest = rest[k:]
        run = lambda i, x: nets[i].stateless_call(tv[i], ntv[i], x, training=True)[0]  # noqa: E731
        z_private, z_public = run(0, x_private), run(1, x_public)
        loss = (keras.ops.mean(run(3, z_private)) + keras.ops.mean(run(3, z_public))
                + mse(x_public, run(2, z_public)) + mse(x_private, run(2, z_private)))
        return loss, None

    def step(params, ntv, x_private, x_public):
        loss, _, grads = backend.value_and_grad(loss_fn, params, ntv, x_private, x_public)
        return loss, sum(keras.ops.sum(g) for g in grads)

    compiled = backend.compile(step, jit_compile=jit)
    params = [v for n in nets for v in n.trainable_variables]
    ntv = [[v for v in n.non_trainable_variables] for n in nets]
    return lambda xp, xq: compiled(backend.variable_values(params), [backend.variable_values(v) for v in ntv],
                                   xp, xq)


def time_bare_step(attack, reps, jit=False):
    """Median seconds of :func:`bare_forward_backward` on one batch pair of the attack's own streams."""
    import statistics
    import time

    from splitnn import backend

    bare = bare_forward_backward(attack, jit)
    xp, xq, _, _ = attack._next_batches()
    backend.to_numpy(bare(xp, xq)[1])  # trace / compile
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        backend.to_numpy(bare(xp, xq)[1])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

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
    name (``ckpt-N``, the number :class:`fsha.FSHA.FSHA` saves under) without building the networks."""
    import tensorflow as tf

    if not checkpoint_dir:
        return 0
    latest = tf.train.latest_checkpoint(str(Path(checkpoint_dir).expanduser()))
    return 0 if latest is None else int(latest.rsplit('-', 1)[1])


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
              f'({elapsed / max(steps, 1):.3f} s/step); checkpoint in {checkpoint_dir}: run the same command '
              'again to continue', flush=True)
        sys.exit(STOPPED)
    if not steps:
        print(f'iteration {attack.iteration} of {iterations}: '
              + ('nothing left to train' if not first else 'one step trained here, no steady-state timing'))
        return None
    step_s = elapsed / steps
    print(f'first step (incl. tracing): {first:.2f} s; then {1 / step_s:.3f} steps/s '
          f'({step_s:.3f} s/step over {steps} steps)', flush=True)
    return step_s


def write_outputs(out, attack, images, *, name, reference_name, summary, columns=None):
    """Write ``{name}.json`` (``summary`` plus the validation curve and the spec §10.4 acceptance report against
    ``summary['target']``), ``{name}_log.png`` (the LOG panels with the original notebook's curve) and
    ``{name}_reconstructions.png`` (``images``, raw uint8 MNIST, and their reconstructions) to ``out``."""
    from splitnn.plots import save_image_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference.save_log_figure(attack, out / f'{name}_log.png', reference_name=reference_name, columns=columns,
                              suptitle=f'{type(attack).__name__}, TensorFlow, {machine()}')
    x = datasets.preprocess(images)
    rec, _ = attack.attack(x)
    save_image_grid([x, rec], out / f'{name}_reconstructions.png', value_range=(-1.0, 1.0),
                    suptitle=f'top: held-out private images; bottom: {type(attack).__name__} reconstructions')
    steps, values = attack.validation_history
    summary = dict(summary, machine=machine(), iterations=attack.iteration,
                   validation_steps=[int(s) for s in steps], validation=[float(v) for v in values])
    summary['acceptance'] = reference.acceptance_report(steps, values, summary.get('target'))
    (out / f'{name}.json').write_text(json.dumps(summary, indent=1))
    print(f'wrote {out}/{name}.json, {name}_log.png, {name}_reconstructions.png')
    return summary

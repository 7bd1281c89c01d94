"""Convergence benchmark of the client-side GAN attack on Keras 3's JAX backend (no TensorFlow).

The same experiment as ``benchmarks/clientside_attack.py`` (spec fsha.md §9.8): target class 1, one
malicious + 10 honest clients, batch 256, Adam 1e-4, gradient factor 1e5, 5,000 iterations, run by
:class:`ClientSideAttack.jax_runner.ClientSideAttackJax` (same Keras networks and training semantics
as the TF implementation; its docstring lists what differs). Every ``--eval-every`` iterations and at
the end it prints the judge's target-class rate over ``--eval-samples`` generated samples and the
training speed, and it saves a grid of samples over training (PNG) and a JSON summary to ``--out``.

Acceptance on a GPU: >= 80% of 1,000 samples assigned to the target class after 5,000 iterations.

Surviving a per-command time limit: with ``--checkpoint PATH`` the complete state (weights, optimizer,
RNGs, data order, history, grid rows) is saved at every evaluation and when the run stops; a later
call with the same arguments resumes from it. ``--max-seconds S`` stops after about S seconds (at the
next chunk boundary), saves the checkpoint and exits with status 3; run the same command again to
continue. Status 0 means the run is complete.

    KERAS_BACKEND=jax SPLITNN_DATA_DIR=/path/to/data python benchmarks/clientside_attack_jax.py \\
        [--iterations 5000] [--checkpoint results/clientside_attack_jax/state.npz --max-seconds 540]

The judge's weights are read from ``--judge-dir`` (default ``$SPLITNN_CACHE_DIR`` or
``~/.cache/splitlearning-attacks-tf``; the TF benchmark's cache works as is); without them the judge is
trained here first (about a minute on a GPU).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ClientSideAttack.experiment import parse_args as experiment_args, run_experiment  # noqa: E402
from ClientSideAttack.settings import REFERENCE_RUN as REFERENCE  # noqa: E402


def parse_args(argv=None):
    def jax_arguments(p):
        p.add_argument("--precision", choices=["default", "high", "highest"], default="default",
                       help="jax_default_matmul_precision (default keeps the backend's: TF32 on recent GPUs, "
                            "as TensorFlow)")
    return experiment_args(argv, description=__doc__.splitlines()[0], out="results/clientside_attack_jax",
                           checkpoint_help="state file (.npz): resumed from if it exists, written at every "
                                           "evaluation and at the end", add_arguments=jax_arguments)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"Keras runs on {keras.backend.backend()!r}; run with KERAS_BACKEND=jax")
    if args.precision != "default":
        jax.config.update("jax_default_matmul_precision", args.precision)

    from ClientSideAttack.jax_runner import ClientSideAttackJax, JaxJudge

    t_start = time.perf_counter()
    dev = jax.devices()[0]
    device = f"{dev.platform.upper()} ({getattr(dev, 'device_kind', dev.platform)})"
    print(f"config: iterations={args.iterations} honest_clients={args.honest_clients} "
          f"target={args.target} batch={args.batch_size} factor={args.factor:g} "
          f"optimizer={args.optimizer} seed={args.seed}; Keras {keras.__version__} on JAX "
          f"{jax.__version__}, {device}", flush=True)
    print(REFERENCE, flush=True)

    judge = JaxJudge.load(args.judge_dir)
    print(f"judge {judge.info['version']}: MNIST test accuracy {judge.test_accuracy:.4f} "
          f"({'cached' if judge.info['cached'] else 'trained now'}"
          f"{', trained with ' + judge.info['trained_with'] if judge.info.get('trained_with') else ''})",
          flush=True)

    resumed = None
    if args.checkpoint is not None and args.checkpoint.exists():
        runner, resumed = ClientSideAttackJax.from_checkpoint(args.checkpoint)
    else:
        runner = ClientSideAttackJax(args.honest_clients, args.target, args.factor, args.batch_size,
                                     optimizer=args.optimizer, seed=args.seed)
    return run_experiment(args, runner=runner, attacker=runner, judge=judge, resumed=resumed,
                          save=lambda extra: runner.save(args.checkpoint, extra=extra), device=device,
                          backend=f"keras {keras.__version__} / jax {jax.__version__}", t_start=t_start)


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main()[1])

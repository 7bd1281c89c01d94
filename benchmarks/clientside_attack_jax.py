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

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ClientSideAttack.settings import REFERENCE_RUN as REFERENCE, add_experiment_arguments  # noqa: E402
EXIT_STOPPED = 3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_experiment_arguments(p, out="results/clientside_attack_jax")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="state file (.npz): resumed from if it exists, written at every evaluation and at the end")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop after about this many seconds, save --checkpoint and exit with status 3")
    p.add_argument("--judge-dir", type=Path, default=None, help="folder of the cached judge weights")
    p.add_argument("--precision", choices=["default", "high", "highest"], default="default",
                   help="jax_default_matmul_precision (default keeps the backend's: TF32 on recent GPUs, "
                        "as TensorFlow)")
    args = p.parse_args(argv)
    if args.iterations < 1 or args.eval_every < 1 or args.eval_samples < 1 or args.grid_samples < 1:
        p.error("--iterations, --eval-every, --eval-samples and --grid-samples must be >= 1")
    if args.max_seconds is not None and args.checkpoint is None:
        p.error("--max-seconds needs --checkpoint (the state to resume from)")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras
    import numpy as np

    if keras.backend.backend() != "jax":
        raise SystemExit(f"Keras runs on {keras.backend.backend()!r}; run with KERAS_BACKEND=jax")
    if args.precision != "default":
        jax.config.update("jax_default_matmul_precision", args.precision)

    from ClientSideAttack.jax_runner import ClientSideAttackJax, JaxJudge
    from splitnn import plots

    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
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

    wanted = {"honest_clients": args.honest_clients, "target_class": args.target,
              "gradient_factor": float(args.factor), "batch_size": args.batch_size,
              "optimizer": args.optimizer, "seed": args.seed}
    if args.checkpoint is not None and args.checkpoint.exists():
        runner, extra = ClientSideAttackJax.from_checkpoint(args.checkpoint)
        got = {k: runner.config()[k] for k in wanted}
        if got != wanted:
            raise SystemExit(f"{args.checkpoint} holds a run with {got}, but the arguments ask for "
                             f"{wanted}; use another --checkpoint or the same arguments")
        z_eval, z_grid = extra["z_eval"], extra["z_grid"]
        if len(z_eval) != args.eval_samples or len(z_grid) != args.grid_samples:
            raise SystemExit("--eval-samples / --grid-samples differ from the checkpointed run")
        history = json.loads(str(extra["history"]))
        rows, titles = list(extra["grid_rows"]), json.loads(str(extra["titles"]))
        train_s = float(extra["train_seconds"])
        print(f"resumed from {args.checkpoint} at iteration {runner.iteration}", flush=True)
    else:
        runner = ClientSideAttackJax(args.honest_clients, args.target, args.factor, args.batch_size,
                                     optimizer=args.optimizer, seed=args.seed)
        z_eval = runner.sample_noise(args.eval_samples)
        z_grid = runner.sample_noise(args.grid_samples)
        history, rows, titles, train_s = [], [], [], 0.0

    def evaluate(it, ips):
        rates = judge.rates(runner.generate(args.eval_samples, z=z_eval), args.target)
        # the original draws its samples in one training-mode batch
        rows.append(runner.generate(args.grid_samples, z=z_grid, batch_size=args.grid_samples))
        titles.append(f"iteration {it}: {100 * rates['target_rate']:.1f}% target")
        top = np.argsort(rates["histogram"])[::-1][:3]
        history.append({"iteration": it, "target_rate": rates["target_rate"],
                        "confident_rate": rates["confident_rate"], "it_per_s": ips,
                        "histogram": [round(float(h), 4) for h in rates["histogram"]]})
        print(f"iteration {it:5d}: target-class rate {rates['target_rate']:.3f} "
              f"(confident >= 0.9: {rates['confident_rate']:.3f}); top classes "
              + ", ".join(f"{d}:{rates['histogram'][d]:.2f}" for d in top)
              + (f"; {ips:.2f} it/s ({ips * len(runner.clients):.1f} steps/s)" if ips else ""), flush=True)

    def save_state():
        if args.checkpoint is None:
            return
        runner.save(args.checkpoint, extra={
            "z_eval": z_eval, "z_grid": z_grid, "history": json.dumps(history),
            "grid_rows": np.stack(rows), "titles": json.dumps(titles), "train_seconds": train_s})

    grid = args.out / f"samples_target{args.target}.png"
    if not history:
        evaluate(0, None)
    chunk_rates = []
    stopped = False
    while runner.iteration < args.iterations:
        it0 = runner.iteration
        n = min(args.eval_every - it0 % args.eval_every, args.iterations - it0)
        t0 = time.perf_counter()
        runner(n)  # returns the losses as floats, so all steps have finished
        dt = time.perf_counter() - t0
        train_s += dt
        chunk_rates.append((it0, n, dt))
        it = runner.iteration
        if it % args.eval_every == 0 or it == args.iterations:
            evaluate(it, it / train_s if train_s else None)
            save_state()
        if (args.max_seconds is not None and it < args.iterations
                and time.perf_counter() - t_start > args.max_seconds):
            stopped = True
            break
    if stopped or runner.iteration == args.iterations:
        save_state()
    plots.save_image_grid(rows, grid, titles=titles)

    final = history[-1]
    # steady state: chunks after the first of this process (the first includes compilation)
    steady = [(n, dt) for _, n, dt in chunk_rates[1:]]
    steady_ips = sum(n for n, _ in steady) / sum(dt for _, dt in steady) if steady else None
    summary = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "backend": f"keras {keras.__version__} / jax {jax.__version__}", "device": device,
               "judge": judge.info, "history": history, "iterations_done": runner.iteration,
               "complete": runner.iteration >= args.iterations,
               "final_target_rate": final["target_rate"], "it_per_s": final["it_per_s"],
               "steady_it_per_s_this_process": steady_ips, "train_seconds": train_s,
               "chunks_this_process": [{"start": a, "iterations": n, "seconds": round(dt, 3)}
                                       for a, n, dt in chunk_rates]}
    (args.out / f"summary_target{args.target}.json").write_text(json.dumps(summary, indent=1))
    if stopped:
        print(f"stopped after {time.perf_counter() - t_start:.0f} s at iteration {runner.iteration} of "
              f"{args.iterations}; state saved to {args.checkpoint}; run the same command again to "
              f"resume", flush=True)
        return summary, EXIT_STOPPED
    reduced = "" if args.iterations >= 5000 else f" (REDUCED BUDGET: {args.iterations} of 5,000 iterations)"
    ips = final["it_per_s"]
    print(f"final: target-class rate {final['target_rate']:.3f} over {args.eval_samples} samples "
          f"after {args.iterations} iterations{reduced}; "
          + (f"{ips:.2f} it/s overall" if ips else "no training in this call")
          + (f", {steady_ips:.2f} it/s after compilation" if steady_ips else "")
          + f" on {device}; grid saved to {grid}", flush=True)
    print(REFERENCE, flush=True)
    return summary, 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main()[1])

"""The client-side attack's benchmark run of ``benchmarks/clientside_attack.py`` (Keras on TensorFlow or JAX).
Backend-free, like :mod:`.settings`.

:func:`run_experiment` trains to a total number of iterations, judges the generator every ``--eval-every``
iterations (target-class rate over fixed noise), collects a grid of samples over training, and writes the sample
grid and a JSON summary. With ``--checkpoint`` it saves the complete state at every evaluation and when it stops,
and a later call with the same arguments resumes from it; ``--max-seconds`` stops it in time with exit status
:data:`EXIT_STOPPED`.
"""
import argparse
import json
import time
from pathlib import Path

from .settings import REFERENCE_RUN, add_experiment_arguments

__all__ = ["EXIT_STOPPED", "parse_args", "run_experiment"]

#: Exit status of a run stopped by ``--max-seconds``, its state saved to ``--checkpoint``.
EXIT_STOPPED = 3
#: With ``--max-seconds``, the most iterations trained between two checks of the time limit.
STOP_CHECK_EVERY = 25


def parse_args(argv=None, *, description, out, checkpoint_help, add_arguments=None):
    """The benchmarks' command line: the experiment (:func:`.settings.add_experiment_arguments`),
    ``--checkpoint``, ``--max-seconds``, ``--judge-dir`` and the backend's own flags (``add_arguments(parser)``)."""
    p = argparse.ArgumentParser(description=description)
    add_experiment_arguments(p, out=out)
    p.add_argument("--checkpoint", type=Path, default=None, help=checkpoint_help)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop after about this many seconds, save --checkpoint and exit with status 3")
    p.add_argument("--judge-dir", type=Path, default=None, help="folder of the cached judge weights")
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    if args.iterations < 1 or args.eval_every < 1 or args.eval_samples < 1 or args.grid_samples < 1:
        p.error("--iterations, --eval-every, --eval-samples and --grid-samples must be >= 1")
    if args.max_seconds is not None and args.checkpoint is None:
        p.error("--max-seconds needs --checkpoint (the state to resume from)")
    return args


def experiment_config(args):
    """The arguments a resumed run must share with the run that wrote the checkpoint."""
    return {"honest_clients": args.honest_clients, "target_class": args.target,
            "gradient_factor": float(args.factor), "batch_size": args.batch_size, "optimizer": args.optimizer,
            "seed": args.seed, "eval_samples": args.eval_samples, "grid_samples": args.grid_samples}


def run_experiment(args, *, runner, attacker, judge, save, resumed, device, backend, t_start=None):
    """Run (or continue) the benchmark; returns ``(summary, exit_status)``.

    ``runner``: ``.iteration``, ``.clients`` and ``runner(n)`` (trains ``n`` iterations and returns once they are
    done). ``attacker``: ``sample_noise(n)`` and ``generate(n, z=, batch_size=)`` (NumPy images). ``save(extra)``
    writes the runner's state together with ``extra`` (the benchmark's noise, history and grid: a dict of NumPy
    arrays and strings) to ``args.checkpoint`` in one atomic step. ``resumed``: the ``extra`` read back with the
    runner's state, or None for a fresh run. ``device``, ``backend``: strings for the summary.
    """
    import numpy as np

    from splitnn import plots

    t_start = time.perf_counter() if t_start is None else t_start
    args.out.mkdir(parents=True, exist_ok=True)
    config = experiment_config(args)
    if resumed is not None:
        if "config" not in resumed:
            raise SystemExit(f"{args.checkpoint} holds no benchmark state (written by another program or an "
                             "older version of this one); use another --checkpoint")
        saved_config = json.loads(str(resumed["config"]))
        if saved_config != config:
            raise SystemExit(f"{args.checkpoint} holds a run with {saved_config}, but the arguments ask for "
                             f"{config}; use another --checkpoint or the same arguments")
        z_eval, z_grid = np.asarray(resumed["z_eval"]), np.asarray(resumed["z_grid"])
        history, titles = json.loads(str(resumed["history"])), json.loads(str(resumed["titles"]))
        rows, train_s = list(resumed["grid_rows"]), float(resumed["train_seconds"])
        print(f"resumed from {args.checkpoint} at iteration {runner.iteration}", flush=True)
    else:
        z_eval = np.asarray(attacker.sample_noise(args.eval_samples), np.float32)
        z_grid = np.asarray(attacker.sample_noise(args.grid_samples), np.float32)
        history, rows, titles, train_s = [], [], [], 0.0
    saved_at = runner.iteration if resumed is not None else None
    saved_here = False  # whether this process wrote the checkpoint

    def evaluate(it, ips):
        rates = judge.rates(attacker.generate(args.eval_samples, z=z_eval), args.target)
        # the original draws its samples in one training-mode batch
        rows.append(np.asarray(attacker.generate(args.grid_samples, z=z_grid, batch_size=args.grid_samples)))
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
        nonlocal saved_at, saved_here
        if args.checkpoint is None or saved_at == runner.iteration:
            return
        save({"config": json.dumps(config), "z_eval": z_eval, "z_grid": z_grid, "history": json.dumps(history),
              "grid_rows": np.stack(rows), "titles": json.dumps(titles), "train_seconds": np.float64(train_s)})
        saved_at, saved_here = runner.iteration, True

    if not history:
        evaluate(0, None)
    chunks, stopped = [], False
    while runner.iteration < args.iterations:
        it0 = runner.iteration
        n = min(args.eval_every - it0 % args.eval_every, args.iterations - it0)
        if args.max_seconds is not None:
            n = min(n, STOP_CHECK_EVERY)  # the time limit is checked between chunks
        t0 = time.perf_counter()
        runner(n)
        dt = time.perf_counter() - t0
        train_s += dt
        chunks.append((it0, n, dt))
        it = runner.iteration
        if it % args.eval_every == 0 or it == args.iterations:
            evaluate(it, it / train_s if train_s else None)
            save_state()
        if (args.max_seconds is not None and it < args.iterations
                and time.perf_counter() - t_start > args.max_seconds):
            stopped = True
            break
    save_state()  # a stop between evaluations; a no-op when the last evaluation saved
    grid = args.out / f"samples_target{args.target}.png"
    plots.save_image_grid(rows, grid, titles=titles)

    final = history[-1]
    # steady state: the chunks after this process's first (which includes tracing or compilation)
    steady = [(n, dt) for _, n, dt in chunks[1:]]
    steady_ips = sum(n for n, _ in steady) / sum(dt for _, dt in steady) if steady else None
    summary = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "backend": backend, "device": device, "judge": judge.info, "history": history,
               "iterations_done": runner.iteration, "complete": runner.iteration >= args.iterations,
               "final_target_rate": final["target_rate"], "it_per_s": final["it_per_s"],
               "steady_it_per_s_this_process": steady_ips, "train_seconds": train_s,
               "chunks_this_process": [{"start": a, "iterations": n, "seconds": round(dt, 3)}
                                       for a, n, dt in chunks]}
    summary_path = args.out / f"summary_target{args.target}.json"
    summary_path.write_text(json.dumps(summary, indent=1))
    print(f"wrote {grid.resolve()}\nwrote {summary_path.resolve()}", flush=True)
    if saved_here:
        print(f"wrote checkpoint {Path(args.checkpoint).resolve()}", flush=True)
    if stopped:
        print(f"stopped after {time.perf_counter() - t_start:.0f} s at iteration {runner.iteration} of "
              f"{args.iterations}; state saved to {Path(args.checkpoint).resolve()}; run the same command again "
              f"to resume", flush=True)
        return summary, EXIT_STOPPED
    done = final["iteration"]
    reduced = "" if done >= 5000 else f" (REDUCED BUDGET: {done} of 5,000 iterations)"
    ips = final["it_per_s"]
    print(f"final: target-class rate {final['target_rate']:.3f} over {args.eval_samples} samples "
          f"after {done} iterations{reduced}; "
          + (f"{ips:.2f} it/s overall" if ips else "no training in this call")
          + (f", {steady_ips:.2f} it/s after compilation" if steady_ips else "")
          + f" on {device}; grid saved to {grid.resolve()}", flush=True)
    print(REFERENCE_RUN, flush=True)
    return summary, 0

"""Convergence benchmark of the client-side GAN attack (spec fsha.md §9.8, §10.5).

Original configuration: target class 1, one malicious + 10 honest clients, batch 256, Adam 1e-4,
gradient factor 1e5, 5,000 iterations (55,000 split-learning steps; 7.39 it/s on the authors' GPU).
The original only shows 15 samples that all look like a "1"; this script scores the generator with
the package's judge classifier (fraction of samples assigned to the target class) periodically and
at the end, prints the training speed, and saves a grid of samples over training.

Acceptance on a GPU: >= 80% of 1,000 samples assigned to the target class after 5,000 iterations.

    SPLITNN_DATA_DIR=/path/to/data python benchmarks/clientside_attack.py [--iterations 5000]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ClientSideAttack.settings import REFERENCE_RUN as REFERENCE, add_experiment_arguments  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_experiment_arguments(p, out="results/clientside_attack")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    from ClientSideAttack import Judge, build_attack
    from splitnn import plots

    if args.iterations < 1 or args.eval_every < 1 or args.eval_samples < 1:
        raise SystemExit("--iterations, --eval-every and --eval-samples must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"config: iterations={args.iterations} honest_clients={args.honest_clients} "
          f"target={args.target} batch={args.batch_size} factor={args.factor:g} "
          f"optimizer={args.optimizer} seed={args.seed}", flush=True)
    print(REFERENCE, flush=True)

    judge = Judge.load()
    print(f"judge {judge.info['version']}: MNIST test accuracy {judge.test_accuracy:.4f} "
          f"({'cached' if judge.info['cached'] else 'trained now'})", flush=True)

    server = build_attack(honest_clients=args.honest_clients, target_class=args.target,
                          gradient_factor=args.factor, batch_size=args.batch_size,
                          optimizer=args.optimizer, seed=args.seed)
    bad = server.clients[0]
    z_eval = bad.sample_noise(args.eval_samples)
    z_grid = bad.sample_noise(args.grid_samples)

    history, rows, titles = [], [], []
    state = {"train_s": 0.0, "t": time.perf_counter(), "last_it": 0}

    def evaluate(srv, it):
        state["train_s"] += time.perf_counter() - state["t"]
        rates = judge.rates(bad.generate(args.eval_samples, z=z_eval), args.target)
        # the original draws its 15 samples in one training-mode batch
        rows.append(bad.generate(args.grid_samples, z=z_grid, batch_size=args.grid_samples))
        titles.append(f"iteration {it}: {100 * rates['target_rate']:.1f}% target")
        ips = it / state["train_s"]
        top = np.argsort(rates["histogram"])[::-1][:3]
        history.append({"iteration": it, "target_rate": rates["target_rate"],
                        "confident_rate": rates["confident_rate"], "it_per_s": ips,
                        "histogram": [round(float(h), 4) for h in rates["histogram"]]})
        print(f"iteration {it:5d}: target-class rate {rates['target_rate']:.3f} "
              f"(confident >= 0.9: {rates['confident_rate']:.3f}); top classes "
              + ", ".join(f"{d}:{rates['histogram'][d]:.2f}" for d in top)
              + (f"; {ips:.2f} it/s ({ips * len(srv.clients):.1f} steps/s)" if it else ""), flush=True)
        state["t"] = time.perf_counter()

    evaluate(server, 0)
    state["train_s"] = 0.0
    state["t"] = time.perf_counter()
    server(args.iterations, callback=evaluate, callback_every=args.eval_every)

    final = history[-1]
    grid = args.out / f"samples_target{args.target}.png"
    plots.save_image_grid(rows, grid, titles=titles)
    summary = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "device": "GPU" if _has_gpu() else "CPU", "judge": judge.info, "history": history,
               "final_target_rate": final["target_rate"], "it_per_s": final["it_per_s"],
               "train_seconds": state["train_s"]}
    (args.out / f"summary_target{args.target}.json").write_text(json.dumps(summary, indent=1))
    reduced = "" if args.iterations >= 5000 else f" (REDUCED BUDGET: {args.iterations} of 5,000 iterations)"
    print(f"final: target-class rate {final['target_rate']:.3f} over {args.eval_samples} samples "
          f"after {args.iterations} iterations{reduced}; {final['it_per_s']:.2f} it/s on "
          f"{summary['device']}; grid saved to {grid}", flush=True)
    print(REFERENCE, flush=True)
    return summary


def _has_gpu():
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()

"""The sweep runner's scaling: the same grid (UnSplit Table 2 and FSHA split-level cells, small budgets) on a
LocalCluster of 1 and of 2 worker processes, in one run; prints both wall times and the speed-up.

    SPLITNN_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/sweep_scaling.py            # 1 vs 2 workers
    python3 benchmarks/sweep_scaling.py --workers 1 4 --gpu-share 0.25   # GPU: one cell at a time vs 4 sharing it

Each configuration runs the whole grid from scratch into its own results folder (cluster start, every worker's
imports and the per-cell tracing included: what a user waits for). With ``--gpu-share F`` every cell asks for an
F share of the GPU and every worker holds one share, so ``--workers 1`` runs the cells one at a time on the GPU and
``--workers 1/F`` runs that many side by side on it. The records of the two runs are also compared (the cells are
seeded: the numbers must agree).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

UNSPLIT_BUDGET = dict(epochs=1, max_train_batches=20, main_iters=5, input_iters=10, model_iters=10, n_targets=3)
FSHA_BUDGET = dict(iterations=10, batch_size=16, log_frequency=5, n_heldout=64, private_size=2048)


def grid(depths, levels, seeds):
    from splitnn.sweeps import make_grid

    # the longer FSHA cells first: Dask starts cells in submission order, so the short ones fill in behind them
    return (make_grid("fsha_levels", datasets=["mnist"], levels=levels, seeds=seeds, budget=FSHA_BUDGET)
            + make_grid("table2", datasets=["mnist"], levels=depths, seeds=[0], budget=UNSPLIT_BUDGET))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare (default 1 2)")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6], help="UnSplit split depths (MNIST)")
    p.add_argument("--levels", type=int, nargs="+", default=[4], help="FSHA split levels (MNIST)")
    p.add_argument("--fsha-seeds", type=int, nargs="+", default=[0, 1], help="FSHA seeds")
    p.add_argument("--gpu-share", type=float, default=0.0, help="GPU share per cell (0: CPU cells)")
    p.add_argument("--out", default=None, help="keep the records here (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.gpu_share:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

    from splitnn import sweeps
    from splitnn.notebook import machine

    cells = grid(args.depths, args.levels, args.fsha_seeds)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep_scaling_"))
    print(f"grid: {len(cells)} cells (UnSplit MNIST depths {args.depths}: {UNSPLIT_BUDGET}; FSHA MNIST levels "
          f"{args.levels}, seeds {args.fsha_seeds}: {FSHA_BUDGET}); records under {root.resolve()}", flush=True)
    walls, cell_sums, numbers = {}, {}, {}
    for n in args.workers:
        folder = root / f"workers{n}"
        t0 = time.perf_counter()
        summary = sweeps.run_sweep(cells, folder, workers=n, gpu_share=args.gpu_share, log=None)
        walls[n] = time.perf_counter() - t0
        if summary.failed or summary.recorded != len(cells):
            print("\n".join(summary.lines()))
            return 1
        recs = sweeps.load_records(folder)
        cell_sums[n] = sum(r["cell_seconds"] for r in recs)
        numbers[n] = {r["id"]: {k: v for k, v in r["results"].items() if "second" not in k} for r in recs}
        print(f"{n} worker(s): wall {walls[n]:.1f} s for {len(cells)} cells (sum of the cells' own times "
              f"{cell_sums[n]:.1f} s)", flush=True)
    base = args.workers[0]
    print(f"\nmachine: {machine()}, {os.cpu_count()} CPUs visible"
          + (f"; GPU share per cell {args.gpu_share}" if args.gpu_share else ""))
    print("| workers | wall s | speed-up vs {} |".format(base))
    print("|---:|---:|---:|")
    for n in args.workers:
        print(f"| {n} | {walls[n]:.1f} | {walls[base] / walls[n]:.2f}x |")
    diff = max(largest_difference(numbers[base], numbers[n]) for n in args.workers)
    print(f"records of the runs: largest relative difference of a result {diff:.2g} (timings aside; 0 = identical)")
    return 0 if diff <= 1e-5 else 2


def largest_difference(a, b) -> float:
    import numpy as np

    if a.keys() != b.keys():
        return float("inf")
    worst = 0.0
    for cell_id in a:
        for key, va in a[cell_id].items():
            x, y = np.asarray(va), np.asarray(b[cell_id].get(key))
            if x.dtype.kind == "f" and x.shape == y.shape:
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-30)
                worst = max(worst, float(np.nanmax(rel)) if rel.size else 0.0)
            elif va != b[cell_id].get(key):
                return float("inf")
    return worst


if __name__ == "__main__":
    sys.exit(main())

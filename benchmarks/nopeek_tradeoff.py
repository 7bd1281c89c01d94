"""NoPeek trade-off on MNIST: task accuracy, held-out dCor and a curious server's inversion MSE
for a few values of alpha1 (``defenses.nopeek.tradeoff_study``).

    SPLITNN_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/nopeek_tradeoff.py

Default budget: ~3-5 minutes on 2 CPU cores. Prints a table and writes two figures (examples of
reconstructions per alpha, and the three metrics against alpha) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", default="0,1,2.5,5,10,20",
                        help="comma-separated alpha1 values (default: %(default)s)")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--decoder-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/nopeek_tradeoff",
                        help="folder for the figures (default: %(default)s)")
    args = parser.parse_args(argv)

    import numpy as np

    from defenses.nopeek import format_table, tradeoff_study
    from splitnn.plots import save_curves, save_image_grid

    alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    t0 = time.perf_counter()
    results = tradeoff_study(alphas, train_size=args.train_size, epochs=args.epochs,
                             decoder_epochs=args.decoder_epochs, batch_size=args.batch_size,
                             seed=args.seed, log=lambda m: print(m, flush=True))
    total = time.perf_counter() - t0
    r0 = results[0]
    print()
    print(f"NoPeek on MNIST: {args.train_size} training images x {args.epochs} epochs, batch "
          f"{args.batch_size}; dCor = mean over held-out batches of {r0.dcor_batch_size}; inversion "
          f"= decoder trained by the server on 5,000 public test images, MSE on the other 5,000 "
          f"([0, 1] scale; baseline = always the public mean image)")
    print(format_table(results))
    print(f"total {total:.0f} s")

    out = Path(args.out)
    rows = [r0.originals] + [r.reconstructions for r in results]
    titles = ["held-out originals"] + [
        f"alpha1={r.alpha1:g}: acc {r.accuracy:.3f}, dCor {r.dcor:.3f}, MSE {r.inversion_mse:.4f}"
        for r in results]
    grid = save_image_grid(rows, out / "reconstructions.png", titles=titles, value_range=(0, 1))
    a = np.asarray([r.alpha1 for r in results])
    curves = save_curves(
        {"accuracy": (a, [r.accuracy for r in results]),
         "dCor (held-out)": (a, [r.dcor for r in results]),
         "inversion MSE x10": (a, [10 * r.inversion_mse for r in results])},
        out / "tradeoff.png", xlabel="alpha1", title="NoPeek trade-off (MNIST)",
        references={"baseline MSE x10": (a, [10 * r.baseline_mse for r in results])})
    print(f"wrote {Path(grid).resolve()}\nwrote {Path(curves).resolve()}")
    return results


if __name__ == "__main__":
    main()

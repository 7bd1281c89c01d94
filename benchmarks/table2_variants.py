"""UnSplit's Table 2 under the original code's defaults and the paper's variants, 3 seeds, side by side with the
trivial baselines: what the inversion recovers beyond an all-black or a mean image.

    python benchmarks/table2_variants.py run --results results/sweeps/table2_variants     # the sweeps (resumable)
    python benchmarks/table2_variants.py report --results results/sweeps/table2_variants  # the combined tables

Variants (one sweep each, ``splitnn.sweeps`` grid ``table2``, every cell seeded): the original code's defaults
(TV weight 0.1 at every depth, the l2 prior mean(x~^2) with weight 1), the paper's eq. 1 without the l2 prior
(``lambda_l2=0``), and the paper's TV schedule (0.1 up to depth 3, 1.0 deeper). The default budget fits a 2-core
CPU: one training epoch truncated to 300 batches, 20 x (50 + 50) steps per image, the 10 first-of-class targets,
one clone carried across them (the original's mode); ``--budget`` takes the sweep runner's keys.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {"tv_code_l2_1": ("code", 1.0, "code"),       # the original code: TV 0.1 at every depth, l2 weight 1
            "tv_code_l2_0": ("code", 0.0, "no l2"),      # the paper's eq. 1: no l2 prior
            "tv_paper_l2_1": ("paper", 1.0, "paper TV")}  # the paper's TV schedule: 0.1 up to depth 3, 1.0 deeper
BUDGET = ["epochs=1", "max_train_batches=300", "main_iters=20", "input_iters=50", "model_iters=50"]


def run(results: Path, budget, workers: int, seeds) -> int:
    from splitnn import sweeps

    rc = 0
    for folder, (schedule, l2, _) in VARIANTS.items():
        rc |= sweeps.main(["run", "table2", "--datasets", "mnist", "fashion_mnist", "--seeds", *map(str, seeds),
                           "--budget", *budget, "--option", f"tv_schedule={schedule}", f"lambda_l2={l2:g}",
                           "--workers", str(workers), "--results", str(results / folder)])
    return rc


def _cell(values) -> str:
    from splitnn.sweeps import stats

    mean, sd, n = stats(values)
    return "n/a" if n == 0 else f"{mean:.4f}" + (f" ± {sd:.4f}" if n > 1 else "")


def report(results: Path) -> str:
    from splitnn.sweeps import load_records
    from unsplit_tf.experiments import PAPER_TABLE2

    recs = {v: [r for r in load_records(results / v) if r["cell"]["attack"] == "unsplit"] for v in VARIANTS}
    out = []
    for dataset, short in (("mnist", "mnist"), ("fashion_mnist", "f_mnist")):
        rows = {v: [r for r in rs if r["cell"]["dataset"] == dataset] for v, rs in recs.items()}
        everything = [r for rs in rows.values() for r in rs]
        if not everything:
            continue
        for v, rs in rows.items():  # one budget and one option set per variant, or the means would mix them
            kinds = {json.dumps([r["cell"]["budget"], r["cell"]["options"]], sort_keys=True) for r in rs}
            if len(kinds) > 1:
                raise SystemExit(f"{results / v} holds {dataset} records of {len(kinds)} budgets or option sets; "
                                 f"keep one per folder")
        b = everything[0]["cell"]["budget"]
        black = everything[0]["results"].get("baseline_black_mse", math.nan)
        mean_img = everything[0]["results"]["baseline_mean_image_mse"]
        seeds = sorted({r["cell"]["seed"] for r in everything})
        out.append(f"**{dataset}**, MSE on [0, 1], mean ± sample sd over seeds {', '.join(map(str, seeds))}: "
                   f"{b['epochs']} epoch x {b['max_train_batches']} batches, {b['main_iters']} x ({b['input_iters']} "
                   f"+ {b['model_iters']}) steps, {b['n_targets']} targets, carried clone. Trivial baselines on "
                   f"the same targets: all-black image **{black:.4f}**, training mean image **{mean_img:.4f}**; "
                   f"**bold**: below both. code: the original code's defaults (TV 0.1 at every depth, l2 weight 1); "
                   f"no l2: the paper's eq. 1 (l2 weight 0); paper TV: TV 0.1 up to depth 3, 1.0 deeper.")
        out.append("")
        head = ["depth"] + [f"{VARIANTS[v][2]}: {w}" for v in VARIANTS for w in ("before", "after")] + \
               ["paper before", "paper after"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---:|" * len(head))
        for depth in range(1, 7):
            cells = [str(depth)]
            for v in VARIANTS:
                at = [r["results"] for r in rows[v] if r["cell"]["level"] == depth]
                for key in ("mse_before", "mse_after"):
                    text = _cell(r[key] for r in at)
                    mean = sum(r[key] for r in at) / len(at) if at else math.nan
                    cells.append(f"**{text}**" if mean < min(black, mean_img) else text)
            p = PAPER_TABLE2[short][depth]
            cells += [f"**{p[0]:.3f}**" if p[0] < min(black, mean_img) else f"{p[0]:.3f}",
                      f"**{p[1]:.3f}**" if p[1] < min(black, mean_img) else f"{p[1]:.3f}"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/table2_variants.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "report"))
    p.add_argument("--results", default="results/sweeps/table2_variants")
    p.add_argument("--budget", nargs="+", default=BUDGET)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    results = Path(args.results).resolve()
    if args.command == "run":
        rc = run(results, args.budget, args.workers, args.seeds)
        if rc:
            return rc
    text = report(results)
    print(text)
    (results / "variants.md").write_text(text + "\n")
    print(f"wrote {results / 'variants.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""UnSplit next to He et al.'s white-box and query-free attacks (the UnSplit paper's Fig. 3a, Table 4) and the
black-box queries needed to match it (Table 5), at a budget given on the command line; prints the tables and
writes them with the figures and a JSON of every number.

    python benchmarks/unsplit_comparisons.py --datasets mnist f_mnist cifar --out results/unsplit_comparisons

The defaults are a CPU budget (one training epoch, 20 x (50 + 50) UnSplit steps with a clone copy per target,
He et al.'s 5,000 white-box and 500 query-free steps, a one-epoch shadow, Table 5 on MNIST with 3 runs of at most
500 decoder steps); ``--paper`` sets the papers' budgets (10 epochs, 1,000 x (100 + 100) carried, 50-epoch shadow
and decoders, 30 runs), a GPU's job. Each finished dataset is saved, and a rerun with the same settings loads it
instead of recomputing (``--fresh`` recomputes).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/unsplit_comparisons.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "f_mnist", "cifar"])
    p.add_argument("--depths", nargs="+", type=int, default=None, help="default: every depth of the paper")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train-batches", type=int, default=None)
    p.add_argument("--main-iters", type=int, default=20)
    p.add_argument("--input-iters", type=int, default=50)
    p.add_argument("--model-iters", type=int, default=50)
    p.add_argument("--carried", action="store_true", help="UnSplit with one clone carried across targets "
                                                           "(the original; default: a clone copy per target)")
    p.add_argument("--white-box-iters", type=int, default=5000)
    p.add_argument("--query-free-iters", type=int, default=500)
    p.add_argument("--aux-size", type=int, default=5000)
    p.add_argument("--shadow-epochs", type=int, default=1)
    p.add_argument("--table5-dataset", default="mnist")
    p.add_argument("--table5-queries", nargs="+", type=int, default=[100, 300, 1000, 3000, 10000])
    p.add_argument("--table5-runs", type=int, default=3)
    p.add_argument("--table5-epochs", type=int, default=50)
    p.add_argument("--table5-steps", type=int, default=500, help="cap on decoder steps (0: none)")
    p.add_argument("--no-table5", action="store_true")
    p.add_argument("--paper", action="store_true", help="the papers' budgets (overrides the budget flags)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="recompute datasets saved by an earlier run")
    p.add_argument("--out", default="results/unsplit_comparisons")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.paper:
        args.epochs, args.max_train_batches, args.carried = 10, None, True
        args.main_iters, args.input_iters, args.model_iters = 1000, 100, 100
        args.shadow_epochs, args.table5_steps, args.table5_runs = 50, 0, 30
        args.table5_queries = [100, 300, 1000, 3000, 10000, 30000]
    start = time.perf_counter()
    from splitnn.data import load_unsplit
    from splitnn.notebook import machine
    from unsplit_tf import comparisons as cmp
    from unsplit_tf import he_attacks as he
    from unsplit_tf.attacks import InversionConfig
    from unsplit_tf.util import configure_threads

    configure_threads(1, 1)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    where = machine()
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "fresh", "no_table5", "datasets") and
                not k.startswith("table5")}  # what a saved dataset's numbers depend on
    results, written = [], []
    for name in args.datasets:
        cache = out / f"{name}.pkl"
        if cache.exists() and not args.fresh:
            with open(cache, "rb") as fh:
                saved = pickle.load(fh)
            if saved["settings"] == settings:
                print(f"{name}: loaded {cache}")
                results.append(saved["result"])
                continue
        r = cmp.run_comparison(
            name, args.depths, epochs=args.epochs, max_train_batches=args.max_train_batches,
            unsplit=InversionConfig(main_iters=args.main_iters, input_iters=args.input_iters,
                                    model_iters=args.model_iters),
            unsplit_batched=not args.carried, white_box=he.he_config(iters=args.white_box_iters),
            query_free=he.he_config(he.QUERY_FREE_CONFIG, iters=args.query_free_iters), aux_size=args.aux_size,
            shadow_epochs=args.shadow_epochs, seed=args.seed)
        net, r.network = r.network, None  # the pickle keeps numbers, not the Keras model
        with open(cache, "wb") as fh:
            pickle.dump(dict(settings=settings, result=r), fh)
        r.network = net
        results.append(r)
    table = cmp.format_fig3a(results, where)
    print(table)
    (out / "fig3a.md").write_text(table + "\n")
    written += [out / "fig3a.md", cmp.plot_fig3a(results, out / "fig3a.png"),
                cmp.plot_table4(results, 3, out / "table4_depth3.png")]
    numbers = dict(settings=settings, machine=where, datasets={
        r.dataset: dict(depths=list(r.depths), target_accuracy=r.target_accuracy, data=r.data,
                        baselines={k: float(v.mean()) for k, v in r.baselines.items()},
                        shadow_accuracy={str(d): v for d, v in r.shadow_accuracy.items()},
                        mse={m: {str(d): float(r.scores[m][d]["mse"].mean()) for d in r.depths} for m in r.scores},
                        ssim={m: {str(d): float(r.scores[m][d]["ssim"].mean()) for d in r.depths} for m in r.scores})
        for r in results}, statements=cmp.statements(results))
    source = next((r for r in results if r.dataset == args.table5_dataset), None)
    if not args.no_table5 and source is not None:
        if source.network is None:
            print(f"Table 5 needs the trained {source.dataset} network: rerun with --fresh")
        else:
            t5 = cmp.run_table5(source.network, load_unsplit(source.dataset), source.targets,
                                {d: source.mean_mse("unsplit", d) for d in source.depths}, dataset=source.dataset,
                                query_counts=args.table5_queries, runs=args.table5_runs, epochs=args.table5_epochs,
                                steps=args.table5_steps or None, seed=args.seed)
            t5_table = cmp.format_table5(t5, where)
            print(t5_table)
            (out / "table5.md").write_text(t5_table + "\n")
            written.append(out / "table5.md")
            numbers["table5"] = dict(query_counts=list(t5.query_counts), budget=t5.budget,
                                     mse={str(d): t5.mse[d].tolist() for d in t5.depths},
                                     needed={str(d): t5.needed[d].tolist() for d in t5.depths},
                                     unsplit_mse={str(d): v for d, v in t5.unsplit_mse.items()})
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1, default=float) + "\n")
    written.append(out / "numbers.json")
    print("wrote:\n" + "\n".join(str(Path(p).resolve()) for p in written))
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

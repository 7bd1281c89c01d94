"""UnSplit vs FSHA on FSHA's ResNet client: the UnSplit paper's Fig. 3b (:mod:`unsplit_tf.fsha_comparison`).

Per split level one FSHA run, scored after each k setup iterations on the same first-of-class private images as
UnSplit (which attacks client01(x) = f(2x - 1), f as FSHA's run starts by default); MSE on [0, 1]. Prints the
Markdown table, writes the figure (``fig3b_unsplit_vs_fsha.png``) and the numbers (``unsplit_vs_fsha.json``) to
``--out`` and prints their absolute paths and the total time. ``--checkpoint-dir`` makes a long run resumable:
finished levels are read from the cache there, an unfinished level's FSHA run continues from its checkpoint.

    .venv/bin/python benchmarks/unsplit_vs_fsha.py --levels 4 --iterations 1 3 --targets 2 --unsplit 2 10 10
    .venv/bin/python benchmarks/unsplit_vs_fsha.py --iterations 100 250 500 1000 2000 5000 \
        --unsplit 1000 100 100 --checkpoint-dir ~/unsplit-vs-fsha --out results/unsplit_vs_fsha   # the paper's scale
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unsplit_tf import fsha_comparison as fc  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='mnist', choices=fc.DATASETS)
    p.add_argument('--levels', type=int, nargs='+', default=[1, 2, 3, 4])
    p.add_argument('--iterations', type=int, nargs='+', default=[100, 250, 500],
                   help='FSHA setup iterations at which it is scored (strictly increasing)')
    p.add_argument('--targets', type=int, default=10, help='first-of-class private images attacked by both')
    p.add_argument('--unsplit', type=int, nargs=3, default=[20, 20, 20], metavar=('MAIN', 'INPUT', 'MODEL'),
                   help="UnSplit's budget per image: main_iters input_iters model_iters (the original: 1000 100 100)")
    p.add_argument('--tv-schedule', default='code', help="'code' (0.1), 'paper' (by level) or a number")
    p.add_argument('--lambda-l2', type=float, default=1.0)
    p.add_argument('--client-state', default='initial', choices=fc.CLIENT_STATES)
    p.add_argument('--client-steps', type=int, default=0)
    p.add_argument('--batch', type=int, default=64, help="FSHA's batch size")
    p.add_argument('--architecture', default='notebook', choices=fc.FSHA_ARCHITECTURES)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--checkpoint-dir', default=None)
    p.add_argument('--checkpoint-every', type=int, default=None)
    p.add_argument('--out', default='results/unsplit_vs_fsha')
    return p.parse_args(argv)


def main(argv=None):
    start = time.perf_counter()
    args = parse_args(argv)
    from unsplit_tf.attacks import InversionConfig

    try:
        tv = float(args.tv_schedule)
    except ValueError:
        tv = args.tv_schedule
    config = InversionConfig(main_iters=args.unsplit[0], input_iters=args.unsplit[1], model_iters=args.unsplit[2],
                             tv_schedule=tv, lambda_l2=args.lambda_l2)
    t0 = time.perf_counter()
    result = fc.unsplit_vs_fsha(
        args.dataset, levels=args.levels, iterations=args.iterations, n_targets=args.targets, unsplit_config=config,
        architecture=args.architecture, batch_size=args.batch, client_state=args.client_state,
        client_steps=args.client_steps, seed=args.seed, checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        printer=lambda *a: print(f'[{time.perf_counter() - t0:6.0f} s]', *a, flush=True))
    print()
    print(fc.format_comparison(result))
    out = Path(args.out).expanduser()
    png = fc.plot_comparison(result, out / 'fig3b_unsplit_vs_fsha.png').resolve()
    js = fc.save_json(result, out / 'unsplit_vs_fsha.json').resolve()
    print(f'\nwrote {png}\nwrote {js}')
    print(f'total time {time.perf_counter() - start:.0f} s')
    return result


if __name__ == '__main__':
    main()

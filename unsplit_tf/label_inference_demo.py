"""UnSplit label inference demo: ``python -m unsplit_tf.label_inference_demo <mnist|f_mnist|cifar>``.

Mirrors the original ``label_inference_demo.py``: untrained server (layers 0..9 MnistNet / 0..16 CifarNet),
client holding the last linear layer and the labels, a random clone of the client; the first ``--count`` (100)
samples of the shuffled test set at batch 1, trained online. Prints ``Label: y - Predicted: p`` per sample,
``Run complete.`` and the accuracy as a **fraction** (as the original), then the total time. It writes no files.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow (unless the user set it)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from unsplit_tf.model_inversion_demo import _canonical, dataset_arg  # noqa: E402


def run_label_inference_demo(dataset: str, count: int = 100, *, client_depth: int = 1,
                             observed_param: str = "last_layer_weight", label_server_update: str = "both",
                             vectorized: bool = True, seed: int | None = None, printer=print):
    """Run the online label-inference loop; returns :class:`unsplit_tf.attacks.LabelInferenceResult`."""
    start = time.perf_counter()
    from splitnn.data import load_unsplit
    from splitnn.utils import set_seed
    from unsplit_tf.attacks import run_label_inference
    from unsplit_tf.util import configure_threads

    configure_threads(1, 1)
    name = _canonical(dataset)
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count!r}")
    data = load_unsplit(name)
    set_seed(seed)
    arch = "cifar" if name == "cifar" else "mnist"
    result = run_label_inference(data.x_test, data.y_test, arch, count=min(int(count), len(data.y_test)),
                                 client_depth=client_depth, observed_param=observed_param,
                                 label_server_update=label_server_update, vectorized=vectorized, seed=seed,
                                 printer=printer, dataset=name)
    printer("Run complete.")
    tag = f"  [{data.description}]" if data.partial else ""
    printer(f"Label inference accuracy: {result.accuracy}{tag}")
    printer(f"Total time: {time.perf_counter() - start:.1f} s")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unsplit_tf.label_inference_demo",
                                description="UnSplit label inference (client holds the last layer and the labels).")
    p.add_argument("dataset", help="mnist, f_mnist or cifar")
    p.add_argument("--count", type=int, default=100, help="test samples to attack (default 100)")
    p.add_argument("--client-depth", type=int, default=1, choices=(1, 2),
                   help="linear layers on the client (1 = the original; 2 = the paper's Table 3 row 2)")
    p.add_argument("--observed-param", default="last_layer_weight",
                   choices=("last_layer_weight", "first_client_weight", "all_client_params"),
                   help="which client gradient the attacker observes (default: the last layer's weight)")
    p.add_argument("--client-loss-only", action="store_true",
                   help="step the server with the client's loss only (the original also adds the clone's)")
    p.add_argument("--loop", action="store_true", help="score the candidate labels in a loop, not vectorised")
    p.add_argument("--seed", type=int, default=None, help="seed (the original sets none)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from splitnn.data import MissingDataError

    name = dataset_arg(parser, args.dataset)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    try:
        run_label_inference_demo(name, args.count, client_depth=args.client_depth,
                                 observed_param=args.observed_param,
                                 label_server_update="client_only" if args.client_loss_only else "both",
                                 vectorized=not args.loop, seed=args.seed)
    except MissingDataError as exc:
        parser.exit(2, f"{parser.prog}: error: data for {args.dataset!r} is missing.\n{exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

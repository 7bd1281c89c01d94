"""UnSplit model inversion + stealing demo: ``python -m unsplit_tf.model_inversion_demo <dataset> <split_depth>``.

Mirrors the original ``model_inversion_demo.py <mnist|f_mnist|cifar> <split_depth>``: trains client + server for
10 epochs, then inverts the first test image of each class with one clone carried across the 10 targets
(1000 x (100 + 100) steps, TV weight 0.1 at every depth and the original code's TV form), prints per-image and
average MSE and the clone accuracies, and writes PNGs to ``results/``. Options beyond the original (all defaults
faithful) shrink the budget or switch variants; budgets that cannot run the attack (no rounds, no input or clone
steps, no training batches) are refused before any work.

Printed lines are the original's, plus one line naming the attack's budget, TV schedule and TV form; after every
image's MSE ("Image i loss") the same image's trivial baselines and scores; after "Average MSE" two lines: the
baselines on the same targets (MSE on [0, 1] of the all-black image and of the training set's mean image: an
attack that is not below both recovered nothing image-specific) and the mean PSNR / SSIM of the reconstructions;
then the clone accuracies as two lines (see :mod:`unsplit_tf.training`): the original's "Clone test score" (real
client bottom + the clone's untrained top, labelled as the original's metric) and the clone accuracy that measures
the stolen client (clone bottom + trained server top). It ends with the absolute paths of the files it wrote and the
total time. Files: ``results/{dataset}_{i}.png`` (reconstruction i, clamped to [0, 1] for the file only, as the
original) and ``results/{dataset}_d{depth}_originals_reconstructions.png`` (a grid).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow (unless the user set it)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DATASETS = ("mnist", "f_mnist", "cifar")


@dataclasses.dataclass
class InversionDemoResult:
    dataset: str
    split_depth: int
    mse: np.ndarray
    average_mse: float
    clone_accuracy: object  # unsplit_tf.training.CloneAccuracy
    train_history: object   # unsplit_tf.training.TrainHistory
    inversion: object       # unsplit_tf.attacks.InversionResult
    target_indices: np.ndarray
    files: list
    data_description: str = ""
    partial_data: bool = False
    seed: int | None = None
    seconds: float = 0.0
    report: object = None   # unsplit_tf.diagnostics.ReconstructionReport: baselines, PSNR and SSIM, on [0, 1]

    @property
    def black_mse(self) -> np.ndarray:
        """Per target: the MSE of the all-black image on [0, 1] (a baseline no attack needs)."""
        return self.report.black

    @property
    def mean_image_mse(self) -> np.ndarray:
        """Per target: the MSE of the training set's mean image on [0, 1]."""
        return self.report.mean_image


def _canonical(dataset: str) -> str:
    from splitnn.data import canonical_name

    name = canonical_name(dataset)  # raises UnknownDatasetError for unknown names
    if name not in ("mnist", "fashion_mnist", "cifar10"):
        raise ValueError(f"UnSplit runs on mnist, f_mnist or cifar, not {dataset!r}")
    return {"mnist": "mnist", "fashion_mnist": "f_mnist", "cifar10": "cifar"}[name]


def check_budget(*, epochs: int = 10, main_iters: int = 1000, input_iters: int = 100, model_iters: int = 100,
                 max_train_batches: int | None = None, batch_size: int = 64, cli: bool = False) -> None:
    """Raise ValueError, naming the value, for a budget with which the demo cannot attack (``cli``: name the
    command-line options, ``--main-iters``, rather than the arguments).

    Zero rounds, zero input steps or zero clone steps would report the constant 0.5 start image (or x~ against a
    clone that never learns) as the attack's result; ``max_train_batches=0`` with epochs would report an untrained
    network as a trained one (``epochs=0`` is the way to attack the untrained network, Table 2's "before").
    """
    def label(name):
        return "--" + name.replace("_", "-") if cli else name

    for name, value, low in (("epochs", epochs, 0), ("main_iters", main_iters, 1), ("input_iters", input_iters, 1),
                             ("model_iters", model_iters, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            why = (" (the attack needs at least one round of at least one x~ step and one clone step; without them "
                   "it would report its grey start image or a clone that never learnt)"
                   if name.endswith("_iters") else "")
            raise ValueError(f"{label(name)} must be an integer >= {low}, got {value!r}{why}")
    if max_train_batches is not None and (isinstance(max_train_batches, bool)
                                          or int(max_train_batches) != max_train_batches or max_train_batches < 1):
        raise ValueError(f"{label('max_train_batches')} must be an integer >= 1, got {max_train_batches!r} (use "
                         f"{label('epochs')} 0 to attack the untrained network)")


def run_inversion_demo(dataset: str, split_depth: int, *, epochs: int = 10, main_iters: int = 1000,
                       input_iters: int = 100, model_iters: int = 100, tv_schedule="code", tv_form: str = "code",
                       seed: int | None = None, batched: bool = False, results_dir="results",
                       clone_reuse: str = "carry", optimizer: str = "torch", max_train_batches: int | None = None,
                       cifar_minmax: bool = True, lambda_l2: float = 1.0, tv_reduction: str = "sum",
                       clamp_x: bool = False, batch_size: int = 64, sampler: str = "repo",
                       save_images: bool = True, printer=print) -> InversionDemoResult:
    """Run the demo end to end and return its numbers (see module docstring).

    Raises ``splitnn.data.UnknownDatasetError`` / ``ValueError`` for a bad dataset or split depth (1-6 for
    mnist/f_mnist, 1-8 for cifar) or a budget that cannot run the attack (:func:`check_budget`), before any work,
    and ``splitnn.data.MissingDataError`` when offline data is missing.
    """
    check_budget(epochs=epochs, main_iters=main_iters, input_iters=input_iters, model_iters=model_iters,
                 max_train_batches=max_train_batches, batch_size=batch_size)
    start = time.perf_counter()
    from splitnn.data import load_unsplit
    from splitnn.utils import set_seed
    from unsplit_tf.attacks import InversionConfig, invert_images
    from unsplit_tf.diagnostics import reconstruction_report
    from unsplit_tf.models import build_model, check_split_depth
    from unsplit_tf.training import clone_accuracies, train_split
    from unsplit_tf.util import configure_threads, describe_tv, first_index_per_class

    configure_threads(1, 1)  # tiny models: one intra-op thread is fastest on CPU (no-op if TF already runs)
    name = _canonical(dataset)
    arch = "cifar" if name == "cifar" else "mnist"
    split_depth = check_split_depth(arch, split_depth)
    cfg = InversionConfig(main_iters=main_iters, input_iters=input_iters, model_iters=model_iters,
                          tv_schedule=tv_schedule, tv_form=tv_form, optimizer=optimizer, cifar_minmax=cifar_minmax,
                          lambda_l2=lambda_l2, tv_reduction=tv_reduction, clamp_x=clamp_x)
    tv = describe_tv(tv_schedule, tv_form, tv_reduction, split_depth)
    data = load_unsplit(name)
    set_seed(seed)
    rng = np.random.default_rng(seed)
    sub = (lambda k: None) if seed is None else (lambda k: int(seed) * 10 + k)  # noqa: E731
    client = build_model(arch, seed=sub(1), name="client")
    server = build_model(arch, seed=sub(2), name="server")
    clone = build_model(arch, seed=sub(3), name="clone")
    tag = f" [{data.description}]" if data.partial else ""

    printer("Training models...")
    history = train_split(client, server, data.x_train, data.y_train, split_depth, epochs=epochs,
                          batch_size=batch_size, x_test=data.x_test, y_test=data.y_test, sampler=sampler, seed=rng,
                          max_batches=max_train_batches, optimizer=optimizer, printer=printer)
    printer("Done.")

    idx = first_index_per_class(data.y_test)
    targets = data.x_test[idx]
    printer("Starting model inversion & stealing attack...")
    mode = (f"{len(idx)} targets batched, one clone copy each" if batched
            else f"one clone, {'carried' if clone_reuse == 'carry' else 'restarted'} across the {len(idx)} targets")
    printer(f"Attack: {main_iters} x ({input_iters} + {model_iters}) steps per image, {tv}, {mode}")
    inv = invert_images(client, clone, targets, split_depth, cfg, batched=batched, clone_reuse=clone_reuse,
                        labels=data.y_test[idx])
    report = reconstruction_report(inv.x_eval, targets, data.x_train.mean(axis=0, dtype=np.float64))
    for i, value in enumerate(inv.mse):
        printer(f"\tImage {i} loss: {value}  {report.per_image(i)}")
    printer(f"Average MSE: {inv.mean_mse}{tag}")
    printer(report.baseline_line("targets"))
    printer(report.quality_line())

    eval_clone = inv.clone_copy(len(idx) - 1) if batched else clone
    acc = clone_accuracies(client, server, eval_clone, data.x_test, data.y_test, split_depth, rng)
    if batched:
        printer("(batched mode: clone accuracies of the last target's independent clone copy)")
    for line in acc.lines(data.description if data.partial else "", split_depth):
        printer(line)

    files = []
    if save_images:
        from splitnn.plots import save_image_grid

        out = Path(results_dir).resolve()
        out.mkdir(parents=True, exist_ok=True)
        import matplotlib.pyplot as plt

        for i, img in enumerate(inv.x_eval):
            path = out / f"{name}_{i}.png"
            img = np.clip(img, 0.0, 1.0)
            plt.imsave(path, img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                       vmin=0.0, vmax=1.0)
            files.append(path)
        grid = out / f"{name}_d{split_depth}_originals_reconstructions.png"
        save_image_grid([inv.targets, inv.x_eval], grid, titles=["originals", "reconstructions"],
                        value_range=(0, 1), suptitle=f"UnSplit {name} split depth {split_depth}: average MSE "
                                                     f"{inv.mean_mse:.4f}, TV {tv_schedule}/{tv_form}{tag}")
        files.append(grid)
        printer(f"Results saved to the {out} directory:")
        for path in files:
            printer(f"  {path}")
    seconds = time.perf_counter() - start
    printer(f"Total time: {seconds:.1f} s")
    return InversionDemoResult(name, split_depth, inv.mse, inv.mean_mse, acc, history, inv, idx, files,
                               data.description, bool(data.partial), seed, seconds, report)


def dataset_arg(parser: argparse.ArgumentParser, value: str) -> str:
    """The demo name of a dataset argument, or an argparse error listing the choices."""
    from splitnn.data import UnknownDatasetError

    try:
        return _canonical(value)
    except (UnknownDatasetError, ValueError):
        parser.error(f"unknown dataset {value!r}: expected one of {', '.join(DATASETS)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m unsplit_tf.model_inversion_demo",
        description="UnSplit model inversion and stealing (faithful defaults: 10 epochs, 1000 x (100 + 100) "
                    "steps, TV weight 0.1, one clone carried across the 10 first-of-class test images).")
    p.add_argument("dataset", help="mnist, f_mnist or cifar")
    p.add_argument("split_depth", help="flat layer index of the split: 1-6 (mnist, f_mnist) or 1-8 (cifar)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10; 0 = attack untrained)")
    p.add_argument("--main-iters", type=int, default=1000, help="coordinate-descent rounds, >= 1 (default 1000)")
    p.add_argument("--input-iters", type=int, default=100, help="x~ steps per round, >= 1 (default 100)")
    p.add_argument("--model-iters", type=int, default=100, help="clone steps per round, >= 1 (default 100)")
    p.add_argument("--tv-schedule", default="code",
                   help="'code' (0.1 at every depth, default), 'paper' (0.1 for d<=3, 1.0 deeper) or a number")
    p.add_argument("--tv-form", default="code", choices=("code", "paper"), help="TV as coded (default) or paper")
    p.add_argument("--optimizer", default="torch", choices=("torch", "keras"),
                   help="PyTorch-exact AMSGrad Adam (default) or the Keras Adam rule")
    p.add_argument("--clone-reuse", default="carry", choices=("carry", "fresh"),
                   help="carry one clone across the targets (default, original) or restart it per target")
    p.add_argument("--batched", action="store_true",
                   help="invert the 10 targets at once, each with its own clone copy (not the original)")
    p.add_argument("--max-train-batches", type=int, default=None,
                   help="truncate every epoch to N >= 1 batches (tiny budgets; --epochs 0 attacks untrained)")
    p.add_argument("--no-cifar-minmax", action="store_true", help="skip the CIFAR min-max post-processing")
    p.add_argument("--lambda-l2", type=float, default=1.0,
                   help="weight of mean(x~^2) in the input phase (default 1, the code; 0 = the paper's eq. 1)")
    p.add_argument("--tv-reduction", default="sum", choices=("sum", "mean"),
                   help="with --tv-form paper: sum over pixels (default, paper-literal) or mean")
    p.add_argument("--clamp-x", action="store_true", help="clip x~ to [0, 1] after every input step (not original)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size (default 64)")
    p.add_argument("--sampler", default="repo", choices=("repo", "full"),
                   help="per-epoch test accuracy on the original's 2,000-draw sampler (default) or the full test set")
    p.add_argument("--seed", type=int, default=None, help="seed (the original sets none)")
    p.add_argument("--results-dir", default="results", help="where the PNGs go (default results/)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # before any import of the backend or the data
        check_budget(epochs=args.epochs, main_iters=args.main_iters, input_iters=args.input_iters,
                     model_iters=args.model_iters, max_train_batches=args.max_train_batches,
                     batch_size=args.batch_size, cli=True)
    except ValueError as exc:
        parser.error(str(exc))
    from splitnn.data import MissingDataError
    from unsplit_tf.models import check_split_depth
    from unsplit_tf.util import tv_weight_for

    name = dataset_arg(parser, args.dataset)
    try:
        depth = int(args.split_depth)
        check_split_depth("cifar" if name == "cifar" else "mnist", depth)
    except ValueError as exc:
        parser.error(str(exc) if "out of range" in str(exc) else
                     f"split depth must be an integer, got {args.split_depth!r}")
    try:
        schedule = float(args.tv_schedule) if args.tv_schedule not in ("code", "paper") else args.tv_schedule
        tv_weight_for(depth, schedule)
    except ValueError:
        parser.error(f"--tv-schedule {args.tv_schedule!r}: expected 'code', 'paper' or a number")
    if args.lambda_l2 < 0:
        parser.error(f"--lambda-l2 must be >= 0, got {args.lambda_l2}")
    try:
        run_inversion_demo(name, depth, epochs=args.epochs, main_iters=args.main_iters,
                           input_iters=args.input_iters, model_iters=args.model_iters, tv_schedule=schedule,
                           tv_form=args.tv_form, seed=args.seed, batched=args.batched,
                           results_dir=args.results_dir, clone_reuse=args.clone_reuse, optimizer=args.optimizer,
                           max_train_batches=args.max_train_batches, cifar_minmax=not args.no_cifar_minmax,
                           lambda_l2=args.lambda_l2, tv_reduction=args.tv_reduction, clamp_x=args.clamp_x,
                           batch_size=args.batch_size, sampler=args.sampler)
    except MissingDataError as exc:
        parser.exit(2, f"{parser.prog}: error: data for {args.dataset!r} is missing.\n{exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

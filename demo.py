"""The package's main job: two attacks on MNIST that write figures and print reconstruction errors.

1. FSHA: a malicious server hijacks a split-learning client and reconstructs its private training images.
   On a CPU (default) it uses small networks and faster learning rates so a few hundred steps suffice;
   ``--full`` runs the original notebooks' configuration (split level 4, batch 64, WGAN-GP 500,
   lr 1e-5/1e-5/1e-4, 10,000 steps, notebook-era activations), which wants a GPU.
2. UnSplit: an honest-but-curious server inverts the client's smashed data by coordinate descent (MnistNet,
   split depth 2), after training the target model; reduced schedule by default, ``--full`` the paper's.

Errors are MSE: FSHA's on the [-1, 1] pixel scale, UnSplit's on [0, 1] (the same error is 4x larger on [-1, 1]).
Each is printed next to two trivial baselines on the same images and scale: the MSE of the all-black image and of
the training images' mean; an attack not below both recovered nothing image-specific.

    python demo.py [--out results/demo] [--full] [--tiny] [--skip-fsha] [--skip-unsplit]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

# TensorFlow's C++ start-up lines off, unless the caller chose a level (before anything imports TensorFlow)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


@dataclasses.dataclass
class DemoResult:
    fsha_mse_before: float | None = None
    fsha_mse_after: float | None = None
    unsplit_mse: list | None = None
    # trivial baselines on the attack's own images and scale: FSHA's on [-1, 1] (black = -1 everywhere), UnSplit's
    # on [0, 1] (black = 0); mean image = the mean of the (private) training images on that scale
    fsha_black_mse: float | None = None
    fsha_mean_image_mse: float | None = None
    unsplit_black_mse: float | None = None
    unsplit_mean_image_mse: float | None = None
    unsplit_psnr: float | None = None   # dB, mean over the targets, on [0, 1]
    unsplit_ssim: float | None = None
    figures: list = dataclasses.field(default_factory=list)  # absolute paths
    seconds: float = 0.0


FAST_HPARAMS = {"WGAN": True, "gradient_penalty": 500.0, "lr_f": 3e-4, "lr_tilde": 1e-3, "lr_D": 1e-3}


def run_fsha(out: Path, iterations: int, full: bool, held_out: int, seed: int, result: DemoResult):
    from fsha import architectures, datasets
    from fsha.FSHA import FSHA, REFERENCE_HPARAMS
    from splitnn.data import load_raw
    from splitnn.plots import save_image_grid
    from splitnn.utils import set_seed

    set_seed(seed)  # before the streams and networks exist, so data order and weights repeat
    from splitnn.metrics import trivial_baselines

    raw = load_raw("mnist")
    # Private images the attack never trains on, to score it honestly (Xpriv is the train split).
    held_images = datasets.preprocess(raw.x_train[:held_out])
    priv_images = datasets.preprocess(raw.x_train[held_out:])
    evaluation = datasets.make_dataset(held_images, raw.y_train[:held_out], shuffle=False)
    xpriv = datasets.make_dataset(priv_images, raw.y_train[held_out:])
    xpub = datasets.make_dataset(datasets.preprocess(raw.x_test), raw.y_test)
    if full:
        attack = FSHA(xpriv, xpub, 3, 64, REFERENCE_HPARAMS, architecture="notebook", seed=seed)
        what = "level 4, batch 64, reference hyperparameters, notebook-era pilot/decoder"
    else:
        attack = FSHA(xpriv, xpub, 3, 32, FAST_HPARAMS, seed=seed, **architectures.small_networks())
        what = "small CPU networks (architectures.small_networks), batch 32, lr 3e-4/1e-3/1e-3, GP 500"
    print(f"\n== FSHA on MNIST: {what}, {iterations} iterations")
    # scoreAttack scores the held-out images in order, in whole batches: the baselines use exactly those images
    scored = held_images[:(held_out // attack.batch_size) * attack.batch_size]
    base = trivial_baselines(scored, priv_images.mean(axis=0, dtype=np.float64), black=-1.0)
    del priv_images
    result.fsha_black_mse = float(np.mean(base["black"]))
    result.fsha_mean_image_mse = float(np.mean(base["mean_image"]))
    batch = min(64, held_out)
    result.fsha_mse_before = attack.scoreAttack(evaluation, progress_bar=False)
    start = time.time()
    attack(iterations, verbose=True, progress_bar=False, log_frequency=max(1, min(500, iterations // 5)))
    seconds = time.time() - start
    result.fsha_mse_after = attack.scoreAttack(evaluation, progress_bar=False)
    print(f"FSHA reconstruction MSE on {held_out} held-out private images ([-1, 1] scale): "
          f"{result.fsha_mse_before:.4f} before the attack -> {result.fsha_mse_after:.4f} after "
          f"({iterations / seconds:.1f} steps/s)")
    print(f"FSHA baselines on the same {len(scored)} held-out images (MSE on [-1, 1], FSHA's scale; all-black = -1 "
          f"everywhere): all-black image {result.fsha_black_mse:.4f}, private-training mean image "
          f"{result.fsha_mean_image_mse:.4f}")
    originals = datasets.getImagesDS(evaluation, min(10, batch))
    reconstructions, control = attack.attack(originals)
    path = save_image_grid([originals, reconstructions, control], out / "fsha_mnist.png",
                           titles=["private originals", "FSHA reconstructions decoder(f(x))",
                                   "attacker's control decoder(f~(x))"],
                           suptitle=f"FSHA, MNIST, {iterations} iterations; MSE {result.fsha_mse_after:.4f} "
                                    f"([-1, 1])")
    result.figures.append(Path(path).resolve())
    print(f"wrote {result.figures[-1]}")


def run_unsplit(out: Path, full: bool, tiny: bool, seed: int, result: DemoResult):
    from unsplit_tf.model_inversion_demo import run_inversion_demo

    if full:
        budget = dict(epochs=10, main_iters=1000, input_iters=100, model_iters=100)
    elif tiny:
        budget = dict(epochs=1, main_iters=3, input_iters=10, model_iters=10, max_train_batches=30)
    else:
        budget = dict(epochs=1, main_iters=100, input_iters=100, model_iters=100)
    print(f"\n== UnSplit on MNIST, split depth 2: {budget}")
    demo = run_inversion_demo("mnist", 2, results_dir=out / "unsplit", seed=seed, **budget)
    result.unsplit_mse = [float(v) for v in demo.mse]
    result.figures.append(Path(demo.files[-1]).resolve())
    rep = demo.report
    result.unsplit_black_mse = float(np.mean(rep.black))
    result.unsplit_mean_image_mse = float(np.mean(rep.mean_image))
    result.unsplit_psnr, result.unsplit_ssim = float(np.mean(rep.psnr)), float(np.mean(rep.ssim))
    print(f"UnSplit average MSE over the 10 targets ([0, 1] scale): {np.mean(demo.mse):.4f} "
          f"(paper, Table 2, depth 2 after training, full schedule: 0.056)")
    print(f"UnSplit baselines on the same {len(demo.mse)} targets (MSE on [0, 1], all-black = 0): all-black image "
          f"{result.unsplit_black_mse:.4f}, training-mean image {result.unsplit_mean_image_mse:.4f}; reconstructions: "
          f"PSNR {result.unsplit_psnr:.2f} dB, SSIM {result.unsplit_ssim:.3f}")


def main(argv=None) -> DemoResult:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/demo", help="folder for the figures")
    parser.add_argument("--full", action="store_true", help="the papers' budgets (GPU)")
    parser.add_argument("--tiny", action="store_true", help="a few seconds per attack (smoke test)")
    parser.add_argument("--fsha-iterations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-fsha", action="store_true")
    parser.add_argument("--skip-unsplit", action="store_true")
    args = parser.parse_args(argv)
    if args.full and args.tiny:
        parser.error("--full and --tiny exclude each other")
    iterations = args.fsha_iterations or (10_000 if args.full else 20 if args.tiny else 600)
    if iterations < 1:
        parser.error("--fsha-iterations must be >= 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from splitnn.data import MissingDataError

    result = DemoResult()
    start = time.perf_counter()
    try:
        if not args.skip_fsha:
            run_fsha(out, iterations, args.full, 256 if args.tiny else 1024, args.seed, result)
        if not args.skip_unsplit:
            run_unsplit(out, args.full, args.tiny, args.seed, result)
    except MissingDataError as err:
        parser.exit(2, f"demo: {err}\n")
    result.seconds = time.perf_counter() - start
    print(f"\n== demo finished in {result.seconds:.0f} s; figures:")
    for path in result.figures:
        print(f"  {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

"""What UnSplit's inversion really recovers: a per-round trace of x~ and of the clone, and the trivial baselines
every UnSplit MSE should be read against.

Why a trace
-----------
UnSplit's objective has a near-degenerate direction. The first layer is linear in its input (a convolution, or a
linear layer), so the smashed data of ``x~ / a`` through a clone whose first-layer kernel is multiplied by ``a``
(bias unchanged) equals that of ``x~``: the MSE term cannot tell them apart, while the TV and l2 terms of the input
phase fall by ``a**2``. Coordinate descent can therefore drift x~ towards black while the clone's first layer grows
to compensate, and an all-black image already scores an MSE close to what an untrained attack reports (MNIST, the 10
first-of-class test targets: 0.110 for all black). :func:`trace_inversion` records, after every round (or every
``every`` rounds), the mean intensity of x~ and the Frobenius norm of the clone's first-layer kernel, so that the
drift can be seen rather than guessed.

It runs the same compiled coordinate-descent engine as :func:`unsplit_tf.attacks.invert_images` (batched mode) in
chunks of rounds, passing the **whole** optimiser state from chunk to chunk: x~, its Adam moments and AMSGrad
maximum, the clone copies' parameters and their moments, and both Adam step counters (``tx``, ``tw``). The
trajectory is therefore the unchunked one (the tests check the final x~ and clone parameters against
:func:`unsplit_tf.attacks.model_inversion_stealing_batched`).

Batched mode only: every target gets its own copy of the clone (all starting from the clone's weights), so the
first-layer norm is recorded **per target**, ``first_layer_norm`` [R, N]. (The faithful carried clone would mix
the targets' trajectories; tracing one target at a time with ``images[i:i+1]`` is the single-target trace.)

Run ``python -m unsplit_tf.diagnostics`` to train MnistNet briefly, trace depths 1-6 and write the figure.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

#: the scale every UnSplit MSE is on (FSHA's is [-1, 1]; the same images give 4x its MSE there)
UNSPLIT_SCALE = "[0, 1]"


# ============================================================================================== baselines
@dataclasses.dataclass
class ReconstructionReport:
    """An attack's per-image MSE with the trivial baselines on the same targets and scale, and PSNR / SSIM.

    ``black``: MSE of the all-black image (the scale's minimum: 0 on [0, 1], -1 on [-1, 1]); ``mean_image``: MSE
    of the training set's mean image; ``psnr`` (dB) and ``ssim`` of the reconstructions (None when not given)."""
    mse: np.ndarray
    black: np.ndarray
    mean_image: np.ndarray
    psnr: np.ndarray | None = None
    ssim: np.ndarray | None = None
    value_range: tuple = (0.0, 1.0)

    @property
    def scale(self) -> str:
        lo, hi = self.value_range
        return f"[{lo:g}, {hi:g}]"

    def baseline_line(self, what: str = "targets") -> str:
        """'Baselines on the same N targets (MSE on [0, 1]): all-black image B, training-mean image M'."""
        return (f"Baselines on the same {len(self.black)} {what} (MSE on {self.scale}): all-black image "
                f"{np.mean(self.black):.4f}, training-mean image {np.mean(self.mean_image):.4f}")

    def quality_line(self) -> str:
        """'Reconstruction quality (on [0, 1]): mean PSNR P dB, mean SSIM S'."""
        return (f"Reconstruction quality (on {self.scale}): mean PSNR {np.mean(self.psnr):.2f} dB, mean SSIM "
                f"{np.mean(self.ssim):.3f}")

    def per_image(self, i: int) -> str:
        """The baselines and scores of image ``i``, to follow its MSE."""
        return (f"(black {self.black[i]:.4f}, mean image {self.mean_image[i]:.4f}; PSNR {self.psnr[i]:.2f} dB, "
                f"SSIM {self.ssim[i]:.3f})")


def reconstruction_report(x_eval, targets, train_mean, value_range=(0.0, 1.0), scores: bool = True
                          ) -> ReconstructionReport:
    """Baselines (and, with ``scores``, PSNR and SSIM) of reconstructions ``x_eval`` against ``targets`` [N, ...],
    all on the pixel scale ``value_range``; ``train_mean`` is one image on that scale. The black image is the
    scale's minimum (0 on [0, 1], -1 on [-1, 1])."""
    from splitnn.metrics import image_scores, mse_per_image, trivial_baselines

    t = np.asarray(targets, np.float64)
    lo, hi = (float(v) for v in value_range)
    base = trivial_baselines(t, train_mean, black=lo)
    black, mean_image = base["black"], base["mean_image"]
    if x_eval is None:
        return ReconstructionReport(np.full(len(t), np.nan), black, mean_image, value_range=(lo, hi))
    s = image_scores(x_eval, t, data_range=hi - lo) if scores else dict(mse=mse_per_image(x_eval, t))
    return ReconstructionReport(s["mse"], black, mean_image, s.get("psnr"), s.get("ssim"), (lo, hi))


# ================================================================================================== trace
@dataclasses.dataclass
class InversionTrace:
    """The trajectory of a batched UnSplit inversion.

    Attributes:
        rounds: [R + 1] round numbers at which the state was recorded, starting with 0 (the start: x~ = 0.5,
            the clone's own weights) and ending with ``main_iters``.
        x_mean: [R + 1, N] mean intensity of each target's x~ (raw, unclamped, before any CIFAR min-max).
        first_layer_norm: [R + 1, N] Frobenius norm of the first-layer kernel (layer 0's weight) of each target's
            clone copy.
        x_hat: final raw x~ [N, H, W, C]; ``x_eval`` what the MSE is computed on (CIFAR min-max when enabled).
        mse: per-image MSE on [0, 1] of ``x_eval`` against ``targets``; ``black_mse``: that of the all-black image;
            ``rescaled_mse``: that of ``a * x_eval`` with each image's least-squares brightness factor ``a >= 0``
            (how much of the error is the lost scale alone), ``scale``: those factors.
        target_mean: [N] mean intensity of each target. clone_params: final per-target clone parameters (Keras
            layouts, leading target axis). split_depth, lambda_tv, config, seconds.
    """
    rounds: np.ndarray
    x_mean: np.ndarray
    first_layer_norm: np.ndarray
    x_hat: np.ndarray
    x_eval: np.ndarray
    targets: np.ndarray
    mse: np.ndarray
    black_mse: np.ndarray
    rescaled_mse: np.ndarray
    scale: np.ndarray
    target_mean: np.ndarray
    clone_params: list
    split_depth: int
    lambda_tv: float
    config: object
    seconds: float = 0.0

    def summary(self) -> dict:
        """Start and end values averaged over the targets (first-layer norm as a ratio end / start)."""
        n0, n1 = self.first_layer_norm[0].mean(), self.first_layer_norm[-1].mean()
        return dict(depth=self.split_depth, x_mean_start=float(self.x_mean[0].mean()),
                    x_mean_end=float(self.x_mean[-1].mean()), x_mean_min=float(self.x_mean.mean(axis=1).min()),
                    target_mean=float(self.target_mean.mean()), norm_start=float(n0), norm_end=float(n1),
                    norm_ratio=float(n1 / n0), mse=float(self.mse.mean()), black_mse=float(self.black_mse.mean()),
                    rescaled_mse=float(self.rescaled_mse.mean()), scale=float(np.median(self.scale)))


def _kernel_norms(kernel) -> np.ndarray:
    k = np.asarray(kernel, np.float64)
    return np.sqrt((k ** 2).reshape(k.shape[0], -1).sum(axis=1))


def trace_inversion(client, clone, images, split_depth: int, config=None, every: int = 1) -> InversionTrace:
    """Invert ``images`` [N, H, W, C] (targets ``client(images, end=split_depth)``) in batched mode, recording the
    mean intensity of each x~ and the first-layer kernel norm of each clone copy every ``every`` rounds (and at
    the end). Same trajectory as :func:`unsplit_tf.attacks.invert_images` with ``batched=True`` (one batch):
    the compiled engine runs in chunks of ``every`` rounds with its full state carried. ``clone`` is not
    modified."""
    from keras import ops

    from unsplit_tf.attacks import (InversionConfig, _check_split, _engine, _engine_inputs, initial_state,
                                    postprocess)

    cfg = config or InversionConfig()
    every = int(every)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    split_depth = _check_split(clone, split_depth)
    lam_tv = cfg.lambda_tv(split_depth)
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[1:] != tuple(clone.image_shape):
        raise ValueError(f"images must be [N, {', '.join(map(str, clone.image_shape))}], got {images.shape}")
    smashed = client(ops.cast(images, client.dtype), end=split_depth)
    targets, params, x0 = _engine_inputs(clone, split_depth, smashed)
    engine = _engine(clone.arch, split_depth, clone.dtype, cfg)
    x0, params = engine.to_engine(x0, params)
    target = engine.to_engine(targets, [])[0]
    state = initial_state(x0, params)

    def record(state):
        x = ops.convert_to_numpy(state[0]).astype(np.float64)
        # the Frobenius norm does not depend on the layout (the fast engine holds kernels transposed)
        return x.reshape(x.shape[0], -1).mean(axis=1), _kernel_norms(ops.convert_to_numpy(state[5][0]))

    rounds, xs, norms = [0], *[[v] for v in record(state)]
    start = time.perf_counter()
    done = 0
    while done < cfg.main_iters:
        k = min(every, cfg.main_iters - done)
        state = engine(state, target, k, cfg.input_iters, cfg.model_iters, lam_tv, cfg.lambda_l2)
        done += k
        xm, nm = record(state)
        rounds.append(done)
        xs.append(xm)
        norms.append(nm)
    seconds = time.perf_counter() - start
    x_hat, out_params = engine.from_engine(state[0], state[5])
    x_hat = ops.convert_to_numpy(x_hat)
    x_eval = postprocess(x_hat, clone.arch, cfg.cifar_minmax)
    from splitnn.metrics import mse_per_image

    t = images.astype(np.float64)
    xe = x_eval.astype(np.float64)
    mse = mse_per_image(xe, t)
    scale = np.maximum(np.sum(xe * t, axis=(1, 2, 3)) / np.maximum(np.sum(xe * xe, axis=(1, 2, 3)), 1e-30), 0.0)
    rescaled = np.mean((scale[:, None, None, None] * xe - t) ** 2, axis=(1, 2, 3))
    return InversionTrace(np.asarray(rounds), np.stack(xs), np.stack(norms), x_hat, x_eval, images, mse,
                          mse_per_image(t, np.zeros_like(t)), rescaled, scale, t.mean(axis=(1, 2, 3)),
                          [ops.convert_to_numpy(p) for p in out_params], split_depth, lam_tv, cfg, seconds)


# =================================================================================================== plot
def trace_figure(traces, title: str | None = None):
    """One row per trace (a split depth): the mean intensity of x~ over rounds (left, one thin line per target,
    their mean thick; the targets' mean intensity dashed) and the clone's first-layer norm over rounds (right,
    per target and mean)."""
    from splitnn.plots import plt

    traces = list(traces.values()) if isinstance(traces, dict) else list(traces)
    if not traces:
        raise ValueError("no traces to plot")
    fig, axes = plt.subplots(len(traces), 2, squeeze=False, figsize=(8.0, 2.1 * len(traces) + 0.4))
    for row, tr in zip(axes, traces):
        left, right = row
        left.plot(tr.rounds, tr.x_mean, color="tab:blue", alpha=0.25, lw=0.8)
        left.plot(tr.rounds, tr.x_mean.mean(axis=1), color="tab:blue", lw=2, label="x~ mean intensity")
        left.axhline(tr.target_mean.mean(), color="k", ls="--", lw=1, label="targets' mean intensity")
        left.set_ylabel(f"depth {tr.split_depth}")
        right.plot(tr.rounds, tr.first_layer_norm, color="tab:red", alpha=0.25, lw=0.8)
        right.plot(tr.rounds, tr.first_layer_norm.mean(axis=1), color="tab:red", lw=2,
                   label="clone layer-0 kernel norm")
        for ax in row:
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("round")
    axes[-1, 1].set_xlabel("round")
    axes[0, 0].set_title("mean intensity of x~ (scale [0, 1])", fontsize=9)
    axes[0, 1].set_title("Frobenius norm of the clone's first-layer kernel", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def save_trace_figure(traces, path, title: str | None = None):
    """Write :func:`trace_figure` to ``path`` (PNG) and return the path."""
    from splitnn.plots import save_figure

    return save_figure(trace_figure(traces, title), path)


def format_trace_table(traces) -> str:
    """A Markdown table of :meth:`InversionTrace.summary` per depth."""
    traces = list(traces.values()) if isinstance(traces, dict) else list(traces)
    lines = ["| depth | x~ mean start -> end (min) | targets' mean | layer-0 norm start -> end (x) | MSE | black MSE | "
             "MSE after best brightness factor (median factor) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for tr in traces:
        s = tr.summary()
        lines.append(f"| {s['depth']} | {s['x_mean_start']:.3f} -> {s['x_mean_end']:.3f} ({s['x_mean_min']:.3f}) | "
                     f"{s['target_mean']:.3f} | {s['norm_start']:.3f} -> {s['norm_end']:.3f} "
                     f"({s['norm_ratio']:.2f}x) | {s['mse']:.4f} | {s['black_mse']:.4f} | "
                     f"{s['rescaled_mse']:.4f} ({s['scale']:.2f}) |")
    return "\n".join(lines)


__all__ = ["InversionTrace", "trace_inversion", "trace_figure", "save_trace_figure", "format_trace_table",
           "ReconstructionReport", "reconstruction_report", "UNSPLIT_SCALE"]


# ==================================================================================================== CLI
def main(argv=None):
    import argparse
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m unsplit_tf.diagnostics",
                                description="Trace UnSplit's x~ brightness and the clone's first-layer norm per "
                                            "round (MNIST / Fashion-MNIST / CIFAR, briefly trained client).")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--epochs", type=int, default=1, help="training epochs (0: untrained client)")
    p.add_argument("--max-train-batches", type=int, default=300)
    p.add_argument("--main-iters", type=int, default=50)
    p.add_argument("--input-iters", type=int, default=50)
    p.add_argument("--model-iters", type=int, default=50)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--tv-schedule", default="code")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/unsplit_trace.png")
    args = p.parse_args(argv)
    from splitnn.data import load_unsplit
    from pathlib import Path

    from unsplit_tf.attacks import InversionConfig
    from unsplit_tf.experiments import _short
    from unsplit_tf.models import build_model
    from unsplit_tf.training import train_split
    from unsplit_tf.util import configure_threads, first_index_per_class

    configure_threads(1, 1)
    name = _short(args.dataset)
    arch = "cifar" if name == "cifar" else "mnist"
    data = load_unsplit(name)
    targets = data.x_test[first_index_per_class(data.y_test)]
    schedule = args.tv_schedule if args.tv_schedule in ("code", "paper") else float(args.tv_schedule)
    cfg = InversionConfig(main_iters=args.main_iters, input_iters=args.input_iters, model_iters=args.model_iters,
                          tv_schedule=schedule)
    client = build_model(arch, seed=args.seed * 10 + 1, name="client")
    server = build_model(arch, seed=args.seed * 10 + 2, name="server")
    if args.epochs > 0:
        # trained split at depth 1: the network is the same for every depth (see unsplit_tf.experiments)
        train_split(client, server, data.x_train, data.y_train, 1, epochs=args.epochs,
                    max_batches=args.max_train_batches, seed=args.seed, printer=None)
        for w, v in zip(client.range_weights(2), server.range_weights(2)):  # server's top -> one network
            w.assign(v)
    trained = f"trained {args.epochs} epoch(s) x {args.max_train_batches} batches" if args.epochs > 0 else "untrained"
    print(f"UnSplit trace, {name}: client {trained}; "
          f"{args.main_iters} x ({args.input_iters} + {args.model_iters}) steps, TV schedule {schedule}, "
          f"{len(targets)} first-of-class targets batched (one clone copy each). MSE on [0, 1].", flush=True)
    traces = {}
    for d in args.depths:
        clone = build_model(arch, seed=args.seed * 1000 + 100 * d + 7, name="clone")
        traces[d] = trace_inversion(client, clone, targets, d, cfg, every=args.every)
        s = traces[d].summary()
        print(f"  depth {d}: x~ mean {s['x_mean_start']:.3f} -> {s['x_mean_end']:.3f} (targets "
              f"{s['target_mean']:.3f}); layer-0 norm {s['norm_start']:.3f} -> {s['norm_end']:.3f} "
              f"({s['norm_ratio']:.2f}x); MSE {s['mse']:.4f} (all-black {s['black_mse']:.4f}; rescaled "
              f"{s['rescaled_mse']:.4f}) "
              f"({traces[d].seconds:.1f} s)", flush=True)
    print(format_trace_table(traces))
    path = save_trace_figure(traces, args.out, title=f"UnSplit {name}: {args.main_iters} x ({args.input_iters} + "
                                                     f"{args.model_iters}) steps, TV {schedule}")
    print(f"wrote {Path(path).resolve()}")
    return traces


if __name__ == "__main__":
    main()


"""UnSplit inversion speed: the compiled loop against a plain eager PyTorch loop, and batched vs one image.

    [KERAS_BACKEND=jax] python benchmarks/unsplit_speed.py [--dataset mnist] [--depth 2] [--rounds 50] [--batch 10]
                                                          [--engine auto|generic|fast]

Measures, in one process, for the faithful schedule (main_iters x (input_iters + model_iters) = 1000 x (100 + 100)
per image), on the Keras backend of ``KERAS_BACKEND`` (TensorFlow by default):

1. the one implementation (``unsplit_tf.attacks``: compiled while loops, PyTorch-exact Adam; under TensorFlow by
   default the XLA-compiled im2col forward, ``--engine generic`` for the Keras layers) on one image: ``--rounds`` of
   the 1000 rounds are timed and the per-image time is **extrapolated** (x 1000 / rounds);
2. a straightforward eager PyTorch implementation of the same inner loop (the original's structure: zero_grad,
   forward, MSE + TV + l2, backward, Adam(amsgrad) step; target detached, which only helps PyTorch), one intra-op
   thread, ``--torch-rounds`` rounds, extrapolated the same way;
3. ``--batch`` targets inverted at once (each with its own x~ and clone copy) against one image, same rounds;
4. (TensorFlow) the **arithmetic floor** of that ratio: the first convolution's four matrix products that every
   input step + clone step pair needs (two forwards, the input gradient, the weight gradient), alone in a
   compiled loop, for 1 and for ``--batch`` models. No implementation of the same arithmetic on this machine can
   batch below that ratio.

Every timing is the best of ``--repeat`` runs (the machine may be shared; the spread is printed). Compile time
is reported separately and excluded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=("mnist", "f_mnist", "cifar"))
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--rounds", type=int, default=50, help="TF rounds timed (of the 1000 per image)")
    p.add_argument("--torch-rounds", type=int, default=10, help="PyTorch rounds timed (of the 1000 per image)")
    p.add_argument("--batch", type=int, default=10, help="targets in the batched run")
    p.add_argument("--repeat", type=int, default=3, help="timing repetitions (best is reported)")
    p.add_argument("--threads", type=int, default=1, help="TF intra-op threads (1 is best for these models)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--engine", default="auto", choices=("auto", "generic", "fast"),
                   help="the clone's forward (InversionConfig.engine): auto = fast under TF, generic under JAX")
    p.add_argument("--no-floor", action="store_true", help="skip the arithmetic floor (TensorFlow only)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


# ------------------------------------------------------------------------------------- PyTorch reference
def torch_reference(arch, depth, image_nchw, rounds, input_iters, model_iters, threads, repeat):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def net():  # MnistNet / CifarNet as a flat list of callables (original unsplit/models.py)
        if arch == "mnist":
            mods = [torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2),
                    torch.nn.Conv2d(8, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2),
                    torch.nn.Flatten(), torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84),
                    torch.nn.ReLU(), torch.nn.Linear(84, 10)]
            flat_to_seq = lambda d: d + 1 if d >= 6 else d  # noqa: E731  (Flatten inserted before index 6)
        else:
            c = lambda i, o: torch.nn.Conv2d(i, o, 3, padding=1)  # noqa: E731
            mods = [c(3, 64), torch.nn.ReLU(), c(64, 64), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2),
                    c(64, 128), torch.nn.ReLU(), c(128, 128), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2),
                    c(128, 128), torch.nn.ReLU(), c(128, 128), torch.nn.ReLU(), torch.nn.MaxPool2d(2, 2),
                    torch.nn.Flatten(), torch.nn.Linear(2048, 512), torch.nn.Sigmoid(), torch.nn.Linear(512, 10)]
            flat_to_seq = lambda d: d + 1 if d >= 15 else d  # noqa: E731
        return torch.nn.Sequential(*mods[:flat_to_seq(depth) + 1])

    def tv(x):
        b, c, h, w = x.shape
        return (((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum() / (c * (h - 1) * w)
                + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum() / (c * h * (w - 1))) / b

    client, clone = net(), net()
    with torch.no_grad():
        target = client(torch.from_numpy(image_nchw))

    def run():
        x = torch.full(target.shape[:1] + image_nchw.shape[1:], 0.5, requires_grad=True)
        x_opt = torch.optim.Adam([x], lr=1e-3, amsgrad=True)
        m_opt = torch.optim.Adam(clone.parameters(), lr=1e-3, amsgrad=True)
        for _ in range(rounds):
            for _ in range(input_iters):
                x_opt.zero_grad()
                loss = F.mse_loss(clone(x), target) + 0.1 * tv(x) + (x ** 2).mean()
                loss.backward()
                x_opt.step()
            for _ in range(model_iters):
                m_opt.zero_grad()
                loss = F.mse_loss(clone(x), target)
                loss.backward()
                m_opt.step()
    best, times = timed(run, repeat)
    return best, times, torch.__version__


def load_images(dataset, arch, n, rng):
    """``n`` attack targets [n, H, W, C] in [0, 1] and a description: the first test image of each class (repeated
    beyond 10), or random images when the data is unavailable (timing only needs the shapes)."""
    import numpy as np

    try:
        from splitnn.data import first_index_per_class, load_unsplit

        d = load_unsplit(dataset)
        idx = first_index_per_class(d.y_test)
        idx = np.resize(idx, n)  # more than 10 targets: repeat the classes
        return d.x_test[idx], f"first-of-class test images of {d.description}"
    except Exception as exc:  # noqa: BLE001 - data is optional for a timing run
        shape = (28, 28, 1) if arch == "mnist" else (32, 32, 3)
        return (rng.uniform(0, 1, (n,) + shape).astype(np.float32),
                f"random images (data unavailable: {type(exc).__name__})")


def product_floor(arch, batch, dtype, reps=2000, repeat=3):
    """Seconds per step pair of the first convolution's products alone (im2col layout as in the engine):
    ``W[O, CKK] @ cols[CKK, HW]`` (forward, in both steps), ``W^T @ dY`` (input gradient, input step),
    ``dY @ cols^T`` (weight gradient, clone step),
    for ``batch`` independent models, in an XLA-compiled while loop; best of ``repeat``."""
    import tensorflow as tf

    from unsplit_tf.models import ARCHITECTURES

    first = ARCHITECTURES[arch][0]
    size = 28 if arch == "mnist" else 32
    hw = (size - first.kernel + 1) ** 2 if first.padding == "valid" else size * size
    ckk = first.in_units * first.kernel ** 2
    rng = tf.random.Generator.from_seed(0)
    w = rng.normal((batch, first.out_units, ckk), dtype=dtype)
    cols = rng.normal((batch, ckk, hw), dtype=dtype)
    cols2 = rng.normal((batch, ckk, hw), dtype=dtype)
    dy = rng.normal((batch, first.out_units, hw), dtype=dtype)

    @tf.function(jit_compile=True, autograph=False)
    def loop(w, cols, dy):
        def body(i, w, acc):
            y = tf.matmul(w, cols)                                   # input step: forward
            dcols = tf.matmul(w, dy + y * 1e-9, transpose_a=True)    # input step: input gradient
            y2 = tf.matmul(w, cols2)                                 # clone step: forward
            dw = tf.matmul(dy + y2 * 1e-9, cols2, transpose_b=True)  # clone step: weight gradient
            return i + 1, w + 1e-12 * dw, acc + dcols[:, :1, :1]
        return tf.while_loop(lambda i, *a: i < reps, body, (tf.constant(0), w, tf.zeros((batch, 1, 1), dtype)))
    loop(w, cols, dy)[1].numpy()
    best = min(timed(lambda: loop(w, cols, dy)[1].numpy(), 1)[0] for _ in range(repeat))
    return best / reps


def time_inversion(dataset, depth, rounds, batch, repeat, engine="auto"):
    """Time ``rounds`` of the faithful schedule's rounds for one target and for ``batch`` targets (each with its own
    x~ and clone copy) with the one implementation (``unsplit_tf.attacks``) on the current Keras backend; the
    first call of each compiles (timed apart). Single and batched runs are interleaved, so that load changes hit
    both alike. Returns a dict (seconds; per-image times extrapolated to the 1000 rounds)."""
    import numpy as np
    from keras import ops

    from unsplit_tf.attacks import InversionConfig, _run_engine, resolve_engine
    from unsplit_tf.models import build_model, check_split_depth

    arch = "cifar" if dataset == "cifar" else "mnist"
    depth = check_split_depth(arch, depth)
    if rounds < 1 or batch < 1 or repeat < 1:
        raise ValueError("--rounds, --batch and --repeat must be >= 1")
    rng = np.random.default_rng(0)
    imgs, source = load_images(dataset, arch, max(batch, 1), rng)
    client = build_model(arch, seed=1)
    clone = build_model(arch, seed=2)
    smashed = client(imgs, end=depth)
    cfg = InversionConfig(engine=engine)
    run_cfg = InversionConfig(main_iters=rounds, engine=engine)

    def run(b, c=run_cfg):
        x, _ = _run_engine(clone, depth, smashed[:b], c, 0.1)
        ops.convert_to_numpy(x)

    t0 = time.perf_counter()
    run(1, InversionConfig(main_iters=1, engine=engine))
    compile_1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(batch, InversionConfig(main_iters=1, engine=engine))
    compile_b = time.perf_counter() - t0
    singles, batches = [], []
    for _ in range(repeat):
        singles.append(timed(lambda: run(1), 1)[0])
        batches.append(timed(lambda: run(batch), 1)[0])
    t1, tb = min(singles), min(batches)
    scale = cfg.main_iters / rounds
    steps = rounds * (cfg.input_iters + cfg.model_iters)
    return {"dataset": dataset, "arch": arch, "depth": depth, "rounds_timed": rounds, "scale": scale,
            "engine": resolve_engine(cfg), "images": source, "imgs": imgs,
            "compile_s_single": compile_1, "compile_s_batched": compile_b,
            "single_s_for_rounds": t1, "single_runs": singles, "sec_per_image_extrapolated": t1 * scale,
            "steps_per_s": steps / t1, "batch": batch, "batched_s_for_rounds": tb, "batched_runs": batches,
            "batched_over_single": tb / t1, "batched_sec_per_image_extrapolated": tb * scale / batch}


def main(argv=None):
    args = parse_args(argv)
    from splitnn import backend
    from unsplit_tf.util import configure_threads

    configure_threads(args.threads, 1)  # TensorFlow only
    import numpy as np

    t = time_inversion(args.dataset, args.depth, args.rounds, args.batch, args.repeat, args.engine)
    imgs = t.pop("imgs")
    depth, arch, source = t["depth"], t["arch"], t["images"]
    t1, tb, scale = t["single_s_for_rounds"], t["batched_s_for_rounds"], t["scale"]
    sec_per_image, steps_per_s = t["sec_per_image_extrapolated"], t["steps_per_s"]
    singles, batches = t["single_runs"], t["batched_runs"]
    cfg_iters = (100, 100)
    if backend.is_tensorflow():
        import tensorflow as tf
        version = f"TF {tf.__version__}, intra-op threads {args.threads}"
    else:
        import jax
        version = f"JAX {jax.__version__} on {jax.devices()[0]}"
    name = f"{backend.BACKEND}, engine {t['engine']}"
    res = dict(t, backend=backend.BACKEND, version=version, threads=args.threads,
               tf_single_s_for_rounds=t1, tf_sec_per_image_extrapolated=sec_per_image)
    from unsplit_tf.util import describe_tv

    res["tv"] = describe_tv("code", "code", split_depth=depth)  # the loops above run with the original's 0.1
    print(f"UnSplit inversion speed, {args.dataset} split depth {depth}, faithful schedule 1000 x (100 + 100) "
          f"steps per image; {source}")
    print(res["tv"])
    print(f"machine: {os.cpu_count()} CPU cores (shared; timings are best of {args.repeat}), {version}")
    print(f"compile: {t['compile_s_single']:.1f} s (1 target), {t['compile_s_batched']:.1f} s ({args.batch} targets) "
          f"[excluded]")
    print(f"{name}, 1 image : {args.rounds} rounds in {t1:.3f} s (runs: {', '.join(f'{s:.3f}' for s in singles)})"
          f" -> {steps_per_s:,.0f} steps/s -> {sec_per_image:.1f} s per image (extrapolated x{scale:g})")
    print(f"{name}, {args.batch} images batched: {args.rounds} rounds in {tb:.3f} s (runs: "
          f"{', '.join(f'{s:.3f}' for s in batches)}) -> {tb / t1:.2f}x the time of one image "
          f"({tb * scale / args.batch:.1f} s per image, extrapolated)")
    if backend.is_tensorflow() and not args.no_floor:
        floor_1 = product_floor(arch, 1, tf.float32)
        floor_b = product_floor(arch, args.batch, tf.float32)
        res.update({"floor_products_s_single": floor_1, "floor_products_s_batched": floor_b,
                    "floor_ratio": floor_b / floor_1})
        print(f"arithmetic floor: the first convolution's 4 products alone take {1e6 * floor_1:.1f} us per step "
              f"pair for 1 model and {1e6 * floor_b:.1f} us for {args.batch} -> {floor_b / floor_1:.2f}x: batching "
              f"cannot go below that on this machine (with {args.threads} intra-op thread(s))")
    if not args.no_torch:
        try:
            nchw = np.transpose(imgs[:1], (0, 3, 1, 2)).copy()
            tt, ttimes, tver = torch_reference(arch, depth, nchw, args.torch_rounds, *cfg_iters,
                                               args.torch_threads, max(1, min(args.repeat, 2)))
            t_scale = 1000 / args.torch_rounds
            torch_sec = tt * t_scale
            res.update({"torch_version": tver, "torch_threads": args.torch_threads,
                        "torch_rounds_timed": args.torch_rounds, "torch_s_for_rounds": tt, "torch_runs": ttimes,
                        "torch_steps_per_s": args.torch_rounds * sum(cfg_iters) / tt,
                        "torch_sec_per_image_extrapolated": torch_sec, "speedup_tf_over_torch": torch_sec /
                        sec_per_image})
            print(f"PyTorch {tver} eager reference, {args.torch_threads} thread: {args.torch_rounds} rounds in "
                  f"{tt:.3f} s -> {res['torch_steps_per_s']:,.0f} steps/s -> {torch_sec:.1f} s per image "
                  f"(extrapolated x{t_scale:g})")
            print(f"speedup per image, {name} over PyTorch eager: {torch_sec / sec_per_image:.1f}x "
                  f"(requirement >= 10x); batched {args.batch} vs 1: {tb / t1:.2f}x (requirement < 3x)")
        except ImportError:
            print("PyTorch not installed: reference timing skipped")
    if args.json:
        path = Path(args.json).resolve()
        path.write_text(json.dumps(res, indent=2, default=float))
        print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()

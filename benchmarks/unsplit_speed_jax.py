"""UnSplit inversion speed with the pure-JAX engine: one image against ``--batch`` images inverted at once.

    python benchmarks/unsplit_speed_jax.py [--depth 2] [--rounds 200] [--batch 10] [--repeat 3] [--json PATH]

The JAX counterpart of ``benchmarks/unsplit_speed.py`` (its items 1 and 3), for a machine with JAX but without
TensorFlow (e.g. a GPU machine): neither TensorFlow nor PyTorch is imported, and the engine
(``unsplit_tf/jax_engine.py``) is loaded by file path because ``unsplit_tf/__init__.py`` imports TensorFlow.

Measures the faithful schedule (1000 rounds x (100 input steps + 100 clone steps) per image) on MnistNet (or
CifarNet with ``--dataset cifar``): ``--rounds`` of the 1000 rounds are timed for 1 target and for ``--batch``
targets (each with its own x~, clone copy and Adam states), the per-image time is extrapolated (x 1000 / rounds),
and the ratio batched / single is printed against the requirement (< 3x). Compile time is excluded (ahead-of-time
``lower().compile()``, reported separately); every timing blocks with ``jax.block_until_ready`` and is the best of
``--repeat`` (single and batched runs interleaved, so load changes hit both alike).

Client and clone weights: PyTorch's default initialisation drawn with NumPy (U(-1/sqrt(fan_in), 1/sqrt(fan_in))
for weights and biases; not PyTorch's random stream). Targets: the first test image of each class via
``splitnn.data.load_unsplit`` (NumPy only; ``SPLITNN_DATA_DIR``), else uniform random images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=("mnist", "f_mnist", "cifar"))
    p.add_argument("--depth", type=int, default=2)
    # 200: on the H200 (4 Dec 2026) 50 rounds took 0.3 s for one image and 0.8 s for ten, and the three runs of
    # each spread by 10-30%; 200 rounds give timing windows of about 1 s and 3 s
    p.add_argument("--rounds", type=int, default=200, help="rounds timed (of the 1000 per image)")
    p.add_argument("--batch", type=int, default=10, help="targets in the batched run")
    p.add_argument("--repeat", type=int, default=3, help="timing repetitions (best is reported)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from unsplit_speed import load_images  # the TF benchmark's targets (that module imports TF only in its main)

    from unsplit_tf import jax_engine as je  # TensorFlow-free (the package imports TF modules lazily)

    arch = "cifar" if args.dataset == "cifar" else "mnist"
    depth = je.check_arch_split(arch, args.depth)
    if args.rounds < 1 or args.batch < 1 or args.repeat < 1:
        raise ValueError("--rounds, --batch and --repeat must be >= 1")
    main_iters, input_iters, model_iters = 1000, 100, 100
    lam_tv, lam_l2 = 0.1, 1.0
    rng = np.random.default_rng(0)
    imgs, source = load_images(args.dataset, arch, args.batch, rng)
    images = jnp.asarray(np.transpose(imgs, (0, 3, 1, 2)))  # NCHW

    client = [jnp.asarray(p) for p in je.init_client_params(arch, depth, seed=1)]
    clone = je.init_client_params(arch, depth, seed=2)
    smashed = jax.jit(jax.vmap(lambda x: je.forward(arch, depth, client, x)))(images)

    fn = je.compiled_run(arch, depth, args.rounds, input_iters, model_iters)
    lam = (jnp.float32(lam_tv), jnp.float32(lam_l2))

    def prepare(b):
        params = [jnp.asarray(np.repeat(p[None], b, axis=0)) for p in clone]
        t0 = time.perf_counter()
        compiled = fn.lower(params, smashed[:b], *lam).compile()
        return compiled, params, time.perf_counter() - t0

    run_1, params_1, compile_1 = prepare(1)
    run_b, params_b, compile_b = prepare(args.batch)

    def timed(compiled, params, b):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, smashed[:b], *lam))
        return time.perf_counter() - t0

    singles, batches = [], []
    for _ in range(args.repeat):
        singles.append(timed(run_1, params_1, 1))
        batches.append(timed(run_b, params_b, args.batch))
    t1, tb = min(singles), min(batches)
    scale = main_iters / args.rounds
    steps = args.rounds * (input_iters + model_iters)
    device = jax.devices()[0]
    ratio = tb / t1
    res = {"dataset": args.dataset, "depth": depth, "rounds_timed": args.rounds, "scale": scale,
           "jax_version": jax.__version__, "device": str(device), "platform": device.platform,
           "device_kind": getattr(device, "device_kind", ""), "images": source,
           "compile_s_single": compile_1, "compile_s_batched": compile_b,
           "single_s_for_rounds": t1, "single_runs": singles, "sec_per_image_extrapolated": t1 * scale,
           "steps_per_s": steps / t1, "batch": args.batch, "batched_s_for_rounds": tb, "batched_runs": batches,
           "batched_over_single": ratio, "batched_sec_per_image_extrapolated": tb * scale / args.batch,
           "requirement_met": ratio < 3.0}
    print(f"UnSplit inversion speed (pure JAX engine), {args.dataset} split depth {depth}, faithful schedule "
          f"1000 x (100 + 100) steps per image; {source}")
    print(f"device: {device} ({res['device_kind']}), JAX {jax.__version__}, {os.cpu_count()} CPU cores; "
          f"timings are best of {args.repeat}")
    print(f"compile: {compile_1:.1f} s (1 target), {compile_b:.1f} s ({args.batch} targets) [excluded]")
    print(f"JAX, 1 image : {args.rounds} rounds in {t1:.3f} s (runs: {', '.join(f'{s:.3f}' for s in singles)}) -> "
          f"{steps / t1:,.0f} steps/s -> {t1 * scale:.1f} s per image (extrapolated x{scale:g})")
    print(f"JAX, {args.batch} images batched: {args.rounds} rounds in {tb:.3f} s (runs: "
          f"{', '.join(f'{s:.3f}' for s in batches)}) -> {tb * scale / args.batch:.1f} s per image (extrapolated)")
    print(f"batched {args.batch} vs 1: {ratio:.2f}x the time of one image (requirement < 3x: "
          f"{'met' if ratio < 3.0 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))
    return res


if __name__ == "__main__":
    main()

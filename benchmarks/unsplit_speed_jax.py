"""UnSplit inversion speed on Keras' JAX backend: one image against ``--batch`` images inverted at once.

    python benchmarks/unsplit_speed_jax.py [--depth 2] [--rounds 200] [--batch 10] [--repeat 3] [--json PATH]

The one implementation (``unsplit_tf.attacks``, the same code ``benchmarks/unsplit_speed.py`` times under
TensorFlow) run with ``KERAS_BACKEND=jax`` (set here, before Keras is imported), for a machine with JAX but without
TensorFlow (e.g. a GPU machine): neither TensorFlow nor PyTorch is imported. It is
``KERAS_BACKEND=jax python benchmarks/unsplit_speed.py --no-torch`` with this script's defaults and JSON keys.

Measures the faithful schedule (1000 rounds x (100 input steps + 100 clone steps) per image) on MnistNet (or
CifarNet with ``--dataset cifar``): ``--rounds`` of the 1000 rounds are timed for 1 target and for ``--batch``
targets (each with its own x~, clone copy and Adam states: the clone's forward is ``jax.vmap``-ed over the copies),
the per-image time is extrapolated (x 1000 / rounds), and the ratio batched / single is printed against the
requirement (< 3x). The first call of each size compiles and is timed apart; every timing blocks on the result and
is the best of ``--repeat`` (single and batched runs interleaved, so load changes hit both alike).

Client and clone: MnistNet/CifarNet with PyTorch's default initialisation (seeded Keras initialisers). Targets: the
first test image of each class via ``splitnn.data.load_unsplit`` (NumPy only; ``SPLITNN_DATA_DIR``), else uniform
random images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is not imported here; quiet should anything do so
sys.path.insert(0, str(REPO / "benchmarks"))


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
    os.environ["KERAS_BACKEND"] = "jax"
    import jax

    from splitnn import backend
    if not backend.is_jax():
        raise RuntimeError("Keras was imported with another backend before this benchmark set KERAS_BACKEND=jax")
    from unsplit_speed import time_inversion  # imports TensorFlow only in its TF-only parts

    t = time_inversion(args.dataset, args.depth, args.rounds, args.batch, args.repeat, "auto")
    t.pop("imgs")
    device = jax.devices()[0]
    ratio = t["batched_over_single"]
    res = dict(t, jax_version=jax.__version__, device=str(device), platform=device.platform,
               device_kind=getattr(device, "device_kind", ""), requirement_met=ratio < 3.0)
    t1, tb, scale = t["single_s_for_rounds"], t["batched_s_for_rounds"], t["scale"]
    from unsplit_tf.util import describe_tv

    res["tv"] = describe_tv("code", "code", split_depth=t["depth"])  # time_inversion runs with the original's 0.1
    print(f"UnSplit inversion speed (Keras on JAX, engine {t['engine']}), {args.dataset} split depth {t['depth']}, "
          f"faithful schedule 1000 x (100 + 100) steps per image; {t['images']}")
    print(res["tv"])
    print(f"device: {device} ({res['device_kind']}), JAX {jax.__version__}, {os.cpu_count()} CPU cores; "
          f"timings are best of {args.repeat}")
    print(f"compile: {t['compile_s_single']:.1f} s (1 target), {t['compile_s_batched']:.1f} s ({args.batch} "
          f"targets) [excluded]")
    print(f"JAX, 1 image : {args.rounds} rounds in {t1:.3f} s (runs: "
          f"{', '.join(f'{s:.3f}' for s in t['single_runs'])}) -> {t['steps_per_s']:,.0f} steps/s -> "
          f"{t1 * scale:.1f} s per image (extrapolated x{scale:g})")
    print(f"JAX, {args.batch} images batched: {args.rounds} rounds in {tb:.3f} s (runs: "
          f"{', '.join(f'{s:.3f}' for s in t['batched_runs'])}) -> {tb * scale / args.batch:.1f} s per image "
          f"(extrapolated)")
    print(f"batched {args.batch} vs 1: {ratio:.2f}x the time of one image (requirement < 3x: "
          f"{'met' if ratio < 3.0 else 'NOT met'})")
    if args.json:
        path = Path(args.json).resolve()
        path.write_text(json.dumps(res, indent=2, default=float))
        print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()

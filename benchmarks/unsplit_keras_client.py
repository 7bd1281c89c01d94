"""UnSplit against any Keras client (``unsplit_tf.keras_client``): its speed against the MnistNet engine.

    python benchmarks/unsplit_keras_client.py [--depth 2] [--rounds 20] [--batch 10] [--repeat 3]

Measured in one process, round-robin (so other load hits every variant alike), one intra-op thread, float32,
on MNIST's first test image of each class, with the faithful inner schedule (``--rounds`` rounds of 100 input +
100 clone steps; a full attack is 1000 rounds per image):

1. the MnistNet/CifarNet engine (``unsplit_tf.attacks.model_inversion_stealing``: im2col convolutions in NCHW);
2. the generic path on the same network as a plain Keras model (``splitnet_bottom``), i.e. what any user
   client costs: Keras layers through ``stateless_call``, without XLA (its default) and with;
3. the generic path on ``--batch`` targets at once (one shared clone) against one target;
4. a user-style client (Conv(8, 3) -> BatchNorm -> ReLU -> MaxPool) on one target.

Prints steps per second, seconds per image extrapolated to the full schedule, and the ratios (and, with
``--json PATH``, the absolute path of the JSON file it wrote).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20, help="rounds timed (of the 1000 per image)")
    p.add_argument("--batch", type=int, default=10, help="targets in the batched run")
    p.add_argument("--repeat", type=int, default=3, help="timing repetitions (best is reported)")
    p.add_argument("--threads", type=int, default=1, help="TF intra-op threads")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    from unsplit_tf.util import configure_threads

    threads = args.threads if configure_threads(args.threads, 1) else "TF's existing"  # fixed once TF runs
    import keras

    from splitnn.data import first_index_per_class, load_unsplit
    from splitnn.notebook import machine
    from splitnn.timing import time_round_robin
    from unsplit_tf.attacks import InversionConfig, model_inversion_stealing
    from unsplit_tf.keras_client import model_inversion_stealing_keras, splitnet_bottom
    from unsplit_tf.models import MnistNet, check_split_depth
    from unsplit_tf.util import describe_tv

    depth = check_split_depth("mnist", args.depth)
    data = load_unsplit("mnist")
    images = data.x_test[np.resize(first_index_per_class(data.y_test), args.batch)].astype(np.float32)
    victim = MnistNet(seed=0)
    targets = victim(images, end=depth)
    cfg = InversionConfig(main_iters=args.rounds)  # XLA for the engine, none for the Keras path (the defaults)
    xla = InversionConfig(main_iters=args.rounds, jit_compile=True)
    steps = args.rounds * (cfg.input_iters + cfg.model_iters)

    engine_clone = MnistNet(seed=1)
    keras_clone = splitnet_bottom(MnistNet(seed=2).copy_from(engine_clone), depth)
    keras.utils.set_random_seed(3)
    user_client = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3),
                                    keras.layers.BatchNormalization(), keras.layers.ReLU(),
                                    keras.layers.MaxPooling2D(2)])
    user_target = user_client(images[:1], training=False)
    user_clone = keras.models.clone_model(user_client)
    npy = keras.ops.convert_to_numpy
    runs = {
        "engine, 1 target": lambda: npy(model_inversion_stealing(engine_clone, depth, targets[:1], None, 0.1, 1.0,
                                                                 args.rounds, config=cfg)),
        "keras path, 1 target": lambda: npy(model_inversion_stealing_keras(keras_clone, targets[:1], config=cfg)),
        "keras path, 1 target, XLA": lambda: npy(model_inversion_stealing_keras(keras_clone, targets[:1],
                                                                                config=xla)),
        f"keras path, {args.batch} targets": lambda: npy(model_inversion_stealing_keras(keras_clone, targets,
                                                                                         config=cfg)),
        "user client (Conv-BN-ReLU-Pool), 1 target": lambda: npy(model_inversion_stealing_keras(
            user_clone, user_target, config=cfg)),
    }
    times = time_round_robin(runs, args.repeat, warmup=1)
    best = {name: min(t) for name, t in times.items()}
    print(f"machine: {machine()}; {threads} intra-op thread(s), float32")
    print(f"MnistNet split depth {depth}, {args.rounds} rounds x (100 + 100) steps timed, best of {args.repeat}")
    print(describe_tv(cfg.tv_schedule, cfg.tv_form, cfg.tv_reduction))
    for name, t in best.items():
        print(f"  {name:45s} {t:7.3f} s  {steps / t:9,.0f} steps/s  {t * 1000 / args.rounds:7.1f} s per full call"
              f"  (spread {min(times[name]):.3f}-{max(times[name]):.3f} s)")
    one = best["keras path, 1 target"]
    ratios = {"keras path / engine (1 target)": one / best["engine, 1 target"],
              "keras path with XLA / without": best["keras path, 1 target, XLA"] / one,
              f"{args.batch} targets / 1 target (keras path)": best[f"keras path, {args.batch} targets"] / one}
    for name, r in ratios.items():
        print(f"  {name}: {r:.2f}x")
    if args.json:
        path = Path(args.json).resolve()
        path.write_text(json.dumps({"machine": machine(), "depth": depth, "rounds": args.rounds,
                                    "tv": describe_tv(cfg.tv_schedule, cfg.tv_form, cfg.tv_reduction),
                                    "seconds": times, "best": best, "ratios": ratios}, indent=1))
        print(f"wrote {path}")
    return best, ratios


if __name__ == "__main__":
    main()

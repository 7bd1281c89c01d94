"""Command line: ``python -m covert_mpc.demo <attack> [options]`` [our reconstruction of the paper's mechanisms].

Attacks: ``reconstruct-lr`` (Fig. 2), ``reconstruct-nn`` (Fig. 3), ``covert-nn`` (Fig. 3 with the unit killed
after the copy), ``backdoor``, ``targeted``, ``zero-class``, ``membership``, ``protocol-lr`` (the Fig. 2 attack run
on the real secret-sharing protocol, through an additive error on the output-error wire) and ``all``.
Prints the numbers, writes PNGs under ``--out`` (default ``results/covert_mpc``) and prints their absolute paths.
Bad arguments (an unknown attack, ``k <= f``, a scale that overflows the ring in fixed-point mode) are refused
before any work.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow (unless the user set it)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from splitnn.utils import closest_name  # noqa: E402

ATTACKS = ("reconstruct-lr", "reconstruct-nn", "covert-nn", "backdoor", "targeted", "zero-class", "membership",
           "protocol-lr", "all")
LABEL = "our reconstruction of the paper's mechanism"


def check_attack(name: str) -> str:
    if name in ATTACKS:
        return name
    close = closest_name(name, ATTACKS, cutoff=0.3)
    hint = f"; did you mean {close!r}?" if close else ""
    raise ValueError(f"unknown attack {name!r}{hint} (expected one of {', '.join(ATTACKS)})")


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m covert_mpc.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("attack", help=", ".join(ATTACKS))
    p.add_argument("--n-train", type=int, default=2000, help="MNIST training images (default 2000)")
    p.add_argument("--n-test", type=int, default=1000, help="MNIST test images (default 1000)")
    p.add_argument("--scale", type=float, default=None,
                   help="C for reconstruct-lr / protocol-lr (default 1e6), delta for the NN attacks (default 1e9)")
    p.add_argument("--mechanism", choices=("shift", "scale"), default="shift",
                   help="reconstruct-lr: 'shift' (default: the target's output error shifted by -C, the protocol's "
                        "additive form of gradient scaling) or 'scale' (loss weight C, the plaintext idealisation)")
    p.add_argument("--arithmetic", choices=("ideal", "fixed"), default="ideal")
    p.add_argument("--k", type=int, default=64, help="ring bits (fixed-point mode and protocol)")
    p.add_argument("--f", type=int, default=16, help="fractional bits")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--trials", type=int, default=20, help="targeted misclassification: targets (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/covert_mpc", help="folder for the PNGs")
    args = p.parse_args(argv)
    try:
        args.attack = check_attack(args.attack)
        from covert_mpc.attacks import check_scale
        from covert_mpc.models import TrainConfig

        base = TrainConfig(arithmetic=args.arithmetic, k=args.k, f=args.f, epochs=args.epochs, seed=args.seed)
        if args.scale is not None or args.arithmetic == "fixed":
            names = {"reconstruct-lr": ("C", 1e6), "protocol-lr": ("C", 1e6), "reconstruct-nn": ("delta", 1e9),
                     "covert-nn": ("delta", 1e9)}
            for attack, (what, default) in names.items():
                if args.attack in (attack, "all"):
                    cfg = base if "lr" in attack else base.replace(arch="mlp", hidden=64)
                    if attack == "protocol-lr":
                        cfg = cfg.replace(arithmetic="fixed")
                    check_scale(cfg, args.scale if args.scale is not None else default, what)
    except ValueError as err:
        p.error(str(err))
    args.config = base
    return args


def _fmt(a) -> str:
    return np.array2string(np.asarray(a), formatter={"float_kind": "{:.1e}".format})


def _save_recon(res, path, title):
    from splitnn.plots import image_grid_figure, save_figure

    n = len(res.originals)
    shape = (n, 28, 28)
    fig = image_grid_figure([res.originals.reshape(shape), np.clip(np.nan_to_num(res.reconstructions), 0, 1)
                             .reshape(shape)], titles=["original", "reconstruction"], value_range=(0.0, 1.0),
                            suptitle=f"{title} ({LABEL})")
    return save_figure(fig, path)


def _save_bars(rows, path, title):
    from splitnn.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [r[0] for r in rows]
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [r[1] for r in rows], 0.4, label="honest")
    ax.bar(xs + 0.2, [r[2] for r in rows], 0.4, label="attacked")
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f"{title} ({LABEL})", fontsize=9)
    return save_figure(fig, path)


def run(args) -> list:
    from covert_mpc import attacks, models, protocol
    from covert_mpc.data import mnist

    out = Path(args.out)
    data = mnist(args.n_train, args.n_test)
    cfg = args.config
    mlp = cfg.replace(arch="mlp", hidden=64)
    todo = ATTACKS[:-1] if args.attack == "all" else (args.attack,)
    files = []
    print(f"[{LABEL}] MNIST {args.n_train} train / {args.n_test} test, {cfg.arithmetic} arithmetic"
          + (f" (k={cfg.k}, f={cfg.f})" if cfg.arithmetic == "fixed" else ""))
    for name in todo:
        if name == "reconstruct-lr":
            C = args.scale or 1e6
            r = attacks.reconstruct_lr(data, cfg, C=C, mechanism=args.mechanism)
            print(f"reconstruct-lr  C={C:g} ({args.mechanism}): max pixel error per target {_fmt(r.max_error)}"
                  f"; clean accuracy honest {r.accuracy_honest:.3f}, attacked {r.accuracy_attacked.mean():.3f}")
            files.append(_save_recon(r, out / "fig2_lr_reconstruction.png", f"softmax regression, C={C:g}"))
        elif name in ("reconstruct-nn", "covert-nn"):
            delta = args.scale or 1e9
            kill = 1e13 if name == "covert-nn" else None
            r = attacks.reconstruct_nn(data, mlp, delta=delta, kill=kill)
            print(f"{name}  delta={delta:g}{'' if kill is None else f', kill={kill:g}'}: max pixel error per target "
                  f"{_fmt(r.max_error)} (units {r.units.tolist()}, all inactive: "
                  f"{not r.unit_was_active.any()}); clean accuracy honest {r.accuracy_honest:.3f}, attacked "
                  f"{r.accuracy_attacked.mean():.3f}")
            files.append(_save_recon(r, out / f"fig3_{name.replace('-', '_')}.png",
                                     f"MLP-64, one hidden unit, delta={delta:g}"))
        elif name == "backdoor":
            r = attacks.backdoor(data, cfg)
            print(f"backdoor: success {r.success_rate:.3f} (honest model {r.success_rate_honest:.3f}); clean accuracy "
                  f"honest {r.clean_accuracy_honest:.3f}, attacked {r.clean_accuracy_attacked:.3f}")
            files.append(_save_bars([("clean acc.", r.clean_accuracy_honest, r.clean_accuracy_attacked),
                                     ("trigger -> target", r.success_rate_honest, r.success_rate)],
                                    out / "backdoor.png", "backdoor by gradient shifting"))
        elif name == "targeted":
            r = attacks.targeted_misclassification(data, cfg, n_trials=args.trials, c=3e-3)
            print(f"targeted: {int(r.flipped.sum())} of {len(r.flipped)} targets flipped; others' accuracy honest "
                  f"{r.others_accuracy_honest:.3f}, attacked {r.others_accuracy_attacked.mean():.3f}")
            files.append(_save_bars([("others' acc.", r.others_accuracy_honest, r.others_accuracy_attacked.mean()),
                                     ("targets flipped", 0.0, r.success_rate)], out / "targeted.png",
                                    "targeted misclassification"))
        elif name == "zero-class":
            r = attacks.zero_class(data, cfg)
            print(f"zero-class {r.cls}: class accuracy honest {r.class_accuracy_honest:.3f}, attacked "
                  f"{r.class_accuracy_attacked:.3f}; others honest {r.others_accuracy_honest:.3f}, attacked "
                  f"{r.others_accuracy_attacked:.3f}")
            files.append(_save_bars([(f"class {r.cls}", r.class_accuracy_honest, r.class_accuracy_attacked),
                                     ("other classes", r.others_accuracy_honest, r.others_accuracy_attacked)],
                                    out / "zero_class.png", "class zeroing"))
        elif name == "membership":
            small = data.subset(500, 1000)
            r = attacks.membership_boost(small, mlp.replace(epochs=max(cfg.epochs, 20)), C=5.0)
            print(f"membership: loss-threshold AUC honest {r.auc_honest:.3f}, attacked {r.auc_attacked:.3f}; "
                  f"accuracy honest {r.accuracy_honest:.3f}, attacked {r.accuracy_attacked:.3f}")
            files.append(_save_bars([("accuracy", r.accuracy_honest, r.accuracy_attacked),
                                     ("MI AUC", r.auc_honest, r.auc_attacked)], out / "membership.png",
                                    "membership-inference boost"))
        elif name == "protocol-lr":
            C = args.scale or 1e6
            pcfg = models.TrainConfig(arch="lr", k=cfg.k, f=cfg.f, epochs=1, batch_size=50)
            small = data.subset(200, args.n_test)
            batches = models.schedule(200, 50, 1, cfg.seed)
            i = int(batches[-1][0])
            yi = int(small.y_train[i])
            dev = [attacks.error("output_error", -C, steps=len(batches) - 1, examples=i, units=yi)]
            run_ = protocol.train_secure(small.x_train, small.y_train, pcfg, dev, batches=batches)
            rec = run_.params["W"][:, yi] / run_.params["b"][yi]
            err = float(np.max(np.abs(rec - small.x_train[i])))
            print(f"protocol-lr (real 2-party protocol, k={cfg.k}, f={cfg.f}, 200 images, 1 epoch) C={C:g}: max "
                  f"pixel error {err:.2e}; adversary's share changes: {run_.adversary_log}")
            res = attacks.ReconstructionResult(small.x_train[[i]], rec[None], small.y_train[[i]], np.array([i]),
                                               np.array([err]), float("nan"), np.array([float("nan")]), C, "fixed")
            files.append(_save_recon(res, out / "protocol_lr.png", "real protocol, output-error wire"))
    return files


def main(argv=None) -> int:
    start = time.time()
    args = parse(argv)
    files = run(args)
    for f in files:
        print(Path(f).resolve())
    print(f"total {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""UnSplit against its golden trajectories (``tests/golden/unsplit.json``), on every Keras backend.

The JSON was recorded by ``tests/golden/record_unsplit.py`` from the TensorFlow implementation before the Keras 3
rewrite (issue #20): fixed NumPy weights, targets and images; MnistNet split at depth 2, 2 targets, 3 rounds of 5 + 5
steps (batched: a clone copy per target; faithful: one clone carried), the step-0 gradients of both losses, and one
label inference. The rewrite must reproduce it on both backends and with both clone forwards ('fast' im2col, TF only;
'generic' Keras layers). Every number is compared relative to its scale (a digest's sum relative to its L2 norm).

Tolerances (largest relative error measured on a 2-core CPU, December 2026, in brackets):
* float64, 1e-9 on both backends (TensorFlow 'fast' 1.5e-15, 'generic' 2.9e-16; JAX with ``jax_enable_x64``, in a
  child process since the flag is global, 1.4e-15);
* float32, 1e-5 on both backends (TensorFlow 'fast' 2.4e-7, 'generic' 1.4e-6; JAX 'generic', i.e. cross-backend,
  1.8e-6): float32 rounding differences, amplified by Adam's normalised steps along the trajectory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))

import record_unsplit as rec  # noqa: E402  (the golden setup: weights, images, digests)

pytestmark = pytest.mark.backend

GOLDEN = json.loads((Path(__file__).resolve().parent / "golden" / "unsplit.json").read_text())
TOL = {("tensorflow", "float64"): 1e-9, ("tensorflow", "float32"): 1e-5, ("jax", "float32"): 1e-5,
       ("jax", "float64"): 1e-9}


def compute(dtype, engine="auto"):
    """The golden record's quantities, from the implementation under test."""
    from keras import ops

    from unsplit_tf import attacks
    from unsplit_tf.models import build_model, label_split_index

    cfg = attacks.InversionConfig(engine=engine)
    client = rec.set_fixed_weights(build_model("mnist", dtype=dtype), seed=1)
    clone = rec.set_fixed_weights(build_model("mnist", dtype=dtype), seed=2)
    images = rec.fixed_images(dtype)
    targets = ops.convert_to_numpy(client(images, end=rec.SPLIT))
    out = {"targets": rec.digest(targets)}

    li, gx, lc, gp = attacks.initial_gradients(clone, rec.SPLIT, targets, 0.1, 1.0, cfg)
    gx, gp = ops.convert_to_numpy(gx), [ops.convert_to_numpy(g) for g in gp]
    out["grads0"] = {"input_loss": float(li), "clone_loss": float(lc), "x": [rec.digest(g) for g in gx],
                     "params": [[rec.digest(g[b]) for g in gp] for b in range(len(targets))]}

    rounds = []
    for k in range(1, rec.ITERS["main_iters"] + 1):
        x_hat, params = attacks.model_inversion_stealing_batched(
            clone, rec.SPLIT, targets, 0.1, 1.0, k, rec.ITERS["input_iters"], rec.ITERS["model_iters"], config=cfg)
        x_hat, params = ops.convert_to_numpy(x_hat), [ops.convert_to_numpy(p) for p in params]
        rounds.append({"losses": rec.losses_numpy(clone, x_hat, params, targets),
                       "x": [rec.digest(x_hat[b]) for b in range(len(targets))],
                       "params": [[rec.digest(p[b]) for p in params] for b in range(len(targets))]})
    out["batched"] = rounds

    start = clone.get_param_values()
    faithful = []
    for b in range(len(targets)):
        x_b = attacks.model_inversion_stealing(clone, rec.SPLIT, targets[b:b + 1], None, 0.1, 1.0, **rec.ITERS,
                                               config=cfg)
        faithful.append({"x": rec.digest(ops.convert_to_numpy(x_b)),
                         "params": [rec.digest(ops.convert_to_numpy(w)) for w in clone.client_weights(rec.SPLIT)]})
    clone.set_param_values(start)
    out["faithful"] = faithful

    s = label_split_index("mnist", 1)
    victim = rec.set_fixed_weights(build_model("mnist", dtype=dtype), seed=3)
    attacker = rec.set_fixed_weights(build_model("mnist", dtype=dtype), seed=4)
    from unsplit_tf.keras_client import observed_gradients

    h = ops.convert_to_numpy(victim(images[:1], end=s))
    head_grad = observed_gradients(_head(victim, s), h, [7])[0]
    label, scores = attacks.label_inference(attacker, h, head_grad, s)
    out["label"] = {"label": int(label), "scores": [float(v) for v in scores], "h": rec.digest(h),
                    "observed": rec.digest(head_grad)}
    return out


def _head(net, s):
    """MnistNet's layers s+1..end as a Keras model sharing the variables (the label owner's part)."""
    import keras

    inp = keras.Input((84,), dtype=net.dtype)
    y = inp
    for i in range(s + 1, net.last_index + 1):
        y = net.flat_layers[i](y)
    return keras.Model(inp, y)


def _pairs(new, old):
    """(new, old, scale) for every recorded number: a digest's sum on the scale max(|sum|, norm) (a sum near 0 on
    the norm's), its norm on its own, other numbers on their own (label scores on the largest score)."""
    out = []
    g, r = new["grads0"], old["grads0"]
    out.append((g["input_loss"], sum(t["input_loss"] for t in r), None))
    out.append((g["clone_loss"], sum(t["clone_loss"] for t in r), None))
    digests = [(d, t["x"]) for d, t in zip(g["x"], r)]
    digests += [(d, e) for b, t in enumerate(r) for d, e in zip(g["params"][b], t["params"])]
    for rn, ro in zip(new["batched"], old["batched"]):
        out += [(a, b, None) for la, lb in zip(rn["losses"], ro["losses"]) for a, b in zip(la, lb)]
        digests += list(zip(rn["x"], ro["x"]))
        digests += [(d, e) for pa, pb in zip(rn["params"], ro["params"]) for d, e in zip(pa, pb)]
    for fn, fo in zip(new["faithful"], old["faithful"]):
        digests += [(fn["x"], fo["x"])] + list(zip(fn["params"], fo["params"]))
    digests += [(new["targets"], old["targets"]), (new["label"]["h"], old["label"]["h"]),
                (new["label"]["observed"], old["label"]["observed"])]
    for d, e in digests:
        out += [(d[0], e[0], max(abs(e[0]), e[1])), (d[1], e[1], e[1])]
    top = max(abs(v) for v in old["label"]["scores"])
    out += [(a, b, top) for a, b in zip(new["label"]["scores"], old["label"]["scores"])]
    return out


def max_error(new, old):
    """Largest |new - old| / scale over everything recorded, and whether the chosen labels agree."""
    errors = [abs(a - b) / (abs(b) if s is None else s) for a, b, s in _pairs(new, old)]
    return max(errors), new["label"]["label"] == old["label"]["label"]


def _engines():
    from splitnn import backend
    return ["fast", "generic"] if backend.is_tensorflow() else ["generic"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unsplit_reproduces_the_golden_trajectories(dtype):
    from splitnn import backend
    if dtype == "float64" and not backend.float64_enabled():
        pytest.skip("float64 under JAX needs jax_enable_x64: see test_jax_float64_in_a_child_process")
    tol = TOL[(backend.BACKEND, dtype)]
    for engine in _engines():
        err, same_label = max_error(compute(dtype, engine), GOLDEN[dtype])
        assert same_label, engine
        assert err <= tol, f"{backend.BACKEND} {dtype} engine={engine}: max relative error {err:.3g} > {tol:g}"


def test_jax_float64_in_a_child_process(tmp_path):
    """JAX with x64 (a process of its own: the flag is global): the float64 golden to 1e-9."""
    from jaxrun import run_keras_jax

    from splitnn import backend
    if backend.is_jax():
        pytest.skip("the child process is started once, from the TensorFlow run of the suite")

    out = run_keras_jax(f"""
        import jax
        jax.config.update("jax_enable_x64", True)
        import sys, json
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        import test_unsplit_golden as t
        err, same = t.max_error(t.compute("float64", "generic"), t.GOLDEN["float64"])
        print(json.dumps([err, same]))
        """, tmp_path)
    err, same = json.loads(out.strip().splitlines()[-1])
    assert same and err <= TOL[("jax", "float64")], err

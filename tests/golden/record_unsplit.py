"""Record UnSplit's golden trajectories: ``python tests/golden/record_unsplit.py`` writes ``tests/golden/unsplit.json``.

Recorded once from the TensorFlow implementation as it was before the Keras 3 rewrite (issue #20), so that the
rewrite (``tests/test_unsplit_golden.py``) can be checked against it on every backend. Nothing depends on an
initialiser stream: every weight comes from ``np.random.default_rng``, the targets from a client with such
weights, the images from the same generator. The inversion itself has no randomness (x~ starts at 0.5).

Recorded, for MnistNet split at depth 2 (float32 and float64):

* ``batched``: ``model_inversion_stealing_batched`` on 2 targets, ``main_iters`` = 1, 2, 3 (a run of k rounds is
  the first k rounds of a longer one): per round the two losses of each target (input phase: MSE + 0.1 TV +
  mean(x~^2); clone phase: MSE, at the state after the round) and digests (sum, L2 norm) of x~ and of every
  clone parameter of each target;
* ``faithful``: ``model_inversion_stealing`` on the 2 targets in turn, one clone carried (digests after each);
* ``grads0``: digests of the gradients of both losses at the start (x~ = 0.5, clone = its initial weights);
* ``label``: ``label_inference`` (last-layer weight observed, MnistNet depth 1): per-candidate scores and label.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SPLIT = 2
ITERS = {"main_iters": 3, "input_iters": 5, "model_iters": 5}


# ------------------------------------------------------------ the setup, shared with tests/test_unsplit_golden.py
def digest(a):
    """(sum, L2 norm) in float64: layout-independent (a Keras kernel and its PyTorch transpose agree)."""
    a = np.asarray(a, dtype=np.float64)
    return [float(a.sum()), float(np.sqrt((a * a).sum()))]


def fixed_images(dtype, n=2):
    return np.random.default_rng(0).uniform(0.0, 1.0, (n, 28, 28, 1)).astype(dtype)


def set_fixed_weights(model, seed):
    """Every variable from ``default_rng(seed)``: kernels glorot-scaled normals, biases 0.1-scaled normals."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if len(shape) > 1:
            fan_in, fan_out = int(np.prod(shape[:-1])), int(shape[-1])
            if len(shape) == 4:
                fan_in, fan_out = int(np.prod(shape[:-1])), int(shape[-1] * shape[0] * shape[1])
            value = rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))
        else:
            value = 0.1 * rng.standard_normal(shape)
        w.assign(value.astype(w.dtype))
    return model


def losses_numpy(clone, x_hat, params, targets, lambda_tv=0.1, lambda_l2=1.0):
    """Per target: [input-phase loss, clone-phase loss] at (x~, that target's clone parameters), in float64."""
    import keras

    weights = clone.client_weights(SPLIT)
    saved = [keras.ops.convert_to_numpy(w) for w in weights]
    out = []
    for b in range(len(targets)):
        for w, p in zip(weights, params):
            w.assign(p[b])
        y = keras.ops.convert_to_numpy(clone(x_hat[b:b + 1], end=SPLIT)).astype(np.float64)
        x = np.asarray(x_hat[b], np.float64)
        mse = float(np.mean((y - np.asarray(targets[b:b + 1], np.float64)) ** 2))
        h, w_, c = x.shape
        tv = (np.sum((x[1:] - x[:-1]) ** 2) / (c * (h - 1) * w_) + np.sum((x[:, 1:] - x[:, :-1]) ** 2)
              / (c * h * (w_ - 1)))
        out.append([mse + lambda_tv * tv + lambda_l2 * float(np.mean(x * x)), mse])
    for w, v in zip(weights, saved):
        w.assign(v)
    return out


def record(dtype):
    import tensorflow as tf

    from unsplit_tf.attacks import label_inference, model_inversion_stealing, model_inversion_stealing_batched
    from unsplit_tf.models import build_model, label_split_index
    from unsplit_tf.util import l2loss_per_sample, tv_code_per_sample

    client = set_fixed_weights(build_model("mnist", dtype=dtype), seed=1)
    clone = set_fixed_weights(build_model("mnist", dtype=dtype), seed=2)
    images = fixed_images(dtype)
    targets = client(tf.constant(images), end=SPLIT).numpy()
    out = {"targets": digest(targets)}

    # step-0 gradients of both losses, by a tape on the Keras clone (independent of the engine's layout)
    x0 = tf.fill(images.shape, tf.constant(0.5, dtype))
    cvars = clone.client_weights(SPLIT)
    per_target = []
    for b in range(len(targets)):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x0)
            xb = x0[b:b + 1]
            y = clone(xb, end=SPLIT)
            mse = tf.reduce_mean((y - targets[b:b + 1]) ** 2)
            input_loss = mse + 0.1 * tv_code_per_sample(xb)[0] + 1.0 * l2loss_per_sample(xb)[0]
        gx = tape.gradient(input_loss, x0)[b]
        gp = tape.gradient(mse, cvars)
        per_target.append({"input_loss": float(input_loss), "clone_loss": float(mse), "x": digest(gx.numpy()),
                           "params": [digest(g.numpy()) for g in gp]})
    out["grads0"] = per_target

    rounds = []
    for k in range(1, ITERS["main_iters"] + 1):
        x_hat, params = model_inversion_stealing_batched(clone, SPLIT, targets, 0.1, 1.0, k, ITERS["input_iters"],
                                                         ITERS["model_iters"])
        x_hat = x_hat.numpy()
        params = [p.numpy() for p in params]
        rounds.append({"losses": losses_numpy(clone, x_hat, params, targets),
                       "x": [digest(x_hat[b]) for b in range(len(targets))],
                       "params": [[digest(p[b]) for p in params] for b in range(len(targets))]})
    out["batched"] = rounds

    start = clone.get_param_values()
    faithful = []
    for b in range(len(targets)):
        x_b = model_inversion_stealing(clone, SPLIT, targets[b:b + 1], None, 0.1, 1.0, **ITERS).numpy()
        faithful.append({"x": digest(x_b), "params": [digest(w.numpy()) for w in clone.client_weights(SPLIT)]})
    clone.set_param_values(start)
    out["faithful"] = faithful

    # label inference: server output of a fixed sample, the client's observed last-layer gradient
    s = label_split_index("mnist", 1)
    victim = set_fixed_weights(build_model("mnist", dtype=dtype), seed=3)
    attacker = set_fixed_weights(build_model("mnist", dtype=dtype), seed=4)
    h = victim(tf.constant(images[:1]), end=s)
    w = victim.layer_weights(victim.last_index)[0]
    with tf.GradientTape() as tape:
        logits = victim(h, start=s + 1)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.constant([7]), logits=logits))
    g = tape.gradient(loss, w)
    label, scores = label_inference(attacker, h, g.numpy(), s)
    out["label"] = {"true": 7, "label": int(label), "scores": [float(v) for v in scores], "h": digest(h.numpy()),
                    "observed": digest(g.numpy())}
    return out


def main():
    result = {"about": "UnSplit golden trajectories recorded from the TensorFlow implementation before the Keras 3 "
                       "rewrite (tests/golden/record_unsplit.py)", "iters": ITERS, "split": SPLIT}
    for dtype in ("float32", "float64"):
        result[dtype] = record(dtype)
    path = Path(__file__).resolve().parent / "unsplit.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

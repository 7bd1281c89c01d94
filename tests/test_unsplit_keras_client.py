"""UnSplit against a user's Keras client (``unsplit_tf/keras_client.py``).

The compiled loop over an arbitrary ``keras.Model`` is checked against (1) the MnistNet/CifarNet engine, which is
itself cross-checked against PyTorch, on a Keras model built from MnistNet's layers, and (2) a slow, obviously
correct eager loop for the shared-clone batches the engine has no counterpart for.
"""
import numpy as np
import pytest

import keras
from available_data import needs
from keras import ops
from splitnn import backend
from unsplit_tf import attacks
from unsplit_tf.attacks import InversionConfig
from unsplit_tf.keras_client import (fresh_clone, invert_keras_client, label_inference_keras,
                                     model_inversion_stealing_keras, observed_gradients, observed_indices,
                                     splitnet_bottom, stolen_model_accuracy)
from unsplit_tf.models import MnistNet
from unsplit_tf.optim import TorchAdam
from unsplit_tf.util import l2loss_per_sample, tv_code_per_sample

SHORT = InversionConfig(main_iters=3, input_iters=5, model_iters=5, jit_compile=False)
backend_sensitive = pytest.mark.backend  # also run under KERAS_BACKEND=jax
# "float64" is float32 under JAX without jax_enable_x64: float32 rounding between differently ordered sums
F64_ATOL = 1e-12 if backend.float64_enabled() else 1e-6
# ... and between the engine's vmapped per-target forward and the Keras path, amplified along 30 Adam steps
FOLLOW_ATOL = 1e-12 if backend.float64_enabled() else 5e-3


def npy(x):
    return np.asarray(ops.convert_to_numpy(x))


def small_client(seed=0, dtype="float32", bn=True):
    """A user-style client: Conv -> [BN] -> ReLU -> MaxPool -> Conv."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((12, 12, 1), dtype=dtype), keras.layers.Conv2D(4, 3, dtype=dtype)]
    if bn:
        layers.append(keras.layers.BatchNormalization(dtype=dtype))
    layers += [keras.layers.ReLU(dtype=dtype), keras.layers.MaxPooling2D(2, dtype=dtype),
               keras.layers.Conv2D(3, 2, dtype=dtype)]
    return keras.Sequential(layers)


@backend_sensitive
@pytest.mark.parametrize("depth,jit", [(2, False), (6, False), (4, True)])
def test_keras_client_follows_the_mnistnet_engine(depth, jit):
    """Same weights, targets and schedule: x~ and the stolen weights equal the MnistNet engine's (float64)."""
    victim = MnistNet(seed=1, dtype="float64")
    engine_clone = MnistNet(seed=2, dtype="float64")
    keras_side = MnistNet(seed=3, dtype="float64").copy_from(engine_clone)
    start = [npy(w) for w in engine_clone.client_weights(depth)]
    img = np.random.default_rng(depth).uniform(size=(1, 28, 28, 1))
    target = victim(img, end=depth)
    cfg = InversionConfig(main_iters=3, input_iters=5, model_iters=5, jit_compile=jit)
    x_engine = attacks.model_inversion_stealing(engine_clone, depth, target, None, 0.1, 1.0, 3, 5, 5, config=cfg)
    x_keras = model_inversion_stealing_keras(splitnet_bottom(keras_side, depth), target, lambda_tv=0.1, config=cfg)
    np.testing.assert_allclose(npy(x_keras), npy(x_engine), atol=FOLLOW_ATOL, rtol=0)
    for a, b, s in zip(engine_clone.client_weights(depth), keras_side.client_weights(depth), start):
        np.testing.assert_allclose(npy(b), npy(a), atol=FOLLOW_ATOL, rtol=0)
        assert np.max(np.abs(npy(a) - s)) > 1e-4  # the clone did move: the comparison is not vacuous


def eager_reference(clone, targets, cfg, lam_tv, x0=0.5):
    """UnSplit step by step in Python: fresh AMSGrad Adams, input phase on the summed per-target objectives,
    clone phase on the mean MSE over targets, clone in inference mode."""
    targets = ops.convert_to_tensor(targets)
    n = int(targets.shape[0])
    x = keras.Variable(ops.full((n,) + tuple(clone.input_shape[1:]), x0, targets.dtype))
    opt_x, opt_clone = TorchAdam(lr=cfg.lr), TorchAdam(lr=cfg.lr)
    fixed = backend.variable_values(clone.non_trainable_variables)

    def mse(params, xb, b):
        y = clone.stateless_call(params, fixed, xb, training=False)[0]
        return ops.sum((y - targets[b:b + 1]) ** 2) / float(np.prod(y.shape))

    def input_loss(p, params):
        loss = 0.0
        for b in range(n):
            xb = p[0][b:b + 1]
            loss += (mse(params, xb, b) + lam_tv * tv_code_per_sample(xb)[0]
                     + cfg.lambda_l2 * l2loss_per_sample(xb)[0])
        return loss, None

    def clone_loss(params, xv):
        return sum(mse(params, xv[b:b + 1], b) for b in range(n)) / n, None

    for _ in range(cfg.main_iters):
        for _ in range(cfg.input_iters):
            params = backend.variable_values(clone.trainable_variables)
            opt_x.step(backend.value_and_grad(input_loss, [x.value], params)[2], [x])
        for _ in range(cfg.model_iters):
            grads = backend.value_and_grad(clone_loss, backend.variable_values(clone.trainable_variables),
                                           x.value)[2]
            opt_clone.step(grads, clone.trainable_variables)
    return npy(x)


@backend_sensitive
def test_shared_clone_batch_equals_the_eager_reference():
    """Two targets, one clone (with BatchNorm in inference mode): the compiled loop equals the eager loop."""
    victim = small_client(seed=1, dtype="float64")
    imgs = np.random.default_rng(0).uniform(size=(2, 12, 12, 1))
    targets = victim(imgs, training=False)
    cfg = InversionConfig(main_iters=2, input_iters=3, model_iters=3, jit_compile=False)
    ours, ref = small_client(seed=2, dtype="float64"), small_client(seed=2, dtype="float64")
    stats = [npy(v) for v in ours.non_trainable_variables]
    x_ours = npy(model_inversion_stealing_keras(ours, targets, lambda_tv=0.1, config=cfg))
    x_ref = eager_reference(ref, targets, cfg, 0.1)
    np.testing.assert_allclose(x_ours, x_ref, atol=F64_ATOL, rtol=0)
    for a, b in zip(ours.trainable_variables, ref.trainable_variables):
        np.testing.assert_allclose(npy(a), npy(b), atol=F64_ATOL, rtol=0)
    for v, s in zip(ours.non_trainable_variables, stats):
        np.testing.assert_array_equal(npy(v), s)  # moving statistics untouched in inference mode


@backend_sensitive
def test_batch_with_a_fixed_clone_equals_each_target_alone():
    victim = small_client(seed=1, dtype="float64", bn=False)
    clone = small_client(seed=2, dtype="float64", bn=False)
    targets = victim(np.random.default_rng(1).uniform(size=(3, 12, 12, 1)))
    cfg = InversionConfig(main_iters=2, input_iters=4, model_iters=0, jit_compile=False)
    together = npy(model_inversion_stealing_keras(clone, targets, config=cfg))
    for b in range(3):
        alone = npy(model_inversion_stealing_keras(clone, targets[b:b + 1], config=cfg))
        np.testing.assert_allclose(together[b:b + 1], alone, atol=1e-13, rtol=0)


@backend_sensitive
def test_invert_keras_client_carries_or_restores_the_clone():
    victim = small_client(seed=1, dtype="float64", bn=False)
    imgs = np.random.default_rng(2).uniform(size=(2, 12, 12, 1))
    carried = invert_keras_client(victim, imgs, clone=small_client(seed=3, dtype="float64", bn=False), config=SHORT)
    fresh = invert_keras_client(victim, imgs, clone=small_client(seed=3, dtype="float64", bn=False), config=SHORT,
                                clone_reuse="fresh")
    alone = invert_keras_client(victim, imgs[1:], clone=small_client(seed=3, dtype="float64", bn=False),
                                config=SHORT)
    np.testing.assert_allclose(carried.x_hat[:1], fresh.x_hat[:1], atol=1e-13)  # same first call
    np.testing.assert_allclose(fresh.x_hat[1:], alone.x_hat, atol=1e-13)  # 'fresh' restarts from the start clone
    assert np.max(np.abs(carried.x_hat[1:] - alone.x_hat)) > 1e-6  # 'carry' starts from the stolen clone
    np.testing.assert_allclose(carried.mse, np.mean((carried.x_hat - imgs) ** 2, axis=(1, 2, 3)), rtol=1e-12)


@backend_sensitive
def test_training_mode_uses_batch_statistics_and_changes_no_model():
    victim = small_client(seed=1)
    clone = small_client(seed=2)
    imgs = np.random.default_rng(3).uniform(size=(3, 12, 12, 1)).astype(np.float32)
    before = [npy(v) for v in victim.non_trainable_variables + clone.non_trainable_variables]
    cfg = InversionConfig(main_iters=2, input_iters=3, model_iters=3, jit_compile=False)
    train = invert_keras_client(victim, imgs, clone=clone, config=cfg, batch_size=3, training=True)
    after = [npy(v) for v in victim.non_trainable_variables + clone.non_trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    infer = invert_keras_client(victim, imgs, clone=small_client(seed=2), config=cfg, batch_size=3)
    assert np.max(np.abs(train.x_hat - infer.x_hat)) > 1e-4  # batch statistics did change the objective


@needs("mnist")
def test_attack_on_a_user_client_reconstructs_mnist_digits():
    """A small user client (Conv-BN-ReLU) on 4 MNIST digits, 40 x (20 + 20) steps: the reconstructions beat the
    data-free baselines on the same digits. Measured (seed 0): MSE 0.029-0.093 per image (0.064 mean) against
    0.039-0.166 (0.101) for an all-black image and 0.23 for the attack's grey start; Pearson correlation with the
    own digit 0.84-0.96 against 0.40-0.68 for the mean training digit, and each reconstruction correlates best with
    its own digit. (On MSE the mean digit, 0.067, is about as close as the attack: UnSplit's MNIST reconstructions
    have the digits' shapes at the wrong grey levels, so the mean digit is compared on correlation. With a
    max-pooling layer after the ReLU, this budget gave 0.53-0.83, not clearly above the mean digit.)"""
    from splitnn.data import load_unsplit
    raw = load_unsplit("mnist")
    imgs = raw.x_test[:4].astype(np.float32)  # [0, 1], 28x28x1
    keras.utils.set_random_seed(0)
    client = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
                               keras.layers.ReLU()])
    cfg = InversionConfig(main_iters=40, input_iters=20, model_iters=20)
    result = invert_keras_client(client, imgs, config=cfg, seed=1)
    assert result.clone is not client and result.batch_size == 1
    x = imgs.astype(np.float64)
    black_mse = np.mean(x ** 2, axis=(1, 2, 3))
    grey_mse = np.mean((x - 0.5) ** 2, axis=(1, 2, 3))
    assert result.mean_mse < 0.08, result.mse  # absolute bound
    assert np.all(result.mse < 0.85 * black_mse), (result.mse, black_mse)
    assert result.mean_mse < 0.75 * np.mean(black_mse) and result.mean_mse < 0.4 * np.mean(grey_mse)

    def unit(a):
        a = np.asarray(a, np.float64).reshape(len(a), -1)
        a = a - a.mean(axis=1, keepdims=True)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    corr = unit(result.x_hat) @ unit(x).T
    mean_digit_corr = (unit(raw.x_train.astype(np.float64).mean(axis=0)[None]) @ unit(x).T)[0]
    assert np.all(np.diag(corr) > 0.75), np.diag(corr)
    assert np.all(np.diag(corr) > mean_digit_corr + 0.1), (np.diag(corr), mean_digit_corr)
    assert list(np.argmax(corr, axis=1)) == [0, 1, 2, 3]


def test_stolen_model_accuracy_counts_argmax_hits():
    clone = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    clone.set_weights([np.eye(2)])
    server = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    server.set_weights([np.array([[0.0, 1.0], [1.0, 0.0]])])  # swaps the two logits
    x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    # predictions: 1, 0, 1, 0
    assert stolen_model_accuracy(clone, server, x, [1, 0, 0, 1]) == 50.0
    assert stolen_model_accuracy(clone, server, x, [1, 0, 1, 0], batch_size=3) == 100.0


@backend_sensitive
def test_cached_loops_do_not_keep_models_alive():
    """The compiled loops and label scorers are cached per model; a model nobody else holds is freed."""
    import gc
    import weakref
    clone = small_client(seed=2, bn=False)
    target = small_client(seed=1, bn=False)(np.zeros((1, 12, 12, 1), np.float32))
    model_inversion_stealing_keras(clone, target, config=SHORT)
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    label_inference_keras(head, np.ones((1, 4), np.float32), np.zeros((4, 3), np.float32))
    net = MnistNet(seed=4)  # the MnistNet/CifarNet label scorer is cached the same way
    attacks.label_inference(net, np.ones((1, 84), np.float32), np.zeros((84, 10), np.float32), 9)
    refs = [weakref.ref(clone), weakref.ref(head), weakref.ref(net)]
    del clone, head, net
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_fresh_clone_has_the_architecture_and_new_weights():
    client = small_client(seed=0)
    clone = fresh_clone(client, seed=5)
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in client.weights]
    assert not np.allclose(npy(clone.weights[0]), npy(client.weights[0]))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(2, 3)

    def call(self, x):
        return self.conv(x)


@backend_sensitive
def test_bad_inputs_are_rejected_clearly():
    client = small_client(seed=0, bn=False)
    targets = client(np.zeros((1, 12, 12, 1), np.float32))
    with pytest.raises(TypeError, match="keras.Model"):
        model_inversion_stealing_keras(lambda x: x, targets)
    with pytest.raises(ValueError, match=r"output shape per sample is \(4, 4, 3\).*\(5, 5, 3\)"):
        model_inversion_stealing_keras(client, np.zeros((1, 5, 5, 3)))
    with pytest.raises(ValueError, match="B >= 1"):
        model_inversion_stealing_keras(client, np.zeros((0, 4, 4, 3)))
    with pytest.raises(ValueError, match="split_depth= or lambda_tv="):
        model_inversion_stealing_keras(client, targets, config=InversionConfig(tv_schedule="paper"))
    dense = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="lambda_tv=0"):
        model_inversion_stealing_keras(dense, np.zeros((1, 3)))
    frozen = small_client(seed=0, bn=False)
    frozen.trainable = False
    with pytest.raises(ValueError, match="no trainable weights"):
        model_inversion_stealing_keras(frozen, targets)
    sub = Subclassed()
    with pytest.raises(ValueError, match="input_shape="):
        model_inversion_stealing_keras(sub, np.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="images must be a non-empty batch"):
        invert_keras_client(client, np.zeros((2, 10, 10, 1)))
    with pytest.raises(ValueError, match="batch_size"):
        invert_keras_client(client, np.zeros((2, 12, 12, 1)), batch_size=0)
    with pytest.raises(ValueError, match="clone_reuse"):
        invert_keras_client(client, np.zeros((2, 12, 12, 1)), clone_reuse="never")


def test_subclassed_models_work_as_client_and_clone():
    keras.utils.set_random_seed(0)
    client, clone = Subclassed(), Subclassed()  # never called before: built by the attack
    imgs = np.random.default_rng(4).uniform(size=(2, 6, 6, 1)).astype(np.float32)
    result = invert_keras_client(client, imgs, clone=clone, config=SHORT)
    assert result.x_hat.shape == imgs.shape and np.all(np.isfinite(result.x_hat))
    with pytest.raises(ValueError, match="cannot clone|no defined input shape"):
        invert_keras_client(Subclassed(), imgs, config=SHORT)  # no clone=: clone_model needs a config


@backend_sensitive
def test_non_image_clients_invert_without_tv():
    keras.utils.set_random_seed(0)
    client = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).uniform(size=(2, 6)).astype(np.float32)
    cfg = InversionConfig(main_iters=2, input_iters=5, model_iters=5, jit_compile=False)
    result = invert_keras_client(client, x, config=cfg, lambda_tv=0, seed=1)
    assert result.x_hat.shape == (2, 6) and np.all(np.isfinite(result.x_hat))
    assert not np.allclose(result.x_hat, 0.5)  # x~ moved from its start


# ------------------------------------------------------------------------------------------- label inference
@backend_sensitive
def test_keras_label_inference_equals_the_mnistnet_path():
    """MnistNet's client-depth-1 head (fc3) as a plain Keras Dense: same observed gradient, scores and label."""
    owner, clone = MnistNet(seed=1), MnistNet(seed=2)
    server_end = 9
    owner_head = keras.Sequential([keras.Input((84,)), keras.layers.Dense(10)])
    clone_head = keras.Sequential([keras.Input((84,)), keras.layers.Dense(10)])
    owner_head.set_weights([npy(w) for w in owner.layer_weights(10)])
    clone_head.set_weights([npy(w) for w in clone.layer_weights(10)])
    h = np.maximum(np.random.default_rng(12).standard_normal((1, 84)), 0).astype(np.float32)
    kernel = owner.layer_weights(10)[0]

    def loss(values, h, label):
        with keras.StatelessScope(state_mapping=[(kernel, values[0])]):
            return attacks.cross_entropy(owner(h, start=server_end + 1), np.asarray([label], np.int32)), None
    for label in (0, 3, 9):
        expected = npy(backend.value_and_grad(loss, [kernel.value], h, label)[2][0])
        (observed,) = observed_gradients(owner_head, h, [label])
        np.testing.assert_allclose(observed, expected, atol=1e-7)
        ours, our_scores = label_inference_keras(clone_head, h, observed)
        ref, ref_scores = attacks.label_inference(clone, h, expected, server_end)
        assert ours == ref == label
        np.testing.assert_allclose(our_scores, ref_scores, rtol=1e-5, atol=1e-12)


def test_keras_label_inference_finds_the_labels_of_a_user_head():
    """A user head on non-negative server outputs. One Dense (the original's client depth 1): the last-layer
    weight gradient gives every label (paper §4.3). Dense-ReLU-Dense: the clone's hidden activations differ from
    the owner's, so the sign argument holds only mostly (seen: 29 of 30). The per-label loop equals the
    vectorised pass."""
    def head(*hidden):
        return keras.Sequential([keras.Input((16,))] + [keras.layers.Dense(u, activation="relu") for u in hidden]
                                + [keras.layers.Dense(7)])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 30)
    hs = rng.uniform(size=(30, 1, 16)).astype(np.float32)
    keras.utils.set_random_seed(0)
    for hidden, least in (((), 30), ((32,), 24)):
        owner_head, clone_head = head(*hidden), head(*hidden)
        hits = 0
        for i, (h, y) in enumerate(zip(hs, labels)):
            grads = observed_gradients(owner_head, h, [y])
            label, scores = label_inference_keras(clone_head, h, grads)
            hits += label == y
            if i < 3:
                loop_label, loop_scores = label_inference_keras(clone_head, h, grads, vectorized=False)
                assert loop_label == label
                np.testing.assert_allclose(loop_scores, scores, rtol=1e-5, atol=1e-12)
        assert hits >= least, (hidden, hits)
    assert observed_indices(owner_head) == [2]  # the second Dense's kernel
    assert observed_indices(owner_head, "all_client_params") == [0, 1, 2, 3]


@backend_sensitive
def test_keras_label_inference_rejects_bad_inputs():
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    h = np.ones((1, 4), np.float32)
    with pytest.raises(ValueError, match="observed 'bias' unknown"):
        observed_indices(head, "bias")
    with pytest.raises(ValueError, match=r"positions must be in 0..1"):
        observed_indices(head, [2])
    with pytest.raises(ValueError, match="does not match the clone's variable"):
        label_inference_keras(head, h, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="1 observed gradients expected"):
        label_inference_keras(head, h, [np.zeros((4, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match="1 server outputs but 2 labels"):
        observed_gradients(head, h, [0, 1])


@needs("mnist")
def test_speed_benchmark_reports_every_variant(tmp_path):
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "unsplit_keras_client.py"
    spec = importlib.util.spec_from_file_location("unsplit_keras_client_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speed.json"
    best, ratios = bench.main(["--rounds", "1", "--repeat", "1", "--batch", "2", "--json", str(out)])
    assert len(best) == 5 and all(t > 0 for t in best.values())
    assert set(ratios) == {"keras path / engine (1 target)", "keras path with XLA / without",
                           "2 targets / 1 target (keras path)"}
    assert json.loads(out.read_text())["ratios"] == ratios

"""He, Zhang and Lee's attacks (ACSAC 2019) against a split-learning client: white-box rMLE, black-box inverse
network, query-free shadow model (:mod:`unsplit_tf.he_attacks`). Small budgets: CPU CI, 2 cores."""
import keras
import numpy as np
import pytest
from available_data import needs
from keras import ops

from splitnn import backend
from splitnn.data import first_index_per_class, load_unsplit
from splitnn.metrics import trivial_baselines
from unsplit_tf import he_attacks as he
from unsplit_tf.attacks import InversionConfig, invert_images
from unsplit_tf.models import build_model
from unsplit_tf.training import train_split

N_TARGETS = 4  # the first-of-class MNIST test images of classes 0-3


@pytest.fixture(scope="module")
def mnist():
    return load_unsplit("mnist")


@pytest.fixture(scope="module")
def trained(mnist):
    """A MnistNet split at depth 1, briefly trained (200 batches of 64 from the first 30,000 training images;
    the query-free aux data below comes from images 50,000+, never used here)."""
    client, server = build_model("mnist", seed=0), build_model("mnist", seed=5)
    train_split(client, server, mnist.x_train[:30000], mnist.y_train[:30000], 1, epochs=1, max_batches=200,
                seed=0, printer=None)
    return client, server


def targets(mnist, n=N_TARGETS):
    return mnist.x_test[first_index_per_class(mnist.y_test)[:n]]


# ------------------------------------------------------------------------------------------- 1. white box
@needs("mnist")
@pytest.mark.backend
def test_white_box_with_true_weights_beats_unsplit_and_the_black_image(mnist, trained):
    """Same budget, 500 x~ steps each: rMLE (the attacker has the client's weights) against UnSplit (5 rounds of
    100 x~ + 100 clone steps, which must steal the weights). TV weight 0.1 for rMLE: He et al.'s default 1.0
    (tuned for LeNet's ReLU2) over-smooths at depth 1 (measured mean MSE 0.031 at convergence, 2000 or 5000
    iterations, against 0.008 at 0.1)."""
    client, _ = trained
    imgs = targets(mnist)
    wb = he.white_box_inversion(client, imgs, 1, he.HeConfig(iters=500, lambda_tv=0.1))
    us = invert_images(client, build_model("mnist", seed=1), imgs, 1,
                       InversionConfig(main_iters=5, input_iters=100, model_iters=100), batched=True)
    black = trivial_baselines(imgs, mnist.x_train.mean(axis=0))["black"]
    # measured (TF, 2-core CPU): rMLE mean 0.0169, UnSplit 0.0425, black image 0.120 (per image 0.039-0.166)
    assert wb.method == "white_box" and wb.split_depth == 1 and wb.x_hat.shape == imgs.shape
    assert wb.mean_mse < 0.5 * us.mean_mse, (wb.mse, us.mse)
    assert np.all(wb.mse < black), (wb.mse, black)
    np.testing.assert_array_equal(wb.x_eval, wb.x_hat)  # MNIST: no post-processing, as UnSplit


# ------------------------------------------------------------------------------------------- 2. black box
@needs("mnist")
def test_black_box_error_falls_with_the_number_of_queries(mnist):
    """He et al.'s training policy (``trainDecoderDNN``): a fixed number of epochs over the query set (here 1
    epoch of batch 32, so 3 steps for 100 queries and 156 for 5,000), the same default decoder (depth 2: 12x12x8
    -> 28x28x1) and seed for both; queries from the training split, targets the first 200 test images. (With the
    same number of steps for both, 200-600 steps gave no measurable difference at this scale: the decoder is
    still underfitting 100 queries there.)"""
    client = build_model("mnist", seed=0)  # untrained, seeded
    imgs = mnist.x_test[:200]
    mse = {}
    for q in (100, 5000):
        inv = he.train_inverse_network(client, mnist.x_train[:q], 2, epochs=1, seed=0)
        assert inv.queries == q and inv.steps == q // 32 and len(inv.losses) == 1
        res = he.black_box_inversion(inv, client, imgs, 2)
        assert res.info["queries"] == q
        mse[q] = res.mean_mse
    # measured (TF): 100 queries 0.222, 5,000 queries 0.0179
    assert mse[5000] < 0.5 * mse[100], mse


# ------------------------------------------------------------------------------------------- 3. query free
@needs("mnist")
def test_query_free_shadow_learns_through_the_frozen_server_top(mnist, trained):
    client, server = trained
    before = [np.array(ops.convert_to_numpy(w)) for w in server.weights]
    imgs = targets(mnist)
    smashed = np.asarray(ops.convert_to_numpy(client(imgs, end=1)))
    aux = slice(50000, 53200)  # held out of the victim's training data above
    res = he.query_free_inversion(server, mnist.x_train[aux], mnist.y_train[aux], imgs, smashed, 1,
                                  shadow_steps=150, heldout=(mnist.x_test[:1000], mnist.y_test[:1000]), seed=0)
    # measured (TF): 89.5% on the aux data, 89.7% held out (chance 10%); inversion mean MSE 0.046
    assert res.info["shadow_steps"] == 150
    assert res.info["shadow_accuracy_aux"] >= 75.0, res.info
    assert res.info["shadow_accuracy_heldout"] >= 75.0, res.info
    for w, b in zip(server.weights, before):  # the server top is frozen
        np.testing.assert_array_equal(np.asarray(ops.convert_to_numpy(w)), b)
    assert res.method == "query_free" and res.mse.shape == (N_TARGETS,)
    black = trivial_baselines(imgs, mnist.x_train.mean(axis=0))["black"]
    assert res.mean_mse < np.mean(black), (res.mse, black)


# ------------------------------------------------------------------------------------------- 4. validation
@pytest.mark.backend
def test_bad_split_depths_shapes_and_options_fail_early(monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("validation must come before any training")
    monkeypatch.setattr(he, "_train_epochs", no_training)
    monkeypatch.setattr(he, "_rmle", no_training)
    net = build_model("mnist", seed=0)
    good = np.zeros((2, 28, 28, 1), np.float32)
    bad = np.zeros((2, 32, 32, 3), np.float32)
    labels = np.zeros(2, np.int64)
    smashed = np.zeros((2, 24, 24, 8), np.float32)
    inv = he.InverseNetwork(he.default_decoder((24, 24, 8), (28, 28, 1)), 2, [], 0, (24, 24, 8), (28, 28, 1),
                            np.float32(0.5), np.float32(0.5), 1)
    calls = {
        "white_box": lambda x, d: he.white_box_inversion(net, x, d),
        "train_inverse": lambda x, d: he.train_inverse_network(net, x, d),
        "black_box": lambda x, d: he.black_box_inversion(inv, net, x, d),
        "query_free": lambda x, d: he.query_free_inversion(net, good, labels, x, smashed, d),
    }
    for name, call in calls.items():
        for depth in (10, -1, 1.5, None):
            with pytest.raises(ValueError, match="split depth|split_depth"):
                call(good, depth)
        with pytest.raises(ValueError, match=r"must be a non-empty batch \[N, 28, 28, 1\]"):
            call(bad, 1)
        with pytest.raises(ValueError, match=r"\[N, 28, 28, 1\]"):
            call(good[0], 1)
    with pytest.raises(ValueError, match="aux_images must be"):
        he.query_free_inversion(net, bad, labels, good, smashed, 1)
    with pytest.raises(ValueError, match="per-sample shape"):
        he.query_free_inversion(net, good, labels, good, np.zeros((2, 12, 12, 8), np.float32), 1)
    with pytest.raises(ValueError, match="another split depth"):
        he.black_box_inversion(inv, net, good, 2)
    bottom = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="split_depth=None"):
        he.white_box_inversion(bottom, good, 1)
    with pytest.raises(ValueError, match="unknown HeConfig option"):
        he.he_config(lamda_tv=1.0)
    with pytest.raises(ValueError, match="unknown HeConfig option"):
        he.HeConfig.from_dict({"iter": 5})
    with pytest.raises(ValueError, match="iters must be a non-negative integer"):
        he.HeConfig(iters=-1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        he.HeConfig(lr=0.0)
    with pytest.raises(ValueError, match="lambda_tv must be a non-negative"):
        he.HeConfig(lambda_tv=-1.0)


# ------------------------------------------------------------------------------------------- 5. hand check
def _tv_and_grad(z):
    """He et al.'s TV (``utils.py``, ``TV``) of one image [H, W, C] and its gradient, by hand."""
    h, w, c = z.shape
    dh, dw = z[1:] - z[:-1], z[:, 1:] - z[:, :-1]
    nh, nw = c * (h - 1) * w, c * h * (w - 1)
    g = np.zeros_like(z)
    g[1:] += 2 * dh / nh
    g[:-1] -= 2 * dh / nh
    g[:, 1:] += 2 * dw / nw
    g[:, :-1] -= 2 * dw / nw
    return (dh ** 2).sum() / nh + (dw ** 2).sum() / nw, g


@pytest.mark.backend
def test_compiled_white_box_steps_equal_hand_adam_steps_on_the_hand_loss():
    """Two compiled steps on two images against two by-hand steps: feature MSE through a linear client, TV and l2
    on z = (x - 0.5) / 0.5 with their gradients written out, PyTorch's AMSGrad Adam with eps 1e-3."""
    rng = np.random.default_rng(0)
    shape, f = (4, 5, 1), 3
    backend.set_seed(0)
    client = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(f)])
    kern = rng.normal(size=(20, f)).astype(np.float32)
    bias = rng.normal(size=f).astype(np.float32)
    client.layers[-1].set_weights([kern, bias])
    images = rng.uniform(size=(2,) + shape).astype(np.float32)
    x0 = rng.uniform(size=(2,) + shape).astype(np.float32)
    cfg = he.HeConfig(iters=2, lr=0.05, lambda_tv=0.7, lambda_l2=0.3)
    res = he.white_box_inversion(client, images, None, cfg, x0=x0)

    k, b = kern.astype(np.float64), bias.astype(np.float64)
    for i in range(2):
        target = images[i].reshape(-1) @ k + b
        z = (x0[i].astype(np.float64) - 0.5) / 0.5
        m, v, vmax = np.zeros_like(z), np.zeros_like(z), np.zeros_like(z)
        for t in (1, 2):
            feats = (0.5 + 0.5 * z).reshape(-1) @ k + b
            _, g_tv = _tv_and_grad(z)
            g = (0.5 * (2.0 / f) * (k @ (feats - target))).reshape(shape) + 0.7 * g_tv + 0.3 * 2 * z / z.size
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            vmax = np.maximum(vmax, v)
            z = z - 0.05 / (1 - 0.9 ** t) * m / (np.sqrt(vmax) / np.sqrt(1 - 0.999 ** t) + 1e-3)
        np.testing.assert_allclose(res.x_hat[i], 0.5 + 0.5 * z, rtol=0, atol=2e-5)
        feat_loss = np.mean(((0.5 + 0.5 * z).reshape(-1) @ k + b - target) ** 2)
        np.testing.assert_allclose(res.info["feature_loss"][i], feat_loss, rtol=1e-4)
    np.testing.assert_allclose(res.mse, np.mean((res.x_hat.astype(np.float64) - images) ** 2, axis=(1, 2, 3)),
                               rtol=1e-6)


def test_steps_caps_the_epoch_budget_and_never_extends_it():
    from unsplit_tf.he_attacks import _train_epochs

    calls = []

    def step(*batch):
        calls.append(len(batch[0]))
        return 0.0

    rng = np.random.default_rng(0)
    x = np.zeros((100, 2), np.float32)
    # 100 samples, batch 32: 3 steps per epoch; 2 epochs = 6 steps; steps=50 must not extend that, steps=4 cuts it
    assert _train_epochs(step, x, [x], 100, 32, 2, 50, None, rng)[1] == 6
    assert _train_epochs(step, x, [x], 100, 32, 2, 4, None, rng)[1] == 4
    assert _train_epochs(step, x, [x], 100, 32, 2, None, None, rng)[1] == 6

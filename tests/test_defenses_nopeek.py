"""NoPeek split learning (defenses/nopeek.py), on both Keras backends (Keras' own fit/evaluate steps)."""

import types

import keras
import numpy as np
import pytest
from available_data import unavailable

from defenses import distance_correlation
from defenses.nopeek import (NoPeekSplitModel, TradeoffResult, check_split_compatible,
                             format_table, heldout_dcor, mnist_client, mnist_server,
                             tradeoff_study, validate_alpha)

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def mnist_small():
    from splitnn.data import load_unsplit
    reason = unavailable("mnist")
    if reason:
        pytest.skip(reason)
    data = load_unsplit("mnist")
    return (data.x_train[:512], data.y_train[:512], data.x_test[:256], data.y_test[:256])


def _tiny_client():
    return mnist_client(filters=(8, 16))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), -1e-9])
def test_bad_alpha_value_raises(bad):
    client = _tiny_client()
    server = mnist_server(client.output_shape[1:])
    with pytest.raises(ValueError, match=r"alpha1 must be a finite real number >= 0.*got"):
        NoPeekSplitModel(client, server, alpha1=bad)


@pytest.mark.parametrize("bad", ["1.0", None, True, [1.0]])
def test_bad_alpha_type_raises(bad):
    with pytest.raises(TypeError, match="alpha1 must be a finite real number"):
        validate_alpha(bad)


def test_validate_alpha_accepts_numbers():
    assert validate_alpha(0) == 0.0
    assert validate_alpha(np.float32(2.5)) == 2.5
    assert isinstance(validate_alpha(np.int64(3)), float)
    with pytest.raises(ValueError, match=r"alphas\[1\]"):
        tradeoff_study(alphas=[0.0, -2.0])   # raised before any data is loaded


def test_server_must_accept_client_output():
    client = _tiny_client()                                   # smashed 7x7x16
    wrong = mnist_server((7, 7, 8))
    with pytest.raises(ValueError, match=r"server expects .*\(7, 7, 8\).*\(7, 7, 16\)"):
        NoPeekSplitModel(client, wrong, alpha1=1.0)
    dense_server = keras.Sequential([keras.layers.Dense(10)])  # no Input: traced symbolically
    flat_client = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(12)])
    NoPeekSplitModel(flat_client, dense_server, alpha1=1.0)    # accepts any last dim: fine
    rank_server = keras.Sequential([keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"server does not accept .*\(12,\)"):
        check_split_compatible(flat_client, rank_server)
    with pytest.raises(TypeError, match="client must be a keras"):
        NoPeekSplitModel(lambda x: x, dense_server, alpha1=1.0)


def test_bad_options_raise():
    client = _tiny_client()
    server = mnist_server(client.output_shape[1:])
    with pytest.raises(ValueError, match="dcor_form"):
        NoPeekSplitModel(client, server, 1.0, dcor_form="squared")
    with pytest.raises(ValueError, match="eps"):
        NoPeekSplitModel(client, server, 1.0, eps=-1e-7)
    model = NoPeekSplitModel(client, server, 1.0)
    with pytest.raises(ValueError, match="compiled metrics"):
        model.compile(optimizer="adam", metrics=["accuracy"])


class _SubclassedClient(keras.Model):
    """A user-supplied client with no keras.Input (its output shape is known only when built)."""

    def __init__(self):
        super().__init__(name="user_client")
        self.conv = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")

    def call(self, x, training=False):
        return self.conv(x)


def test_user_supplied_client_trains_and_reports(mnist_small):
    x, y, xt, yt = mnist_small
    keras.utils.set_random_seed(1)
    server = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
    model = NoPeekSplitModel(_SubclassedClient(), server, alpha1=0.5)
    assert model.smashed_shape is None                          # deferred until built
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    hist = model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert model.smashed_shape == (None, 14, 14, 6)
    logs = {k: v[-1] for k, v in hist.history.items()}
    assert set(logs) == {"loss", "task_loss", "dcor", "accuracy"}
    assert all(np.isfinite(v) for v in logs.values())
    # epoch means are linear: loss = alpha1 * dcor + task_loss
    assert abs(logs["loss"] - (0.5 * logs["dcor"] + logs["task_loss"])) < 1e-4
    assert 0.0 < logs["dcor"] <= 1.0
    ev = model.evaluate(xt[:128], yt[:128], batch_size=64, verbose=0, return_dict=True)
    assert set(ev) == {"loss", "task_loss", "dcor", "accuracy"}
    # evaluation dcor is the mean of per-batch dCor(x, client(x))
    direct = np.mean([float(distance_correlation(xt[i:i + 64], model.client(xt[i:i + 64])))
                      for i in (0, 64)])
    assert abs(ev["dcor"] - direct) < 1e-5
    assert model.predict(xt[:8], verbose=0).shape == (8, 10)
    # a wrong server for this client is reported when the model is built
    bad = NoPeekSplitModel(_SubclassedClient(), mnist_server((7, 7, 6)), alpha1=0.5)
    with pytest.raises(ValueError, match=r"\(14, 14, 6\)"):
        bad(xt[:2])


def test_one_hot_labels_log_form_and_xla(mnist_small):
    x, y, _, _ = mnist_small
    keras.utils.set_random_seed(2)
    client = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(16, activation="relu")])
    server = keras.Sequential([keras.Input((16,)), keras.layers.Dense(10, activation="softmax")])
    model = NoPeekSplitModel(client, server, alpha1=1.0, dcor_form="log")
    model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    assert model.jit_compile is True
    hist = model.fit(x[:128], keras.utils.to_categorical(y[:128], 10), epochs=1, batch_size=64,
                     verbose=0)
    logs = {k: v[-1] for k, v in hist.history.items()}
    assert 0.0 <= logs["accuracy"] <= 1.0
    assert logs["loss"] < logs["task_loss"]      # log dCor < 0 is what is penalised here


def _fixed_batch_nets():
    """A tiny client and server on 8x8 images, and one fixed batch (16 images, 3 classes)."""
    keras.utils.set_random_seed(3)
    client = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="tanh"),
                               keras.layers.Conv2D(2, 3, strides=2, padding="same")])
    server = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 16).astype(np.int64)
    return client, server, x, y


def _one_sgd_step(client, server, start, alpha1, x, y, lr):
    """``(loss reported for the batch, client weights, server weights)`` after one plain-SGD NoPeek step from
    ``start``."""
    client.set_weights(start[0])
    server.set_weights(start[1])
    model = NoPeekSplitModel(client, server, alpha1=alpha1)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    logs = model.train_on_batch(x, y, return_dict=True)
    return logs, [w.astype(np.float64) for w in client.get_weights()], server.get_weights()


def test_one_step_descends_ce_plus_alpha_dcor_on_a_fixed_batch():
    """The NoPeek objective, checked on one batch with plain SGD (the update is then -lr * gradient):

    * the reported loss is CE + alpha1 * dCor(x, client(x)), both computed here by hand;
    * alpha1 = 0 is plain split learning: the same step as ``keras.Sequential([client, server])`` trained on CE;
    * the dCor term moves the client only, linearly in alpha1, and along -grad dCor with the right size: the
      client's extra step d = w(alpha1) - w(0) = -lr * alpha1 * grad dCor, so the derivative of dCor along d,
      measured by finite differences, is -|d|^2 / (lr * alpha1)."""
    client, server, x, y = _fixed_batch_nets()
    start = (client.get_weights(), server.get_weights())
    lr = 0.1
    logits = np.asarray(server.predict(client.predict(x, verbose=0), verbose=0), np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    ce = float(np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]))
    dcor0 = float(distance_correlation(x, client.predict(x, verbose=0)))

    logs0, c0, s0 = _one_sgd_step(client, server, start, 0.0, x, y, lr)
    logs1, c1, s1 = _one_sgd_step(client, server, start, 1.0, x, y, lr)
    _, c2, s2 = _one_sgd_step(client, server, start, 2.0, x, y, lr)
    np.testing.assert_allclose([logs1["task_loss"], logs1["dcor"], logs1["loss"]], [ce, dcor0, ce + dcor0],
                               rtol=1e-5)
    np.testing.assert_allclose(logs0["loss"], ce, rtol=1e-5)

    # alpha1 = 0: Keras' own training of the composed model on the same loss
    client.set_weights(start[0])
    server.set_weights(start[1])
    plain = keras.Sequential([client, server])
    plain.compile(optimizer=keras.optimizers.SGD(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    plain.train_on_batch(x, y)
    for got, want in zip(c0 + s0, client.get_weights() + server.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

    for a, b in zip(s1 + s2, s0 + s0):  # dCor does not depend on the server
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    d1 = [a - b for a, b in zip(c1, c0)]
    d2 = [a - b for a, b in zip(c2, c0)]
    norm2 = sum(float(np.sum(d * d)) for d in d1)
    assert norm2 > 1e-6
    for a, b in zip(d2, d1):
        np.testing.assert_allclose(a, 2 * b, rtol=1e-3, atol=1e-6)

    def dcor_at(weights):
        client.set_weights([w.astype(np.float32) for w in weights])
        return float(distance_correlation(x, client.predict(x, verbose=0)))

    w = [v.astype(np.float64) for v in start[0]]  # the gradient of the step is taken at the start
    h = 0.25
    slope = (dcor_at([a + h * d for a, d in zip(w, d1)]) - dcor_at([a - h * d for a, d in zip(w, d1)])) / (2 * h)
    np.testing.assert_allclose(slope, -norm2 / lr, rtol=0.02)


def _train(alpha1, data, seed=0):
    x, y, _, _ = data
    keras.utils.set_random_seed(seed)
    client = _tiny_client()
    server = mnist_server(client.output_shape[1:], hidden=32)
    model = NoPeekSplitModel(client, server, alpha1=alpha1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0, shuffle=True)
    return model


def test_alpha_lowers_dcor_of_trained_client(mnist_small):
    x, y, xt, yt = mnist_small
    plain = _train(0.0, mnist_small)
    defended = _train(30.0, mnist_small)      # same seed: same init and batch order
    d_plain = heldout_dcor(plain.client, xt, batch_size=64)
    d_defended = heldout_dcor(defended.client, xt, batch_size=64)
    # 24 steps: about 0.965 -> 0.89 (seed 0); 0.80 with seed 1
    assert d_defended < d_plain - 0.03, (d_plain, d_defended)


def test_tradeoff_study_small_run():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(320, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    data = types.SimpleNamespace(x_train=x[:192], y_train=y[:192], x_test=x[192:], y_test=y[192:])

    def client_fn(shape):
        return keras.Sequential([keras.Input(shape), keras.layers.Conv2D(4, 3, padding="same",
                                                                         activation="relu")])

    results = tradeoff_study(alphas=[0.0, 2.0], data=data, epochs=1, decoder_epochs=1,
                             batch_size=32, dcor_batch_size=32, client_fn=client_fn,
                             server_fn=lambda s: mnist_server(s, num_classes=2, hidden=8),
                             n_examples=3)
    assert [r.alpha1 for r in results] == [0.0, 2.0]
    for r in results:
        assert isinstance(r, TradeoffResult)
        for v in (r.accuracy, r.dcor, r.inversion_mse, r.baseline_mse, r.train_dcor):
            assert np.isfinite(v)
        assert 0 <= r.accuracy <= 1 and 0 < r.dcor <= 1 and r.dcor_batch_size == 32
        assert r.reconstructions.shape == (3, 8, 8, 1) == r.originals.shape
        # the test split's second half is the evaluation set; the baseline answers the public half's mean image
        x_pub, x_eval = data.x_test[:64].astype(np.float64), data.x_test[64:].astype(np.float64)
        np.testing.assert_array_equal(r.originals, data.x_test[64:67])
        assert r.baseline_mse == pytest.approx(float(((x_eval - x_pub.mean(0)) ** 2).mean()), rel=1e-12)
    table = format_table(results)
    assert "alpha1" in table and len(table.splitlines()) == 4

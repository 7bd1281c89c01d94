"""covert_mpc: the real protocol with a corrupt party 1 against the plaintext Keras simulation of the same deviation.

Tolerances (measured, TensorFlow float64, 6 steps on synthetic 8x8 data): the protocol equals the plaintext
fixed-point mode bit for bit (0 units in the last place; the test allows 1 ulp of 2^-16 for a softmax rounded the
other way); it equals ideal float64 arithmetic to max|diff| / (1 + max|theta|) <= 1e-2 (rounding to 2^-16 of
every wire; measured up to 5.5e-3, with the comparison offset b -> b + 3, which multiplies the rounding errors).
Under JAX without x64 (float32) the fixed-point comparison uses the ideal tolerance.
"""
import numpy as np
import pytest

from covert_mpc import data, models, plaintext, protocol
from covert_mpc.deviations import beaver_shift, error, flip_relu, gradient_shift, offset_relu
from splitnn import backend

pytestmark = pytest.mark.backend

F64 = backend.float64_enabled()
DATA = data.synthetic(n_train=60, n_test=10, side=8, seed=0)


def _deviations(config):
    rng = np.random.default_rng(1)
    first = config.param_names[0]
    shape = models.dims(config, DATA.d)["shapes"][first]
    devs = {
        "honest": [],
        "wire_logits": [error("logits", 2.0, steps=1, units=3)],
        "wire_output_error": [error("output_error", 5.0, steps=[2, 3], examples=list(range(0, 60, 3)), units=1)],
        "beaver_shift": [beaver_shift(3.0, steps=[1, 4], units=[5, 20])],
        "gradient_shift": [gradient_shift(first, 0.05 * rng.normal(size=shape), steps=2)],
    }
    if config.arch == "mlp":
        devs.update({"wire_hidden": [error("hidden", 1.5, steps=1, units=2)],
                     "relu_flip": [flip_relu(steps=[0, 2], units=[0, 1, 2])],
                     "relu_offset": [offset_relu(3, steps=[1, 4], units=[4])]})
    return devs


def _cases():
    for arch in ("lr", "mlp"):
        cfg = models.TrainConfig(arch=arch, hidden=8, batch_size=20, epochs=2, lr=0.5)
        for name in _deviations(cfg):
            yield pytest.param(cfg, name, id=f"{arch}-{name}")


def _maxdiff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.parametrize("config,name", list(_cases()))
def test_protocol_equals_plaintext_with_the_modelled_deviation(config, name):
    devs = _deviations(config)[name]
    secure = protocol.train_secure(DATA.x_train, DATA.y_train, config, devs)
    fixed = plaintext.train(DATA.x_train, DATA.y_train, config.replace(arithmetic="fixed"), devs)
    ideal = plaintext.train(DATA.x_train, DATA.y_train, config, devs)
    scale = 1.0 + max(float(np.max(np.abs(v))) for v in secure.params.values())
    if F64:
        assert _maxdiff(secure.params, fixed.params) <= 2.0 ** -16
    else:
        assert _maxdiff(secure.params, fixed.params) / scale <= 1e-2
    assert _maxdiff(secure.params, ideal.params) / scale <= 1e-2
    if name != "honest":   # the deviation does change the model (the comparison is not vacuous)
        honest = protocol.train_secure(DATA.x_train, DATA.y_train, config)
        assert _maxdiff(secure.params, honest.params) > 1e-3
    if name == "honest":
        assert secure.adversary_log == []
    else:
        assert secure.adversary_log


def test_honest_head_gradient_is_keras_cross_entropy_gradient():
    """The custom-gradient head (what the deviations act on) is ordinary SGD on the mean cross-entropy when
    honest: one step equals keras' categorical cross-entropy gradient step."""
    import keras

    cfg = models.TrainConfig(arch="mlp", hidden=8, batch_size=20, epochs=1, lr=0.3)
    params = models.init_params(cfg, DATA.d)
    rows = np.arange(20)
    got = plaintext.train(DATA.x_train, DATA.y_train, cfg, params=params, batches=[rows]).params
    dt = plaintext.default_dtype()
    names = cfg.param_names
    vals = [keras.ops.convert_to_tensor(params[n], dtype=dt) for n in names]
    x = keras.ops.convert_to_tensor(DATA.x_train[rows], dtype=dt)
    y = keras.ops.convert_to_tensor(np.eye(10)[DATA.y_train[rows]], dtype=dt)

    def loss(v):
        p = dict(zip(names, v))
        z = keras.ops.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        return keras.ops.mean(keras.losses.categorical_crossentropy(y, z, from_logits=True)), None
    _, _, grads = backend.value_and_grad(loss, vals)
    want = {n: params[n] - 0.3 * backend.to_numpy(g) for n, g in zip(names, grads)}
    assert _maxdiff(got, want) <= (1e-12 if F64 else 1e-5)

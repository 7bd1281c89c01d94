"""FSHA_dc: the attack against a client applying the distance-correlation defense."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from defenses import distance_correlation
from fsha.FSHA_distcor import FSHA_dc

B = 32
HP = {"WGAN": True, "gradient_penalty": 500.0, "lr_f": 1e-2, "lr_tilde": 1e-3, "lr_D": 1e-3,
      "alpha1": 100.0, "alpha2": 0.0}


def tiny_networks(seed=0):
    keras.utils.set_random_seed(seed)
    conv = lambda k, s, act=None: keras.layers.Conv2D(k, 3, strides=s, padding="same", activation=act)  # noqa: E731
    client = keras.Sequential([keras.Input((16, 16, 3)), conv(8, 2, "relu"), conv(4, 2)])
    pilot = keras.Sequential([keras.Input((16, 16, 3)), conv(8, 2), conv(4, 2)])
    decoder = keras.Sequential([keras.Input((4, 4, 4)),
                                keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same"),
                                keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh")])
    disc = keras.Sequential([keras.Input((4, 4, 4)), conv(8, 1, "relu"), keras.layers.Flatten(),
                             keras.layers.Dense(1)])
    return dict(client=client, pilot=pilot, decoder=decoder, discriminator=disc)


def streams(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (B, 16, 16, 3)).astype(np.float32)
    y = np.zeros(B, np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return x, ds, ds


@pytest.mark.parametrize("drop", ["alpha1", "alpha2"])
def test_missing_alpha_is_a_clear_error(drop):
    _, xpriv, xpub = streams()
    hp = {k: v for k, v in HP.items() if k != drop}
    with pytest.raises(ValueError, match=f"missing: \\['{drop}'\\]"):
        FSHA_dc(xpriv, xpub, 3, B, hp, **tiny_networks())


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "10", None])
def test_invalid_alpha_rejected(bad):
    _, xpriv, xpub = streams()
    with pytest.raises(ValueError, match="alpha1"):
        FSHA_dc(xpriv, xpub, 3, B, dict(HP, alpha1=bad), **tiny_networks())


def test_bad_update_scheme():
    _, xpriv, xpub = streams()
    with pytest.raises(ValueError, match="two_steps"):
        FSHA_dc(xpriv, xpub, 3, B, HP, update="sum", **tiny_networks())


def _dcor_of_client(attack, x):
    return float(distance_correlation(x, attack.f(x, training=True)))


def test_step_lowers_dcor_with_defense_only_and_logs_it():
    """alpha2 = 0: the client's only gradient is the dCor term, so one step must lower it."""
    x, xpriv, xpub = streams()
    attack = FSHA_dc(xpriv, xpub, 3, B, HP, **tiny_networks())
    before = _dcor_of_client(attack, x)
    log = attack(1, progress_bar=False, log_frequency=1)
    after = _dcor_of_client(attack, x)
    assert log.shape == (1, 5)
    np.testing.assert_allclose(log[0, 4], before, rtol=1e-5)  # logged dCor = the batch's, pre-update
    assert log[0, 0] == 0.0  # alpha2 * f_loss
    np.testing.assert_array_equal(attack.running_mean_history[1], log)  # step 0: its own row, dCor included
    assert after < before - 1e-4
    # two Adam steps of the client per iteration (the original's update order)
    assert int(attack.optimizer0.iterations) == 2
    assert int(attack.optimizer1.iterations) == 1 and int(attack.optimizer2.iterations) == 1


def _client_gradients(nets, x, alpha1, alpha2):
    """By hand, at the networks' current weights: the gradients of alpha1 * dCor(x, f(x)) and of
    alpha2 * mean(D(f(x))) (the WGAN f_loss) with respect to f's weights."""
    f, d = nets["client"], nets["discriminator"]
    with tf.GradientTape(persistent=True) as tape:
        z = f(x, training=True)
        def_loss = alpha1 * distance_correlation(x, z)
        f_loss = alpha2 * tf.reduce_mean(d(z, training=True))
    g_def, g_adv = tape.gradient(def_loss, f.trainable_variables), tape.gradient(f_loss, f.trainable_variables)
    return [w.numpy() for w in f.trainable_variables], g_def, g_adv, float(def_loss / alpha1), float(f_loss)


def _adam(weights, gradient_steps, lr):
    """Fresh Keras Adam on copies of ``weights``, applied once per gradient list in order."""
    variables = [tf.Variable(w) for w in weights]
    opt = keras.optimizers.Adam(lr)
    for grads in gradient_steps:
        opt.apply_gradients(zip(grads, variables))
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("update", ["two_steps", "combined"])
def test_client_update_equals_hand_computed_adam_steps(update):
    """The original ``FSHA_distcor.py`` (``FSHA_dc.train_step``): def_loss = alpha1 * dCor; f takes an Adam step
    on its gradient, then one on the gradient of alpha2 * f_loss, both at the same forward pass; 'combined' (an
    option) takes one step on their sum."""
    x, xpriv, xpub = streams()  # one unshuffled batch: the attack's private batch is exactly x
    nets = tiny_networks()
    hp = dict(HP, alpha1=100.0, alpha2=50.0)
    w0, g_def, g_adv, dcor, f_loss = _client_gradients(nets, x, hp["alpha1"], hp["alpha2"])
    attack = FSHA_dc(xpriv, xpub, 3, B, hp, update=update, **nets)
    log = attack(1, progress_bar=False, log_frequency=1)
    np.testing.assert_allclose(log[0, [0, 4]], [f_loss, dcor], rtol=1e-5)  # alpha2 * f_loss and dCor logged
    if update == "two_steps":
        expected = _adam(w0, [g_def, g_adv], hp["lr_f"])
        other_order = _adam(w0, [g_adv, g_def], hp["lr_f"])
        alpha1_ignored = _adam(w0, [[g / hp["alpha1"] for g in g_def], g_adv], hp["lr_f"])
        # the check can tell the order and the weight apart
        assert max(np.abs(a - b).max() for a, b in zip(expected, other_order)) > 1e-4
        assert max(np.abs(a - b).max() for a, b in zip(expected, alpha1_ignored)) > 1e-4
    else:
        expected = _adam(w0, [[a + b for a, b in zip(g_def, g_adv)]], hp["lr_f"])
    assert int(attack.optimizer0.iterations) == (2 if update == "two_steps" else 1)
    # Adam's first steps are ~lr * sign(g): an element whose gradient is ~eps (1e-7) gets a step set by rounding,
    # which the compiled step (another summation order than this eager reference) rounds differently; compare the
    # elements whose gradients are well above that (dCor ignores a shift of f's output: its last bias has none)
    n_resolved = 0
    for got, want, gd, ga in zip(attack.f.trainable_variables, expected, g_def, g_adv):
        resolved = (np.abs(gd.numpy()) > 1e-5) & (np.abs(ga.numpy()) > 1e-5)
        n_resolved += resolved.sum()
        np.testing.assert_allclose(got.numpy()[resolved], want[resolved], rtol=1e-5, atol=1e-6)
    assert n_resolved > 0.9 * sum(int(np.prod(v.shape)) for v in attack.f.trainable_variables)


def _assert_resolved_close(variables, expected, gradients, rtol=1e-5, atol=1e-6):
    """Compare the elements whose gradient is well above rounding (see the test above)."""
    n_resolved = 0
    for got, want, g in zip(variables, expected, gradients):
        resolved = np.abs(g.numpy()) > 1e-5
        n_resolved += resolved.sum()
        np.testing.assert_allclose(got.numpy()[resolved], want[resolved], rtol=rtol, atol=atol)
    assert n_resolved > 0.9 * sum(int(np.prod(v.shape)) for v in variables)


def test_undefended_client_takes_a_zero_step_then_the_adversarial_step():
    """With alpha1 = 0 the dCor step has a zero gradient; the client still takes it (the Adam counter advances, as
    in the original), then the adversarial step: f ends where Adam's zero step followed by its step on
    alpha2 * f_loss puts it, which is not where plain FSHA's single step would (Adam's bias correction at t = 2
    makes the step about 0.74 lr instead of lr)."""
    x, xpriv, xpub = streams()
    nets = tiny_networks()
    hp = dict(HP, alpha1=0.0, alpha2=50.0)
    w0, _, g_adv, _, f_loss = _client_gradients(nets, x, hp["alpha1"], hp["alpha2"])
    attack = FSHA_dc(xpriv, xpub, 3, B, hp, **nets)
    log = attack(1, progress_bar=False, log_frequency=1)
    np.testing.assert_allclose(log[0, 0], f_loss, rtol=1e-5)  # the logged f loss is alpha2 * f_loss
    zeros = [np.zeros_like(w) for w in w0]
    expected = _adam(w0, [zeros, g_adv], hp["lr_f"])
    plain = _adam(w0, [g_adv], hp["lr_f"])
    # the check can tell the two apart: about 0.26 lr on every resolved element
    assert max(np.abs(a - b).max() for a, b in zip(expected, plain)) > 0.2 * hp["lr_f"]
    assert int(attack.optimizer0.iterations) == 2
    _assert_resolved_close(attack.f.trainable_variables, expected, g_adv)

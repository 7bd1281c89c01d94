"""Gradient penalty and adversarial losses against hand computations (paper §3.1, eqs. (2)-(3),
and the WGAN-GP form every original notebook trains with: the original ``FSHA.py``, ``FSHA.train_step``)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from fsha.FSHA import adversarial_losses, gradient_penalty

B, H, W, C = 3, 2, 2, 4


def linear_critic(w):
    """D(z) = <w, z>: its gradient is w for every sample and every interpolation point."""
    model = keras.Sequential([keras.Input(w.shape), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w.reshape(-1, 1), np.array([0.7], np.float32)])
    return model


def test_gp_linear_critic_both_norms():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(H, W, C)).astype(np.float32) * 0.6
    D = linear_critic(w)
    z_priv = tf.constant(rng.normal(size=(B, H, W, C)), tf.float32)
    z_pub = tf.constant(rng.normal(size=(B, H, W, C)), tf.float32)

    per_channel_norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=(0, 1)))  # one per channel
    want_channel = np.mean((per_channel_norms - 1.0) ** 2)
    want_sample = (np.sqrt((w.astype(np.float64) ** 2).sum()) - 1.0) ** 2
    got_channel = float(gradient_penalty(D, z_priv, z_pub))  # default: the original's per-channel norm
    got_sample = float(gradient_penalty(D, z_priv, z_pub, norm='per_sample'))
    np.testing.assert_allclose(got_channel, want_channel, rtol=1e-5)
    np.testing.assert_allclose(got_sample, want_sample, rtol=1e-5)
    assert abs(got_channel - got_sample) > 0.1  # C > 1: the two norms differ

    # eps inside the sqrt
    want_eps = np.mean((np.sqrt((w.astype(np.float64) ** 2).sum(axis=(0, 1)) + 0.5) - 1.0) ** 2)
    np.testing.assert_allclose(float(gradient_penalty(D, z_priv, z_pub, eps=0.5)), want_eps, rtol=1e-5)


def test_gp_norms_agree_for_one_channel():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(H, W, 1)).astype(np.float32)
    D = linear_critic(w)
    z = tf.constant(rng.normal(size=(B, H, W, 1)), tf.float32)
    np.testing.assert_allclose(float(gradient_penalty(D, z, 2 * z)),
                               float(gradient_penalty(D, z, 2 * z, norm='per_sample')), rtol=1e-6)


def test_gp_interpolation_with_quadratic_critic():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(H, W, C)).astype(np.float32)
    zp = rng.normal(size=(B, H, W, C)).astype(np.float32)
    zq = rng.normal(size=(B, H, W, C)).astype(np.float32)
    alpha = rng.uniform(size=(B, 1, 1, 1)).astype(np.float32)

    def D(x, training=True):  # sum(w * x^2): gradient 2 w x_hat depends on the interpolation point
        return tf.reduce_sum(w * x ** 2, axis=[1, 2, 3])

    x_hat = alpha * zp + (1 - alpha) * zq
    g = 2.0 * w * x_hat.astype(np.float64)
    want_c = np.mean((np.sqrt((g ** 2).sum(axis=(1, 2))) - 1) ** 2)
    want_s = np.mean((np.sqrt((g ** 2).sum(axis=(1, 2, 3))) - 1) ** 2)
    np.testing.assert_allclose(float(gradient_penalty(D, zp, zq, alpha=alpha)), want_c, rtol=1e-5)
    np.testing.assert_allclose(float(gradient_penalty(D, zp, zq, norm='per_sample', alpha=alpha)), want_s,
                               rtol=1e-5)


def test_gp_rejects_bad_norm_and_flat_features():
    D = linear_critic(np.ones((4,), np.float32))
    with pytest.raises(ValueError, match='per_sample'):
        gradient_penalty(D, tf.ones((2, 4)), tf.zeros((2, 4)))
    assert np.isfinite(float(gradient_penalty(D, tf.ones((2, 4)), tf.zeros((2, 4)), norm='per_sample')))
    with pytest.raises(ValueError, match='gp norm'):
        gradient_penalty(D, tf.ones((2, 4)), tf.zeros((2, 4)), norm='l2')


ADV_PRIV = np.array([[1.0], [3.0]], np.float32)  # critic scores of client features
ADV_PUB = np.array([[-2.0], [0.5]], np.float32)  # critic scores of pilot features


def test_wgan_sign_convention():
    f_loss, d_loss = adversarial_losses(ADV_PRIV, ADV_PUB, wgan=True)
    assert float(f_loss) == pytest.approx(2.0)  # f minimises the score of its own features
    assert float(d_loss) == pytest.approx(-0.75 - 2.0)  # D: pilot features down, client features up


def test_bce_branch():
    def bce(y, a):
        p = 1 / (1 + np.exp(-a.astype(np.float64)))
        return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    f_loss, d_loss = adversarial_losses(ADV_PRIV, ADV_PUB, wgan=False)
    assert float(f_loss) == pytest.approx(bce(1, ADV_PRIV), rel=1e-5)  # non-saturating
    assert float(d_loss) == pytest.approx((bce(1, ADV_PUB) + bce(0, ADV_PRIV)) / 2, rel=1e-5)  # mean of two
    f_sat, d_sat = adversarial_losses(ADV_PRIV, ADV_PUB, wgan=False, saturating=True)
    p = 1 / (1 + np.exp(-ADV_PRIV.astype(np.float64)))
    assert float(f_sat) == pytest.approx(np.mean(np.log(1 - p)), rel=1e-5)  # paper eq. (3)
    assert float(d_sat) == pytest.approx(float(d_loss))

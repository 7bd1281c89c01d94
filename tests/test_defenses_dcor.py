"""Distance correlation (the statistic of the original FSHA ``defense.py``) against the ``dcor`` package."""

import numpy as np
import pytest
import tensorflow as tf

from defenses import (DEFAULT_EPS, dcor_penalty, dcor_squared, distance_correlation,
                      distance_correlation_sq, distance_covariance, distance_variance,
                      double_centre, log_distance_correlation, pairwise_distances)

dcor = pytest.importorskip("dcor")

# (x shape, y shape): rank-2 and rank-4, n = 8, 64, 256, p != q
SHAPES = [
    ((8, 5), (8, 3)),
    ((8, 4, 4, 2), (8, 7)),
    ((64, 32, 32, 3), (64, 4, 4, 256)),    # FSHA level 4: input vs smashed
    ((64, 28, 28, 1), (64, 10)),
    ((256, 20), (256, 7)),
    ((256, 8, 8, 1), (256, 2, 2, 3)),
]


def _flat(a):
    a = np.asarray(a, np.float64)
    return a.reshape(len(a), -1)


def numpy_reference(x, y, eps=DEFAULT_EPS):
    """Independent float64 reference: direct pairwise differences (no Gram trick), same clamp."""
    def centred(z):
        z = _flat(z)
        d2 = np.stack([((z - z[i]) ** 2).sum(axis=1) for i in range(len(z))])
        a = np.sqrt(np.maximum(d2, eps))
        return a - a.mean(axis=0, keepdims=True) - a.mean(axis=1, keepdims=True) + a.mean()
    a, b = centred(x), centred(y)
    dcov = np.sqrt((a * b).mean())
    return dcov / np.sqrt(np.sqrt((a * a).mean()) * np.sqrt((b * b).mean()))


def _data(shapes, seed, dependent=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shapes[0])
    y = rng.normal(size=shapes[1])
    if dependent:  # mix in a nonlinear function of x so that dCor is far from 0 and from 1
        fx = np.tanh(_flat(x)[:, : 1]) ** 2
        y = y + 2.0 * fx.reshape((-1,) + (1,) * (y.ndim - 1))
    return x, y


@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
def test_matches_dcor_package(shapes):
    x, y = _data(shapes, seed=len(shapes[0]) + shapes[0][0])
    ref = dcor.distance_correlation(_flat(x), _flat(y))  # V-statistic dCor (not dCor^2)
    # the statistic itself (no clamp): float32 to 1e-6, float64 to 1e-10
    got32 = distance_correlation(x.astype(np.float32), y.astype(np.float32), eps=0.0)
    got64 = distance_correlation(x, y, eps=0.0)
    assert got32.dtype == tf.float32 and got32.shape == ()
    assert got64.dtype == tf.float64
    assert abs(float(got32) - ref) < 1e-6
    assert abs(float(got64) - ref) < 1e-10
    # faithful default (clamp 1e-7 before the sqrt): equal to the clamped reference, and within the
    # clamp's bias of dcor (the diagonal holds sqrt(1e-7) instead of 0)
    ref_clamped = numpy_reference(x, y)
    assert abs(float(distance_correlation(x.astype(np.float32), y.astype(np.float32)))
               - ref_clamped) < 1e-6
    assert abs(float(distance_correlation(x, y)) - ref_clamped) < 1e-10
    assert abs(ref_clamped - ref) < 1e-4


def test_fsha_shapes_default_eps_matches_dcor():
    # FSHA's shapes: images in [-1, 1] (3,072 features) against level-4-like smashed data (4,096
    # features) at n = 64: the faithful clamp moves dCor by about 1e-8 only
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(64, 32, 32, 3))
    w = rng.normal(size=(3072, 4096)) / np.sqrt(3072)
    z = np.maximum(_flat(x) @ w, 0).reshape(64, 4, 4, 256) + 0.5 * rng.normal(size=(64, 4, 4, 256))
    ref = dcor.distance_correlation(_flat(x), _flat(z))
    assert abs(float(distance_correlation(x.astype(np.float32), z.astype(np.float32))) - ref) < 1e-6
    assert abs(float(distance_correlation(x, z)) - ref) < 1e-7


@pytest.mark.parametrize("shape", [(8, 5), (64, 4, 4, 256), (256, 3)])
def test_y_equal_x_gives_one(shape):
    x = np.random.default_rng(0).normal(size=shape)
    assert abs(float(distance_correlation(x.astype(np.float32), x.astype(np.float32))) - 1) < 1e-6
    assert abs(float(distance_correlation(x, x)) - 1) < 1e-12
    assert abs(dcor.distance_correlation(_flat(x), _flat(x)) - 1) < 1e-12


def test_nonlinear_dependence_is_detected_not_reduced_to_pearson():
    """y = x^2 on x symmetric around 0: Pearson's correlation is near 0, but y is a function of x. Distance
    correlation on Euclidean distances sees the dependence; the common mistake of squared distances turns the
    statistic into |Pearson| in 1-D and misses it. ``distance_correlation`` must be the former."""
    x = np.random.default_rng(7).uniform(-1, 1, size=(256, 1))
    y = x ** 2
    ref = dcor.distance_correlation(x, y)
    pearson = abs(np.corrcoef(x[:, 0], y[:, 0])[0, 1])
    assert ref > 0.45 and pearson < 0.15
    exact = float(distance_correlation(x, y, eps=0.0))
    assert abs(exact - ref) < 1e-10
    assert abs(exact - pearson) > 0.3  # not the squared-distance statistic
    # the distances it centres are Euclidean: |x_i - x_j| in 1-D
    np.testing.assert_allclose(pairwise_distances(x[:16], eps=0.0).numpy(), np.abs(x[:16] - x[:16, 0]), atol=1e-12)
    # float32: distances below its rounding resolution (~1e-3 here) count as 0, as the clamp does
    ours = distance_correlation(x.astype(np.float32), y.astype(np.float32), eps=0.0)
    assert abs(float(ours) - ref) < 1e-5
    # 1-D data has close neighbours, so the faithful clamp moves the value by a few 1e-6 only
    assert abs(float(distance_correlation(x, y)) - ref) < 2e-5
    assert abs(float(distance_correlation(x, y)) - numpy_reference(x, y)) < 1e-10


def test_independent_data_gives_small_value():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(256, 1)).astype(np.float32)
    y = rng.normal(size=(256, 1)).astype(np.float32)
    value = float(distance_correlation(x, y))
    assert 0.0 <= value < 0.15
    assert abs(value - dcor.distance_correlation(x.astype(np.float64), y.astype(np.float64))) < 1e-4


def test_helpers_match_dcor():
    x, y = _data(((64, 6), (64, 3, 3)), seed=5)
    xf, yf = _flat(x), _flat(y)
    assert abs(float(distance_covariance(x, y, eps=0.0)) - dcor.distance_covariance(xf, yf)) < 1e-10
    assert abs(float(distance_variance(x, eps=0.0)) - dcor.distance_covariance(xf, xf)) < 1e-10
    sq = float(distance_correlation_sq(x, y, eps=0.0))
    assert abs(sq - dcor.distance_correlation_sqr(xf, yf)) < 1e-10
    assert dcor_squared is distance_correlation_sq
    # dCor = dCov / sqrt(dVar(X) dVar(Y)) at the default clamp as well
    dc = float(distance_covariance(x, y))
    dvx, dvy = float(distance_variance(x)), float(distance_variance(y))
    assert abs(float(distance_correlation(x, y)) - dc / np.sqrt(dvx * dvy)) < 1e-12
    assert abs(float(distance_correlation(x, y)) ** 2 - float(distance_correlation_sq(x, y))) < 1e-12
    # log form and penalty
    assert abs(float(log_distance_correlation(x, y)) - np.log(float(distance_correlation(x, y)))) \
        < 1e-12
    assert float(dcor_penalty(x, y)) == float(distance_correlation(x, y))
    assert float(dcor_penalty(x, y, form="log")) == float(log_distance_correlation(x, y))
    with pytest.raises(ValueError, match="form"):
        dcor_penalty(x, y, form="squared")


def test_pairwise_distances_and_centring():
    x = np.random.default_rng(2).normal(size=(10, 3, 2)).astype(np.float32)
    a = pairwise_distances(x).numpy()
    ref = np.sqrt(((_flat(x)[:, None] - _flat(x)[None]) ** 2).sum(-1))
    np.testing.assert_allclose(a[~np.eye(10, dtype=bool)], ref[~np.eye(10, dtype=bool)], rtol=1e-5)
    np.testing.assert_allclose(np.diag(a), np.sqrt(1e-7), rtol=1e-6)   # kept, as in the original
    # duplicated high-dimensional float32 rows: exactly sqrt(eps) apart, in eager mode and under XLA
    z = np.random.default_rng(3).normal(size=(16, 4, 4, 256)).astype(np.float32) + 1.0
    z[8:] = z[:8]
    for fn in (pairwise_distances, tf.function(pairwise_distances, jit_compile=True)):
        d = fn(z).numpy()
        np.testing.assert_array_equal(np.diag(d[:8, 8:]), np.float32(np.sqrt(np.float32(1e-7))))
    c = double_centre(a).numpy()
    np.testing.assert_allclose(c.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(c.mean(axis=1), 0, atol=1e-5)


def _grads(x, y, **kw):
    x = tf.Variable(x)
    y = tf.Variable(y)
    with tf.GradientTape() as tape:
        value = distance_correlation(x, y, **kw)
    gx, gy = tape.gradient(value, [x, y])
    return value, gx.numpy(), gy.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_finite_with_duplicated_rows(dtype):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4, 4, 3))
    y = rng.normal(size=(16, 2, 2, 8))
    x[5] = x[2]
    x[9] = x[2]       # a point three times
    y[5] = y[2]       # and a pair coinciding in both X and Y
    y[12] = y[0]
    value, gx, gy = _grads(x.astype(dtype), y.astype(dtype))
    assert np.isfinite(float(value)) and np.isfinite(gx).all() and np.isfinite(gy).all()
    assert np.abs(gy).sum() > 0
    assert abs(float(value) - numpy_reference(x, y)) < (1e-6 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_identical_rows(dtype):
    rng = np.random.default_rng(4)
    x = np.tile(rng.normal(size=(1, 5, 3)), (8, 1, 1)).astype(dtype)
    y = rng.normal(size=(8, 6)).astype(dtype)
    for a, b in ((x, y), (y, x), (x, x)):
        value, ga, gb = _grads(a, b)
        assert float(value) == 0.0   # degenerate batch: dCor is 0 (dcor agrees)
        assert np.isfinite(ga).all() and np.isfinite(gb).all()
    assert dcor.distance_correlation(_flat(x), _flat(y)) == 0.0
    value, _, _ = _grads(x, y, log=True)
    assert np.isfinite(float(value))


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_xla_and_tf_function(dtype):
    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(size=(64, 8, 8, 3)), dtype)
    y = tf.constant(rng.normal(size=(64, 2, 2, 16)) + np.tanh(rng.normal(size=(64, 1, 1, 1))),
                    dtype)
    y = tf.concat([y[:60], y[:4]], axis=0)   # duplicated rows as well

    def value_and_grad(a, b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            v = distance_correlation(a, b)
        return v, tape.gradient(v, b)

    eager_v, eager_g = value_and_grad(x, y)
    tol = 1e-6 if dtype == tf.float32 else 1e-12
    for jit in (False, True):
        fn = tf.function(value_and_grad, jit_compile=jit)
        v, g = fn(x, y)
        assert v.dtype == dtype
        assert abs(float(v) - float(eager_v)) < tol
        assert np.isfinite(g.numpy()).all()
        np.testing.assert_allclose(g.numpy(), eager_g.numpy(), atol=tol * 10,
                                   rtol=1e-3 if dtype == tf.float32 else 1e-9)
    # unknown batch size and feature size inside a traced function
    dyn = tf.function(lambda a, b: distance_correlation(a, b),
                      input_signature=[tf.TensorSpec([None, None, None, 3], dtype),
                                       tf.TensorSpec([None, 2, 2, 16], dtype)])
    assert abs(float(dyn(x, y)) - float(eager_v)) < tol


def test_float64_path():
    x, y = _data(((128, 12), (128, 2, 5)), seed=9)
    got = distance_correlation(tf.constant(x), tf.constant(y))
    assert got.dtype == tf.float64
    assert abs(float(got) - numpy_reference(x, y)) < 1e-10
    # mixed inputs are computed in the wider dtype
    mixed = distance_correlation(x.astype(np.float32), y)
    assert mixed.dtype == tf.float64
    assert abs(float(mixed) - numpy_reference(x.astype(np.float32), y)) < 1e-10


def test_input_types_and_errors():
    rng = np.random.default_rng(8)
    img = rng.integers(0, 256, size=(16, 6, 6, 1), dtype=np.uint8)
    z = rng.normal(size=(16, 4)).astype(np.float32)
    v = distance_correlation(img, z)
    assert v.dtype == tf.float32
    assert abs(float(v) - numpy_reference(img, z)) < 1e-6
    vec = rng.normal(size=16)   # rank 1: n samples of one feature
    assert abs(float(distance_correlation(vec, z)) - numpy_reference(vec[:, None], z)) < 1e-10
    with pytest.raises(ValueError, match="same number of samples"):
        distance_correlation(z, z[:8])
    with pytest.raises(ValueError, match="eps"):
        distance_correlation(z, z, eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        distance_correlation(z, z, eps=float("nan"))
    with pytest.raises(TypeError, match="eps"):
        distance_correlation(z, z, eps="1e-7")
    with pytest.raises(ValueError, match="scalar"):
        distance_correlation(np.float32(1.0), z)

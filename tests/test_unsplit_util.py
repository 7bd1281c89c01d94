"""UnSplit utilities: regularisers, schedules, sampler, targets, optimizers (spec §2, §4, §7.2, §9)."""
import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.optim import TorchAdam, keras_adam_update, torch_adam_update
from unsplit_tf.util import (first_index_per_class, get_examples_by_class, l2loss, normalize, repo_sampler_indices,
                             tv_code, tv_code_per_sample, tv_paper, tv_paper_per_sample, tv_weight_for)


def loop_tv_code(x):  # x NHWC, a literal loop over the definition of spec §4.1
    b, h, w, c = x.shape
    sh = sum((x[n, i + 1, j, k] - x[n, i, j, k]) ** 2 for n in range(b) for i in range(h - 1) for j in range(w)
             for k in range(c))
    sw = sum((x[n, i, j + 1, k] - x[n, i, j, k]) ** 2 for n in range(b) for i in range(h) for j in range(w - 1)
             for k in range(c))
    return (sh / (c * (h - 1) * w) + sw / (c * h * (w - 1))) / b


def loop_tv_paper(x, eps):
    b, h, w, c = x.shape
    return [sum(np.sqrt((x[n, i + 1, j, k] - x[n, i, j, k]) ** 2 + (x[n, i, j + 1, k] - x[n, i, j, k]) ** 2 + eps)
                for i in range(h - 1) for j in range(w - 1) for k in range(c)) for n in range(b)]


def test_tv_forms_against_loops_on_non_square_batch():
    x = np.random.default_rng(0).normal(size=(3, 5, 7, 2))
    assert abs(float(tv_code(x)) - loop_tv_code(x)) <= 1e-12
    per = tv_code_per_sample(x).numpy()
    np.testing.assert_allclose(per, [loop_tv_code(x[i:i + 1]) for i in range(3)], rtol=1e-12)
    np.testing.assert_allclose(tv_code_per_sample(np.transpose(x, (0, 3, 1, 2)), "NCHW").numpy(), per, rtol=1e-12)
    want = loop_tv_paper(x, 1e-8)
    np.testing.assert_allclose(tv_paper_per_sample(x).numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(tv_paper_per_sample(x, "mean").numpy(), np.array(want) / (2 * 4 * 6), rtol=1e-12)
    np.testing.assert_allclose(tv_paper_per_sample(np.transpose(x, (0, 3, 1, 2)), data_format="NCHW").numpy(),
                               want, rtol=1e-12)
    assert abs(float(tv_paper(x)) - np.mean(want)) < 1e-9
    assert abs(float(l2loss(x)) - np.mean(x ** 2)) < 1e-12
    # the NHWC pitfall: differencing width and channels instead of height and width gives another number
    wrong = np.mean((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2) + np.mean((x[..., 1:] - x[..., :-1]) ** 2)
    assert abs(float(tv_code(x)) - wrong) > 1e-3


def test_paper_tv_has_finite_gradient_at_a_constant_image():
    x = tf.fill((1, 6, 6, 1), tf.constant(0.5, tf.float64))
    with tf.GradientTape() as tape:
        tape.watch(x)
        t = tv_paper(x)
    assert np.all(np.isfinite(tape.gradient(t, x).numpy()))


def test_tv_weight_schedules():
    assert [tv_weight_for(d, "code") for d in range(1, 9)] == [0.1] * 8
    assert [tv_weight_for(d, "paper") for d in range(1, 9)] == [0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert tv_weight_for(4, 0.3) == 0.3
    with pytest.raises(ValueError, match="schedule"):
        tv_weight_for(1, "sometimes")


def test_normalize_is_global_min_max():
    x = np.array([[[[0.0, 1.0, 2.0], [4.0, 0.5, 1.0]]]])
    np.testing.assert_allclose(normalize(x), x / 4.0)
    np.testing.assert_array_equal(normalize(np.full((1, 2, 2, 3), 0.3)), np.zeros((1, 2, 2, 3)))


def test_repo_sampler_effective_count():
    counts = [len(repo_sampler_indices(10_000, 2_000, seed)) for seed in range(40)]
    assert 1790 <= np.mean(counts) <= 1850  # spec: ~1,820 (range ~1,795-1,851)
    idx = repo_sampler_indices(10_000, 2_000, 0)
    assert len(np.unique(idx)) < len(idx) or len(idx) < 2000  # with replacement / skipped draws


def test_first_index_per_class_and_examples():
    y = np.array([3, 1, 0, 1, 2, 0, 3])
    np.testing.assert_array_equal(first_index_per_class(y, 4), [2, 1, 4, 0])
    x = np.arange(7)[:, None]
    xs, ys, idx = get_examples_by_class(x, y, count=2, num_classes=2)
    np.testing.assert_array_equal(idx, [2, 5, 1, 3])
    np.testing.assert_array_equal(ys, [0, 0, 1, 1])
    np.testing.assert_array_equal(xs[:, 0], idx)
    with pytest.raises(ValueError, match="class 2"):
        get_examples_by_class(x, y, count=2, num_classes=4)


def test_keras_adam_rule_matches_keras_optimizer():
    import keras

    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3))
    var = keras.Variable(p0, dtype="float64")
    opt = keras.optimizers.Adam(learning_rate=1e-3, amsgrad=True, epsilon=1e-7)
    p, m, v, vm = tf.constant(p0), *(tf.zeros_like(p0),) * 3
    for t in range(1, 51):
        g = rng.normal(size=(4, 3)) * 10 ** rng.uniform(-4, 0)
        opt.apply_gradients([(tf.constant(g), var)])
        p, m, v, vm = keras_adam_update(p, tf.constant(g), m, v, vm, tf.constant(t), lr=1e-3, eps=1e-7)
    # Keras routes its hyperparameters (lr, betas) through float32 even for float64 variables, hence the
    # tolerance; the rule itself is the same
    np.testing.assert_allclose(p.numpy(), var.numpy(), atol=1e-6)
    # and the two rules really differ (epsilon placement, spec §9)
    q = torch_adam_update(tf.constant(p0), tf.constant(np.full((4, 3), 1e-6)), *(tf.zeros_like(p0),) * 3,
                          tf.constant(1))[0]
    k = keras_adam_update(tf.constant(p0), tf.constant(np.full((4, 3), 1e-6)), *(tf.zeros_like(p0),) * 3,
                          tf.constant(1), eps=1e-8)[0]
    assert np.max(np.abs(q.numpy() - k.numpy())) > 1e-8


def test_torch_adam_skips_variables_without_gradient():
    a, b = tf.Variable([1.0, 2.0], dtype=tf.float64), tf.Variable([3.0], dtype=tf.float64)
    opt = TorchAdam()
    opt.apply_gradients([(tf.constant([0.5, -0.5], tf.float64), a), (None, b)])
    assert b.numpy()[0] == 3.0
    np.testing.assert_allclose(a.numpy(), [1.0 - 1e-3, 2.0 + 1e-3], atol=1e-10)
    assert int(opt.state(a)[3].numpy()) == 1

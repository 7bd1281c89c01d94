"""UnSplit utilities: regularisers, schedules, sampler, targets, optimizers (original ``unsplit/util.py``;
paper §4.2)."""
import keras
import numpy as np
import pytest
from keras import ops

from splitnn import backend

from unsplit_tf.optim import TorchAdam, keras_adam_update, torch_adam_update
from unsplit_tf.util import (first_index_per_class, get_examples_by_class, l2loss, normalize, repo_sampler_indices,
                             tv_code, tv_code_per_sample, tv_paper, tv_paper_per_sample, tv_weight_for)

pytestmark = pytest.mark.backend  # the regularisers and update rules are keras.ops: check them on every backend
# float64 is float32 under JAX without jax_enable_x64
RTOL = 1e-12 if backend.float64_enabled() else 1e-5


def npy(x):
    return np.asarray(ops.convert_to_numpy(x))


def loop_tv_code(x):  # x NHWC, a literal loop over the original's ``TV`` (``unsplit/util.py``)
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
    assert abs(float(tv_code(x)) - loop_tv_code(x)) <= RTOL
    per = npy(tv_code_per_sample(x))
    np.testing.assert_allclose(per, [loop_tv_code(x[i:i + 1]) for i in range(3)], rtol=RTOL)
    np.testing.assert_allclose(npy(tv_code_per_sample(np.transpose(x, (0, 3, 1, 2)), "NCHW")), per, rtol=RTOL)
    want = loop_tv_paper(x, 1e-8)
    np.testing.assert_allclose(npy(tv_paper_per_sample(x)), want, rtol=RTOL)
    np.testing.assert_allclose(npy(tv_paper_per_sample(x, "mean")), np.array(want) / (2 * 4 * 6), rtol=RTOL)
    np.testing.assert_allclose(npy(tv_paper_per_sample(np.transpose(x, (0, 3, 1, 2)), data_format="NCHW")),
                               want, rtol=RTOL)
    assert abs(float(tv_paper(x)) - np.mean(want)) < (1e-9 if backend.float64_enabled() else 1e-3)
    assert abs(float(l2loss(x)) - np.mean(x ** 2)) < RTOL
    # the NHWC pitfall: differencing width and channels instead of height and width gives another number
    wrong = np.mean((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2) + np.mean((x[..., 1:] - x[..., :-1]) ** 2)
    assert abs(float(tv_code(x)) - wrong) > 1e-3


def test_paper_tv_has_finite_gradient_at_a_constant_image():
    x = ops.full((1, 6, 6, 1), 0.5, "float64")
    g, _ = backend.input_gradient(lambda v: (tv_paper(v), None), x)
    assert np.all(np.isfinite(npy(g)))


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
    assert 1790 <= np.mean(counts) <= 1850  # simulated: ~1,820 (range ~1,795-1,851)
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
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(4, 3))
    var = keras.Variable(p0, dtype="float64")
    opt = keras.optimizers.Adam(learning_rate=1e-3, amsgrad=True, epsilon=1e-7)
    c = ops.convert_to_tensor
    p, m, v, vm = c(p0, "float64"), *(ops.zeros((4, 3), "float64"),) * 3
    for t in range(1, 51):
        g = rng.normal(size=(4, 3)) * 10 ** rng.uniform(-4, 0)
        opt.apply_gradients([(c(g, "float64"), var)])
        p, m, v, vm = keras_adam_update(p, c(g, "float64"), m, v, vm, c(t, "int32"), lr=1e-3, eps=1e-7)
    # Keras routes its hyperparameters (lr, betas) through float32 even for float64 variables, hence the
    # tolerance; the rule itself is the same
    np.testing.assert_allclose(npy(p), npy(var), atol=1e-6)
    # and the two rules really differ (epsilon placement, see unsplit_tf/optim.py)
    zeros = (ops.zeros((4, 3), "float64"),) * 3
    g = c(np.full((4, 3), 1e-6), "float64")
    q = torch_adam_update(c(p0, "float64"), g, *zeros, c(1, "int32"))[0]
    k = keras_adam_update(c(p0, "float64"), g, *zeros, c(1, "int32"), eps=1e-8)[0]
    assert np.max(np.abs(npy(q) - npy(k))) > 1e-8


def test_torch_adam_skips_variables_without_gradient():
    a, b = keras.Variable([1.0, 2.0], dtype="float64"), keras.Variable([3.0], dtype="float64")
    opt = TorchAdam()
    opt.apply_gradients([(ops.convert_to_tensor([0.5, -0.5], "float64"), a), (None, b)])
    assert npy(b)[0] == 3.0
    np.testing.assert_allclose(npy(a), [1.0 - 1e-3, 2.0 + 1e-3], atol=1e-10 if backend.float64_enabled() else 1e-6)
    assert int(npy(opt.state(a)[3])) == 1

"""UnSplit models: parameter counts and order, PyTorch-default initialisation, flat-index splits (paper Appendix A;
original ``unsplit/models.py``)."""
import numpy as np
import pytest
from keras import ops

from splitnn import backend
from unsplit_tf.models import (ARCHITECTURES, PARAM_COUNTS, build_model, check_split_depth, label_split_index)

pytestmark = pytest.mark.backend  # shapes, splits, initialisation: on every Keras backend


def npy(x):
    return np.asarray(ops.convert_to_numpy(x))


def tf_functional():
    """:mod:`unsplit_tf.functional`, the TensorFlow-only fast path (skips the test on other backends)."""
    if not backend.is_tensorflow():
        pytest.skip("the im2col fast path runs on TensorFlow only")
    from unsplit_tf import functional
    return functional


@pytest.mark.parametrize("arch", ["mnist", "cifar"])
def test_param_counts_and_last_layer_index(arch):
    model = build_model(arch, seed=0)
    assert model.count_params() == PARAM_COUNTS[arch] == {"mnist": 45_278, "cifar": 1_609_546}[arch]
    grad_index = 8 if arch == "mnist" else 14
    assert tuple(model.weights[grad_index].shape) == ((84, 10) if arch == "mnist" else (512, 10))
    assert model.weights[grad_index] is model.layer_weights(model.last_index)[0]
    assert len(model.weights) == (10 if arch == "mnist" else 16)


@pytest.mark.parametrize("arch", ["mnist", "cifar"])
def test_pytorch_default_init_bounds(arch):
    expected = {"mnist": [0.2, 0.07071, 0.0625, 0.09129, 0.10911],
                "cifar": [0.19245, 0.04167, 0.04167, 0.02946, 0.02946, 0.02946, 0.02210, 0.04419]}[arch]
    model = build_model(arch, seed=1)
    specs = [s for s in ARCHITECTURES[arch] if s.has_params]
    for spec, bound in zip(specs, expected):
        assert abs(spec.init_bound - bound) < 1e-4
        kernel, bias = model.layer_weights(spec.index)
        k = np.abs(npy(kernel)).max()
        b = np.abs(npy(bias)).max()
        assert k <= spec.init_bound * (1 + 1e-6) and b <= spec.init_bound * (1 + 1e-6), spec.name
        assert k >= 0.9 * spec.init_bound, spec.name  # uniform, not Glorot/normal: the max nears the bound
        assert np.abs(npy(bias)).max() > 0  # not Keras's zero bias
        # roughly uniform: std of U(-a, a) is a / sqrt(3)
        assert abs(npy(kernel).std() - spec.init_bound / np.sqrt(3)) < 0.2 * spec.init_bound


def test_seeded_models_repeat_and_differ():
    a, b, c = build_model("mnist", seed=5), build_model("mnist", seed=5), build_model("mnist", seed=6)
    assert all(np.array_equal(npy(x), npy(y)) for x, y in zip(a.weights, b.weights))
    assert not np.array_equal(npy(a.weights[0]), npy(c.weights[0]))


@pytest.mark.parametrize("arch", ["mnist", "cifar"])
def test_split_composition_every_index(arch):
    model = build_model(arch, seed=2)
    x = np.random.default_rng(1).uniform(size=(3,) + model.image_shape).astype(np.float32)
    full = npy(model(x))
    for k in range(model.last_index):
        out = npy(model(model(x, end=k), start=k + 1))
        np.testing.assert_allclose(out, full, atol=1e-6, err_msg=f"split {k}")


def test_absolute_indices_fix_the_relative_index_quirk():
    model = build_model("mnist", seed=0)
    x = np.random.default_rng(3).uniform(size=(2, 28, 28, 1)).astype(np.float32)
    h2 = model(x, end=2)
    out = model(h2, start=3, end=4)  # None in the original
    assert out is not None and tuple(out.shape) == (2, 8, 8, 16)
    np.testing.assert_allclose(npy(out), npy(model(x, end=4)), atol=1e-6)
    with pytest.raises(ValueError, match="start=5, end=3"):
        model(x, start=5, end=3)


def test_smashed_shapes_match_spec():
    m = build_model("mnist", seed=0)
    sizes = [int(np.prod(m.smashed_shape(d))) for d in range(1, 7)]
    assert sizes == [4608, 1152, 1024, 1024, 256, 120]
    c = build_model("cifar", seed=0)
    sizes = [int(np.prod(c.smashed_shape(d))) for d in range(1, 9)]
    assert sizes == [65536, 65536, 65536, 16384, 32768, 32768, 32768, 32768]


def test_split_depth_validation_and_label_split():
    assert check_split_depth("mnist", 6) == 6
    with pytest.raises(ValueError, match="1-6"):
        check_split_depth("mnist", 7)
    with pytest.raises(ValueError, match="1-8"):
        check_split_depth("cifar", 0)
    assert label_split_index("mnist", 1) == 9 and label_split_index("cifar", 1) == 16
    assert label_split_index("mnist", 2) == 7 and label_split_index("cifar", 2) == 14


@pytest.mark.parametrize("arch", ["mnist", "cifar"])
def test_functional_forward_matches_keras_for_a_batch_of_models(arch):
    """The attack loops' NCHW im2col forward equals the Keras layers, model by model."""
    import tensorflow as tf
    F = tf_functional()
    models = [build_model(arch, seed=s) for s in (11, 12)]
    x = tf.random.stateless_uniform((2,) + models[0].image_shape, seed=(5, 6))
    last = 8 if arch == "mnist" else 17
    for end in range(0, last + 1):
        kinds = F.param_kinds(arch, 0, end)
        ws = [m.range_weights(0, end) for m in models]
        params = [F.keras_to_torch(tf.stack([tf.convert_to_tensor(w[j]) for w in ws]), k) for j, k in enumerate(kinds)]
        got = npy(F.nchw_to_nhwc(F.forward(arch, params, F.nhwc_to_nchw(x), 0, end, xla=False)))
        want = np.concatenate([npy(m(x[i:i + 1], end=end)) for i, m in enumerate(models)])
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5, err_msg=f"end={end}")


def test_first_max_pool_gradient_goes_to_top_left_on_ties():
    """Ties matter (x~ starts constant: every window is a tie at step 0): the backend's max-pool (the generic
    path) and the fast path's both send the gradient to the first maximum in row-major order."""
    x = np.array([[1., 1., 0., 2.], [1., 1., 2., 2.]])[None, None]  # [1, 1, 2, 4] (NCHW)
    want = [[1, 0, 0, 1], [0, 0, 0, 0]]
    xn = np.transpose(x, (0, 2, 3, 1))
    gn, _ = backend.input_gradient(lambda v: (ops.max_pool(v, 2, 2, "valid"), None), ops.convert_to_tensor(xn))
    np.testing.assert_array_equal(npy(gn)[0, :, :, 0], want)
    if backend.is_tensorflow():
        F = tf_functional()
        g, y = backend.input_gradient(lambda v: (F.max_pool_2x2_first(v),) * 2, ops.convert_to_tensor(x))
        np.testing.assert_array_equal(npy(y)[0, 0], [[1., 2.]])
        np.testing.assert_array_equal(npy(g)[0, 0], want)


def test_clone_accuracies_by_hand_and_without_the_sampler_metrics():
    """Both clone metrics equal their definitions (real client bottom + clone top; clone bottom + server top);
    ``sampler_metrics=False`` leaves the full-set values and the rng stream unchanged."""
    from unsplit_tf.training import clone_accuracies
    from unsplit_tf.util import repo_sampler_indices

    client, server, clone = (build_model("mnist", seed=s) for s in (1, 2, 3))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(60, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 60)
    d = 2
    literal = np.argmax(npy(clone(client(x, end=d), start=d + 1)), 1)
    intended = np.argmax(npy(server(clone(x, end=d), start=d + 1)), 1)
    idx = repo_sampler_indices(60, 20, np.random.default_rng(5))
    full = clone_accuracies(client, server, clone, x, y, d, np.random.default_rng(5), count=20)
    assert full.repo_literal_full == pytest.approx(100 * np.mean(literal == y))
    assert full.intended_full == pytest.approx(100 * np.mean(intended == y))
    assert full.intended_repo == pytest.approx(100 * np.mean(intended[idx] == y[idx]))
    assert full.repo_count == len(idx) and full.n_test == 60
    rng_a = np.random.default_rng(5)
    lean = clone_accuracies(client, server, clone, x, y, d, rng_a, count=20, sampler_metrics=False)
    assert np.isnan(lean.repo_literal_repo) and np.isnan(lean.intended_repo)
    assert (lean.repo_literal_full, lean.intended_full) == (full.repo_literal_full, full.intended_full)
    rng_b = np.random.default_rng(5)
    repo_sampler_indices(60, 20, rng_b)
    assert rng_a.integers(1 << 30) == rng_b.integers(1 << 30)

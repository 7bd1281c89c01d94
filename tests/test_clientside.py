"""Tests of the client-side GAN attack (ClientSideAttack/; Pasquini et al., CCS 2021, §5).

CPU only; the whole file takes ~50 s on two idle cores (~100 s on a busy shared machine; the judge
recipe test alone trains the judge classifier for 15-30 s). The MNIST tests need the offline data
(SPLITNN_DATA_DIR) and are skipped without it. The tests marked ``backend`` (losses, shapes, errors, checkpoints)
run under TensorFlow and again under ``KERAS_BACKEND=jax``; this module imports no TensorFlow.
"""

import os

import keras
import numpy as np
import pytest
from available_data import needs
from keras import ops

from splitnn import backend
from splitnn.streams import ArrayStream

from ClientSideAttack import (FAKE_CLASS, GENERATOR, HONEST, JUDGE_VERSION, POISON, BadClient, Client,
                              Judge, Server, archs, build_attack, scale_down, scale_up)
from ClientSideAttack.dataset import load_mnist, load_mnist_arrays, preprocess
from ClientSideAttack.server import output_shape


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _fake_data(n=64, shape=(28, 28, 1), seed=0):
    rng = np.random.RandomState(seed)
    return rng.uniform(-1, 1, (n,) + shape).astype(np.float32), rng.randint(0, 10, n).astype(np.uint8)


# Compiled steps where a test is about compilation; JAX compiles every new server's steps anew (seconds each on a
# CI CPU), while eager steps reuse the primitives compiled by earlier tests.
COMPILED = backend.is_tensorflow()


def _setup(honest=1, batch=8, factor=1e5, optimizer="shared", run_eagerly=True, seed=0, data=None):
    keras.utils.set_random_seed(seed)
    f, ff, g, s = archs.make_f(), archs.make_ff(), archs.make_generator(), archs.make_s()
    bad = BadClient(f, ff, g, batch, 1, gradient_factor=factor, seed=seed + 1)
    clients = [bad] + [Client(f, ff, name=f"honest{i}") for i in range(honest)]
    srv = Server(s, clients, data if data is not None else _fake_data(), batch,
                 optimizer=optimizer, run_eagerly=run_eagerly, seed=seed)
    return srv, bad


def _snapshot(srv, extra_models=()):
    variables, seen = [], set()
    models = [srv.s] + [m for c in srv.clients for m in c.models().values()] + list(extra_models)
    for v in [v for m in models for v in m.variables] + [v for o in srv.optimizers for v in o.variables]:
        if id(v) not in seen:
            seen.add(id(v))
            variables.append(v)
    return [(v, _np(v)) for v in variables]


def _restore(snap):
    for v, value in snap:
        v.assign(value)


def _np(x):
    """A variable's or tensor's value as a NumPy copy."""
    return np.array(backend.to_numpy(x.value if isinstance(x, keras.Variable) else x))


def _values(variables):
    return [_np(v) for v in variables]


def _delta(before, variables):
    """Flattened float64 difference (after - before)."""
    return np.concatenate([(_np(v).astype(np.float64) - b.astype(np.float64)).ravel()
                           for v, b in zip(variables, before)])


def _norm(grads):
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in grads)))


@pytest.fixture
def float64():
    """Run the models in float64 so that 1e-5-relative parameter changes are resolvable."""
    if not backend.float64_enabled():
        pytest.skip("float64 needs jax_enable_x64 under JAX")
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(old)
        keras.config.set_dtype_policy(old_policy)


needs_mnist = needs("mnist")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_arrays()


# --------------------------------------------------------------------------------------------
# gradient scaling ops (the original scale_up / scale_down)
# --------------------------------------------------------------------------------------------

@pytest.mark.backend
@pytest.mark.parametrize("factor", [1e5, 3.0, 0.25])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("compiled", [False, True])
def test_scale_ops_identity_forward_and_exact_gradient_factor(factor, dtype, compiled):
    if dtype == "float64" and not backend.float64_enabled():
        pytest.skip("float64 needs jax_enable_x64 under JAX")
    rng = np.random.RandomState(0)
    x = ops.convert_to_tensor(rng.randn(4, 5).astype(dtype))
    w = ops.convert_to_tensor(rng.randn(4, 5).astype(dtype))

    def losses(p):
        (x,), = p
        up, down = scale_up(x, factor), scale_down(x, factor)
        return (ops.sum(up * w), ops.sum(down * w)), (up, down)

    def run(x):
        _, (up, down), (gu, gd) = backend.loss_grads(losses, ([x],), [(0, 0), (1, 0)])
        return up, down, gu[0], gd[0]

    up, down, gu, gd = (backend.compile(run) if compiled else run)(x)
    np.testing.assert_array_equal(_np(up), _np(x))
    np.testing.assert_array_equal(_np(down), _np(x))
    npd = np.dtype(dtype).type
    np.testing.assert_array_equal(_np(gu), _np(w) * npd(factor))
    np.testing.assert_array_equal(_np(gd), _np(w) / npd(factor))


@pytest.mark.backend
def test_scale_ops_cancel_through_a_linear_server():
    """The malicious client's sandwich: down-scaled gradient reaches the server weights; the
    gradient arriving below the server is back at full size."""
    dtype, rtol = ("float64", 1e-12) if backend.float64_enabled() else ("float32", 1e-5)
    rng = np.random.RandomState(1)
    a = ops.convert_to_tensor(rng.randn(3, 4).astype(dtype))
    W = ops.convert_to_tensor(rng.randn(4, 2).astype(dtype))

    def losses(p):
        (a, W), = p
        return (ops.sum(scale_down(ops.matmul(scale_up(a, 1e5), W), 1e5) ** 2),
                ops.sum(ops.matmul(a, W) ** 2)), None

    _, _, (g_scaled, g_plain) = backend.loss_grads(losses, ([a, W],), [(0, 0), (1, 0)])
    np.testing.assert_allclose(_np(g_scaled[1]), _np(g_plain[1]) / 1e5, rtol=rtol)
    np.testing.assert_allclose(_np(g_scaled[0]), _np(g_plain[0]), rtol=rtol)


# --------------------------------------------------------------------------------------------
# architectures, data, validation
# --------------------------------------------------------------------------------------------

@pytest.mark.backend
def test_architecture_shapes_and_parameter_counts():
    expected = [
        (archs.make_generator, (None, 100), (None, 28, 28, 1), 2_330_944),
        (archs.make_f, (None, 28, 28, 1), (None, 14, 14, 64), 1_664),
        (archs.make_s, (None, 14, 14, 64), (None, 7, 7, 128), 204_928),
        (archs.make_ff, (None, 7, 7, 128), (None, 11), 69_003),
    ]
    for make, ins, outs, params in expected:
        m = make()
        assert tuple(m.inputs[0].shape) == ins
        assert m.output_shape == outs
        assert m.count_params() == params, m.name
    g = archs.make_generator()
    assert g.layers[-1].activation.__name__ == "tanh"
    assert all(getattr(layer, "use_bias", False) is False for layer in g.layers
               if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2DTranspose)))
    assert [l.negative_slope for l in g.layers if isinstance(l, keras.layers.LeakyReLU)] == [0.3] * 3
    assert archs.NUM_CLASSES == 11 and FAKE_CLASS == 10


def test_preprocess_scaling():
    x = preprocess(np.array([[[0, 255], [127, 128]]], np.uint8))
    assert x.shape == (1, 2, 2, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, :, 0], [[-1, 1], [127 / 127.5 - 1, 128 / 127.5 - 1]], atol=1e-7)


@pytest.mark.backend
@needs_mnist
def test_load_mnist_streams():
    """tf.data under TensorFlow (as the original), an ArrayStream under JAX."""
    xpriv, xtest = load_mnist(seed=0)
    if backend.is_tensorflow():
        import tensorflow as tf
        assert xpriv.element_spec[0].shape == (28, 28, 1)
        assert xpriv.element_spec[1].dtype == tf.uint8
        assert int(xtest.cardinality()) == 10_000
    else:
        assert isinstance(xpriv, ArrayStream) and xpriv.element_shape == (28, 28, 1)
        assert xpriv.labels.dtype == np.uint8 and xpriv.shuffle_buffer == 10_000
        assert len(xtest) == 10_000 and xtest.shuffle_buffer is None
    x, _ = next(iter(xpriv))
    assert -1.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0


@pytest.mark.backend
@pytest.mark.parametrize("kwargs, match", [
    (dict(target_class=10), "target_class"),
    (dict(target_class=-1), "target_class"),
    (dict(target_class=1.5), "target_class"),
    (dict(target_class=True), "target_class"),
    (dict(gradient_factor=0), "gradient_factor"),
    (dict(gradient_factor=-1e5), "gradient_factor"),
    (dict(gradient_factor=float("nan")), "gradient_factor"),
    (dict(gradient_factor=float("inf")), "gradient_factor"),
    (dict(gradient_factor="1e5"), "gradient_factor"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=2.5), "batch_size"),
])
def test_bad_client_parameter_validation(kwargs, match):
    args = dict(target_class=1, gradient_factor=1e5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        BadClient(archs.make_f(), archs.make_ff(), archs.make_generator(), **args)


@pytest.mark.backend
def test_bad_client_takes_the_original_positional_arguments():
    """The original's ``BadClient(f, ff, G, batch_size, yt)`` (issue #21); the package's settings are keywords."""
    f, ff, g = archs.make_f(), archs.make_ff(), archs.make_generator()
    bad = BadClient(f, ff, g, 256, 3)
    assert bad.batch_size == 256 and bad.target_class == 3
    with pytest.raises(ValueError, match="target_class must be an integer digit in 0..9, got 256"):
        BadClient(f, ff, g, 3, 256)
    with pytest.raises(TypeError, match="target_class"):
        BadClient(f, ff, g, 256)
    with pytest.raises(TypeError):
        BadClient(f, ff, g, 256, 1, 1e5)  # the factor is a keyword


@pytest.mark.backend
def test_scale_op_and_builder_validation():
    with pytest.raises(ValueError, match="gradient_factor"):
        scale_up(ops.ones(2), 0.0)
    with pytest.raises(ValueError, match="honest_clients"):
        build_attack(honest_clients=-1, xpriv=_fake_data())
    with pytest.raises(ValueError, match="target_class"):
        build_attack(honest_clients=1, target_class=11, xpriv=_fake_data())


@pytest.mark.backend
def test_server_argument_validation():
    f, ff, s = archs.make_f(), archs.make_ff(), archs.make_s()
    data = _fake_data()
    with pytest.raises(ValueError, match="batch_size"):
        Server(s, [Client(f, ff)], data, 0)
    with pytest.raises(ValueError, match="optimizer"):
        Server(s, [Client(f, ff)], data, 8, optimizer="adam")
    with pytest.raises(ValueError, match="at least one client"):
        Server(s, [], data, 8)
    with pytest.raises(TypeError, match="Client"):
        Server(s, [f], data, 8)
    srv = Server(archs.make_s, [Client(f, ff)], data, 8)  # a factory, as in the original
    with pytest.raises(ValueError, match="iterations"):
        srv(-1)


def _expect_shapes(exc_info, *shapes):
    msg = str(exc_info.value)
    for shape in shapes:
        assert shape in msg, f"{shape} not in error message: {msg}"


@pytest.mark.backend
def test_user_models_with_wrong_shapes_are_rejected_clearly():
    data = _fake_data()
    f, ff, s, g = archs.make_f(), archs.make_ff(), archs.make_s(), archs.make_generator()

    # server expecting 32 channels, f giving 64
    bad_s = keras.Sequential([keras.Input((14, 14, 32)), keras.layers.Conv2D(128, 5, 2, "same")])
    with pytest.raises(ValueError) as e:
        Server(bad_s, [Client(f, ff)], data, 8)
    _expect_shapes(e, "(None, 14, 14, 64)", "(None, 14, 14, 32)")

    # an honest client whose f gives a different smashed shape than the others
    f32 = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 5, 2, "same")])
    with pytest.raises(ValueError) as e:
        Server(s, [Client(f, ff), Client(f32, ff)], data, 8)
    _expect_shapes(e, "(None, 14, 14, 32)", "(None, 14, 14, 64)")

    # head expecting a different server output
    ff_small = keras.Sequential([keras.Input((7, 7, 64)), keras.layers.Flatten(), keras.layers.Dense(11)])
    with pytest.raises(ValueError) as e:
        Server(s, [Client(f, ff_small)], data, 8)
    _expect_shapes(e, "(None, 7, 7, 64)", "(None, 7, 7, 128)")

    # honest heads disagreeing on the number of classes
    ff10 = archs.make_ff(num_classes=10)
    with pytest.raises(ValueError) as e:
        Server(s, [Client(f, ff), Client(f, ff10)], data, 8)
    _expect_shapes(e, "(None, 10)", "(None, 11)")

    # a head without the fake class
    with pytest.raises(ValueError, match="fake_class 10") as e:
        Server(s, [BadClient(f, ff10, g, target_class=1)], data, 8)
    _expect_shapes(e, "(None, 10)")

    # generator producing 32x32 images
    g32 = keras.Sequential([keras.Input((100,)), keras.layers.Dense(32 * 32), keras.layers.Reshape((32, 32, 1))])
    with pytest.raises(ValueError) as e:
        Server(s, [BadClient(f, ff, g32, target_class=1)], data, 8)
    _expect_shapes(e, "(None, 32, 32, 1)", "(None, 28, 28, 1)")

    # data that does not fit f
    with pytest.raises(ValueError) as e:
        Server(s, [Client(f, ff)], _fake_data(shape=(32, 32, 3)), 8)
    _expect_shapes(e, "(None, 28, 28, 1)", "(None, 32, 32, 3)")

    # a compatible user-supplied server (different internals, same shapes) is accepted
    s2 = keras.Sequential([keras.Input((14, 14, 64)), keras.layers.Conv2D(128, 3, 2, "same"), keras.layers.ReLU()])
    srv = Server(s2, [BadClient(f, ff, g, target_class=3), Client(f, ff)], data, 8)
    assert srv.smashed_shape == (14, 14, 64) and srv.server_out_shape == (7, 7, 128)
    assert srv.num_classes == 11
    assert output_shape(f, (28, 28, 1), "f") == (14, 14, 64)


# --------------------------------------------------------------------------------------------
# optimizer (shared Adam) and step isolation
# --------------------------------------------------------------------------------------------

@pytest.mark.backend
def test_shared_optimizer_is_built_on_the_union_and_accepts_subsets():
    srv, bad = _setup(honest=2, run_eagerly=not COMPILED)
    union = {id(v) for v in srv.s.trainable_variables + bad.f.trainable_variables
             + bad.ff.trainable_variables + bad.generator.trainable_variables}
    assert len(srv.optimizers) == 1
    opt = srv.optimizer
    assert opt.built
    # one momentum + one velocity per variable of the union, plus iteration and learning rate
    assert len(opt.variables) == 2 * len(union) + 2
    assert float(opt.learning_rate) == pytest.approx(1e-4)
    honest_losses, g_losses = srv(2)
    assert len(honest_losses) == 4 and len(g_losses) == 1
    assert all(np.isfinite(honest_losses + g_losses))
    # 2 iterations x (1 malicious + 2 honest) steps, one iteration counter for everything
    assert int(_np(opt.iterations)) == 6
    # honest clients sharing f/ff share one compiled step; the malicious client has two
    assert len(srv._steps) == 3


@pytest.mark.backend
def test_shared_optimizer_steps_each_group_from_its_own_moments_at_the_global_counter():
    """The original's one legacy Adam for every step, as ``optimizer="shared"`` reproduces it: Adam moments per
    variable and one iteration counter for all steps. An honest step at global step t moves the server, f and ff
    by Adam's update from *their* moments with the bias correction of t (here t = 4, after a G-step and two
    honest steps, although f and ff were trained twice), computed here by hand; G's weights and moments, which
    the step does not train, stay as they were."""
    srv, bad = _setup(honest=2, run_eagerly=not COMPILED)
    srv(1)  # G-step, honest0, honest1: counter 3
    opt, honest = srv.optimizer, srv.clients[1]
    assert int(_np(opt.iterations)) == 3
    x, y = srv.next_batch()
    snap = _snapshot(srv)
    _, grads, trained = srv.compute_gradients(honest, x, y, HONEST)
    _restore(snap)
    index = [opt._get_variable_index(v) for v in trained]
    m0 = [_np(opt._momentums[i]).astype(np.float64) for i in index]
    v0 = [_np(opt._velocities[i]).astype(np.float64) for i in index]
    w0 = [_np(v).astype(np.float64) for v in trained]
    assert min(float(np.abs(m).max()) for m in m0) > 0  # every trained group has been trained before
    g_vars = bad.generator.trainable_variables
    g_index = [opt._get_variable_index(v) for v in g_vars]
    g_before = _values(g_vars) + [_np(opt._momentums[i]) for i in g_index] + [_np(opt._velocities[i]) for i in g_index]
    srv.train_step(honest, x, y, HONEST)

    b1, b2, eps, lr, t = 0.9, 0.999, float(opt.epsilon), srv.learning_rate, 4  # the original's Adam(1e-4)
    assert (opt.beta_1, opt.beta_2, lr) == (b1, b2, 1e-4)
    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    for var, g, m, v, w in zip(trained, grads, m0, v0, w0):
        g = _np(g).astype(np.float64)
        m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
        np.testing.assert_allclose(_np(var), w - alpha * m / (np.sqrt(v) + eps), rtol=1e-5, atol=1e-9)
    assert int(_np(opt.iterations)) == 4
    g_after = _values(g_vars) + [_np(opt._momentums[i]) for i in g_index] + [_np(opt._velocities[i]) for i in g_index]
    for a, b in zip(g_after, g_before):
        np.testing.assert_array_equal(a, b)
    assert {id(v) for v in trained} == {id(v) for v in srv.s.trainable_variables + honest.f.trainable_variables
                                         + honest.ff.trainable_variables}


def test_per_group_option_builds_one_optimizer_per_variable_set():
    srv, bad = _setup(honest=1, optimizer="per_group")
    assert srv.optimizer is None and len(srv.optimizers) == 2
    g_opt = srv.optimizer_for(srv.step_variables(bad, GENERATOR))
    h_opt = srv.optimizer_for(srv.step_variables(srv.clients[1], HONEST))
    assert g_opt is not h_opt
    assert h_opt is srv.optimizer_for(srv.step_variables(bad, POISON))
    srv(2)
    assert int(_np(g_opt.iterations)) == 1 and int(_np(h_opt.iterations)) == 3


@pytest.mark.backend
def test_generator_step_leaves_f_and_ff_unchanged_and_trains_g():
    srv, bad = _setup()
    srv(2)  # populate moments
    f_ff = bad.f.trainable_variables + bad.ff.trainable_variables
    before_fff, before_g = _values(f_ff), _values(bad.generator.trainable_variables)
    before_s = _values(srv.s.trainable_variables)
    srv.train_step(bad, bad.sample_noise(8), None, GENERATOR)
    for v, b in zip(f_ff, before_fff):
        np.testing.assert_array_equal(_np(v), b)
    assert np.abs(_delta(before_g, bad.generator.trainable_variables)).max() > 0
    assert np.abs(_delta(before_s, srv.s.trainable_variables)).max() > 0  # the server does move
    assert {id(v) for v in srv.step_variables(bad, GENERATOR)} == {
        id(v) for v in srv.s.trainable_variables + bad.generator.trainable_variables}


@pytest.mark.backend
def test_poisoning_step_leaves_generator_weights_unchanged():
    srv, bad = _setup()
    srv(2)
    g_vars = bad.generator.trainable_variables
    before_g = _values(g_vars)
    before_stats = _values(bad.generator.non_trainable_variables)
    f_ff = bad.f.trainable_variables + bad.ff.trainable_variables
    before_fff = _values(f_ff)
    srv.train_step(bad, bad.sample_noise(8), None, POISON)
    for v, b in zip(g_vars, before_g):
        np.testing.assert_array_equal(_np(v), b)
    assert np.abs(_delta(before_fff, f_ff)).max() > 0
    # faithful: G runs in training mode, so its BatchNorm statistics still update
    assert np.abs(_delta(before_stats, bad.generator.non_trainable_variables)).max() > 0


@pytest.mark.backend
def test_poisoning_step_uses_fake_class_and_generator_step_the_target():
    srv, bad = _setup()
    z = bad.sample_noise(8)
    out = ops.zeros((8,) + srv.server_out_shape)
    logits = bad.ff(out, training=True)
    ce = lambda label: float(ops.mean(keras.losses.sparse_categorical_crossentropy(  # noqa: E731
        ops.full((8,), label), logits, from_logits=True)))
    assert float(bad.step1(out, None, POISON)) == pytest.approx(ce(10), rel=1e-6)
    assert float(bad.step1(out, None, GENERATOR)) == pytest.approx(ce(1), rel=1e-6)
    assert z.shape == (8, 100)


@pytest.mark.backend
def test_server_is_called_without_training_flag_so_dropout_is_inactive():
    srv, _ = _setup()
    a = np.random.RandomState(0).randn(4, *srv.smashed_shape).astype(np.float32)
    np.testing.assert_array_equal(_np(srv._server_forward(a)), _np(srv.s(a, training=False)))
    assert not np.array_equal(_np(srv.s(a, training=True)), _np(srv.s(a, training=False)))


@pytest.mark.backend
def test_schedule_malicious_first_alternating_and_shared_iterator():
    srv, bad = _setup(honest=3)
    calls = []
    srv.train_step = lambda client, inputs, labels=None, phase=HONEST: (
        calls.append((client.name, phase, None if labels is None else np.asarray(labels).tolist()))
        or ops.convert_to_tensor(0.0))
    _, y = _fake_data()  # the data _setup used
    honest, gen = srv(3)
    assert [c[:2] for c in calls] == [
        ("BadClient", GENERATOR), ("honest0", HONEST), ("honest1", HONEST), ("honest2", HONEST),
        ("BadClient", POISON), ("honest0", HONEST), ("honest1", HONEST), ("honest2", HONEST),
        ("BadClient", GENERATOR), ("honest0", HONEST), ("honest1", HONEST), ("honest2", HONEST)]
    assert len(honest) == 9 and len(gen) == 2
    # honest clients consume consecutive batches of one shared stream (no per-client partition):
    # the first 8 batches of 8 cover all 64 examples exactly once
    labels = np.concatenate([c[2] for c in calls if c[1] == HONEST][:8])
    assert sorted(labels.tolist()) == sorted(y.tolist())
    # the parity follows the running counter across calls
    calls.clear()
    srv(1)
    assert calls[0][:2] == ("BadClient", POISON)


def test_generator_step_barely_moves_the_server_with_the_shared_optimizer(float64):
    """A G-step's own contribution to the server update is ~1/factor of an honest step's, while G
    receives the same gradient as without scaling (float64, moments populated by earlier steps).

    Note: with Adam, *any* step also moves the server by the momentum carried over from earlier
    (honest) steps; the original legacy optimizer does the same. The contribution of the step's
    own gradient is isolated by subtracting a zero-gradient step taken from the same state.
    """
    srv, bad = _setup(batch=16)
    srv(3)  # G-, poisoning- and honest steps: the shared server moments now hold normal gradients
    unscaled = BadClient(bad.f, bad.ff, bad.generator, 16, 1, gradient_factor=1.0, seed=5)
    honest = srv.clients[1]
    s_vars, g_vars = srv.s.trainable_variables, bad.generator.trainable_variables
    z = bad.sample_noise(16)
    x, y = srv.next_batch()
    snap = _snapshot(srv)

    def run(step):
        _restore(snap)
        s0, g0 = _values(s_vars), _values(g_vars)
        step()
        return _delta(s0, s_vars), _delta(g0, g_vars)

    # gradients: the server gets exactly 1/factor of the unscaled gradient; G the same gradient
    _restore(snap)
    _, grads_scaled, variables = srv.compute_gradients(bad, z, None, GENERATOR)
    _restore(snap)
    _, grads_plain, _ = srv.compute_gradients(unscaled, z, None, GENERATOR)
    assert all(v.dtype == "float64" for v in variables)
    n_s = len(s_vars)
    for gs, gp in zip(grads_scaled[:n_s], grads_plain[:n_s]):
        gp = _np(gp) / 1e5
        np.testing.assert_allclose(_np(gs), gp, rtol=0, atol=1e-12 * np.abs(gp).max())
    for gs, gp in zip(grads_scaled[n_s:], grads_plain[n_s:]):
        gp = _np(gp)
        np.testing.assert_allclose(_np(gs), gp, rtol=0, atol=1e-12 * np.abs(gp).max())
    assert _norm(grads_scaled[n_s:]) > 1e-3  # a normal-size generator gradient

    zero_vars = srv.step_variables(bad, GENERATOR)
    d0_s, _ = run(lambda: srv.optimizer.apply_gradients([(ops.zeros_like(v), v) for v in zero_vars]))
    dg_s, dg_g = run(lambda: srv.train_step(bad, z, None, GENERATOR))
    dp_s, dp_g = run(lambda: srv.train_step(unscaled, z, None, GENERATOR))
    dh_s, _ = run(lambda: srv.train_step(honest, x, y, HONEST))

    own_g = np.linalg.norm(dg_s - d0_s)      # server change caused by the G-step's gradient
    own_plain = np.linalg.norm(dp_s - d0_s)  # same without gradient scaling
    own_h = np.linalg.norm(dh_s - d0_s)      # server change caused by an honest step's gradient
    print(f"shared: G-step own server change / honest = {own_g / own_h:.3g}, "
          f"/ unscaled G-step = {own_g / own_plain:.3g}; momentum-only change / honest = "
          f"{np.linalg.norm(d0_s) / own_h:.3g}")
    assert own_h > 1e-5
    assert own_g / own_h < 1e-4, own_g / own_h
    assert 2e-6 < own_g / own_plain < 5e-5, own_g / own_plain
    # G's update does not depend on the factor (its moments only ever see G-step gradients)
    np.testing.assert_allclose(dg_g, dp_g, rtol=1e-6, atol=1e-15)
    assert np.linalg.norm(dg_g) > 1e-4


def test_separate_fresh_optimizer_would_not_keep_the_server_update_tiny(float64):
    """Documents the deviation of optimizer="per_group": Adam is nearly scale invariant,
    so an optimizer that only ever sees the shrunk server gradients takes normal-size steps."""
    srv, bad = _setup(batch=16, optimizer="per_group")
    assert srv.s.trainable_variables[0].dtype == "float64"
    srv(3)
    honest = srv.clients[1]
    s_vars = srv.s.trainable_variables
    g_opt = srv.optimizer_for(srv.step_variables(bad, GENERATOR))
    z = bad.sample_noise(16)
    x, y = srv.next_batch()
    snap = _snapshot(srv)

    def run(step):
        _restore(snap)
        s0 = _values(s_vars)
        step()
        return _delta(s0, s_vars)

    zero_vars = srv.step_variables(bad, GENERATOR)
    d0 = run(lambda: g_opt.apply_gradients([(ops.zeros_like(v), v) for v in zero_vars]))
    dg = run(lambda: srv.train_step(bad, z, None, GENERATOR))
    dh = run(lambda: srv.train_step(honest, x, y, HONEST))
    ratio = np.linalg.norm(dg - d0) / np.linalg.norm(dh)
    assert ratio > 1e-2, ratio  # vs < 1e-4 with the shared optimizer

    # a completely fresh Adam on the G-step group: its very first server step is full-size
    fresh = keras.optimizers.Adam(1e-4)
    _restore(snap)
    _, grads, variables = srv.compute_gradients(bad, z, None, GENERATOR)
    fresh.build(variables)
    s0 = _values(s_vars)
    fresh.apply_gradients(zip(grads, variables))
    fresh_ratio = np.linalg.norm(_delta(s0, s_vars)) / np.linalg.norm(dh)
    print(f"per_group: G-step own server change / honest change = {ratio:.3g}; "
          f"fresh Adam first G-step / honest change = {fresh_ratio:.3g}")
    assert fresh_ratio > 1e-3, fresh_ratio  # vs < 1e-4 (in fact ~1e-5) with the shared optimizer


# --------------------------------------------------------------------------------------------
# MNIST: honest learning, judge, end-to-end
# --------------------------------------------------------------------------------------------

@needs_mnist
def test_honest_training_alone_learns_mnist(mnist):
    x_train, y_train, x_test, y_test = mnist
    keras.utils.set_random_seed(0)
    f, ff = archs.make_f(), archs.make_ff()
    clients = [Client(f, ff, name=f"honest{i}") for i in range(3)]
    srv = Server(archs.make_s(), clients, (x_train[:20000], y_train[:20000]), 32, seed=0)
    srv(100)  # 300 honest steps at batch 32, Adam 1e-4 (the original's optimizer)
    acc = srv.accuracy(x_test[:2000], y_test[:2000])
    print(f"honest-only accuracy after 300 steps: {acc:.3f}")
    assert acc > 0.8, acc


@needs_mnist
def test_judge_recipe_trains_fast_reaches_98_percent_and_is_cached(tmp_path, mnist):
    """The packaged recipe (JUDGE_VERSION): well under a minute on CPU, > 98% MNIST test accuracy."""
    x_train, y_train, x_test, y_test = mnist
    judge = Judge.load(tmp_path, data=mnist, verbose=False)
    print(f"judge: test accuracy {judge.test_accuracy:.4f}, trained in {judge.info['train_seconds']} s")
    assert not judge.info["cached"]
    assert judge.test_accuracy > 0.98
    # ~10-20 s on two idle cores; a loose bound so that a busy shared machine does not fail it
    assert judge.info["train_seconds"] < 120
    assert (tmp_path / f"mnist_judge_{JUDGE_VERSION}.weights.h5").exists()
    again = Judge.load(tmp_path, verbose=False)
    assert again.info["cached"] and again.test_accuracy == judge.test_accuracy
    np.testing.assert_array_equal(again.classify(x_test[:300]), judge.classify(x_test[:300]))
    # another version key is another cache entry (it would be trained, not loaded)
    assert not (tmp_path / "mnist_judge_other.weights.h5").exists()
    ones = x_test[y_test == 1][:300]
    assert judge.target_rate(ones, 1) > 0.95
    rates = judge.rates(x_test[:500], 1)
    assert 0 <= rates["confident_rate"] <= rates["target_rate"] <= 1
    assert rates["target_rate"] == pytest.approx(np.mean(y_test[:500] == 1), abs=0.02)
    assert rates["histogram"].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="28, 28, 1"):
        judge.classify(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="target_class"):
        judge.rates(ones, 10)


@needs_mnist
def test_tiny_end_to_end_attack_and_judge(tmp_path, mnist):
    x_train, y_train, x_test, y_test = mnist
    srv = build_attack(honest_clients=2, target_class=1, batch_size=16, seed=0, xpriv=(x_train[:2000], y_train[:2000]))
    seen = []
    honest, gen = srv(4, callback=lambda server, it: seen.append(it), callback_every=2)
    assert seen == [2, 4]
    assert len(honest) == 8 and len(gen) == 2 and np.all(np.isfinite(honest + gen))
    bad = srv.clients[0]
    stats = _values(bad.generator.non_trainable_variables)
    samples = bad.generate(40, batch_size=20)
    assert samples.shape == (40, 28, 28, 1) and samples.min() >= -1 and samples.max() <= 1
    for v, b in zip(bad.generator.non_trainable_variables, stats):  # sampling has no side effect
        np.testing.assert_array_equal(_np(v), b)
    judge = Judge.load(tmp_path, version="test-e2e", data=(x_train, y_train, x_test[:500], y_test[:500]),
                       train_subset=2000, epochs=1, verbose=False)
    rate = judge.target_rate(samples, 1)
    assert 0.0 <= rate <= 1.0


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------

def _state(srv, bad):
    models = [srv.s, bad.f, bad.ff, bad.generator]
    return ([_np(v) for m in models for v in m.variables]
            + [_np(v) for o in srv.optimizers for v in o.variables])


@pytest.mark.backend
@pytest.mark.parametrize("optimizer", ["shared", "per_group"])
def test_checkpoint_resume_continues_the_same_run(tmp_path, optimizer):
    """4 iterations in one go equal 2, save, a freshly built server, restore, 2 more: weights (Dropout
    masks included), BatchNorm statistics, Adam moments and counters, attacker noise and data order. The saving
    run goes on after the save (the checkpoint must not follow it) and is the uninterrupted run."""
    straight, bad = _setup(honest=1, optimizer=optimizer, run_eagerly=not COMPILED)
    losses = straight(2)
    straight.save(tmp_path / "ckpt", extra={"history": [1, 2]})
    losses = [a + b for a, b in zip(losses, straight(2))]
    expected = _state(straight, bad)

    resumed, bad2 = _setup(honest=1, optimizer=optimizer, run_eagerly=not COMPILED, seed=5)  # other init and order
    extra = resumed.restore(tmp_path / "ckpt")
    assert list(extra) == ["history"] and extra["history"].tolist() == [1, 2] and resumed.iteration == 2
    rest = resumed(2)
    assert resumed.iteration == 4
    np.testing.assert_allclose(rest[0], losses[0][-2:], rtol=1e-6)
    np.testing.assert_allclose(rest[1], losses[1][-1:], rtol=1e-6)
    for got, want in zip(_state(resumed, bad2), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.backend
def test_a_save_cut_short_leaves_the_previous_one(tmp_path, monkeypatch):
    srv, _ = _setup(honest=1)
    srv(1)
    srv.save(tmp_path / "ckpt")
    srv(1)

    def killed(*args):
        raise KeyboardInterrupt("killed while switching to the new save")
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        srv.save(tmp_path / "ckpt")
    monkeypatch.undo()
    again, _ = _setup(honest=1)
    again.restore(tmp_path / "ckpt")
    assert again.iteration == 1
    srv.save(tmp_path / "ckpt")  # the next save cleans up the orphaned files
    assert len([f for f in (tmp_path / "ckpt").glob("ckpt-*.json")]) == 1
    assert len([f for f in (tmp_path / "ckpt").glob("ckpt-*.npz")]) == 1


@pytest.mark.backend
def test_restore_rejects_missing_and_mismatched_checkpoints(tmp_path):
    srv, _ = _setup(honest=1)
    with pytest.raises(FileNotFoundError, match="Server.save"):
        srv.restore(tmp_path / "nothing")
    srv.save(tmp_path / "ckpt")
    other, _ = _setup(honest=2)
    with pytest.raises(ValueError, match="clients"):
        other.restore(tmp_path / "ckpt")
    keras.utils.set_random_seed(0)
    f, ff, g = archs.make_f(), archs.make_ff(), archs.make_generator()
    target3 = Server(archs.make_s(), [BadClient(f, ff, g, target_class=3)], _fake_data(), 8)
    with pytest.raises(ValueError, match="target_class"):
        target3.restore(tmp_path / "ckpt")
    # same settings, other networks: the variables' shapes are checked
    keras.utils.set_random_seed(0)
    f, ff, g = archs.make_f(), archs.make_ff(), archs.make_generator()
    s2 = keras.Sequential([keras.Input((14, 14, 64)), keras.layers.Conv2D(128, 3, 2, "same")])
    other_s = Server(s2, [BadClient(f, ff, g, target_class=1), Client(f, ff)], _fake_data(), 8)
    with pytest.raises(ValueError, match="does not match this server's networks"):
        other_s.restore(tmp_path / "ckpt")


@needs_mnist
def test_benchmark_stops_and_resumes_the_same_run(tmp_path, capsys):
    """benchmarks/clientside_attack.py: a run cut by --max-seconds (exit 3) and resumed from --checkpoint
    ends with the evaluation history of the run done in one go."""
    import json
    import runpy

    from ClientSideAttack import judge as judge_module

    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    keras.utils.set_random_seed(0)  # an untrained judge: only its determinism matters here
    judge_module.make_judge_model().save_weights(judge_dir / f"mnist_judge_{JUDGE_VERSION}.weights.h5")
    (judge_dir / f"mnist_judge_{JUDGE_VERSION}.json").write_text(
        json.dumps({"version": JUDGE_VERSION, "test_accuracy": 0.0}))
    bench = runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "clientside_attack.py"))

    def run(out, *extra):
        return bench["main"](["--iterations", "3", "--honest-clients", "1", "--batch-size", "8",
                              "--eval-every", "1", "--eval-samples", "20", "--grid-samples", "3",
                              "--judge-dir", str(judge_dir), "--timing-reps", "1", "--out", str(tmp_path / out),
                              *extra])

    straight, rc = run("straight")
    assert rc == 0 and straight["iterations_done"] == 3 and len(straight["history"]) == 4
    assert sorted(straight["step_costs_s"]) == sorted(f"{k} {w}" for k in ("honest", "generator", "poison")
                                                      for w in ("step", "bare"))
    assert min(straight["step_costs_s"].values()) > 0
    ckpt = ["--checkpoint", str(tmp_path / "ckpt")]
    first, rc1 = run("resumed", *ckpt, "--max-seconds", "0")
    assert rc1 == 3 and first["iterations_done"] == 1 and not first["complete"]
    second, rc2 = run("resumed", *ckpt)
    printed = capsys.readouterr().out
    assert rc2 == 0 and "resumed from" in printed
    for written in ("samples_target1.png", "summary_target1.json"):  # named by their absolute paths
        assert f"wrote {(tmp_path / 'resumed' / written).resolve()}" in printed
    assert f"wrote checkpoint {(tmp_path / 'ckpt').resolve()}" in printed
    assert [h["iteration"] for h in second["history"]] == [0, 1, 2, 3]
    for a, b in zip(second["history"], straight["history"]):
        assert a["histogram"] == b["histogram"] and a["target_rate"] == b["target_rate"]
    assert (tmp_path / "resumed" / "samples_target1.png").stat().st_size > 1000
    with pytest.raises(SystemExit, match="target_class"):  # the server's own settings differ
        run("other", *ckpt, "--target", "2")
    with pytest.raises(SystemExit, match="arguments ask for"):  # the benchmark's differ
        run("other", *ckpt, "--eval-samples", "30")

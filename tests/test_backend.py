"""The backend module and the one implementation on both Keras backends (run under TensorFlow and under JAX).

* :func:`splitnn.backend.apply_gradients` is Keras' own optimizer update, bit for bit, also on a subset of the
  optimizer's variables and twice in one compiled step;
* :func:`splitnn.backend.input_gradient` is differentiable (the GP's double back-propagation), checked against a
  hand-derived gradient;
* FSHA's gradient penalty and losses equal hand computations; bad inputs are clear errors on both backends;
* under ``KERAS_BACKEND=jax`` the package never imports TensorFlow;
* a checkpoint written under TensorFlow is continued under JAX and gives the uninterrupted run's curve.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from fsha import architectures
from fsha.FSHA import FSHA, adversarial_losses, gradient_penalty
from splitnn import backend
from splitnn.streams import ArrayStream

pytestmark = pytest.mark.backend
ROOT = Path(__file__).resolve().parent.parent
HP = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-3, 'lr_tilde': 1e-3, 'lr_D': 1e-3}


def two_layer(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation='tanh'), keras.layers.Dense(2)])


@pytest.mark.parametrize('subset', [False, True])
def test_apply_gradients_is_keras_apply(subset):
    """Twice in one compiled step, on all variables or on the first layer only (a shared optimizer's part)."""
    stateful, pure = two_layer(0), two_layer(0)
    opts = [keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2)]
    for opt, model in zip(opts, (stateful, pure)):
        opt.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    g1 = [rng.normal(size=v.shape).astype('float32') for v in stateful.trainable_variables]
    g2 = [rng.normal(size=v.shape).astype('float32') for v in stateful.trainable_variables]
    k = 2 if subset else 4
    opts[0].apply(g1[:k], stateful.trainable_variables[:k])
    opts[0].apply(g2[:k], stateful.trainable_variables[:k])
    part = pure.trainable_variables[:k]

    def step(values):
        w, o = values[:k], values[k:]
        w, o = backend.apply_gradients(opts[1], o, g1[:k], w, part)
        w, o = backend.apply_gradients(opts[1], o, g2[:k], w, part)
        return list(w) + list(o), ()
    backend.StatefulStep(step, part + opts[1].variables)()
    # equal up to float32 rounding: the compiled step may fuse the update's arithmetic differently
    for a, b in zip(stateful.variables + opts[0].variables, pure.variables + opts[1].variables):
        np.testing.assert_allclose(backend.to_numpy(a.value), backend.to_numpy(b.value), rtol=1e-6, atol=1e-9)
    assert int(backend.to_numpy(opts[1].iterations.value)) == 2


def test_input_gradient_is_differentiable():
    """P(w) = sum_b (d/dx sum(tanh(w x)))^2 = sum_b (w (1 - tanh(w x_b)^2))^2, whose dP/dw is derived by hand."""
    x = np.array([0.3, -1.2, 0.7], 'float32')

    def penalty(params, x):
        w = params[0]
        grad, _ = backend.input_gradient(lambda xx: (keras.ops.tanh(w * xx), None), keras.ops.convert_to_tensor(x))
        return keras.ops.sum(grad ** 2), None

    w = np.float32(0.8)
    value, _, (g,) = backend.value_and_grad(penalty, [keras.ops.convert_to_tensor(w)], x)
    t = np.tanh(w * x)
    s = 1 - t ** 2
    np.testing.assert_allclose(float(value), np.sum((w * s) ** 2), rtol=1e-5)
    # d/dw (w s)^2 = 2 w s (s + w ds/dw), ds/dw = -2 t s x
    np.testing.assert_allclose(float(g), np.sum(2 * w * s * (s + w * (-2 * t * s * x))), rtol=1e-5)


def test_stateless_draws_depend_on_the_key_only():
    a = backend.to_numpy(backend.uniform((5,), backend.step_key(3, 7)))
    b = backend.to_numpy(backend.uniform((5,), backend.step_key(3, 7)))
    c = backend.to_numpy(backend.uniform((5,), backend.step_key(3, 8)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and np.all((a >= 0) & (a < 1))


def test_gradient_penalty_of_a_linear_critic():
    """D(z) = sum(w * z): dD/dz = w everywhere, so the per-channel norm of channel c is ||w[..., c]|| and the
    per-sample norm ||w||, whatever alpha."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 2, 3)).astype('float32')
    critic = lambda z: keras.ops.sum(z * w, axis=(1, 2, 3))  # noqa: E731
    zp, zq = rng.normal(size=(4, 2, 2, 3)).astype('float32'), rng.normal(size=(4, 2, 2, 3)).astype('float32')
    alpha = rng.uniform(size=(4, 1, 1, 1)).astype('float32')
    per_channel = np.mean((np.sqrt((w ** 2).sum(axis=(0, 1))) - 1) ** 2)
    per_sample = (np.sqrt((w ** 2).sum()) - 1) ** 2
    np.testing.assert_allclose(float(gradient_penalty(critic, zp, zq, alpha=alpha)), per_channel, rtol=1e-5)
    np.testing.assert_allclose(float(gradient_penalty(critic, zp, zq, norm='per_sample', alpha=alpha)),
                               per_sample, rtol=1e-5)
    with pytest.raises(ValueError, match='per_sample'):
        gradient_penalty(critic, zp.reshape(4, -1), zq.reshape(4, -1))


def test_adversarial_losses_by_hand():
    adv_priv, adv_pub = np.array([[1.0], [3.0]], 'float32'), np.array([[-2.0], [0.0]], 'float32')
    f_loss, d_loss = adversarial_losses(adv_priv, adv_pub, wgan=True)
    assert (float(f_loss), float(d_loss)) == (2.0, -1.0 - 2.0)
    bce1 = lambda x: np.log1p(np.exp(-x))  # noqa: E731  (label 1)
    f_loss, d_loss = adversarial_losses(adv_priv, adv_pub, wgan=False)
    np.testing.assert_allclose(float(f_loss), np.mean(bce1(adv_priv)), rtol=1e-6)
    np.testing.assert_allclose(float(d_loss), (np.mean(bce1(adv_pub)) + np.mean(bce1(-adv_priv))) / 2, rtol=1e-6)


def small_attack(n=32, **kw):
    rng = np.random.default_rng(0)
    # smooth images (4x4 blocks): something a 4-channel pilot and decoder can learn to reconstruct
    x = np.kron(rng.uniform(-1, 1, (n, 4, 4, 3)), np.ones((1, 4, 4, 1))).astype('float32')
    nets = architectures.small_networks((16, 16, 3), width=4, z_channels=8, critic_width=8)
    return FSHA(ArrayStream(x, seed=1), ArrayStream(x, seed=2), 3, 8, HP, **nets, **kw)


def test_misspelt_hparams_key_is_an_error_naming_the_right_one():
    with pytest.raises(ValueError, match="unknown hparams key 'gradient_penality'; did you mean 'gradient_penalty'"):
        small_attack().__class__(np.zeros((8, 16, 16, 3), 'float32'), np.zeros((8, 16, 16, 3), 'float32'), 3, 8,
                                 {k if k != 'gradient_penalty' else 'gradient_penality': v for k, v in HP.items()})
    # the original notebooks' keys are accepted, style_loss included
    from fsha.hparams import validate_hparams
    assert validate_hparams(dict(HP, style_loss=None, alpha1=1.0, alpha2=2.0, class_num=1, seed=3))['seed'] == 3


def test_clear_errors_on_bad_inputs():
    with pytest.raises(ValueError, match='lr_f'):
        small_attack().__class__(np.zeros((8, 16, 16, 3), 'float32'), np.zeros((8, 16, 16, 3), 'float32'), 3, 8,
                                 dict(HP, lr_f=-1.0))
    with pytest.raises(TypeError, match='unbatched stream'):
        FSHA([1, 2, 3], [1, 2, 3], 3, 8, HP)
    with pytest.raises(ValueError, match=r'\(16, 16, 3\)'):
        FSHA(np.zeros((8, 16, 16, 3), 'float32'), np.zeros((8, 32, 32, 3), 'float32'), 3, 8, HP)
    with pytest.raises(ValueError, match='fewer than one batch'):
        small_attack(n=4)(1, progress_bar=False)


def test_attack_learns_on_this_backend():
    """300 steps on 32 fixed images: the pilot/decoder reconstruct public images clearly better than at the start
    and than the all-zero image (the [-1, 1] mean), and every network moved."""
    attack = small_attack(seed=0)
    x = attack.xpub.images
    start = float(attack.score(x[:8]))
    before = [backend.to_numpy(n.trainable_variables[0].value) for n in attack.networks.values()]
    log = attack(300, log_frequency=100, progress_bar=False)
    assert log.shape == (3, 4) and attack.iteration == 300
    rec, control = attack.attack(x[:8])
    control_mse = float(np.mean((control - x[:8]) ** 2))
    assert control_mse < 0.75 * min(start, float(np.mean(x[:8] ** 2)))
    for b, net in zip(before, attack.networks.values()):
        assert not np.array_equal(b, backend.to_numpy(net.trainable_variables[0].value)), net.name


RUN = textwrap.dedent('''
    import json, sys, numpy as np
    sys.path.insert(0, {root!r})
    from fsha import architectures
    from fsha.FSHA import FSHA
    from splitnn.streams import ArrayStream
    from splitnn.backend import set_seed
    x = np.random.default_rng(0).uniform(-1, 1, (48, 16, 16, 3)).astype('float32')
    set_seed(0)
    nets = architectures.small_networks((16, 16, 3), width=4, z_channels=8, critic_width=8)
    a = FSHA(ArrayStream(x, seed=1), ArrayStream(x, seed=2), 3, 8, {hp!r}, seed=0, **nets)
    if {restore!r}:
        a.restore({path!r})
    log = a({steps}, log_frequency=1, progress_bar=False)
    if {save!r}:
        a.save({path!r})
    import keras
    print(json.dumps({{'backend': keras.backend.backend(), 'tf': 'tensorflow' in sys.modules,
                      'rows': log.tolist(), 'iteration': a.iteration}}))
''')


def run_process(backend_name, steps, path, save=False, restore=False):
    code = RUN.format(root=str(ROOT), hp=HP, restore=restore, path=str(path), steps=steps, save=save)
    env = dict(os.environ, KERAS_BACKEND=backend_name)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(keras.backend.backend() != 'tensorflow', reason='one run covers both directions')
def test_checkpoint_from_tensorflow_continues_under_jax(tmp_path):
    """6 steps in TensorFlow vs 3 in TensorFlow, saved, then 3 more under JAX from that file (no TensorFlow
    imported there): the same LOG rows (float32 rounding of another summation order), the same data order."""
    full = run_process('tensorflow', 6, tmp_path / 'unused')
    first = run_process('tensorflow', 3, tmp_path / 'ckpt', save=True)
    second = run_process('jax', 3, tmp_path / 'ckpt', restore=True)
    assert second['backend'] == 'jax' and not second['tf'] and second['iteration'] == 6
    np.testing.assert_array_equal(first['rows'], full['rows'][:3])
    np.testing.assert_allclose(second['rows'], full['rows'][3:], rtol=2e-3, atol=1e-5)


NO_TF = textwrap.dedent('''
    import sys, numpy as np
    sys.path.insert(0, {root!r})
    import splitnn, splitnn.backend, splitnn.streams, splitnn.checkpoints, splitnn.data, splitnn.utils
    import splitnn.plots, splitnn.metrics, splitnn.timing
    import fsha, fsha.FSHA, fsha.FSHA_distcor, fsha.datasets, fsha.architectures, fsha.honest, fsha.runs
    import fsha.experiments, fsha.properties, fsha.hparams, fsha.reference
    import defenses, defenses.distcor
    from fsha import architectures
    from fsha.FSHA import FSHA
    x = np.random.default_rng(0).uniform(-1, 1, (16, 16, 16, 3)).astype('float32')
    nets = architectures.small_networks((16, 16, 3), width=4, z_channels=8, critic_width=8)
    FSHA(x, x, 3, 8, {hp!r}, **nets)(2, progress_bar=False)
    # the client-side attack: one iteration (generator step, honest steps) and generated samples
    import ClientSideAttack, ClientSideAttack.judge
    from ClientSideAttack import archs
    from ClientSideAttack.clients import BadClient, Client
    from ClientSideAttack.server import Server
    from splitnn.streams import ArrayStream
    f, ff, g = archs.make_f(), archs.make_ff(), archs.make_generator()
    imgs = np.random.default_rng(1).uniform(-1, 1, (32, 28, 28, 1)).astype('float32')
    clients = [BadClient(f, ff, g, 8, 1), Client(f, ff)]
    Server(archs.make_s, clients, ArrayStream(imgs, np.zeros(32, np.uint8)), 8)(2)
    clients[0].generate()
    # UnSplit: a short inversion + stealing and a label inference
    import unsplit_tf, unsplit_tf.attacks, unsplit_tf.keras_client, unsplit_tf.experiments
    from unsplit_tf.attacks import InversionConfig, invert_images
    from unsplit_tf.models import build_model
    client, clone = build_model('mnist', seed=0), build_model('mnist', seed=1)
    invert_images(client, clone, np.random.default_rng(2).uniform(0, 1, (2, 28, 28, 1)).astype('float32'), 2,
                  InversionConfig(main_iters=1, input_iters=2, model_iters=2))
    # covert_mpc: a few plaintext SGD steps of the simulation with a deviation
    import covert_mpc, covert_mpc.attacks, covert_mpc.demo, covert_mpc.protocol
    from covert_mpc import data as covert_data, plaintext
    from covert_mpc.deviations import offset_relu
    from covert_mpc.models import TrainConfig
    toy = covert_data.synthetic(n_train=40, n_test=10)
    plaintext.train(toy.x_train, toy.y_train, TrainConfig(arch='mlp', hidden=8, batch_size=10, epochs=1),
                    deviations=[offset_relu(3.0, steps=[0], examples=[0], units=[1])])
    loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))
    print('TF-MODULES', loaded)
''')


@pytest.mark.skipif(keras.backend.backend() != 'tensorflow', reason='spawns its own JAX process')
def test_no_tensorflow_under_jax():
    env = dict(os.environ, KERAS_BACKEND='jax')
    out = subprocess.run([sys.executable, '-c', NO_TF.format(root=str(ROOT), hp=HP)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == 'TF-MODULES []'


def test_distance_correlation_equals_the_dcor_package():
    """The dCor of defenses.distcor (keras.ops) against the reference implementation ``dcor`` (float64 NumPy), on
    FSHA-like shapes and on dependent 1-D data, and its gradient against a central finite difference."""
    dcor = pytest.importorskip('dcor')
    from defenses.distcor import distance_correlation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4, 4, 3)).astype('float32')
    z = np.tanh(x.reshape(32, -1) @ rng.normal(size=(48, 20)) / 7).astype('float32')
    want = dcor.distance_correlation(x.reshape(32, -1).astype(np.float64), z.astype(np.float64))
    np.testing.assert_allclose(float(distance_correlation(x, z)), want, rtol=1e-4)
    u = rng.uniform(-1, 1, 64)
    np.testing.assert_allclose(float(distance_correlation(u.astype('float32'), (u ** 2).astype('float32'))),
                               dcor.distance_correlation(u, u ** 2), rtol=2e-4)
    # gradient w.r.t. the smashed data: one coordinate, finite differences in float64 NumPy via dcor
    _, _, (g,) = backend.value_and_grad(lambda p, xs: (distance_correlation(xs, p[0]), None),
                                        [keras.ops.convert_to_tensor(z)], x)
    h, (i, j) = 1e-3, (3, 5)
    zp, zm = z.astype(np.float64), z.astype(np.float64).copy()
    zp = zp.copy()
    zp[i, j] += h
    zm[i, j] -= h
    xf = x.reshape(32, -1).astype(np.float64)
    fd = (dcor.distance_correlation(xf, zp) - dcor.distance_correlation(xf, zm)) / (2 * h)
    np.testing.assert_allclose(float(backend.to_numpy(g)[i, j]), fd, rtol=2e-2, atol=1e-5)

"""The JAX runner (:mod:`fsha.jax_runner`, for GPU machines without TensorFlow) against the TensorFlow FSHA classes.

From the same weights, batches and GP coefficients, one step must give the same LOG row and the same parameter
updates. Adam's first step moves a parameter by about lr * sign(gradient), so a gradient that is zero up to
rounding may move either way in the two frameworks: updates are compared to 1% of the learning rate for 99.5% of
the parameters, and every update to the bound 2 * lr.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from fsha import architectures
from fsha.FSHA import FSHA
from fsha.FSHA_distcor import FSHA_dc
from jaxrun import run_keras_jax

HP = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-4, 'lr_tilde': 2e-4, 'lr_D': 3e-4}


class _FixedUniform:
    """Stands in for the GP's tf.random.Generator: returns the given coefficients."""

    def __init__(self, alpha):
        self.alpha = tf.constant(alpha)

    def uniform(self, shape, dtype):
        return tf.cast(self.alpha, dtype)


def _streams(x):
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x), np.uint8)))
    return ds, ds


def _tf_side(tmp_path, cls, hparams, options, small, batch, seed=3):
    rng = np.random.default_rng(seed)
    x_priv = rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32)
    x_pub = rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32)
    alpha = rng.uniform(0, 1, (batch, 1, 1, 1)).astype(np.float32)
    nets = architectures.small_networks() if small else {}
    if small:  # a BatchNorm in the client, to check that its statistics follow the same path
        inp = tf.keras.Input((32, 32, 3))
        h = tf.keras.layers.BatchNormalization()(nets['client'].layers[1](inp))
        nets['client'] = tf.keras.Model(inp, nets['client'].layers[2](h))
    xs, _ = _streams(x_priv)
    attack = cls(xs, xs, 3, batch, hparams, seed=seed, **nets, **options)
    before = [m.get_weights() for m in (attack.f, attack.tilde_f, attack.decoder, attack.D)]
    attack._rng = _FixedUniform(alpha)
    row = np.array([float(v) for v in attack.train_step(x_priv, x_pub, None, None)])
    after = [m.get_weights() for m in (attack.f, attack.tilde_f, attack.decoder, attack.D)]
    arrays = {'x_priv': x_priv, 'x_pub': x_pub, 'alpha': alpha}
    for i, ws in enumerate(before):
        for j, w in enumerate(ws):
            arrays[f'w/{i}/{j}'] = w
    np.savez(tmp_path / 'in.npz', **arrays)
    (tmp_path / 'cfg.json').write_text(json.dumps({'hparams': hparams, 'options': options, 'small': small,
                                                   'batch': batch, 'distcor': cls is FSHA_dc,
                                                   'counts': [len(w) for w in before]}))
    return row, before, after, attack


JAX_CHILD = """
    import sys
    sys.modules['tensorflow'] = None  # any TensorFlow import fails: the runner must not need it
    import json
    import numpy as np
    import jax
    from fsha import architectures
    from fsha.jax_runner import FSHAJax
    import keras

    cfg = json.load(open('cfg.json'))
    z = np.load('in.npz')
    nets = architectures.small_networks() if cfg['small'] else {}
    if cfg['small']:
        inp = keras.Input((32, 32, 3))
        h = keras.layers.BatchNormalization()(nets['client'].layers[1](inp))
        nets['client'] = keras.Model(inp, nets['client'].layers[2](h))
    options = dict(cfg['options'])
    distcor = cfg['distcor']
    attack = FSHAJax(z['x_priv'], z['x_pub'], 3, cfg['batch'], cfg['hparams'], distcor=distcor, **nets, **options)
    attack.set_weights([[z[f'w/{i}/{j}'] for j in range(n)] for i, n in enumerate(cfg['counts'])])
    state, row = jax.jit(attack.update_state)(attack.state, z['x_priv'], z['x_pub'], z['alpha'])
    attack.state = state
    attack.sync_to_keras()
    out = {'row': np.asarray(row), 'opt0_iterations': np.asarray(attack.optimizer0.iterations.value)}
    for i, m in enumerate(attack.nets):
        for j, w in enumerate(m.get_weights()):
            out[f'w/{i}/{j}'] = w
    np.savez('out.npz', **out)
"""


def _compare(tmp_path, row_tf, before, after, lrs):
    out = np.load(tmp_path / 'out.npz')
    np.testing.assert_allclose(out['row'], row_tf, rtol=2e-4, atol=1e-6)
    for i, (ws0, ws1) in enumerate(zip(before, after)):
        close, total = 0, 0
        for j, (w0, w1) in enumerate(zip(ws0, ws1)):
            d_tf, d_jax = w1 - w0, out[f'w/{i}/{j}'] - w0
            if not np.any(d_tf) and not np.any(d_jax):  # e.g. BN statistics of an unused path
                continue
            if np.max(np.abs(d_tf)) <= 2.0 * lrs[i] * (1 + 1e-3):  # a trainable weight: an Adam step
                assert np.max(np.abs(d_jax - d_tf)) <= 2.0 * lrs[i] * (1 + 1e-3) + 1e-7, (i, j)
                close += int(np.sum(np.abs(d_jax - d_tf) <= 0.01 * lrs[i]))
                total += d_tf.size
            else:  # a BatchNorm moving statistic
                np.testing.assert_allclose(out[f'w/{i}/{j}'], w1, rtol=1e-4, atol=1e-5)
        assert total == 0 or close / total >= 0.995, (i, close / total)
    return out


@pytest.mark.parametrize('gp_norm', ['per_channel', 'per_sample'])
def test_one_step_matches_tensorflow_small_networks(tmp_path, gp_norm):
    row, before, after, _ = _tf_side(tmp_path, FSHA, HP, {'gp_norm': gp_norm}, small=True, batch=16)
    run_keras_jax(JAX_CHILD, tmp_path)
    _compare(tmp_path, row, before, after, [HP['lr_f'], HP['lr_tilde'], HP['lr_tilde'], HP['lr_D']])


def test_one_step_matches_tensorflow_non_wgan(tmp_path):
    hp = dict(HP, WGAN=False)
    hp.pop('gradient_penalty')
    row, before, after, _ = _tf_side(tmp_path, FSHA, hp, {}, small=True, batch=16)
    run_keras_jax(JAX_CHILD, tmp_path)
    _compare(tmp_path, row, before, after, [hp['lr_f'], hp['lr_tilde'], hp['lr_tilde'], hp['lr_D']])


@pytest.mark.parametrize('update', ['two_steps', 'combined'])
def test_distcor_step_matches_tensorflow(tmp_path, update):
    hp = dict(HP, alpha1=3.0, alpha2=2.0)
    row, before, after, attack = _tf_side(tmp_path, FSHA_dc, hp, {'update': update}, small=True, batch=16)
    run_keras_jax(JAX_CHILD, tmp_path)
    res = _compare(tmp_path, row, before, after, [2 * hp['lr_f'], hp['lr_tilde'], hp['lr_tilde'], hp['lr_D']])
    assert int(res['opt0_iterations']) == int(attack.optimizer0.iterations.numpy()) == (
        2 if update == 'two_steps' else 1)


def test_one_step_matches_tensorflow_reference_level4(tmp_path):
    """The reference networks (level 4, notebook activations): f with BatchNorm, D with 8.3M parameters."""
    row, before, after, _ = _tf_side(tmp_path, FSHA, HP, {'architecture': 'notebook'}, small=False, batch=4)
    run_keras_jax(JAX_CHILD, tmp_path)
    _compare(tmp_path, row, before, after, [HP['lr_f'], HP['lr_tilde'], HP['lr_tilde'], HP['lr_D']])


TRAIN_CHILD = """
    import sys
    sys.modules['tensorflow'] = None
    import numpy as np
    from fsha import architectures
    from fsha.datasets import load_arrays
    from fsha.jax_runner import FSHAJax

    xtr, _, xte, _ = load_arrays('mnist')
    hp = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-4, 'lr_tilde': 1e-4, 'lr_D': 1e-4}
    import keras
    def build():
        keras.utils.set_random_seed(0)  # the networks' initial weights (FSHAJax's seed covers data and GP only)
        return FSHAJax(xtr[1000:], xte, 3, 64, hp, seed=0, **architectures.small_networks())
    a = build()
    start = a.scoreAttack(xtr[:512])
    saves, save = [], a.save
    a.save = lambda path: (saves.append(a.iteration), save(path))[1]
    a(150, log_frequency=50, checkpoint='ck.npz', checkpoint_every=75)
    b = build().restore('ck.npz')
    a(100, log_frequency=50)
    b(100, log_frequency=50)
    steps, val = a.validation_history
    print('RESULT', start, a.scoreAttack(xtr[:512]), b.scoreAttack(xtr[:512]), list(steps), list(val),
          list(b.validation_history[1]))
    print('SAVES', saves)
    # the data order of a pass: a tf.data-style shuffle buffer (output i is one of the first buffer + i inputs)
    o = FSHAJax(xtr[:200], xte[:100], 3, 10, hp, seed=0, shuffle_buffer=50, **architectures.small_networks())
    order = np.concatenate([o._next_indices('priv', 200) for _ in range(20)])
    print('ORDER', bool(np.all(order < 50 + np.arange(200))), sorted(order.tolist()) == list(range(200)),
          o.shuffle_buffer, a.shuffle_buffer)
"""


def test_attack_on_mnist_learns_and_resumes(tmp_path):
    """250 steps of FSHA with small networks on MNIST (held-out private images): the error falls far below its
    start, and a run resumed from a checkpoint continues the same curve."""
    out = run_keras_jax(TRAIN_CHILD, tmp_path)
    line = next(s for s in out.splitlines() if s.startswith('RESULT'))
    start, end_a, end_b = (float(v) for v in line.split()[1:4])
    assert end_a < 0.5 * start, (start, end_a)
    assert end_a == pytest.approx(end_b, rel=1e-4)
    assert next(s for s in out.splitlines() if s.startswith('ORDER')) == 'ORDER True True 50 10000'
    # every 75 steps; the closing save at 150 is the checkpoint step's, not written a second time
    assert next(s for s in out.splitlines() if s.startswith('SAVES')) == 'SAVES [75, 150]'


DCOR_CHILD = """
    import sys
    sys.modules['tensorflow'] = None
    import numpy as np
    from fsha.jax_runner import distance_correlation
    z = np.load('pairs.npz')
    np.save('dcor.npy', np.array([float(distance_correlation(z[f'x{i}'], z[f'y{i}'])) for i in range(len(z) // 2)]))
"""


def test_jax_distance_correlation_equals_defenses(tmp_path):
    """The runner's dCor (jax.numpy) equals :func:`defenses.distance_correlation` on FSHA's shapes, on Y = X,
    on a nonlinear dependence, with duplicated rows and on a degenerate (constant) batch."""
    from defenses import distance_correlation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32, 32, 3)).astype(np.float32)
    t = rng.normal(size=(256, 1)).astype(np.float32)
    dup = rng.normal(size=(16, 5)).astype(np.float32)
    dup[8:] = dup[:8]
    pairs = [(x, rng.normal(size=(64, 4, 4, 256)).astype(np.float32)), (x, x), (t, t ** 2),
             (dup, np.tanh(dup)), (np.ones((8, 3), np.float32), rng.normal(size=(8, 2)).astype(np.float32))]
    np.savez(tmp_path / 'pairs.npz', **{f'{k}{i}': v for i, p in enumerate(pairs) for k, v in zip('xy', p)})
    run_keras_jax(DCOR_CHILD, tmp_path)
    ours = np.load(tmp_path / 'dcor.npy')
    expected = [float(distance_correlation(a, b)) for a, b in pairs]
    np.testing.assert_allclose(ours, expected, atol=2e-6)
    assert ours[1] == pytest.approx(1.0, abs=1e-5) and ours[-1] == 0.0

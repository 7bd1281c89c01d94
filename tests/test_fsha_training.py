"""FSHA class: validation, update isolation, logging, checkpoints (tiny synthetic data, small networks)."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from fsha import architectures
from fsha.FSHA import FSHA, adversarial_losses, mse

IMG = (16, 16, 3)
BATCH = 8
HP = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-3, 'lr_tilde': 1e-3, 'lr_D': 1e-3}


def stream(n, seed, shuffle=False):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n,) + IMG).astype(np.float32)
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return ds.shuffle(n) if shuffle else ds


def nets():
    return architectures.small_networks(IMG, width=4, z_channels=8, critic_width=8)


def make(hparams=HP, n=64, **kw):
    options = nets()
    options.update(kw)
    return FSHA(stream(n, 0), stream(n, 1), 3, BATCH, hparams, **options)


def batch(seed):
    x, y = next(iter(stream(BATCH, seed).batch(BATCH)))
    return x, y


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize('bad, match', [
    ({k: v for k, v in HP.items() if k != 'WGAN'}, "missing \\['WGAN'\\]"),
    (dict(HP, lr_f=0.0), "lr_f"),
    (dict(HP, lr_D=-1e-4), "lr_D"),
    (dict(HP, lr_tilde='1e-5'), "lr_tilde"),
    (dict(HP, lr_f=float('nan')), "lr_f"),
    (dict(HP, WGAN='False'), "WGAN"),
    (dict(HP, gradient_penalty=-1.0), "gradient_penalty"),
])
def test_bad_hparams(bad, match):
    with pytest.raises(ValueError, match=match):
        make(bad)


@pytest.mark.parametrize('id_setup', [7, -1, True, 3.0])
def test_bad_id_setup(id_setup):
    with pytest.raises(ValueError, match='id_setup'):
        FSHA(stream(16, 0), stream(16, 1), id_setup, BATCH, HP)


@pytest.mark.parametrize('batch_size', [0, -3, 2.5])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match='batch_size'):
        FSHA(stream(16, 0), stream(16, 1), 3, batch_size, HP)


def _batched_data(how):
    """Data that is already batched, in the ways a user may pass it."""
    from splitnn.streams import ArrayStream

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64,) + IMG).astype(np.float32)
    return {'tf_batch': lambda: stream(64, 0).batch(BATCH),  # elements [None, 16, 16, 3]
            'tf_batch_drop_remainder_then_map': lambda: stream(64, 0).batch(BATCH, drop_remainder=True)
            .map(lambda a, b: (a, b)),  # elements [8, 16, 16, 3]: a fully defined shape
            'array_stream_batches': lambda: ArrayStream(x).batches(BATCH),
            'array_of_batches': lambda: x.reshape((-1, BATCH) + IMG)}[how]()


@pytest.mark.parametrize('which', ['xpriv', 'xpub'])
@pytest.mark.parametrize('how', ['tf_batch', 'tf_batch_drop_remainder_then_map', 'array_stream_batches',
                                 'array_of_batches'])
def test_batched_data_is_a_clear_early_error(how, which):
    """The attack batches its streams itself (the original's ``.batch(batch_size, drop_remainder=True)``):
    batched data would make every batch one "image". It is refused before any network is built, naming the
    argument and the shape."""
    data = {'xpriv': stream(64, 0), 'xpub': stream(64, 1)}
    data[which] = _batched_data(how)
    with pytest.raises(ValueError, match=f"^{which}.*batch.*unbatched stream") as err:
        FSHA(data['xpriv'], data['xpub'], 3, BATCH, HP)
    if how != 'array_stream_batches':
        assert '16, 16, 3)' in str(err.value)


def test_batched_then_unbatched_data_is_accepted():
    attack = FSHA(stream(64, 0).batch(BATCH).unbatch(), stream(64, 1), 3, BATCH, HP, **nets())
    assert attack.input_shape == IMG


def test_level5_setup_raises():
    with pytest.raises(ValueError, match='level 5'):
        FSHA(stream(16, 0), stream(16, 1), 4, BATCH, HP)


def test_unknown_option_and_bad_choices():
    with pytest.raises(TypeError, match='unknown options'):
        make(gp_normm='per_sample')
    with pytest.raises(ValueError, match='gp_norm'):
        make(gp_norm='l2')
    with pytest.raises(ValueError, match='architecture'):
        make(dict(HP, architecture='paper'))


def test_user_client_with_wrong_output_shape():
    client = keras.Sequential([keras.Input(IMG), keras.layers.Conv2D(5, 3, strides=2, padding='same')])
    with pytest.raises(ValueError) as err:
        make(client=client)
    assert '(8, 8, 5)' in str(err.value) and '(4, 4, 8)' in str(err.value)


def test_builtin_pilot_must_match_user_client():
    client = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(7, 3, strides=8, padding='same')])
    xs = tf.data.Dataset.from_tensor_slices((np.zeros((16, 32, 32, 3), np.float32), np.zeros(16, np.uint8)))
    with pytest.raises(ValueError) as err:
        FSHA(xs, xs, 3, BATCH, HP, client=client)  # built-in level-4 pilot outputs (4, 4, 256)
    assert '(4, 4, 7)' in str(err.value) and '(4, 4, 256)' in str(err.value)
    assert 'attacker_networks' in str(err.value)


def test_attacker_networks_fit_any_client_feature_space():
    """A client whose features are not a built-in shape: attacker_networks builds pilot, decoder and D for it,
    and FSHA trains with them (finite losses, every network updated)."""
    keras.utils.set_random_seed(0)
    client = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, strides=2, padding='same'),
                               keras.layers.ReLU(), keras.layers.Conv2D(12, 3, strides=2, padding='same')])
    nets = architectures.attacker_networks((32, 32, 3), (8, 8, 12))
    assert nets['pilot'].output.shape[1:] == (8, 8, 12) and nets['decoder'].output.shape[1:] == (32, 32, 3)
    xs = tf.data.Dataset.from_tensor_slices((np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(
        np.float32), np.zeros(16, np.uint8)))
    attack = FSHA(xs, xs, 3, 4, HP, client=client, **nets)
    before = [np.array(m.trainable_variables[0]) for m in (attack.f, attack.tilde_f, attack.decoder, attack.D)]
    log = attack(2, log_frequency=1, progress_bar=False)
    assert np.all(np.isfinite(log))
    for b, m in zip(before, (attack.f, attack.tilde_f, attack.decoder, attack.D)):
        assert not np.array_equal(b, np.array(m.trainable_variables[0])), m.name


def test_wrong_decoder_and_discriminator_shapes():
    z = (4, 4, 8)
    bad_decoder = keras.Sequential([keras.Input(z), keras.layers.Conv2DTranspose(3, 3, strides=2, padding='same')])
    with pytest.raises(ValueError) as err:
        make(decoder=bad_decoder)
    assert '(8, 8, 3)' in str(err.value) and '(16, 16, 3)' in str(err.value)
    bad_D = keras.Sequential([keras.Input(z), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r'\(2,\)'):
        make(discriminator=bad_D)


def test_options_from_hparams_and_keywords():
    m = make(dict(HP, gp_norm='per_sample', architecture='notebook'))
    assert (m.gp_norm, m.options['architecture']) == ('per_sample', 'notebook')
    m = make(dict(HP, gp_norm='per_sample'), gp_norm='per_channel')  # keyword wins
    assert m.gp_norm == 'per_channel'
    assert make({k: v for k, v in HP.items() if k != 'gradient_penalty'}).gp_weight is None


def test_faithful_defaults_when_nothing_is_configured():
    """Every option's default is the original's behaviour (the options are listed in ``fsha.FSHA``'s docstring);
    pinned here on an unconfigured level-4 attack, so that changing a default (in fsha.hparams or a builder) fails
    a test."""
    from fsha.FSHA import REFERENCE_HPARAMS, gradient_penalty
    from fsha.hparams import OPTION_DEFAULTS

    assert REFERENCE_HPARAMS == {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-5, 'lr_tilde': 1e-5,
                                 'lr_D': 1e-4}
    assert OPTION_DEFAULTS == {'architecture': 'final', 'd_stem': 'effective', 'resblock_bn': False,
                               'gp_norm': 'per_channel', 'gp_eps': 0.0, 'saturating_f_loss': False, 'seed': None,
                               'jit_compile': False}
    m = FSHA(stream(64, 0).map(lambda a, b: (tf.image.resize(a, (32, 32)), b)),
             stream(64, 1).map(lambda a, b: (tf.image.resize(a, (32, 32)), b)), 3, BATCH, REFERENCE_HPARAMS)
    assert (m.wgan, m.gp_weight, m.gp_norm, m.gp_eps, m.saturating_f_loss) == (True, 500.0, 'per_channel', 0.0,
                                                                                False)
    # the released networks: linear pilot, effective D stem (Conv(256, 3, stride 1) first), no ResBlock BN
    assert m.D.count_params() == 8_262_145 and m.f.count_params() == 1_846_784
    pilot_convs = [lay for lay in m.tilde_f.layers if isinstance(lay, keras.layers.Conv2D)]
    assert all(lay.activation is keras.activations.linear for lay in pilot_convs)
    assert sum(isinstance(lay, keras.layers.BatchNormalization) for lay in m.f.layers) == 1
    for opt, lr in zip((m.optimizer0, m.optimizer1, m.optimizer2), (1e-5, 1e-5, 1e-4)):
        assert isinstance(opt, keras.optimizers.Adam) and opt.epsilon == 1e-7
        np.testing.assert_allclose(float(opt.learning_rate), lr)
    # the class's D loss uses the per-channel GP with weight 500 (the same GP coefficients drawn twice)
    z_priv, z_pub = (tf.random.stateless_normal((BATCH, 4, 4, 256), (s, 0)) for s in (1, 2))
    adv_priv, adv_pub = m.D(z_priv), m.D(z_pub)
    alpha = m.gp_coefficients(0, BATCH)
    _, d_loss = m.critic_losses(z_priv, z_pub, adv_priv, adv_pub)  # iteration 0's draw by default
    wgan = float(tf.reduce_mean(adv_pub) - tf.reduce_mean(adv_priv))
    per = {}
    for norm in ('per_channel', 'per_sample'):
        per[norm] = float(gradient_penalty(m.D, z_priv, z_pub, norm=norm, alpha=alpha))
    np.testing.assert_allclose(float(d_loss), wgan + 500.0 * per['per_channel'], rtol=1e-5)
    assert abs(per['per_channel'] - per['per_sample']) > 1e-3 * abs(per['per_channel'])


# ---------------------------------------------------------------------------------------- the step

def snapshot(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def sgd(m):
    # SGD(1) makes each update equal to minus the gradient the step applied.
    m.optimizer0, m.optimizer1, m.optimizer2 = (keras.optimizers.SGD(1.0) for _ in range(3))


def grads(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    return [g.numpy() for g in tape.gradient(loss, variables)]


def assert_update(before, model, gradients):
    for b, v, g in zip(before, model.trainable_variables, gradients):
        np.testing.assert_allclose(v.numpy() - b, -g, rtol=1e-4, atol=1e-6)


def test_update_isolation():
    m = make()
    sgd(m)
    (xp, yp), (xq, yq) = batch(10), batch(11)
    f0, p0, dec0, D0 = snapshot(m.f), snapshot(m.tilde_f), snapshot(m.decoder), snapshot(m.D)
    f_vars, ae_vars, D_vars = (m.f.trainable_variables, m.tilde_f.trainable_variables + m.decoder.trainable_variables,
                               m.D.trainable_variables)

    def losses():
        zp, zq = m.f(xp, training=True), m.tilde_f(xq, training=True)
        return adversarial_losses(m.D(zp), m.D(zq), wgan=True) + (mse(xq, m.decoder(zq)),)

    alpha = m.gp_coefficients(0, BATCH)  # the step draws the same interpolation coefficients

    def d_loss_with_gp():
        zp, zq = m.f(xp, training=True), m.tilde_f(xq, training=True)
        return m.critic_losses(zp, zq, m.D(zp), m.D(zq), alpha=alpha)[1]

    g_f = grads(lambda: losses()[0], f_vars)
    g_f_from_d = grads(lambda: losses()[1], f_vars)
    g_ae = grads(lambda: losses()[2], ae_vars)
    g_D = grads(d_loss_with_gp, D_vars)
    g_D_plus_f = grads(lambda: d_loss_with_gp() + losses()[0], D_vars)

    out = m.train_step(xp, xq, yp, yq)
    assert len(out) == 4 and all(np.isfinite(float(v)) for v in out)
    assert_update(f0, m.f, g_f)  # f: only f_loss
    assert not all(np.allclose(a, b) for a, b in zip(g_f, g_f_from_d))
    assert_update(p0 + dec0, m.tilde_f, g_ae[:len(p0)])
    assert_update(dec0, m.decoder, g_ae[len(p0):])
    assert_update(D0, m.D, g_D)  # D: D_loss incl. 500 * GP, never f_loss
    assert not all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g_D, g_D_plus_f))


def test_decoder_and_pilot_never_see_private_data():
    # Same initial weights in both runs, different private batches.
    a, b = make(), make()
    for src, dst in ((a.f, b.f), (a.tilde_f, b.tilde_f), (a.decoder, b.decoder), (a.D, b.D)):
        dst.set_weights(src.get_weights())
    (xq, yq) = batch(11)
    for m, private_seed in ((a, 20), (b, 21)):
        sgd(m)
        xp, yp = batch(private_seed)
        m.train_step(xp, xq, yp, yq)
    for net in ('tilde_f', 'decoder'):
        for u, v in zip(getattr(a, net).get_weights(), getattr(b, net).get_weights()):
            np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a.f.get_weights(), b.f.get_weights()))


@pytest.mark.parametrize('options', [{'jit_compile': True}, {'gp_norm': 'per_sample', 'gp_eps': 1e-12}])
def test_compiled_steps_run(options):
    m = make(**options)
    log = m(3, progress_bar=False, log_frequency=1)
    assert log.shape == (3, 4) and np.isfinite(log).all()
    assert int(m.optimizer0.iterations) == int(m.optimizer1.iterations) == int(m.optimizer2.iterations) == 3


def test_non_wgan_branch_runs():
    m = make(dict(HP, WGAN=False))
    log = m(2, progress_bar=False, log_frequency=1)
    assert np.isfinite(log).all() and (log[:, 2] > 0).all()  # BCE losses are positive


def test_score_attack_and_attack():
    m = make()
    x = np.stack([x for x, _ in stream(5, 3).as_numpy_iterator()])
    rec, control = m.attack(x)
    assert rec.shape == control.shape == x.shape
    np.testing.assert_allclose(float(m.score(x)), np.mean((x - rec) ** 2), rtol=1e-5)
    assert np.isfinite(m.scoreAttack(stream(20, 4), progress_bar=False))
    with pytest.raises(ValueError, match='fewer than batch_size'):
        m.scoreAttack(stream(BATCH - 1, 4), progress_bar=False)


# ------------------------------------------------------------------------------------------- logging

class Stub(FSHA):
    """Step k (0-based) returns (k+1, 2(k+1), -(k+1), (k+1)^2)."""

    def train_step(self, x_private, x_public, label_private=None, label_public=None, alpha=None):
        k = self.counter.assign_add(1.0)
        return k, 2 * k, -k, k * k


def make_stub():
    m = Stub(stream(64, 0), stream(64, 1), 3, BATCH, HP, **nets())
    m.counter = tf.Variable(0.0)
    return m


LINE = re.compile(r'^log--(\d\d)%-(\d{7})\] validation: (\d+\.\d{4})$', re.M)


def expected_row(step):
    k = step + 1.0
    return [k, 2 * k, -k, k * k]


def printed(step, L):
    if step == 0:
        return 1.0
    window = np.arange(step - L + 1, step + 1) + 1.0  # steps (k-1)L+1 .. kL
    return float(np.mean(window ** 2))


def test_call_takes_the_originals_positional_order(capsys):
    """The original's signature is __call__(iterations, log_frequency=500, verbose=False, progress_bar=True), so a
    notebook's ``sl(13, 5)`` logs every 5 steps (and ``sl(13, 5, True)`` prints)."""
    m = make_stub()
    log = m(13, 5)
    assert log.shape == (3, 4) and capsys.readouterr().out.count('validation:') == 0
    m(7, 5, True, False)
    assert LINE.findall(capsys.readouterr().out)[0][1] == '0000015'


def test_logging_rows_and_running_means(capsys):
    m = make_stub()
    L = 5
    log = m(13, verbose=True, progress_bar=False, log_frequency=L)
    assert log.shape == (3, 4)  # ceil(13 / 5): no IndexError as in the original
    np.testing.assert_array_equal(log, [expected_row(s) for s in (0, 5, 10)])
    lines = LINE.findall(capsys.readouterr().out)
    assert [(int(p), int(i)) for p, i, _ in lines] == [(0, 0), (38, 5), (76, 10)]
    for _, i, v in lines:
        assert v == '%0.4f' % printed(int(i), L)

    # A second call continues the numbering, the rows and the running mean (steps 11..15 at step 15).
    log2 = m(7, verbose=True, progress_bar=False, log_frequency=L)
    np.testing.assert_array_equal(log2, [expected_row(15)])
    (pct, i, v), = LINE.findall(capsys.readouterr().out)
    assert (int(pct), int(i), v) == (28, 15, '%0.4f' % printed(15, L))  # percentage of this call
    steps, rows = m.log_history
    np.testing.assert_array_equal(steps, [0, 5, 10, 15])
    assert m.iteration == 20


class IterationStub(FSHA):
    """Like :class:`Stub`, but step k is read from the attack's own (checkpointed) iteration counter, so a
    restored object continues the same sequence: step k returns (k+1, 2(k+1), -(k+1), (k+1)^2)."""

    def train_step(self, x_private, x_public, label_private=None, label_public=None, alpha=None):
        k = float(self._iteration) + 1.0
        return k, 2 * k, -k, k * k


def window_mean_row(step, L):
    """Hand-computed running-mean row: step 0 alone, else the mean over steps step-L+1 .. step."""
    if step == 0:
        return expected_row(0)
    return np.mean([expected_row(s) for s in range(step - L + 1, step + 1)], axis=0).tolist()


def test_running_mean_history_holds_every_columns_window_means(capsys):
    m = make_stub()
    L = 5
    assert m.running_mean_history[1].shape == (0, 4) and m.validation_history[1].shape == (0,)
    m(13, verbose=True, progress_bar=False, log_frequency=L)
    m(7, verbose=True, progress_bar=False, log_frequency=L)  # continues: steps 13..19, logs step 15
    printed_lines = LINE.findall(capsys.readouterr().out)
    steps, means = m.running_mean_history
    np.testing.assert_array_equal(steps, [0, 5, 10, 15])
    np.testing.assert_array_equal(steps, m.log_history[0])
    assert means.shape == (4, len(FSHA.LOG_COLUMNS))
    np.testing.assert_allclose(means, [window_mean_row(s, L) for s in (0, 5, 10, 15)], rtol=1e-12)
    np.testing.assert_array_equal(m.log_history[1], [expected_row(s) for s in (0, 5, 10, 15)])  # unchanged
    v_steps, values = m.validation_history
    np.testing.assert_array_equal(v_steps, steps)
    np.testing.assert_array_equal(values, means[:, FSHA.VALIDATION_COLUMN])
    # validation_history is exactly what was printed
    assert [(int(i), v) for _, i, v in printed_lines] == [(int(s), '%0.4f' % x) for s, x in zip(v_steps, values)]
    # the accumulator holds the partial window 16..19 (sum of row / L), every column
    np.testing.assert_allclose(m._mean_acc, np.sum([expected_row(s) for s in range(16, 20)], 0) / L)


def test_running_means_do_not_depend_on_verbose_or_call_boundaries(capsys):
    a, b = make_stub(), make_stub()
    a(12, verbose=False, progress_bar=False, log_frequency=3)
    for n in (1, 2, 4, 5):  # the same 12 steps in four calls, windows spanning the calls
        b(n, verbose=True, progress_bar=False, log_frequency=3)
    capsys.readouterr()
    for x, y in zip(a.running_mean_history, b.running_mean_history):
        np.testing.assert_allclose(x, y, rtol=1e-12)
    np.testing.assert_allclose(a.running_mean_history[1], [window_mean_row(s, 3) for s in (0, 3, 6, 9)],
                               rtol=1e-12)


def test_running_mean_history_continues_after_checkpoint_resume(tmp_path, capsys):
    L = 4
    xpriv, xpub = stream(64, 0), stream(64, 1)
    full = IterationStub(xpriv, xpub, 3, BATCH, HP, **nets())
    full(14, verbose=True, progress_bar=False, log_frequency=L)
    full_lines = LINE.findall(capsys.readouterr().out)

    a = IterationStub(xpriv, xpub, 3, BATCH, HP, **nets())
    a(6, progress_bar=False, log_frequency=L)  # steps 0..5: mid-window (steps 5.. of the window 5..8)
    a.save(tmp_path / 'ckpt')
    b = IterationStub(xpriv, xpub, 3, BATCH, HP, **nets())
    b.restore(tmp_path / 'ckpt')
    assert b.iteration == 6
    np.testing.assert_array_equal(b.running_mean_history[0], [0, 4])
    np.testing.assert_allclose(b._mean_acc, np.array(expected_row(5)) / L)
    b(8, verbose=True, progress_bar=False, log_frequency=L)  # steps 6..13
    resumed_lines = LINE.findall(capsys.readouterr().out)

    steps, means = b.running_mean_history
    np.testing.assert_array_equal(steps, [0, 4, 8, 12])
    np.testing.assert_allclose(means, [window_mean_row(s, L) for s in steps], rtol=1e-12)
    for x, y in zip(full.running_mean_history, b.running_mean_history):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(full.validation_history[1], b.validation_history[1])
    # the resumed run prints the same values as the uninterrupted one at steps 8 and 12
    assert [(i, v) for _, i, v in resumed_lines] == [(i, v) for _, i, v in full_lines][2:]

    # checkpoint_dir: autoresume continues the history too
    c = IterationStub(xpriv, xpub, 3, BATCH, HP, checkpoint_dir=tmp_path / 'auto', **nets())
    c(6, progress_bar=False, log_frequency=L)
    d = IterationStub(xpriv, xpub, 3, BATCH, HP, checkpoint_dir=tmp_path / 'auto', **nets())
    d(8, progress_bar=False, log_frequency=L)
    for x, y in zip(full.running_mean_history, d.running_mean_history):
        np.testing.assert_array_equal(x, y)


def test_log_edge_cases():
    m = make_stub()
    assert m(0, progress_bar=False).shape == (0, 4)
    assert m(3, progress_bar=False, log_frequency=500).shape == (1, 4)  # fewer steps than L: step 0 logged
    assert m(3, progress_bar=False, log_frequency=500).shape == (0, 4)  # steps 3..5: nothing to log
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match='iterations'):
            m(bad)
    with pytest.raises(ValueError, match='log_frequency'):
        m(1, log_frequency=0)


def test_wrong_number_of_step_values():
    class Bad(Stub):
        def train_step(self, *args):
            return super().train_step(*args)[:3]
    m = Bad(stream(64, 0), stream(64, 1), 3, BATCH, HP, **nets())
    m.counter = tf.Variable(0.0)
    with pytest.raises(ValueError, match='LOG_COLUMNS'):
        m(1, progress_bar=False)


# ---------------------------------------------------------------------------------------- checkpoints

def fixed_streams():
    # One batch repeated: every run sees the same batches whatever its iterator position.
    return stream(BATCH, 0), stream(BATCH, 1)


def test_checkpoint_resume_continues_the_same_curve(tmp_path):
    xpriv, xpub = fixed_streams()
    a = FSHA(xpriv, xpub, 3, BATCH, HP, seed=1, **nets())
    a(3, progress_bar=False, log_frequency=2)
    a.save(tmp_path / 'ckpt')
    saved = [v.numpy().copy() for v in a.f.weights + a.D.weights]
    log_a = a(4, progress_bar=False, log_frequency=2)

    b = FSHA(xpriv, xpub, 3, BATCH, HP, seed=2, **nets())  # different initial weights and RNG
    b.restore(tmp_path / 'ckpt')
    assert b.iteration == 3
    assert [int(o.iterations) for o in (b.optimizer0, b.optimizer1, b.optimizer2)] == [3, 3, 3]
    for u, v in zip(saved, b.f.weights + b.D.weights):
        np.testing.assert_array_equal(u, v.numpy())
    log_b = b(4, progress_bar=False, log_frequency=2)
    assert log_a.shape == log_b.shape == (2, 4)  # steps 4 and 6
    np.testing.assert_allclose(log_a, log_b, rtol=1e-4)
    for net in ('f', 'tilde_f', 'decoder', 'D'):
        for u, v in zip(getattr(a, net).weights, getattr(b, net).weights):
            np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(a.log_history[0], b.log_history[0])  # [0, 2, 4, 6]
    np.testing.assert_array_equal(a.running_mean_history[0], [0, 2, 4, 6])
    np.testing.assert_allclose(a.running_mean_history[1], b.running_mean_history[1], rtol=1e-4)


def dropout_client(seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input(IMG)
    x = keras.layers.Conv2D(4, 3, strides=2, padding='same', activation='relu')(inp)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inp, keras.layers.Conv2D(8, 3, strides=2, padding='same')(x))


def test_checkpoint_keeps_the_dropout_masks_of_a_user_client(tmp_path):
    """A Keras 3 model's checkpoint omits its seed generators; FSHA's adds them, so a user client with
    Dropout resumes with the masks the uninterrupted run would have drawn."""
    xpriv, xpub = fixed_streams()
    keras.utils.set_random_seed(0)
    a = FSHA(xpriv, xpub, 3, BATCH, HP, seed=1, **dict(nets(), client=dropout_client(0)))
    a(2, progress_bar=False, log_frequency=1)
    a.save(tmp_path / 'ckpt')
    log_a = a(2, progress_bar=False, log_frequency=1)
    keras.utils.set_random_seed(0)
    b = FSHA(xpriv, xpub, 3, BATCH, HP, seed=2, **dict(nets(), client=dropout_client(7)))
    b.restore(tmp_path / 'ckpt')
    np.testing.assert_allclose(b(2, progress_bar=False, log_frequency=1), log_a, rtol=1e-5)


def test_checkpoint_dir_autoresume(tmp_path):
    xpriv, xpub = fixed_streams()
    a = FSHA(xpriv, xpub, 3, BATCH, HP, checkpoint_dir=tmp_path, **nets())
    a(2, progress_bar=False)
    b = FSHA(xpriv, xpub, 3, BATCH, HP, checkpoint_dir=tmp_path, **nets())
    assert b.iteration == 2
    for u, v in zip(a.D.weights, b.D.weights):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    with pytest.raises(FileNotFoundError):
        b.restore(tmp_path / 'nothing-here')


def test_checkpoint_every_writes_each_checkpoint_once(tmp_path):
    xpriv, xpub = fixed_streams()
    a = FSHA(xpriv, xpub, 3, BATCH, HP, checkpoint_dir=tmp_path, checkpoint_every=2, **nets())
    saves, save = [], a.checkpoint_manager.save
    a.checkpoint_manager.save = lambda arrays, meta, checkpoint_number: (
        saves.append(checkpoint_number), save(arrays, meta, checkpoint_number))[1]
    a(4, progress_bar=False)
    assert saves == [2, 4]  # the closing checkpoint is step 4's, not written again
    a(1, progress_bar=False)
    assert saves == [2, 4, 5]  # a call that ends between checkpoint steps still closes with one

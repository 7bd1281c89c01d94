"""FSHA and FSHA_dc on Keras 3's JAX backend, for GPU machines that have JAX but no TensorFlow.

The reference implementation is :class:`fsha.FSHA.FSHA` (and :class:`fsha.FSHA_distcor.FSHA_dc`), which runs on
TensorFlow. This module trains **the same Keras networks** (the builders of :mod:`fsha.architectures`, or
user-supplied Keras models) with **the same step**, written once more with JAX transformations:

* one forward pass per step: f(x_priv), decoder(z_priv) (monitoring), D(z_priv), f~(x_pub), decoder(z_pub),
  D(z_pub), then the gradient penalty's D(x_hat), in the TensorFlow step's order (which matters only for
  BatchNorm statistics, threaded through the calls in that order);
* the same losses and sign convention (:func:`fsha.FSHA.adversarial_losses`), the same gradient penalty
  (per-channel norm as released, per-sample as an option, ``gp_eps``), the same MSEs;
* every gradient taken at the pre-update parameters, then the three Keras Adams (``optimizer.stateless_apply``,
  the same update rule as TensorFlow's ``apply_gradients``) in the original's order; for FSHA_dc
  (``hparams`` with ``alpha1``/``alpha2``, ``distcor=True``) f~ + decoder, D, then **two** Adam steps of f (dCor
  term, then ``alpha2 * f_loss``) or one combined step (``update='combined'``);
* the same LOG rows, verbose line, ``running_mean_history`` and ``validation_history``.

It is cross-checked against the TensorFlow classes on the CPU (``tests/test_fsha_jax.py``: same losses and
gradients from the same weights and batches). Differences, none of which changes the attack:

* Data are NumPy arrays (images only), reshuffled on every pass by the same 10,000-image shuffle-buffer algorithm
  as the original's ``tf.data`` pipeline (:func:`splitnn.data.buffered_shuffle`; ``shuffle_buffer=None`` draws a
  full permutation instead), from a NumPy generator: another random stream, the same kind of order.
* The GP's interpolation coefficients come from ``jax.random`` (``fold_in(seed, iteration)``), not from a
  ``tf.random.Generator``: same distribution, another stream.
* Checkpoints are one ``.npz`` file (networks, optimizers, iteration, histories, data order and position),
  not a TensorFlow checkpoint.
* The property-inference variant is not ported.

Import it only with ``KERAS_BACKEND=jax`` set before Keras is first imported.
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np

if keras.backend.backend() != 'jax':
    raise ImportError(f"fsha.jax_runner needs Keras' JAX backend, but Keras runs on {keras.backend.backend()!r}: "
                      "set KERAS_BACKEND=jax before Keras is first imported (e.g. on the command line)")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from fsha import architectures  # noqa: E402
from fsha.datasets import SHUFFLE_BUFFER  # noqa: E402 (a constant: fsha.datasets imports TensorFlow only inside functions)
from fsha.hparams import (REFERENCE_HPARAMS, _positive_int, alphas, make_optimizers, resolve_options,  # noqa: E402
                          validate_hparams)
from splitnn.data import buffered_shuffle  # noqa: E402
from splitnn.utils import check_output_shape, per_sample_output_shape  # noqa: E402

UPDATE_SCHEMES = ('two_steps', 'combined')
DCOR_EPS = 1e-7


# ---------------------------------------------------------------------------------------------- losses

def _mean(x):
    return jnp.mean(x.astype(jnp.float32))


def _bce(label, logits):
    # sigmoid cross-entropy from logits, as tf.nn.sigmoid_cross_entropy_with_logits
    return _mean(jnp.maximum(logits, 0) - logits * label + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def adversarial_losses(adv_priv, adv_pub, wgan, saturating=False):
    """``(f_loss, D_loss)``; see :func:`fsha.FSHA.adversarial_losses` (same definitions and signs)."""
    if wgan:
        return _mean(adv_priv), _mean(adv_pub) - _mean(adv_priv)
    f_loss = -_bce(0.0, adv_priv) if saturating else _bce(1.0, adv_priv)
    return f_loss, (_bce(1.0, adv_pub) + _bce(0.0, adv_priv)) / 2.0


def mse(a, b):
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


def distance_correlation(x, y, eps=DCOR_EPS):
    """dCor of :func:`defenses.distcor.distance_correlation` (square-root V-statistic, clamp ``eps`` before the
    square root, feature centring, rounding-level distances set to 0, safe square roots, 0 for a degenerate
    batch), in ``jax.numpy``. Equal to the TensorFlow function to float32 rounding (tested)."""

    def centred(v):
        v = v.reshape(v.shape[0], -1).astype(jnp.float32)
        v = v - jnp.mean(v, axis=0, keepdims=True)
        sq = jnp.sum(jnp.square(v), axis=1, keepdims=True)
        norms = sq + sq.T
        d2 = norms - 2.0 * (v @ v.T)
        d2 = jnp.where(d2 <= 16.0 * float(np.finfo(np.float32).eps) * norms, 0.0, d2)
        d2 = jnp.where(jnp.eye(v.shape[0], dtype=bool), 0.0, d2)
        a = jnp.sqrt(jnp.maximum(d2, eps))
        row = jnp.mean(a, axis=1, keepdims=True)
        return a - row - jnp.mean(a, axis=0, keepdims=True) + jnp.mean(row), jnp.max(d2) <= eps

    def safe_sqrt(v):
        pos = v > 0
        return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)

    a, deg_x = centred(x)
    b, deg_y = centred(y)
    den = safe_sqrt(jnp.mean(a * a)) * safe_sqrt(jnp.mean(b * b))
    ok = jnp.logical_and(jnp.logical_not(jnp.logical_or(deg_x, deg_y)), den > 0)
    r2 = jnp.where(ok, jnp.maximum(jnp.mean(a * b) / jnp.where(ok, den, 1.0), 0.0), 0.0)
    return safe_sqrt(r2)


# ---------------------------------------------------------------------------------------------- runner

def _as_images(x, what):
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f'{what} must be an array of images [N, H, W, C], got shape {x.shape}')
    return x


class FSHAJax:
    """FSHA (or FSHA_dc with ``distcor=True``) on Keras' JAX backend; see the module docstring.

    ``FSHAJax(xpriv, xpub, id_setup, batch_size, hparams, **options)`` with ``xpriv``/``xpub`` NumPy image arrays
    [N, H, W, C] (e.g. from :func:`fsha.datasets.load_arrays`). Options as :class:`fsha.FSHA.FSHA`'s
    (``client``, ``pilot``, ``decoder``, ``discriminator``, ``architecture``, ``d_stem``, ``resblock_bn``,
    ``gp_norm``, ``gp_eps``, ``saturating_f_loss``, ``seed``) plus ``distcor``, ``update`` and ``jit``.
    Calling the object with ``(iterations, verbose=, log_frequency=)`` trains and returns LOG.
    """

    def __init__(self, xpriv, xpub, id_setup, batch_size, hparams, *, client=None, pilot=None, decoder=None,
                 discriminator=None, distcor=False, update='two_steps', jit=True, shuffle_buffer=SHUFFLE_BUFFER,
                 **options):
        self.batch_size = _positive_int(batch_size, 'batch_size')
        if isinstance(id_setup, bool) or not isinstance(id_setup, int) or id_setup not in range(4):
            raise ValueError(f'id_setup must be an int in 0..3 (split levels 1-4), got {id_setup!r}')
        self.hparams = validate_hparams(hparams)
        opts = resolve_options(options, self.hparams)
        self.options = opts
        self.wgan = bool(self.hparams['WGAN'])
        gp = self.hparams.get('gradient_penalty')
        self.gp_weight = None if gp is None else float(gp)
        self.distcor = bool(distcor)
        if self.distcor:
            self.alpha1, self.alpha2 = alphas(self.hparams)
            if update not in UPDATE_SCHEMES:
                raise ValueError(f"update must be one of {UPDATE_SCHEMES} ('two_steps' is the original's), "
                                 f'got {update!r}')
        self.update = update
        self.LOG_COLUMNS = ('f_loss', 'tilde_f_loss', 'D_loss', 'loss_c_verification') + (
            ('dcor',) if self.distcor else ())
        self.VALIDATION_COLUMN = 3
        self.seed = 0 if opts['seed'] is None else int(opts['seed'])
        keras.utils.set_random_seed(self.seed)

        self.xpriv, self.xpub = _as_images(xpriv, 'xpriv'), _as_images(xpub, 'xpub')
        self.input_shape = self.xpriv.shape[1:]
        if self.xpub.shape[1:] != self.input_shape:
            raise ValueError(f'xpriv images have shape {self.input_shape} but xpub images {self.xpub.shape[1:]}')
        for name, arr in (('xpriv', self.xpriv), ('xpub', self.xpub)):
            if len(arr) < self.batch_size:
                raise ValueError(f'{name} has {len(arr)} images, fewer than one batch of {self.batch_size}')

        make_f, make_tilde_f, make_decoder, make_D = architectures.SETUPS[id_setup]
        self.f = client if client is not None else make_f(self.input_shape, resblock_bn=opts['resblock_bn'])
        self.tilde_f = pilot if pilot is not None else make_tilde_f(self.input_shape, architecture=opts['architecture'])
        # the same checks (and messages) as fsha.FSHA.FSHA
        self.z_shape = per_sample_output_shape(self.tilde_f, self.input_shape, 'pilot f~')
        check_output_shape(per_sample_output_shape(self.f, self.input_shape, 'client network f'), self.z_shape,
                           "client network f (its output must have the pilot f~'s shape)")
        self.D = discriminator if discriminator is not None else make_D(self.z_shape, stem=opts['d_stem'])
        if per_sample_output_shape(self.D, self.z_shape, 'discriminator D') not in ((1,), ()):
            raise ValueError('discriminator D must output one critic score per sample')
        self.decoder = decoder if decoder is not None else make_decoder(self.z_shape, channels=self.input_shape[-1],
                                                                        architecture=opts['architecture'])
        check_output_shape(per_sample_output_shape(self.decoder, self.z_shape, 'decoder f~^-1'), self.input_shape,
                           'decoder f~^-1 (it must map features back to the image shape)')
        self.nets = (self.f, self.tilde_f, self.decoder, self.D)

        self.optimizers = make_optimizers(self.hparams, self.f, self.tilde_f, self.decoder, self.D)
        self.optimizer0, self.optimizer1, self.optimizer2 = self.optimizers
        self.state = self._state_from_keras()

        self.iteration = 0
        self._acc = np.zeros(len(self.LOG_COLUMNS))
        self._log_steps, self._log_rows, self._mean_rows = [], [], []
        self._rng = np.random.default_rng(self.seed)
        if shuffle_buffer is not None:
            shuffle_buffer = _positive_int(shuffle_buffer, 'shuffle_buffer')
        self.shuffle_buffer = shuffle_buffer
        self._orders = {'priv': (np.zeros(0, np.int64), 0), 'pub': (np.zeros(0, np.int64), 0)}
        self._data = None
        self._inference = {}
        self._step = jax.jit(self._step_fn, donate_argnums=(0,)) if jit else self._step_fn

    # ----------------------------------------------------------------------------------------- state

    def _state_from_keras(self):
        return {'trainable': [[v.value for v in m.trainable_variables] for m in self.nets],
                'non_trainable': [[v.value for v in m.non_trainable_variables] for m in self.nets],
                'optimizer': [[v.value for v in o.variables] for o in self.optimizers]}

    def sync_to_keras(self):
        """Write the trained state back into the Keras models and optimizers (e.g. before ``model.save``)."""
        for m, tv, ntv in zip(self.nets, self.state['trainable'], self.state['non_trainable']):
            for var, val in zip(m.trainable_variables, tv):
                var.assign(val)
            for var, val in zip(m.non_trainable_variables, ntv):
                var.assign(val)
        for o, vals in zip(self.optimizers, self.state['optimizer']):
            for var, val in zip(o.variables, vals):
                var.assign(val)

    def set_weights(self, weights):
        """Load ``[f, f~, decoder, D]`` weight lists (as ``model.get_weights()``) and reset the optimizers' state."""
        for m, w in zip(self.nets, weights):
            m.set_weights(w)
        self.state = self._state_from_keras()

    # ------------------------------------------------------------------------------------------ step

    def _losses(self, f_tv, t_tv, dec_tv, D_tv, ntv, x_priv, x_pub, alpha):
        """The forward pass; returns the differentiated losses and ``(monitoring values, new non-trainables)``."""
        f, tilde_f, decoder, D = self.nets
        f_nt, t_nt, dec_nt, D_nt = ntv
        z_priv, f_nt = f.stateless_call(f_tv, f_nt, x_priv, training=True)
        rec_priv, dec_nt = decoder.stateless_call(dec_tv, dec_nt, z_priv, training=True)
        adv_priv, D_nt = D.stateless_call(D_tv, D_nt, z_priv, training=True)
        z_pub, t_nt = tilde_f.stateless_call(t_tv, t_nt, x_pub, training=True)
        rec_pub, dec_nt = decoder.stateless_call(dec_tv, dec_nt, z_pub, training=True)
        adv_pub, D_nt = D.stateless_call(D_tv, D_nt, z_pub, training=True)
        f_loss, d_loss = adversarial_losses(adv_priv, adv_pub, self.wgan, self.options['saturating_f_loss'])
        if self.gp_weight is not None:
            x_hat = alpha * z_priv + (1.0 - alpha) * z_pub

            def score_sum(xh, nt):
                score, nt = D.stateless_call(D_tv, nt, xh, training=True)
                return jnp.sum(score), nt
            grad, D_nt = jax.grad(score_sum, has_aux=True)(x_hat, D_nt)
            rank = grad.ndim
            axes = tuple(range(1, rank - 1)) if self.options['gp_norm'] == 'per_channel' else tuple(range(1, rank))
            norms = jnp.sqrt(jnp.sum(jnp.square(grad), axis=axes) + self.options['gp_eps'])
            d_loss = d_loss + self.gp_weight * jnp.mean(jnp.square(norms - 1.0))
        losses = [f_loss, mse(x_pub, rec_pub), d_loss]
        monitor = [mse(x_priv, rec_priv)]
        if self.distcor:
            dcor = distance_correlation(x_priv, z_priv)
            losses = [self.alpha2 * f_loss, losses[1], d_loss, self.alpha1 * dcor]
            monitor.append(dcor)
        return jnp.stack(losses), (monitor, [f_nt, t_nt, dec_nt, D_nt])

    def _step_fn(self, state, data_priv, data_pub, idx_priv, idx_pub, key):
        x_priv, x_pub = data_priv[idx_priv], data_pub[idx_pub]
        alpha = jax.random.uniform(key, (x_priv.shape[0],) + (1,) * (len(self.z_shape)), jnp.float32)
        return self.update_state(state, x_priv, x_pub, alpha)

    def update_state(self, state, x_priv, x_pub, alpha):
        """One attack step on given batches and GP coefficients ``alpha`` [B, 1, 1, 1]: ``(new state, LOG row)``.

        Pure (jit-able); the training loop calls it with its own batches and ``alpha ~ U(0, 1)``."""
        f_tv, t_tv, dec_tv, D_tv = state['trainable']
        values, vjp, (monitor, ntv) = jax.vjp(
            lambda a, b, c, d: self._losses(a, b, c, d, state['non_trainable'], x_priv, x_pub, alpha),
            f_tv, t_tv, dec_tv, D_tv, has_aux=True)
        onehot = lambda i: jnp.zeros_like(values).at[i].set(1.0)  # noqa: E731
        grad_f = vjp(onehot(0))[0]
        _, grad_t, grad_dec, _ = vjp(onehot(1))
        grad_D = vjp(onehot(2))[3]
        opt0, opt1, opt2 = state['optimizer']
        new_td, opt1 = self.optimizer1.stateless_apply(opt1, grad_t + grad_dec, t_tv + dec_tv)
        t_tv, dec_tv = new_td[:len(t_tv)], new_td[len(t_tv):]
        D_tv, opt2 = self.optimizer2.stateless_apply(opt2, grad_D, D_tv)
        if not self.distcor:
            f_tv, opt0 = self.optimizer0.stateless_apply(opt0, grad_f, f_tv)
        elif self.update == 'two_steps':
            f_tv, opt0 = self.optimizer0.stateless_apply(opt0, vjp(onehot(3))[0], f_tv)
            f_tv, opt0 = self.optimizer0.stateless_apply(opt0, grad_f, f_tv)
        else:
            combined = vjp(onehot(0) + onehot(3))[0]
            f_tv, opt0 = self.optimizer0.stateless_apply(opt0, combined, f_tv)
        row = jnp.stack([values[0], values[1], values[2]] + monitor)
        return {'trainable': [f_tv, t_tv, dec_tv, D_tv], 'non_trainable': ntv,
                'optimizer': [opt0, opt1, opt2]}, row

    # ------------------------------------------------------------------------------------------ loop

    def _next_indices(self, which, n_items):
        order, pos = self._orders[which]
        if pos + self.batch_size > len(order):  # a new pass, reshuffled; the remainder is dropped
            order, pos = buffered_shuffle(n_items, self.shuffle_buffer, self._rng), 0
        self._orders[which] = (order, pos + self.batch_size)
        return order[pos:pos + self.batch_size]

    @property
    def running_mean_history(self):
        """``(steps, rows)``: the running mean of every LOG column at every logged step (as FSHA's)."""
        return np.asarray(self._log_steps, np.int64), np.asarray(self._mean_rows).reshape(-1, len(self.LOG_COLUMNS))

    @property
    def validation_history(self):
        steps, rows = self.running_mean_history
        return steps, rows[:, self.VALIDATION_COLUMN]

    @property
    def log_history(self):
        return np.asarray(self._log_steps, np.int64), np.asarray(self._log_rows).reshape(-1, len(self.LOG_COLUMNS))

    def __call__(self, iterations, log_frequency=500, verbose=False, checkpoint=None, checkpoint_every=None,
                 printer=print):
        """Run ``iterations`` steps; return LOG (one single-step row per logged step), as FSHA's ``__call__``.

        ``checkpoint``: an ``.npz`` path written every ``checkpoint_every`` steps and at the end."""
        iterations = _positive_int(iterations, 'iterations', minimum=0)
        log_frequency = _positive_int(log_frequency, 'log_frequency')
        if self._data is None:
            self._data = (jnp.asarray(self.xpriv), jnp.asarray(self.xpub))
        base_key = jax.random.PRNGKey(self.seed)
        LOG, pending = [], []  # pending: device rows not yet added to the running sums
        col = self.VALIDATION_COLUMN
        for i in range(iterations):
            step = self.iteration
            idx_priv = self._next_indices('priv', len(self.xpriv))
            idx_pub = self._next_indices('pub', len(self.xpub))
            self.state, row = self._step(self.state, *self._data, jnp.asarray(idx_priv), jnp.asarray(idx_pub),
                                         jax.random.fold_in(base_key, step))
            self.iteration += 1
            pending.append(row)
            if step % log_frequency == 0:
                rows = np.asarray(jnp.stack(pending), np.float64)  # one device fetch per log window
                pending = []
                self._acc = rows[-1].copy() if step == 0 else self._acc + rows.sum(axis=0) / log_frequency
                self._log_steps.append(step)
                self._log_rows.append(rows[-1])
                self._mean_rows.append(self._acc.copy())
                LOG.append(rows[-1])
                if verbose:
                    printer('log--%02d%%-%07d] validation: %0.4f' % (int(i / iterations * 100), step,
                                                                     self._acc[col]))
                self._acc = np.zeros(len(self.LOG_COLUMNS))
            if checkpoint and checkpoint_every and self.iteration % checkpoint_every == 0:
                pending = self._flush(pending, log_frequency)
                self.save(checkpoint)
        self._flush(pending, log_frequency)
        last_step_saved = iterations and checkpoint_every and self.iteration % checkpoint_every == 0
        if checkpoint and not last_step_saved:  # not twice when the last step was a checkpoint step
            self.save(checkpoint)
        return np.asarray(LOG).reshape(-1, len(self.LOG_COLUMNS))

    def _flush(self, pending, log_frequency):
        """Add the pending rows to the running sums; returns an empty pending list."""
        if pending:
            self._acc = self._acc + np.asarray(jnp.stack(pending), np.float64).sum(axis=0) / log_frequency
        return []

    # --------------------------------------------------------------------------------------- scoring

    def _apply(self, net, x, batch=256):
        i = self.nets.index(net)
        tv, ntv = self.state['trainable'][i], self.state['non_trainable'][i]
        if i not in self._inference:
            self._inference[i] = jax.jit(lambda t, n, v: net.stateless_call(t, n, v, training=False)[0])
        fn = self._inference[i]
        return np.concatenate([np.asarray(fn(tv, ntv, x[s:s + batch])) for s in range(0, len(x), batch)])

    def attack(self, x):
        """``(decoder(f(x)), decoder(f~(x)))`` in inference mode: the reconstruction and the control."""
        x = _as_images(x, 'x')
        return (self._apply(self.decoder, self._apply(self.f, x)),
                self._apply(self.decoder, self._apply(self.tilde_f, x)))

    def reconstruct(self, x):
        """``decoder(f(x))`` in inference mode (the attack's reconstruction alone)."""
        return self._apply(self.decoder, self._apply(self.f, _as_images(x, 'x')))

    def scoreAttack(self, x):  # noqa: N802 (FSHA's name)
        """Mean over full batches of ``batch_size`` of the reconstruction MSE (as FSHA.scoreAttack), [-1, 1] scale."""
        x = _as_images(x, 'x')
        n = len(x) // self.batch_size
        if n == 0:
            raise ValueError(f'scoreAttack: {len(x)} images, fewer than batch_size={self.batch_size}')
        rec = self.reconstruct(x[:n * self.batch_size])
        err = np.square(rec.astype(np.float64) - x[:n * self.batch_size]).reshape(n, -1).mean(axis=1)
        return float(err.mean())

    # ------------------------------------------------------------------------------------ checkpoints

    def _config(self):
        """What a checkpoint must agree on to be continued by this object."""
        return {'log_columns': list(self.LOG_COLUMNS), 'hparams': {k: self.hparams[k] for k in sorted(self.hparams)},
                'update': self.update if self.distcor else None, 'batch_size': self.batch_size,
                'options': {k: v for k, v in sorted(self.options.items()) if k != 'seed'},
                'data': [list(self.xpriv.shape), list(self.xpub.shape)], 'shuffle_buffer': self.shuffle_buffer}

    def save(self, path):
        """Write everything needed to continue the same run to one ``.npz`` file (atomically)."""
        arrays = {}
        for group in ('trainable', 'non_trainable', 'optimizer'):
            for i, values in enumerate(self.state[group]):
                for j, v in enumerate(values):
                    arrays[f'{group}/{i}/{j}'] = np.asarray(v)
        for which, (order, pos) in self._orders.items():
            arrays[f'order/{which}'] = order
            arrays[f'pos/{which}'] = np.asarray(pos)
        arrays['log_steps'] = np.asarray(self._log_steps, np.int64)
        arrays['log_rows'] = np.asarray(self._log_rows, np.float64).reshape(-1, len(self.LOG_COLUMNS))
        arrays['mean_rows'] = np.asarray(self._mean_rows, np.float64).reshape(-1, len(self.LOG_COLUMNS))
        arrays['acc'] = self._acc
        arrays['iteration'] = np.asarray(self.iteration)
        arrays['rng'] = np.asarray(json.dumps(self._rng.bit_generator.state))
        arrays['config'] = np.asarray(json.dumps(self._config()))
        path = os.fspath(path)
        tmp = path + '.tmp.npz'
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    def restore(self, path):
        """Continue from a file written by :meth:`save` (same networks and options)."""
        with np.load(os.fspath(path)) as z:
            saved = json.loads(str(z['config']))
            if saved != self._config():
                diff = {k: (saved.get(k), v) for k, v in self._config().items() if saved.get(k) != v}
                raise ValueError(f'checkpoint {path} was written by another configuration; (saved, this run): '
                                 f'{diff}')
            for group in ('trainable', 'non_trainable', 'optimizer'):
                for i, values in enumerate(self.state[group]):
                    for j, v in enumerate(values):
                        saved = z[f'{group}/{i}/{j}']
                        if saved.shape != tuple(v.shape):
                            raise ValueError(f'checkpoint {path}: {group} array {i}/{j} has shape {saved.shape}, '
                                             f'the model has {tuple(v.shape)} (different networks or options?)')
                        values[j] = jnp.asarray(saved)
            self._orders = {w: (z[f'order/{w}'], int(z[f'pos/{w}'])) for w in ('priv', 'pub')}
            self._log_steps = list(z['log_steps'])
            self._log_rows, self._mean_rows = list(z['log_rows']), list(z['mean_rows'])
            self._acc = z['acc'].copy()
            self.iteration = int(z['iteration'])
            self._rng.bit_generator.state = json.loads(str(z['rng']))
        return self


__all__ = ['FSHAJax', 'REFERENCE_HPARAMS', 'adversarial_losses', 'distance_correlation', 'mse']

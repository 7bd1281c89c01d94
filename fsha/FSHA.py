"""The Feature-space Hijacking Attack (FSHA) and its property-inference variant (spec ``fsha.md`` §3, §5, §6).

``FSHA(xpriv, xpub, id_setup, batch_size, hparams)`` has the original's public API: calling the object with
``(iterations, verbose=, progress_bar=, log_frequency=)`` trains and returns the log array; ``attack(x)``,
``score(x, y)`` and ``scoreAttack(dataset)`` evaluate it; the networks are ``f``, ``tilde_f``, ``decoder``,
``D`` and the optimizers ``optimizer0`` (f), ``optimizer1`` (f~ and decoder), ``optimizer2`` (D). The original
notebooks run against it with only their imports changed.

Faithful by default: one forward pass per step in one persistent tape, each network updated only from its
own loss (f <- f_loss, f~ + decoder <- tilde_f_loss on public data only, D <- D_loss) in the order
f, f~ + decoder, D; the WGAN losses with the original's flipped sign (pilot space = low critic score); the
gradient penalty used whenever ``hparams`` has ``gradient_penalty`` with the per-channel norm; LOG rows hold
single-step values while the printed validation is a running mean over the last ``log_frequency`` steps.
The running means are kept too (not in the original, which only prints one): ``running_mean_history`` holds,
per logged step, the running mean of every LOG column, and ``validation_history`` the printed column.

Deviations from the original, and why:

* Works on Keras 3 (the original reads shapes with ``.as_list()``, which no longer exists).
* ``__call__`` allocates one LOG row per logged step, i.e. ceil(iterations / log_frequency) rows from a fresh
  start (the original allocates int(iterations / log_frequency) rows and overflows with IndexError whenever
  iterations is not a multiple of log_frequency, or is smaller than it).
* Iteration numbers are global: a second call, or a run resumed from a checkpoint, continues the numbering,
  the LOG rows, the running means and their history where the previous call stopped (the original restarts
  at 0 on every call). The data iterators also persist across calls (the original starts new, reshuffled ones per call;
  the streams are shuffled, so this only changes which images come next). A checkpoint does not hold the
  iterators' position (the 10,000-image shuffle buffers would dominate it): a resumed run starts a new pass
  (seed it afresh, as the benchmarks do with :func:`fsha.runs.stream_seed`, or it replays the first one).
* ``hparams`` is validated up front (the original fails deep inside training, or never, on bad values);
  ``gradient_penalty=None`` means "no GP" (the original would crash on ``float(None)``).
* ``scoreAttack`` raises on a dataset smaller than one batch (the original divides by zero).
* The GP's interpolation coefficients come from a ``tf.random.Generator`` (seedable, saved in checkpoints)
  instead of the global ``tf.random.uniform``; same distribution.
* Options not in the original, all off by default: user-supplied networks, ``gp_norm='per_sample'``,
  ``gp_eps``, ``saturating_f_loss`` (paper's log(1 - D) form), ``architecture='notebook'``,
  ``d_stem='intended'``, ``resblock_bn``, ``seed``, ``jit_compile``, checkpointing.
* ``FSHA_binary_property``: LOG has 5 columns (the original crashes on its first logged step), labels are
  cast and reshaped explicitly (the original silently mis-computes accuracy for [B] labels and fails on
  uint8), and ``score``/``scoreAttack``/``attack`` report the property (the inherited ones compute
  meaningless reconstruction errors on logits).
"""

import numbers
import os

import keras
import numpy as np
import tensorflow as tf

from fsha import architectures
from fsha.hparams import (GP_NORMS, OPTION_DEFAULTS, REFERENCE_HPARAMS, _positive_int,  # noqa: F401
                          make_optimizers, resolve_options, validate_hparams)
from splitnn.utils import check_output_shape, per_sample_output_shape, seed_generator_states, set_seed

# ----------------------------------------------------------------------------------------------- losses

def adversarial_losses(adv_priv, adv_pub, wgan, saturating=False):
    """``(f_loss, D_loss)`` from critic outputs on client features (``adv_priv``) and pilot features.

    WGAN (the original's flipped sign, pilot space = "real" = low score):
    ``f_loss = mean(adv_priv)``, ``D_loss = mean(adv_pub) - mean(adv_priv)``.
    Non-WGAN, BCE from logits with pilot space = label 1: ``f_loss = BCE(1, adv_priv)`` (non-saturating),
    ``D_loss = [BCE(1, adv_pub) + BCE(0, adv_priv)] / 2``. ``saturating=True`` (not in the original) uses
    the paper's eq. (3) instead: ``f_loss = mean log(1 - sigmoid(adv_priv))``.
    """
    adv_priv = tf.convert_to_tensor(adv_priv, tf.float32)
    adv_pub = tf.convert_to_tensor(adv_pub, tf.float32)
    if wgan:
        return tf.reduce_mean(adv_priv), tf.reduce_mean(adv_pub) - tf.reduce_mean(adv_priv)

    def bce(label, logits):
        labels = tf.fill(tf.shape(logits), tf.constant(label, logits.dtype))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))

    f_loss = -bce(0.0, adv_priv) if saturating else bce(1.0, adv_priv)
    d_loss = (bce(1.0, adv_pub) + bce(0.0, adv_priv)) / 2.0
    return f_loss, d_loss


def gradient_penalty(D, z_priv, z_pub, norm='per_channel', eps=0.0, alpha=None, rng=None, training=True):
    """WGAN-GP term ``mean((||dD/dx_hat|| - 1)^2)`` at ``x_hat = alpha * z_priv + (1 - alpha) * z_pub``.

    ``norm='per_channel'`` (the original): one norm per (sample, channel) over the spatial axes, averaged
    over B x C. ``norm='per_sample'``: the standard WGAN-GP norm over all feature axes. ``eps`` is added
    inside the square root (the original has none). ``alpha`` defaults to U(0, 1) per sample, drawn from
    ``rng`` (a ``tf.random.Generator``) when given.
    """
    if norm not in GP_NORMS:
        raise ValueError(f'gp norm must be one of {GP_NORMS}, got {norm!r}')
    z_priv = tf.convert_to_tensor(z_priv)
    z_pub = tf.convert_to_tensor(z_pub)
    rank = z_priv.shape.rank
    if norm == 'per_channel' and rank < 3:
        raise ValueError(f"gp norm 'per_channel' needs features [B, ..., C] with spatial axes, got shape "
                         f"{tuple(z_priv.shape)}; use gp_norm='per_sample'")
    if alpha is None:
        shape = tf.concat([tf.shape(z_priv)[:1], tf.ones([rank - 1], tf.int32)], axis=0)
        alpha = rng.uniform(shape, dtype=z_priv.dtype) if rng is not None else tf.random.uniform(
            shape, dtype=z_priv.dtype)
    x_hat = alpha * z_priv + (1.0 - alpha) * z_pub
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        score = D(x_hat, training=training)
    grad = tape.gradient(score, x_hat)  # summed over the batch: samples do not interact in D
    axes = list(range(1, rank - 1)) if norm == 'per_channel' else list(range(1, rank))
    norms = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=axes) + eps)
    return tf.reduce_mean(tf.square(norms - 1.0))


def mse(a, b):
    """Plain MSE over every element (the original's Keras MSE on equal-sized images gives the same)."""
    return tf.reduce_mean(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


# ------------------------------------------------------------------------------------------- validation

def _image_spec(ds, what):
    if not isinstance(ds, tf.data.Dataset):
        raise TypeError(f'{what} must be an unbatched tf.data.Dataset of (image, label) pairs, got '
                        f'{type(ds).__name__}')
    spec = ds.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else spec
    if not image_spec.shape.is_fully_defined():
        raise ValueError(f'{what}: image shape must be fully defined (an unbatched stream), got '
                         f'{image_spec.shape}')
    return spec, tuple(int(d) for d in image_spec.shape)


def _with_labels(ds):
    """Streams of bare images get a dummy label so every step has the original's 4 arguments."""
    if isinstance(ds.element_spec, tuple):
        return ds
    return ds.map(lambda x: (x, tf.zeros([], tf.uint8)))


# -------------------------------------------------------------------------------------------- the class

class FSHA:
    """Feature-space hijacking attack: ``FSHA(xpriv, xpub, id_setup, batch_size, hparams, **options)``.

    Arguments as in the original: unbatched ``(image, label)`` streams for the client (``xpriv``) and the
    attacker (``xpub``); ``id_setup`` indexes :data:`fsha.architectures.SETUPS` (3 = split level 4, as in
    the notebooks); ``hparams`` needs ``WGAN``, ``lr_f``, ``lr_tilde``, ``lr_D`` and optionally
    ``gradient_penalty`` (the GP is used whenever the key is present).

    Keyword options (also accepted as hparams keys; the keyword wins), faithful defaults first:

    * ``client``, ``pilot``, ``decoder``, ``discriminator``: any Keras models replacing the built-in ones.
      The client's output shape must equal the pilot's, the decoder must map it back to the image shape,
      D must output one score per sample.
    * ``architecture='final'|'notebook'``: pilot/decoder activations (linear as released / swish+ReLU as
      when the notebooks were run). ``d_stem='effective'|'intended'``. ``resblock_bn=False`` (f's ResBlocks).
    * ``gp_norm='per_channel'|'per_sample'``, ``gp_eps=0.0``, ``saturating_f_loss=False`` (non-WGAN only).
    * ``seed=None`` (seeds weights and the GP's sampling; for data order also seed before building the
      streams), ``jit_compile=False`` (XLA-compile the step).
    * ``checkpoint_dir=None``: restore the latest checkpoint there if any, save after every call (and
      every ``checkpoint_every`` steps). ``save(path)`` / ``restore(path)`` do the same by hand.

    Subclasses change the step by overriding :meth:`train_step` (returning one value per entry of
    ``LOG_COLUMNS``) and reuse :meth:`critic_losses` and :meth:`apply_updates`.
    """

    LOG_COLUMNS = ('f_loss', 'tilde_f_loss', 'D_loss', 'loss_c_verification')
    #: Column whose running mean is printed as "validation".
    VALIDATION_COLUMN = 3
    REQUIRED_HPARAMS = ('WGAN', 'lr_f', 'lr_tilde', 'lr_D')

    def __init__(self, xpriv, xpub, id_setup, batch_size, hparams, *, client=None, pilot=None, decoder=None,
                 discriminator=None, checkpoint_dir=None, checkpoint_every=None, max_checkpoints=3,
                 **options):
        self.batch_size = _positive_int(batch_size, 'batch_size')
        if isinstance(id_setup, bool) or not isinstance(id_setup, numbers.Integral) or not (
                0 <= id_setup < len(architectures.SETUPS)):
            raise ValueError(f'id_setup must be an int in 0..{len(architectures.SETUPS) - 1} (index into '
                             f'SETUPS; 3 = split level 4), got {id_setup!r}')
        self.id_setup = int(id_setup)
        self.hparams = validate_hparams(hparams, self.REQUIRED_HPARAMS)
        opts = resolve_options(options, self.hparams)
        self.options = opts
        self.wgan = bool(self.hparams['WGAN'])
        gp = self.hparams.get('gradient_penalty')
        self.gp_weight = None if gp is None else float(gp)
        self.gp_norm, self.gp_eps = opts['gp_norm'], float(opts['gp_eps'])
        self.saturating_f_loss = bool(opts['saturating_f_loss'])
        self.jit_compile = bool(opts['jit_compile'])
        self.seed = opts['seed']
        if self.seed is not None:
            set_seed(int(self.seed))

        _, self.input_shape = _image_spec(xpriv, 'xpriv')
        _, pub_shape = _image_spec(xpub, 'xpub')
        if pub_shape != self.input_shape:
            raise ValueError(f'xpriv images have shape {self.input_shape} but xpub images {pub_shape}')
        self._check_label_spec(xpriv, 'xpriv')
        self._check_label_spec(xpub, 'xpub')
        self.client_dataset = _with_labels(xpriv).batch(self.batch_size, drop_remainder=True).repeat(-1)
        self.attacker_dataset = _with_labels(xpub).batch(self.batch_size, drop_remainder=True).repeat(-1)

        make_f, make_tilde_f, make_decoder, make_D = architectures.SETUPS[self.id_setup]
        self.f = client if client is not None else make_f(self.input_shape, resblock_bn=opts['resblock_bn'])
        self.tilde_f = pilot if pilot is not None else make_tilde_f(self.input_shape,
                                                                     architecture=opts['architecture'])
        z_pilot = per_sample_output_shape(self.tilde_f, self.input_shape, 'pilot f~')
        z_client = per_sample_output_shape(self.f, self.input_shape, 'client network f')
        hint = ('' if pilot is not None else '; for a client with another feature space pass pilot=, decoder= '
                'and discriminator= built for it, e.g. **fsha.architectures.attacker_networks(input_shape, '
                'client_output_shape)')
        check_output_shape(z_client, z_pilot, f"client network f (its output must have the pilot f~'s shape{hint})")
        self.z_shape = z_pilot
        self.D = discriminator if discriminator is not None else make_D(self.z_shape, stem=opts['d_stem'])
        d_out = per_sample_output_shape(self.D, self.z_shape, 'discriminator D')
        if d_out not in ((1,), ()):
            raise ValueError(f'discriminator D: output shape per sample is {d_out}, expected (1,) '
                             '(one critic score per sample)')
        self.decoder = decoder if decoder is not None else self.loadBiasNetwork(
            make_decoder, self.z_shape, channels=self.input_shape[-1])
        self._check_decoder()

        # Built now so a checkpoint can be restored before the first step.
        self.optimizer0, self.optimizer1, self.optimizer2 = make_optimizers(
            self.hparams, self.f, self.tilde_f, self.decoder, self.D)

        ncol = len(self.LOG_COLUMNS)
        self._iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name='iteration')
        # Running sum of row / log_frequency since the last logged step, one entry per LOG column.
        self._mean_acc = tf.Variable(np.zeros([ncol]), dtype=tf.float64, trainable=False,
                                     name='running_mean_accumulator')
        # One entry per logged step: its global index, its single-step LOG row, the running-mean row.
        self._log_steps = tf.Variable(np.zeros([0], np.int64), shape=tf.TensorShape([None]), trainable=False)
        self._log_rows = tf.Variable(np.zeros([0, ncol]), shape=tf.TensorShape([None, ncol]), trainable=False)
        self._mean_rows = tf.Variable(np.zeros([0, ncol]), shape=tf.TensorShape([None, ncol]), trainable=False)
        self._rng = (tf.random.Generator.from_seed(int(self.seed)) if self.seed is not None
                     else tf.random.Generator.from_non_deterministic_state())
        self._step_fn = None
        self._data_iterator = None
        self.checkpoint = tf.train.Checkpoint(
            f=self.f, tilde_f=self.tilde_f, decoder=self.decoder, D=self.D, optimizer0=self.optimizer0,
            optimizer1=self.optimizer1, optimizer2=self.optimizer2, iteration=self._iteration,
            running_mean_accumulator=self._mean_acc, log_steps=self._log_steps, log_rows=self._log_rows,
            running_mean_rows=self._mean_rows, rng=self._rng,
            # Dropout masks of user-supplied networks: not saved with the Keras models themselves
            seed_states={name: seed_generator_states(net) for name, net in (
                ('f', self.f), ('tilde_f', self.tilde_f), ('decoder', self.decoder), ('D', self.D))})
        self.checkpoint_every = (None if checkpoint_every is None
                                 else _positive_int(checkpoint_every, 'checkpoint_every'))
        self.checkpoint_manager = None
        if checkpoint_dir is not None:
            self.checkpoint_manager = tf.train.CheckpointManager(self.checkpoint, os.fspath(checkpoint_dir),
                                                                 max_to_keep=max_checkpoints)
            if self.checkpoint_manager.latest_checkpoint:
                self.restore(self.checkpoint_manager.latest_checkpoint)
                print(f'Restored {self.checkpoint_manager.latest_checkpoint} at iteration {self.iteration}')

    # ---------------------------------------------------------------------------------- construction hooks

    def loadBiasNetwork(self, make_decoder, z_shape, channels):  # noqa: N802 (original name)
        """Factory of the network in the decoder slot (the property variant puts its head there)."""
        return make_decoder(z_shape, channels=channels, architecture=self.options['architecture'])

    def _check_decoder(self):
        out = per_sample_output_shape(self.decoder, self.z_shape, 'decoder f~^-1')
        check_output_shape(out, self.input_shape, 'decoder f~^-1 (it must map features back to the image shape)')

    def _check_label_spec(self, ds, what):
        pass  # FSHA ignores labels

    # --------------------------------------------------------------------------------------------- step

    def critic_losses(self, z_private, z_public, adv_private, adv_public):
        """``(f_loss, D_loss)``, D_loss including the weighted GP when enabled. Call inside the tape."""
        f_loss, d_loss = adversarial_losses(adv_private, adv_public, self.wgan, self.saturating_f_loss)
        if self.gp_weight is not None:
            gp = gradient_penalty(self.D, z_private, z_public, norm=self.gp_norm, eps=self.gp_eps, rng=self._rng)
            d_loss = d_loss + self.gp_weight * gp
        return f_loss, d_loss

    @staticmethod
    def apply_loss(tape, loss, variables, optimizer):
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))

    def apply_updates(self, tape, f_loss, tilde_f_loss, d_loss):
        """The three Adam updates in the original's order: f, then f~ + decoder, then D."""
        self.apply_loss(tape, f_loss, self.f.trainable_variables, self.optimizer0)
        self.apply_loss(tape, tilde_f_loss, self.tilde_f.trainable_variables + self.decoder.trainable_variables,
                        self.optimizer1)
        self.apply_loss(tape, d_loss, self.D.trainable_variables, self.optimizer2)

    def _trace_messages(self):
        # Printed once per trace, as in the original.
        print('Use WGAN loss' if self.wgan else 'Use BCE loss')
        if self.gp_weight is not None:
            print('Use GP')

    def forward_losses(self, x_private, x_public):
        """The step's single forward pass and its losses; call inside the tape.

        Returns a dict with ``z_private``, ``f_loss``, ``tilde_f_loss``, ``D_loss`` and
        ``loss_c_verification`` (the reconstruction error of the private batch, for monitoring only).
        """
        z_private = self.f(x_private, training=True)
        rec_x_private = self.decoder(z_private, training=True)  # monitoring only
        adv_private = self.D(z_private, training=True)
        z_public = self.tilde_f(x_public, training=True)
        rec_x_public = self.decoder(z_public, training=True)
        adv_public = self.D(z_public, training=True)
        f_loss, d_loss = self.critic_losses(z_private, z_public, adv_private, adv_public)
        return {'z_private': z_private, 'f_loss': f_loss, 'tilde_f_loss': mse(x_public, rec_x_public),
                'D_loss': d_loss, 'loss_c_verification': mse(x_private, rec_x_private)}

    def train_step(self, x_private, x_public, label_private, label_public):
        """One attack iteration; returns (f_loss, tilde_f_loss, D_loss, loss_c_verification)."""
        self._trace_messages()
        with tf.GradientTape(persistent=True) as tape:
            out = self.forward_losses(x_private, x_public)
        self.apply_updates(tape, out['f_loss'], out['tilde_f_loss'], out['D_loss'])
        del tape
        return out['f_loss'], out['tilde_f_loss'], out['D_loss'], out['loss_c_verification']

    def _make_step_function(self):
        return tf.function(self.train_step, jit_compile=self.jit_compile)

    # --------------------------------------------------------------------------------------------- loop

    @property
    def iteration(self):
        """Number of training steps done so far (continues across calls and checkpoint restores)."""
        return int(self._iteration.numpy())

    @property
    def log_history(self):
        """``(steps, rows)``: every LOG row logged so far (all calls, restored runs included)."""
        return self._log_steps.numpy(), self._log_rows.numpy()

    @property
    def running_mean_history(self):
        """``(steps, rows)``: at every logged step so far, the running mean of each LOG column.

        ``steps`` is the same array as in :attr:`log_history`; ``rows[j, c]`` is the running mean of column
        ``LOG_COLUMNS[c]`` printed (for the validation column) or printable at ``steps[j]``: at step 0 that
        step's value alone, at step k*L the mean over steps (k-1)L+1 .. kL. Strictly it is the original's
        accumulator, the sum of value / L over the steps since the previous logged step, L being the
        ``log_frequency`` of the call that ran each step; it equals the window mean whenever the window ran
        with one L, which includes runs split over several calls or resumed from a checkpoint.
        """
        return self._log_steps.numpy(), self._mean_rows.numpy()

    @property
    def validation_history(self):
        """``(steps, values)``: the running mean of ``LOG_COLUMNS[VALIDATION_COLUMN]`` at every logged step,
        i.e. every value ``__call__(verbose=True)`` prints as "validation" (all calls, restored runs included)."""
        steps, rows = self.running_mean_history
        return steps, rows[:, self.VALIDATION_COLUMN]

    def _next_batches(self):
        if self._data_iterator is None:
            self._data_iterator = iter(tf.data.Dataset.zip((self.client_dataset, self.attacker_dataset)))
        (x_private, label_private), (x_public, label_public) = next(self._data_iterator)
        return x_private, x_public, label_private, label_public

    def __call__(self, iterations, log_frequency=500, verbose=False, progress_bar=True):
        """Run ``iterations`` steps; return LOG, one single-step row per logged step.

        A step is logged when its global index i is a multiple of ``log_frequency`` (L); from a fresh start
        LOG therefore has ceil(iterations / L) rows and row j holds step j*L. With ``verbose`` each logged
        step prints ``log--PP%-IIIIIII] validation: V.VVVV``, V being the validation column
        (``LOG_COLUMNS[VALIDATION_COLUMN]``, loss_c_verification for FSHA) of step 0 at i = 0 and its mean over
        steps (k-1)L+1 .. kL at i = kL. The running means of all columns at every logged step are appended to
        :attr:`running_mean_history` (whatever ``verbose``); the printed ones are :attr:`validation_history`.
        """
        iterations = _positive_int(iterations, 'iterations', minimum=0)
        log_frequency = _positive_int(log_frequency, 'log_frequency')
        if self._step_fn is None:
            self._step_fn = self._make_step_function()
        start = self.iteration
        first = -(-start // log_frequency) * log_frequency
        n_rows = max(0, -(-(start + iterations - first) // log_frequency))
        LOG = np.zeros((n_rows, len(self.LOG_COLUMNS)))
        print('RUNNING...')
        bar = keras.utils.Progbar(iterations) if progress_bar and iterations else None
        acc = self._mean_acc.numpy()  # running sums of row / L, one per column
        col = self.VALIDATION_COLUMN
        j = 0
        for i in range(iterations):
            step = start + i
            out = self._step_fn(*self._next_batches())
            row = np.array([float(v) for v in out], dtype=np.float64)
            if row.shape[0] != LOG.shape[1]:
                raise ValueError(f'{type(self).__name__}.train_step returned {row.shape[0]} values but '
                                 f'LOG_COLUMNS has {LOG.shape[1]}: {self.LOG_COLUMNS}')
            acc = row.copy() if step == 0 else acc + row / log_frequency
            if step % log_frequency == 0:
                LOG[j] = row
                j += 1
                self._log_steps.assign(tf.concat([self._log_steps, [step]], 0))
                self._log_rows.assign(tf.concat([self._log_rows, row[None]], 0))
                self._mean_rows.assign(tf.concat([self._mean_rows, acc[None]], 0))
                if verbose:
                    print('log--%02d%%-%07d] validation: %0.4f' % (int(i / iterations * 100), step, acc[col]))
                acc = np.zeros_like(acc)
            self._iteration.assign(step + 1)
            self._mean_acc.assign(acc)
            if bar is not None:
                bar.update(i + 1)
            if self.checkpoint_every and self.checkpoint_manager is not None and (
                    (step + 1) % self.checkpoint_every == 0):
                self.checkpoint_manager.save(checkpoint_number=step + 1)
        # the closing checkpoint, unless the last step just wrote it (the same files twice)
        last_step_saved = bool(self.checkpoint_every) and self.iteration % self.checkpoint_every == 0
        if self.checkpoint_manager is not None and iterations and not last_step_saved:
            self.checkpoint_manager.save(checkpoint_number=self.iteration)
        return LOG

    # ------------------------------------------------------------------------------------- checkpoints

    def save(self, path):
        """Write networks (with their Dropout seed states), optimizers, the iteration counter, the log and
        running-mean histories, the running-mean accumulator and the GP's RNG to ``path``."""
        return self.checkpoint.write(os.fspath(path))

    def restore(self, path):
        """Restore a checkpoint written by :meth:`save` (a file prefix) or the latest one in a directory."""
        path = os.fspath(path)
        if os.path.isdir(path):
            latest = tf.train.latest_checkpoint(path)
            if latest is None:
                raise FileNotFoundError(f'no checkpoint in directory {path}')
            path = latest
        if not tf.io.gfile.exists(path + '.index'):
            raise FileNotFoundError(f'no checkpoint at {path} (expected {path}.index)')
        self.checkpoint.read(path).assert_existing_objects_matched()
        return path

    # ------------------------------------------------------------------------------------------ scoring

    def _score(self, x):
        return mse(x, self.decoder(self.f(x, training=False), training=False))

    def score(self, x, y=None):
        """MSE between ``x`` and its reconstruction ``decoder(f(x))`` (inference mode), on the [-1, 1] scale."""
        if getattr(self, '_score_fn', None) is None:
            # No AutoGraph (nothing to convert here): it re-reads the source file when it traces, which happens
            # after training, and a file edited during a 10,000-step run made it convert another method instead.
            self._score_fn = tf.function(self._score, autograph=False)
        return self._score_fn(tf.convert_to_tensor(x, tf.float32))

    def scoreAttack(self, dataset, progress_bar=True):  # noqa: N802 (original name)
        """Mean of :meth:`score` over ``dataset`` (unbatched) in batches of ``batch_size`` (remainder dropped)."""
        _image_spec(dataset, 'dataset')
        batches = _with_labels(dataset).batch(self.batch_size, drop_remainder=True)
        n = int(batches.cardinality())
        if n == 0:
            raise ValueError(f'scoreAttack: the dataset has fewer than batch_size={self.batch_size} examples')
        bar = keras.utils.Progbar(n if n > 0 else None) if progress_bar else None
        total, count = 0.0, 0
        for x, y in batches:
            total += float(self.score(x, y))
            count += 1
            if bar is not None:
                bar.update(count)
        if count == 0:
            raise ValueError(f'scoreAttack: the dataset has fewer than batch_size={self.batch_size} examples')
        return total / count

    def attack(self, x):
        """``(decoder(f(x)), decoder(f~(x)))`` in inference mode: the reconstruction and the control."""
        x = tf.convert_to_tensor(x, tf.float32)
        rec = self.decoder(self.f(x, training=False), training=False)
        control = self.decoder(self.tilde_f(x, training=False), training=False)
        return rec.numpy(), control.numpy()

    @staticmethod
    def addNoise(x, alpha):  # noqa: N802 (original name; unused by the attack)
        return x + tf.random.normal(tf.shape(x)) * alpha


class FSHA_binary_property(FSHA):  # noqa: N801 (original name)
    """Property inference (spec §6): the decoder slot holds ``classifier_binary(z_shape, class_num)``.

    The pilot and head learn the property from public labels; f is hijacked exactly as in FSHA; the head then
    reads the property off f's features. ``hparams['class_num']`` (default 1, binary).

    LOG columns: (f_loss, tilde_f_loss, D_loss, private_accuracy, public_accuracy); the printed validation is
    the running mean of the private accuracy (column 3, as in FSHA's __call__); ``running_mean_history`` also
    has the public accuracy's.

    Deviations (fixes): LOG has 5 columns (the original crashes); labels of any integer, bool or float dtype,
    shape [B] or [B, 1], are cast explicitly (float32 [B, 1] for class_num = 1, int64 [B] otherwise) and other
    shapes are rejected; the head is applied to private features in inference mode (its BN statistics, present
    only for class_num > 1, never see private data); ``score``/``scoreAttack`` return the property accuracy
    and ``attack`` the predicted probabilities, since the inherited reconstruction scores are meaningless.
    """

    LOG_COLUMNS = ('f_loss', 'tilde_f_loss', 'D_loss', 'private_accuracy', 'public_accuracy')
    VALIDATION_COLUMN = 3

    @property
    def class_num(self):
        value = self.hparams.get('class_num', 1)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"hparams['class_num'] must be a positive int, got {value!r}")
        return int(value)

    def loadBiasNetwork(self, make_decoder, z_shape, channels):  # noqa: N802
        return architectures.classifier_binary(z_shape, self.class_num)

    def _check_decoder(self):
        out = per_sample_output_shape(self.decoder, self.z_shape, 'property head')
        check_output_shape(out, (self.class_num,), 'property head (one logit per class)')

    def _check_label_spec(self, ds, what):
        spec = ds.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(f'{what}: property inference needs (image, label) pairs')
        self._label_check(spec[1].dtype, tuple(spec[1].shape), what, per_example=True)

    @staticmethod
    def _label_check(dtype, shape, what, per_example=False):
        if not (dtype.is_integer or dtype.is_floating or dtype == tf.bool):
            raise TypeError(f'{what}: labels must be integer, bool or float, got dtype {dtype.name}')
        ok = shape in ((), (1,)) if per_example else (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
        if not ok:
            expected = '[] or [1] per example' if per_example else '[B] or [B, 1]'
            raise ValueError(f'{what}: labels must have shape {expected}, got {list(shape)}')

    def prepare_labels(self, y, what='labels'):
        """Cast labels: float32 [B, 1] for class_num = 1, int64 [B] otherwise."""
        y = tf.convert_to_tensor(y)
        self._label_check(y.dtype, tuple(y.shape), what)
        if self.class_num == 1:
            return tf.reshape(tf.cast(y, tf.float32), [-1, 1])
        return tf.reshape(tf.cast(y, tf.int64), [-1])

    def classification_loss(self, y, logits):
        if self.class_num == 1:
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))

    def accuracy(self, y, logits):
        if self.class_num == 1:
            pred = tf.cast(tf.sigmoid(logits) > 0.5, tf.float32)
        else:
            pred = tf.argmax(tf.nn.softmax(logits), axis=-1)
        return tf.reduce_mean(tf.cast(tf.equal(pred, y), tf.float32))

    def train_step(self, x_private, x_public, label_private, label_public):
        """Returns (f_loss, tilde_f_loss, D_loss, private_accuracy, public_accuracy)."""
        self._trace_messages()
        y_private = self.prepare_labels(label_private, 'private labels')
        y_public = self.prepare_labels(label_public, 'public labels')
        with tf.GradientTape(persistent=True) as tape:
            z_private = self.f(x_private, training=True)
            adv_private = self.D(z_private, training=True)
            z_public = self.tilde_f(x_public, training=True)
            logits_public = self.decoder(z_public, training=True)
            adv_public = self.D(z_public, training=True)
            tilde_f_loss = self.classification_loss(y_public, logits_public)
            f_loss, d_loss = self.critic_losses(z_private, z_public, adv_private, adv_public)
        logits_private = self.decoder(z_private, training=False)
        private_accuracy = self.accuracy(y_private, logits_private)
        public_accuracy = self.accuracy(y_public, logits_public)
        self.apply_updates(tape, f_loss, tilde_f_loss, d_loss)
        del tape
        return f_loss, tilde_f_loss, d_loss, private_accuracy, public_accuracy

    def _score(self, x, y):
        return self.accuracy(self.prepare_labels(y), self.decoder(self.f(x, training=False), training=False))

    def score(self, x, y):
        """Accuracy of the attacker's property predictions ``head(f(x))`` against the true labels ``y``."""
        if getattr(self, '_score_fn', None) is None:
            self._score_fn = tf.function(self._score, autograph=False)  # see FSHA.score
        return self._score_fn(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y))

    def attack(self, x):
        """Predicted property probabilities ``(from f(x), from f~(x))`` (sigmoid, or softmax if class_num > 1)."""
        x = tf.convert_to_tensor(x, tf.float32)
        prob = tf.sigmoid if self.class_num == 1 else tf.nn.softmax
        return (prob(self.decoder(self.f(x, training=False), training=False)).numpy(),
                prob(self.decoder(self.tilde_f(x, training=False), training=False)).numpy())

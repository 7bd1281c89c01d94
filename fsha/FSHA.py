"""The Feature-space Hijacking Attack (FSHA) and its property-inference variant (Pasquini et al., CCS 2021, §3; the original ``FSHA.py``).

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
* The GP's interpolation coefficients are drawn by NumPy from (seed, iteration) instead of the global
  ``tf.random.uniform``; same distribution, the same draws on both backends. An unseeded attack draws its seed once (saved in checkpoints).
* Written once in ``keras.ops`` on :mod:`splitnn.backend`: the step is a pure function of the variables' values
  (``stateless_call``, one forward pass, every gradient from it), run as a ``tf.function`` under TensorFlow and
  jitted under JAX (``KERAS_BACKEND=jax``). Checkpoints are one ``.npz`` file that both backends read and write.
  Data: ``tf.data`` streams (TensorFlow only) or :class:`splitnn.streams.ArrayStream` (both backends; what the
  loaders return under JAX); an ArrayStream's position is saved in checkpoints, a ``tf.data`` one's is not.
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
from keras import ops

from fsha import architectures
from fsha.hparams import (GP_NORMS, OPTION_DEFAULTS, REFERENCE_HPARAMS, _positive_int,  # noqa: F401
                          make_optimizers, resolve_options, validate_hparams)
from splitnn import backend, checkpoints
from splitnn.streams import ArrayStream, BatchIterator
from splitnn.utils import check_output_shape, per_sample_output_shape

# ----------------------------------------------------------------------------------------------- losses


def _f32(x):
    return ops.cast(ops.convert_to_tensor(x), 'float32')


def sigmoid_cross_entropy(labels, logits):
    """Element-wise ``tf.nn.sigmoid_cross_entropy_with_logits``: max(x, 0) - x z + log(1 + exp(-|x|))."""
    return ops.maximum(logits, 0.0) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))


def adversarial_losses(adv_priv, adv_pub, wgan, saturating=False):
    """``(f_loss, D_loss)`` from critic outputs on client features (``adv_priv``) and pilot features.

    WGAN (the original's flipped sign, pilot space = "real" = low score):
    ``f_loss = mean(adv_priv)``, ``D_loss = mean(adv_pub) - mean(adv_priv)``.
    Non-WGAN, BCE from logits with pilot space = label 1: ``f_loss = BCE(1, adv_priv)`` (non-saturating),
    ``D_loss = [BCE(1, adv_pub) + BCE(0, adv_priv)] / 2``. ``saturating=True`` (not in the original) uses
    the paper's eq. (3) instead: ``f_loss = mean log(1 - sigmoid(adv_priv))``.
    """
    adv_priv, adv_pub = _f32(adv_priv), _f32(adv_pub)
    if wgan:
        return ops.mean(adv_priv), ops.mean(adv_pub) - ops.mean(adv_priv)

    def bce(label, logits):
        return ops.mean(sigmoid_cross_entropy(ops.full_like(logits, label), logits))

    f_loss = -bce(0.0, adv_priv) if saturating else bce(1.0, adv_priv)
    d_loss = (bce(1.0, adv_pub) + bce(0.0, adv_priv)) / 2.0
    return f_loss, d_loss


def _check_gp_norm(norm, rank, shape):
    if norm not in GP_NORMS:
        raise ValueError(f'gp norm must be one of {GP_NORMS}, got {norm!r}')
    if norm == 'per_channel' and rank < 3:
        raise ValueError(f"gp norm 'per_channel' needs features [B, ..., C] with spatial axes, got shape "
                         f"{tuple(shape)}; use gp_norm='per_sample'")


def penalty_from_critic(critic, z_private, z_public, alpha, norm='per_channel', eps=0.0):
    """``(gp, aux)``: the WGAN-GP term for a critic given as ``critic(x) -> (scores, aux)`` (e.g. a
    ``stateless_call`` that also returns the critic's updated non-trainable state)."""
    rank = len(z_private.shape)
    _check_gp_norm(norm, rank, z_private.shape)
    x_hat = alpha * z_private + (1.0 - alpha) * z_public
    # summed over the batch: samples do not interact in D
    grad, aux = backend.input_gradient(critic, x_hat)
    axes = list(range(1, rank - 1)) if norm == 'per_channel' else list(range(1, rank))
    norms = ops.sqrt(ops.sum(ops.square(grad), axis=axes) + eps)
    return ops.mean(ops.square(norms - 1.0)), aux


def gradient_penalty(D, z_priv, z_pub, norm='per_channel', eps=0.0, alpha=None, key=None, training=True):
    """WGAN-GP term ``mean((||dD/dx_hat|| - 1)^2)`` at ``x_hat = alpha * z_priv + (1 - alpha) * z_pub``.

    ``norm='per_channel'`` (the original): one norm per (sample, channel) over the spatial axes, averaged
    over B x C. ``norm='per_sample'``: the standard WGAN-GP norm over all feature axes. ``eps`` is added
    inside the square root (the original has none). ``alpha`` defaults to U(0, 1) per sample, drawn from the
    stateless ``key`` (:func:`splitnn.backend.step_key`) when given, else from Keras' global generator.
    ``D`` is called as is (a Keras model or any callable); the attack itself threads D's state explicitly.
    """
    z_priv, z_pub = _f32(z_priv), _f32(z_pub)
    rank = len(z_priv.shape)
    _check_gp_norm(norm, rank, z_priv.shape)
    if alpha is None:
        shape = (z_priv.shape[0],) + (1,) * (rank - 1)
        alpha = backend.uniform(shape, key) if key is not None else keras.random.uniform(shape)
    kwargs = {'training': training} if isinstance(D, keras.Model) else {}
    gp, _ = penalty_from_critic(lambda x: (D(x, **kwargs), None), z_priv, z_pub, _f32(alpha), norm, eps)
    return gp


def mse(a, b):
    """Plain MSE over every element (the original's Keras MSE on equal-sized images gives the same)."""
    return ops.mean(ops.square(_f32(a) - _f32(b)))


# ------------------------------------------------------------------------------------------- validation

def _is_tf_dataset(ds):
    return type(ds).__module__.startswith('tensorflow')


_UNBATCHED_HINT = ('pass the unbatched stream of single (image, label) pairs: the attack batches it itself, '
                   'with its batch_size, as the original does')


def _tf_batch_op(ds):
    """Name of the batching transformation (``batch``, ``padded_batch``, ...) that makes the ``tf.data`` dataset
    ``ds`` yield batches, or None. Follows each transformation back to its input; an ``unbatch`` undoes the
    batching below it. A dataset whose history cannot be read (no ``_input_dataset``) counts as unbatched here;
    its element shape is checked afterwards (:func:`_image_spec`)."""
    seen = 0
    while ds is not None and seen < 1000:
        name = type(ds).__name__.lstrip('_')
        if name == 'UnbatchDataset':
            return None
        if name.endswith('BatchDataset'):
            return name
        ds, seen = getattr(ds, '_input_dataset', None), seen + 1
    return None


def as_stream(ds, what):
    """An attack's data argument: a ``tf.data`` stream (TensorFlow backend), an :class:`ArrayStream`, or an
    array of images (wrapped in an ArrayStream with the original's 10,000-image shuffle buffer). Already batched
    data (a ``tf.data`` dataset after ``.batch(...)``, the iterator of ``ArrayStream.batches``) is a ValueError:
    the attack would read every batch as one image."""
    if isinstance(ds, ArrayStream):
        return ds
    if isinstance(ds, np.ndarray):
        return ArrayStream(ds)
    if isinstance(ds, BatchIterator):
        raise ValueError(f'{what} is already batched (the iterator of ArrayStream.batches({ds.batch_size})); '
                         f'{_UNBATCHED_HINT}: pass the ArrayStream itself')
    if _is_tf_dataset(ds):
        if not backend.is_tensorflow():
            raise TypeError(f'{what} is a tf.data dataset, which needs Keras\' TensorFlow backend; under '
                            f'{backend.BACKEND!r} pass a splitnn.streams.ArrayStream (what the package\'s loaders '
                            'return there)')
        op = _tf_batch_op(ds)
        if op is not None:
            spec = ds.element_spec
            shape = (spec[0] if isinstance(spec, tuple) else spec).shape
            raise ValueError(f'{what} is a batched tf.data dataset ({op}: elements of shape {tuple(shape)}); '
                             f'{_UNBATCHED_HINT} (drop the .batch(...))')
        return ds
    raise TypeError(f'{what} must be an unbatched stream of (image, label) pairs (a tf.data.Dataset, a '
                    f'splitnn.streams.ArrayStream) or an array of images, got {type(ds).__name__}')


def _check_one_image(shape, what):
    """A stream element of rank 4 or more is a batch of images ([B, H, W, C]), not one image."""
    if len(shape) >= 4:
        raise ValueError(f'{what}: each element must be one image [H, W, C], got elements of shape {tuple(shape)} '
                         f'(a batch of {shape[0]} images?); {_UNBATCHED_HINT}')


def _image_spec(ds, what):
    """``(label_spec, image_shape)`` of an unbatched stream; label_spec is ``(dtype name, shape)`` or None."""
    ds = as_stream(ds, what)
    if isinstance(ds, ArrayStream):
        _check_one_image(ds.element_shape, what)
        return (ds.labels.dtype.name, ds.label_shape), ds.element_shape
    spec = ds.element_spec
    image_spec = spec[0] if isinstance(spec, tuple) else spec
    _check_one_image(tuple(image_spec.shape), what)
    if not image_spec.shape.is_fully_defined():
        raise ValueError(f'{what}: image shape must be fully defined (an unbatched stream), got '
                         f'{image_spec.shape}')
    label = (spec[1].dtype.name, tuple(spec[1].shape)) if isinstance(spec, tuple) and len(spec) == 2 else None
    return label, tuple(int(d) for d in image_spec.shape)


def _with_labels(ds):
    """Streams of bare images get a dummy label so every step has the original's 4 arguments."""
    if isinstance(ds, ArrayStream) or isinstance(ds.element_spec, tuple):
        return ds
    import tensorflow as tf
    return ds.map(lambda x: (x, tf.zeros([], tf.uint8)))


def _batched(ds, batch_size):
    """Endless batches of ``batch_size`` (each pass's remainder dropped), as the original's
    ``.batch(batch_size, drop_remainder=True).repeat(-1)``."""
    if isinstance(ds, ArrayStream):
        return ds.batches(batch_size)
    return iter(_with_labels(ds).batch(batch_size, drop_remainder=True).repeat(-1))


# -------------------------------------------------------------------------------------------- the class

#: The trained groups of variables and the optimizer of each: f (``optimizer0``), the attacker's
#: f~ + decoder (``optimizer1``), the critic D (``optimizer2``).
GROUPS = ('f', 'attacker', 'D')


class FSHA:
    """Feature-space hijacking attack: ``FSHA(xpriv, xpub, id_setup, batch_size, hparams, **options)``.

    Arguments as in the original: unbatched ``(image, label)`` streams for the client (``xpriv``) and the
    attacker (``xpub``) (``tf.data`` under TensorFlow, :class:`splitnn.streams.ArrayStream` on both backends, or
    arrays of images; already batched data is a ValueError: the attack batches the streams itself with
    ``batch_size``); ``id_setup`` indexes :data:`fsha.architectures.SETUPS` (3 = split level 4, as in
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
      streams), ``jit_compile=False`` (XLA-compile the step under TensorFlow; JAX always compiles).
    * ``checkpoint_dir=None``: restore the latest checkpoint there if any, save after every call (and
      every ``checkpoint_every`` steps). ``save(path)`` / ``restore(path)`` do the same by hand.

    Subclasses change the step by overriding :meth:`forward` (the losses and LOG row from one forward pass)
    and :meth:`update_plan` (which loss updates which group, in which order).
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
            backend.set_seed(int(self.seed))
        # the GP's draws are keyed by (run seed, iteration); an unseeded attack draws its run seed here
        self._run_seed = int(self.seed) if self.seed is not None else int(np.random.SeedSequence().generate_state(1)[0] >> 1)

        xpriv, xpub = as_stream(xpriv, 'xpriv'), as_stream(xpub, 'xpub')
        priv_label, self.input_shape = _image_spec(xpriv, 'xpriv')
        pub_label, pub_shape = _image_spec(xpub, 'xpub')
        if pub_shape != self.input_shape:
            raise ValueError(f'xpriv images have shape {self.input_shape} but xpub images {pub_shape}')
        self._check_label_spec(priv_label, 'xpriv')
        self._check_label_spec(pub_label, 'xpub')
        self.xpriv, self.xpub = xpriv, xpub

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

        self._iteration = 0
        # Running sum of row / log_frequency since the last logged step, one entry per LOG column.
        self._mean_acc = np.zeros(len(self.LOG_COLUMNS))
        # One entry per logged step: its global index, its single-step LOG row, the running-mean row.
        self._log_steps, self._log_rows, self._mean_rows = [], [], []
        self._step_fn = None
        self._client_batches = self._attacker_batches = None
        self._inference = {}
        self.checkpoint_every = (None if checkpoint_every is None
                                 else _positive_int(checkpoint_every, 'checkpoint_every'))
        self.checkpoint_manager = None
        if checkpoint_dir is not None:
            self.checkpoint_manager = checkpoints.CheckpointManager(checkpoint_dir, max_to_keep=max_checkpoints)
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

    def _check_label_spec(self, label_spec, what):
        pass  # FSHA ignores labels

    # ------------------------------------------------------------------------------------ networks, state

    @property
    def networks(self):
        """``{'f', 'tilde_f', 'decoder', 'D'}``: the four networks, in the step's order."""
        return {'f': self.f, 'tilde_f': self.tilde_f, 'decoder': self.decoder, 'D': self.D}

    @property
    def optimizers(self):
        return (self.optimizer0, self.optimizer1, self.optimizer2)

    def _group_networks(self, group):
        return {'f': ('f',), 'attacker': ('tilde_f', 'decoder'), 'D': ('D',)}[group]

    def _state_variables(self):
        """Every variable the step reads and writes, in a fixed order: the networks' trainable then
        non-trainable variables, then the three optimizers' variables."""
        for opt, group in zip(self.optimizers, GROUPS):
            if not opt.built:  # an optimizer swapped in by hand before the first step
                opt.build([v for n in self._group_networks(group) for v in self.networks[n].trainable_variables])
        nets = self.networks.values()
        return ([v for net in nets for v in net.trainable_variables]
                + [v for net in nets for v in net.non_trainable_variables]
                + [v for opt in self.optimizers for v in opt.variables])

    def _split_values(self, values):
        """``(trainable, non_trainable, optimizer)``: dicts by network name and a list per optimizer."""
        values, out = list(values), []
        for attr in ('trainable_variables', 'non_trainable_variables'):
            part = {}
            for name, net in self.networks.items():
                n = len(getattr(net, attr))
                part[name], values = values[:n], values[n:]
            out.append(part)
        opt_values = []
        for opt in self.optimizers:
            n = len(opt.variables)
            opt_values.append(values[:n])
            values = values[n:]
        return out[0], out[1], opt_values

    # --------------------------------------------------------------------------------------------- step

    @staticmethod
    def apply(net, trainable, non_trainable, x, training):
        """``(y, new_non_trainable)``: a stateless call of ``net`` (BatchNorm statistics threaded through)."""
        return net.stateless_call(trainable, non_trainable, x, training=training)

    def _critic_losses(self, z_private, z_public, adv_private, adv_public, critic, alpha):
        """``(f_loss, D_loss, gp_aux)``; D_loss includes the weighted GP when enabled, computed through
        ``critic(x) -> (scores, aux)`` at the coefficients ``alpha``."""
        f_loss, d_loss = adversarial_losses(adv_private, adv_public, self.wgan, self.saturating_f_loss)
        aux = None
        if self.gp_weight is not None:
            gp, aux = penalty_from_critic(critic, z_private, z_public, alpha, self.gp_norm, self.gp_eps)
            d_loss = d_loss + self.gp_weight * gp
        return f_loss, d_loss, aux

    def _threaded_critic_losses(self, tv, ntv, z_private, z_public, adv_private, adv_public, alpha):
        """``(f_loss, D_loss)`` inside the step: the GP's D(x_hat) call is stateless and its non-trainable state
        (BatchNorm statistics of a user's D) is threaded on in ``ntv['D']`` (updated in place)."""
        d_state = ntv['D']
        f_loss, d_loss, gp_state = self._critic_losses(
            z_private, z_public, adv_private, adv_public, alpha=alpha,
            critic=lambda x: self.apply(self.D, tv['D'], d_state, x, True))
        if gp_state is not None:
            ntv['D'] = gp_state
        return f_loss, d_loss

    def critic_losses(self, z_private, z_public, adv_private, adv_public, alpha=None):
        """``(f_loss, D_loss)`` of the step, D_loss including the weighted GP when enabled, with D called as is
        (inference of its current weights) and ``alpha`` by default the current iteration's draw."""
        if alpha is None:
            alpha = self.gp_coefficients(self._iteration, int(z_private.shape[0]))
        f_loss, d_loss, _ = self._critic_losses(z_private, z_public, adv_private, adv_public,
                                                lambda x: (self.D(x, training=True), None), alpha)
        return f_loss, d_loss

    def forward_core(self, tv, ntv, x_private, x_public, alpha):
        """The step's single forward pass: ``(out, new_ntv)``, ``out`` holding ``z_private``, ``f_loss``,
        ``tilde_f_loss``, ``D_loss`` and ``loss_c_verification`` (the private batch's reconstruction error, for
        monitoring only).

        ``tv``/``ntv`` hold each network's trainable / non-trainable values; ``new_ntv`` are the non-trainable
        values after the calls, BatchNorm statistics updated in the original's call order: f(x_priv),
        decoder(z_priv), D(z_priv), f~(x_pub), decoder(z_pub), D(z_pub), then D(x_hat) for the GP.
        """
        ntv = dict(ntv)
        z_private, ntv['f'] = self.apply(self.f, tv['f'], ntv['f'], x_private, True)
        rec_x_private, ntv['decoder'] = self.apply(self.decoder, tv['decoder'], ntv['decoder'], z_private, True)
        adv_private, ntv['D'] = self.apply(self.D, tv['D'], ntv['D'], z_private, True)
        z_public, ntv['tilde_f'] = self.apply(self.tilde_f, tv['tilde_f'], ntv['tilde_f'], x_public, True)
        rec_x_public, ntv['decoder'] = self.apply(self.decoder, tv['decoder'], ntv['decoder'], z_public, True)
        adv_public, ntv['D'] = self.apply(self.D, tv['D'], ntv['D'], z_public, True)
        f_loss, d_loss = self._threaded_critic_losses(tv, ntv, z_private, z_public, adv_private, adv_public, alpha)
        return {'z_private': z_private, 'f_loss': f_loss, 'tilde_f_loss': mse(x_public, rec_x_public),
                'D_loss': d_loss, 'loss_c_verification': mse(x_private, rec_x_private)}, ntv

    def forward(self, tv, ntv, x_private, x_public, label_private, label_public, alpha):
        """``(losses, logs, new_ntv)``: the losses of :meth:`update_plan` by name, the LOG row (one value per
        ``LOG_COLUMNS``) and the non-trainable values after the forward pass (:meth:`forward_core`)."""
        out, ntv = self.forward_core(tv, ntv, x_private, x_public, alpha)
        losses = {k: out[k] for k in ('f_loss', 'tilde_f_loss', 'D_loss')}
        return losses, tuple(out[k] for k in self.LOG_COLUMNS), ntv

    def update_plan(self):
        """``[(loss name, group), ...]``: the optimizer updates of one step, in order; every gradient is taken
        at the step's starting point. The original's order: f, then f~ + decoder, then D."""
        return [('f_loss', 'f'), ('tilde_f_loss', 'attacker'), ('D_loss', 'D')]

    def _trace_messages(self):
        # Printed once per trace, as in the original.
        print('Use WGAN loss' if self.wgan else 'Use BCE loss')
        if self.gp_weight is not None:
            print('Use GP')

    def _gradients(self, values, x_private, x_public, label_private, label_public, alpha):
        """One forward pass from ``values`` and the gradient of every update of :meth:`update_plan`:
        ``(plan, grads, logs, trainable by group, non-trainable after the pass, optimizer values)``."""
        tv, ntv, opt_values = self._split_values(values)
        plan = self.update_plan()
        loss_names = list(dict.fromkeys(name for name, _ in plan))
        groups = {g: [v for n in self._group_networks(g) for v in tv[n]] for g in GROUPS}

        def fn(params, xp, xq, lp, lq, a):
            by_group = dict(zip(GROUPS, params))
            tvs = {}
            for g in GROUPS:
                rest = list(by_group[g])
                for n in self._group_networks(g):
                    k = len(self.networks[n].trainable_variables)
                    tvs[n], rest = rest[:k], rest[k:]
            losses, logs, new_ntv = self.forward(tvs, ntv, xp, xq, lp, lq, a)
            return tuple(losses[name] for name in loss_names), (logs, new_ntv)

        wrt = [(loss_names.index(name), GROUPS.index(g)) for name, g in plan]
        _, (logs, new_ntv), grads = backend.loss_grads(fn, tuple(groups[g] for g in GROUPS), wrt,
                                                       x_private, x_public, label_private, label_public, alpha)
        return plan, grads, logs, groups, new_ntv, opt_values

    def pure_step(self, values, x_private, x_public, label_private, label_public, alpha):
        """One attack iteration as a pure function of the state's values: ``(new_values, LOG row)``."""
        self._trace_messages()
        plan, grads, logs, groups, new_ntv, opt_values = self._gradients(
            values, x_private, x_public, label_private, label_public, alpha)
        for (name, g), grad in zip(plan, grads):
            k = GROUPS.index(g)
            groups[g], opt_values[k] = backend.apply_gradients(self.optimizers[k], opt_values[k], grad, groups[g])
        # GROUPS and self.networks list the trainable variables in the same order (f | f~, decoder | D)
        new_values = ([v for g in GROUPS for v in groups[g]] + [v for n in self.networks for v in new_ntv[n]]
                      + [v for o in opt_values for v in o])
        return new_values, tuple(logs)

    def loss_gradients(self, x_private, x_public, label_private=None, label_public=None, alpha=None):
        """``[(loss name, group, gradients), ...]``: what one step would apply, in :meth:`update_plan`'s order,
        from the current state (nothing is updated; ``alpha`` as in :meth:`train_step`). The groups are
        ``'f'``, ``'attacker'`` (f~ then decoder variables) and ``'D'``."""
        args = self._step_inputs(x_private, x_public, label_private, label_public, alpha)
        if 'gradients' not in self._inference:
            self._inference['gradients'] = backend.compile(lambda values, *a: self._gradients(values, *a)[1])
        grads = self._inference['gradients'](backend.variable_values(self._state_variables()), *args)
        return [(name, g, [backend.to_numpy(v) for v in grad]) for (name, g), grad in zip(self.update_plan(), grads)]

    def _step_inputs(self, x_private, x_public, label_private, label_public, alpha):
        b = int(np.shape(x_private)[0])
        if label_private is None:
            label_private = np.zeros([b], np.uint8)
        if label_public is None:
            label_public = np.zeros([int(np.shape(x_public)[0])], np.uint8)
        if alpha is None:
            alpha = self.gp_coefficients(self._iteration, b)
        return x_private, x_public, label_private, label_public, ops.convert_to_tensor(alpha)

    def train_step(self, x_private, x_public, label_private=None, label_public=None, alpha=None):
        """One attack iteration on the given batches; returns the LOG row (one value per ``LOG_COLUMNS``).

        ``alpha`` (shape [B, 1, ..., 1]) are the GP's interpolation coefficients; by default the iteration's
        stateless draw."""
        if self._step_fn is None:
            self._step_fn = backend.StatefulStep(self.pure_step, self._state_variables(), self.jit_compile)
        return self._step_fn(*self._step_inputs(x_private, x_public, label_private, label_public, alpha))

    def gp_coefficients(self, iteration, batch_size):
        """The GP's interpolation coefficients of ``iteration``: U(0, 1), one per sample, drawn by NumPy from
        (run seed, iteration), so that both backends draw the same ones (a run continued on the other backend
        follows the same trajectory up to rounding)."""
        shape = (batch_size,) + (1,) * len(self.z_shape)
        return np.random.default_rng([self._run_seed, int(iteration)]).random(shape, dtype=np.float32)

    # --------------------------------------------------------------------------------------------- loop

    @property
    def iteration(self):
        """Number of training steps done so far (continues across calls and checkpoint restores)."""
        return int(self._iteration)

    @property
    def log_history(self):
        """``(steps, rows)``: every LOG row logged so far (all calls, restored runs included)."""
        return self._history(self._log_rows)

    def _history(self, rows):
        return (np.asarray(self._log_steps, np.int64),
                np.asarray(rows, np.float64).reshape(len(rows), len(self.LOG_COLUMNS)))

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
        return self._history(self._mean_rows)

    @property
    def validation_history(self):
        """``(steps, values)``: the running mean of ``LOG_COLUMNS[VALIDATION_COLUMN]`` at every logged step,
        i.e. every value ``__call__(verbose=True)`` prints as "validation" (all calls, restored runs included)."""
        steps, rows = self.running_mean_history
        return steps, rows[:, self.VALIDATION_COLUMN]

    def _next_batches(self):
        if self._client_batches is None:
            self._client_batches = _batched(self.xpriv, self.batch_size)
            self._attacker_batches = _batched(self.xpub, self.batch_size)
        x_private, label_private = next(self._client_batches)
        x_public, label_public = next(self._attacker_batches)
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
        start = self.iteration
        first = -(-start // log_frequency) * log_frequency
        n_rows = max(0, -(-(start + iterations - first) // log_frequency))
        LOG = np.zeros((n_rows, len(self.LOG_COLUMNS)))
        print('RUNNING...')
        bar = keras.utils.Progbar(iterations) if progress_bar and iterations else None
        acc = np.array(self._mean_acc, np.float64)  # running sums of row / L, one per column
        col = self.VALIDATION_COLUMN
        j = 0
        for i in range(iterations):
            step = start + i
            out = self.train_step(*self._next_batches())
            row = np.array([float(v) for v in out], dtype=np.float64)
            if row.shape[0] != LOG.shape[1]:
                raise ValueError(f'{type(self).__name__}.forward returned {row.shape[0]} values but '
                                 f'LOG_COLUMNS has {LOG.shape[1]}: {self.LOG_COLUMNS}')
            acc = row.copy() if step == 0 else acc + row / log_frequency
            if step % log_frequency == 0:
                LOG[j] = row
                j += 1
                self._log_steps.append(step)
                self._log_rows.append(row)
                self._mean_rows.append(acc)
                if verbose:
                    print('log--%02d%%-%07d] validation: %0.4f' % (int(i / iterations * 100), step, acc[col]))
                acc = np.zeros_like(acc)
            self._iteration = step + 1
            self._mean_acc = acc
            if bar is not None:
                bar.update(i + 1)
            if self.checkpoint_every and self.checkpoint_manager is not None and (
                    (step + 1) % self.checkpoint_every == 0):
                self._save_numbered(step + 1)
        # the closing checkpoint, unless the last step just wrote it (the same file twice)
        last_step_saved = bool(self.checkpoint_every) and self.iteration % self.checkpoint_every == 0
        if self.checkpoint_manager is not None and iterations and not last_step_saved:
            self._save_numbered(self.iteration)
        return LOG

    # ------------------------------------------------------------------------------------- checkpoints

    def _checkpointed_variables(self):
        out = {name: net.variables for name, net in self.networks.items()}
        for k, opt in enumerate(self.optimizers):
            out[f'optimizer{k}'] = opt.variables
        return out

    def _checkpoint_contents(self):
        arrays, paths = {}, {}
        for prefix, variables in self._checkpointed_variables().items():
            a, p = checkpoints.variables_to_arrays(prefix, variables)
            arrays.update(a)
            paths[prefix] = p
        meta = {'class': type(self).__name__, 'iteration': self.iteration, 'run_seed': self._run_seed,
                'running_mean_accumulator': [float(v) for v in self._mean_acc],
                'log_steps': [int(s) for s in self._log_steps],
                'log_rows': [[float(v) for v in r] for r in self._log_rows],
                'running_mean_rows': [[float(v) for v in r] for r in self._mean_rows],
                'paths': paths, 'backend': backend.BACKEND}
        for name, it in (('client', self._client_batches), ('attacker', self._attacker_batches)):
            if it is not None and hasattr(it, 'state'):
                for key, value in it.state().items():
                    arrays[f'data/{name}/{key}'] = np.asarray(value)
        return arrays, meta

    def _save_numbered(self, number):
        arrays, meta = self._checkpoint_contents()
        return self.checkpoint_manager.save(arrays, meta, number)

    def save(self, path):
        """Write networks (with their Dropout seed states), optimizers, the iteration counter, the log and
        running-mean histories, the running-mean accumulator, the GP's seed and (for ArrayStream data) the data
        position to one ``.npz`` file at ``path`` (``.npz`` appended if missing), readable on either backend."""
        arrays, meta = self._checkpoint_contents()
        return checkpoints.write(path, arrays, meta)

    def restore(self, path):
        """Restore a checkpoint written by :meth:`save` (a file) or the latest one in a directory."""
        path = os.fspath(path)
        if os.path.isdir(path):
            latest = checkpoints.latest_checkpoint(path)
            if latest is None:
                raise FileNotFoundError(f'no checkpoint in directory {path}')
            path = latest
        arrays, meta = checkpoints.read(path)
        if meta.get('class') != type(self).__name__:
            raise ValueError(f'{path} is a checkpoint of {meta.get("class")}, not of {type(self).__name__}')
        for prefix, variables in self._checkpointed_variables().items():
            checkpoints.assign_from_arrays(prefix, variables, arrays, meta['paths'].get(prefix))
        self._iteration = int(meta['iteration'])
        self._run_seed = int(meta['run_seed'])
        self._mean_acc = np.asarray(meta['running_mean_accumulator'], np.float64)
        self._log_steps = list(meta['log_steps'])
        self._log_rows = [np.asarray(r, np.float64) for r in meta['log_rows']]
        self._mean_rows = [np.asarray(r, np.float64) for r in meta['running_mean_rows']]
        data = {}
        for key, value in arrays.items():
            if key.startswith('data/'):
                _, name, field = key.split('/', 2)
                data.setdefault(name, {})[field] = value
        if data and isinstance(self.xpriv, ArrayStream):
            self._client_batches = _batched(self.xpriv, self.batch_size)
            self._attacker_batches = _batched(self.xpub, self.batch_size)
            self._client_batches.set_state(data['client'])
            self._attacker_batches.set_state(data['attacker'])
        return path

    # ------------------------------------------------------------------------------------------ scoring

    def _inference_fn(self, name, fn, networks):
        """``fn(values, *inputs)`` compiled once, called with the current values of ``networks``' variables (a
        jitted function must not capture variables: JAX would freeze their values at tracing)."""
        if name not in self._inference:
            self._inference[name] = backend.compile(fn)
        variables = [v for net in networks for v in net.variables]
        return lambda *inputs: self._inference[name](backend.variable_values(variables), *inputs)

    @staticmethod
    def _infer(net, values, x):
        """Inference-mode call of ``net`` from its variables' values (in ``net.variables`` order)."""
        by_id = dict(zip([id(v) for v in net.variables], values))
        tv = [by_id[id(v)] for v in net.trainable_variables]
        ntv = [by_id[id(v)] for v in net.non_trainable_variables]
        return net.stateless_call(tv, ntv, x, training=False)[0]

    def _pipeline(self, first, second):
        """``x -> second(first(x))`` in inference mode, as a function of both networks' variables."""
        k = len(first.variables)
        return lambda values, x: self._infer(second, values[k:], self._infer(first, values[:k], x))

    def _score(self, values, x, y):
        return mse(x, self._pipeline(self.f, self.decoder)(values, x))

    def score(self, x, y=None):
        """MSE between ``x`` and its reconstruction ``decoder(f(x))`` (inference mode), on the [-1, 1] scale."""
        y = np.zeros([int(np.shape(x)[0])], np.uint8) if y is None else y
        fn = self._inference_fn('score', self._score, (self.f, self.decoder))
        return fn(ops.convert_to_tensor(x, 'float32'), ops.convert_to_tensor(y))

    def _evaluation_batches(self, dataset):
        _image_spec(dataset, 'dataset')
        dataset = as_stream(dataset, 'dataset')
        if isinstance(dataset, ArrayStream):
            n = len(dataset) // self.batch_size
            order = np.arange(len(dataset))
            return n, ((dataset.images[order[i * self.batch_size:(i + 1) * self.batch_size]],
                        dataset.labels[order[i * self.batch_size:(i + 1) * self.batch_size]]) for i in range(n))
        batches = _with_labels(dataset).batch(self.batch_size, drop_remainder=True)
        return int(batches.cardinality()), iter(batches)

    def scoreAttack(self, dataset, progress_bar=True):  # noqa: N802 (original name)
        """Mean of :meth:`score` over ``dataset`` (unbatched) in batches of ``batch_size`` (remainder dropped).
        An ArrayStream is scored in its arrays' order (the original iterates its test stream unshuffled)."""
        n, batches = self._evaluation_batches(dataset)
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
        x = ops.convert_to_tensor(x, 'float32')
        rec = self._inference_fn('rec', self._pipeline(self.f, self.decoder), (self.f, self.decoder))(x)
        control = self._inference_fn('control', self._pipeline(self.tilde_f, self.decoder),
                                     (self.tilde_f, self.decoder))(x)
        return backend.to_numpy(rec), backend.to_numpy(control)

    @staticmethod
    def addNoise(x, alpha):  # noqa: N802 (original name; unused by the attack)
        return x + keras.random.normal(ops.shape(x)) * alpha


class FSHA_binary_property(FSHA):  # noqa: N801 (original name)
    """Property inference (Pasquini et al., §3.5): the decoder slot holds ``classifier_binary(z_shape, class_num)``.

    The pilot and head learn the property from public labels; f is hijacked exactly as in FSHA; the head then
    reads the property off f's features. ``hparams['class_num']`` (default 1, binary).

    LOG columns: (f_loss, tilde_f_loss, D_loss, private_accuracy, public_accuracy); the printed validation is
    the running mean of the private accuracy (column 3, as in FSHA's __call__); ``running_mean_history`` also
    has the public accuracy's.

    As in the original, the head reads the private features in training mode within the step's forward pass
    (between f and D): with ``class_num > 1`` its BatchNorm statistics see private batches. ``private_head=
    'inference'`` (an option, not in the original) applies it to them in inference mode instead, outside every
    loss, so its statistics never see private data. (With ``class_num = 1`` the head has no BatchNorm and both
    give the same numbers.)

    Deviations (fixes): LOG has 5 columns (the original crashes); labels of any integer, bool or float dtype,
    shape [B] or [B, 1], are cast explicitly (float32 [B, 1] for class_num = 1, int32 [B] otherwise) and other
    shapes are rejected; ``score``/``scoreAttack`` return the property accuracy and ``attack`` the predicted
    probabilities, since the inherited reconstruction scores are meaningless.
    """

    PRIVATE_HEAD_MODES = ('training', 'inference')

    def __init__(self, xpriv, xpub, id_setup, batch_size, hparams, *, private_head='training', **kwargs):
        if private_head not in self.PRIVATE_HEAD_MODES:
            raise ValueError(f"private_head must be one of {self.PRIVATE_HEAD_MODES} ('training' is the "
                             f"original's), got {private_head!r}")
        self.private_head = private_head
        super().__init__(xpriv, xpub, id_setup, batch_size, hparams, **kwargs)

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

    def _check_label_spec(self, label_spec, what):
        if label_spec is None:
            raise ValueError(f'{what}: property inference needs (image, label) pairs')
        self._label_check(*label_spec, what, per_example=True)

    @staticmethod
    def _label_check(dtype, shape, what, per_example=False):
        dtype = keras.backend.standardize_dtype(dtype)
        if not (dtype.startswith(('int', 'uint', 'float', 'bfloat')) or dtype == 'bool'):
            raise TypeError(f'{what}: labels must be integer, bool or float, got dtype {dtype}')
        shape = tuple(shape)
        ok = shape in ((), (1,)) if per_example else (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))
        if not ok:
            expected = '[] or [1] per example' if per_example else '[B] or [B, 1]'
            raise ValueError(f'{what}: labels must have shape {expected}, got {list(shape)}')

    def prepare_labels(self, y, what='labels'):
        """Cast labels: float32 [B, 1] for class_num = 1, int32 [B] otherwise."""
        y = ops.convert_to_tensor(y)
        self._label_check(y.dtype, tuple(y.shape), what)
        if self.class_num == 1:
            return ops.reshape(ops.cast(y, 'float32'), [-1, 1])
        return ops.reshape(ops.cast(y, 'int32'), [-1])

    def classification_loss(self, y, logits):
        if self.class_num == 1:
            return ops.mean(sigmoid_cross_entropy(y, logits))
        return ops.mean(ops.sparse_categorical_crossentropy(y, logits, from_logits=True))

    def accuracy(self, y, logits):
        if self.class_num == 1:
            pred = ops.cast(ops.sigmoid(logits) > 0.5, 'float32')
        else:
            pred = ops.cast(ops.argmax(ops.softmax(logits), axis=-1), 'int32')
        return ops.mean(ops.cast(ops.equal(pred, y), 'float32'))

    def forward(self, tv, ntv, x_private, x_public, label_private, label_public, alpha):
        """Losses (f_loss, tilde_f_loss = the head's classification loss on public data, D_loss) and the LOG
        row (f_loss, tilde_f_loss, D_loss, private_accuracy, public_accuracy)."""
        y_private = self.prepare_labels(label_private, 'private labels')
        y_public = self.prepare_labels(label_public, 'public labels')
        ntv = dict(ntv)
        z_private, ntv['f'] = self.apply(self.f, tv['f'], ntv['f'], x_private, True)
        if self.private_head == 'training':  # the original's order: the head reads z_private before D does
            logits_private, ntv['decoder'] = self.apply(self.decoder, tv['decoder'], ntv['decoder'], z_private, True)
        adv_private, ntv['D'] = self.apply(self.D, tv['D'], ntv['D'], z_private, True)
        z_public, ntv['tilde_f'] = self.apply(self.tilde_f, tv['tilde_f'], ntv['tilde_f'], x_public, True)
        logits_public, ntv['decoder'] = self.apply(self.decoder, tv['decoder'], ntv['decoder'], z_public, True)
        adv_public, ntv['D'] = self.apply(self.D, tv['D'], ntv['D'], z_public, True)
        tilde_f_loss = self.classification_loss(y_public, logits_public)
        f_loss, d_loss = self._threaded_critic_losses(tv, ntv, z_private, z_public, adv_private, adv_public, alpha)
        if self.private_head == 'inference':  # monitoring only, outside every loss; statistics untouched
            logits_private, _ = self.apply(self.decoder, tv['decoder'], ntv['decoder'],
                                           ops.stop_gradient(z_private), False)
        private_accuracy = self.accuracy(y_private, logits_private)
        public_accuracy = self.accuracy(y_public, logits_public)
        losses = {'f_loss': f_loss, 'tilde_f_loss': tilde_f_loss, 'D_loss': d_loss}
        return losses, (f_loss, tilde_f_loss, d_loss, private_accuracy, public_accuracy), ntv

    def _score(self, values, x, y):
        return self.accuracy(self.prepare_labels(y), self._pipeline(self.f, self.decoder)(values, x))

    def score(self, x, y):
        """Accuracy of the attacker's property predictions ``head(f(x))`` against the true labels ``y``."""
        fn = self._inference_fn('score', self._score, (self.f, self.decoder))
        return fn(ops.convert_to_tensor(x, 'float32'), ops.convert_to_tensor(y))

    def attack(self, x):
        """Predicted property probabilities ``(from f(x), from f~(x))`` (sigmoid, or softmax if class_num > 1)."""
        prob = ops.sigmoid if self.class_num == 1 else ops.softmax
        rec, control = super().attack(x)
        return backend.to_numpy(prob(ops.convert_to_tensor(rec))), backend.to_numpy(prob(ops.convert_to_tensor(control)))

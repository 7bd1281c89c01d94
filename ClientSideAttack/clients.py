"""Honest and malicious clients of sequential multi-client split learning (Pasquini et al., CCS 2021, §5;
original ``ClientSideAttack/clients.py``).

Every client owns (usually shares) a front network ``f`` and a head ``ff``; the server network sits
between them. A training step runs, in one forward pass differentiated once::

    a    = client.step0(inputs, phase)        # on the client
    out  = server(a)                          # on the server, no training flag
    loss = client.step1(out, labels, phase)   # on the client

and one optimizer step is applied to the server's variables plus
``client.trainable_variables(phase)`` (see :class:`ClientSideAttack.server.Server`). Written once in
``keras.ops`` on :mod:`splitnn.backend`: the same code runs on Keras' TensorFlow and JAX backends. ``step0`` and
``step1`` take a ``call(model, x, training)`` argument through which the server runs the networks statelessly
(``Model.stateless_call``) inside its compiled step; by default they call the models directly.

Training-mode flags follow the original: ``f``, ``ff`` and the generator ``G`` are called with
``training=True``; the server is called without a flag (its Dropout is therefore inactive).

Malicious client (:class:`BadClient`, target class ``yt``, gradient factor ``k``, default 1e5):

* **generator step** (``phase="generator"``): ``z ~ N(0, 1)`` -> ``G`` -> ``f`` -> :func:`scale_up`
  -> server -> :func:`scale_down` -> ``ff`` -> cross-entropy against ``yt`` for every sample. Trains
  ``G`` (and, through the server's own update, the server). The server's gradient is divided by
  ``k``, so the shared model barely moves, while the two factors cancel on the way back to ``G``,
  which gets a normal-size gradient. ``f`` and ``ff`` are not updated.
* **poisoning step** (``phase="poison"``): ``G``'s samples labelled as the "fake" class 10 go through
  ``f`` -> server -> ``ff`` with the ordinary loss (no scaling); trains ``f`` and ``ff`` (and the
  server) but not ``G``. ``G`` still runs in training mode, so its BatchNorm statistics update.
"""

import numbers

import keras
import numpy as np
from keras import ops

from splitnn import backend

from .archs import FAKE_CLASS, LATENT_DIM
from .settings import GENERATOR, GRADIENT_FACTOR, HONEST, POISON, validate_factor


__all__ = [
    "GRADIENT_FACTOR", "HONEST", "GENERATOR", "POISON", "scale_up", "scale_down",
    "validate_factor", "Client", "BadClient",
]


def _upstream(args, upstream):
    # keras.ops.custom_gradient hands the incoming gradient positionally under TensorFlow and as
    # ``upstream`` under JAX
    return args[0] if upstream is None else upstream


def scale_up(x, factor=GRADIENT_FACTOR):
    """Identity in the forward pass; multiplies the incoming gradient by ``factor`` (original ``scale_up``)."""
    factor = validate_factor(factor)

    @backend.custom_gradient
    def _scale_up(t):
        def grad(*args, upstream=None):
            dy = _upstream(args, upstream)
            return dy * ops.cast(factor, dy.dtype)
        return ops.copy(t), grad

    return _scale_up(x)


def scale_down(x, factor=GRADIENT_FACTOR):
    """Identity in the forward pass; divides the incoming gradient by ``factor`` (original ``scale_down``)."""
    factor = validate_factor(factor)

    @backend.custom_gradient
    def _scale_down(t):
        def grad(*args, upstream=None):
            # a true division: the graph compilers would rewrite ``dy / c`` into ``dy * (1 / c)``, one ulp off
            return backend.true_divide(_upstream(args, upstream), factor)
        return ops.copy(t), grad

    return _scale_down(x)


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} must be a keras.Model, got {type(model).__name__}")
    return model


def _ce(labels, logits):
    """Mean sparse categorical cross-entropy from logits (Keras default reduction)."""
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def call_model(model, x, training):
    """Call ``model`` directly (stateful): the default ``call`` of :meth:`Client.step0` / ``step1``."""
    return model(x) if training is None else model(x, training=training)


class Images(np.ndarray):
    """Generated images as a NumPy array that also answers ``.numpy()``, so that the original notebook's
    ``clients[0].generate().numpy()`` runs unchanged on either backend."""

    def numpy(self):
        return np.asarray(self)


class Client:
    """Honest client: ``step0 = f(x)``; ``step1`` = cross-entropy of ``ff(server_out)`` with the labels.

    ``f`` and ``ff`` are Keras models; in the original every client shares the same two objects
    (weights handed from client to client in sequential split learning). Different objects per
    client are allowed as long as their shapes fit the server (checked by the Server).
    """

    kind = "honest"

    def __init__(self, f, ff, name=None):
        self.f = _check_model(f, "f")
        self.ff = _check_model(ff, "ff")
        self.name = name or type(self).__name__

    def phases(self):
        return (HONEST,)

    def step0(self, inputs, phase=HONEST, call=call_model):
        return call(self.f, inputs, True)

    def step1(self, server_out, labels, phase=HONEST, call=call_model):
        return _ce(labels, call(self.ff, server_out, True))

    def trainable_variables(self, phase=HONEST):
        """Client-side variables trained (together with the server's) in ``phase``."""
        return list(self.f.trainable_variables) + list(self.ff.trainable_variables)

    def all_trainable_variables(self):
        """Every variable this client may ever train (for building the shared optimizer)."""
        return self.trainable_variables(HONEST)

    def models(self):
        return {"f": self.f, "ff": self.ff}

    def step_models(self, phase):
        """The client's networks a step of ``phase`` runs."""
        return [self.f, self.ff]

    def step_key(self, phase):
        # Honest clients that share f and ff (the original's set-up) share one compiled step.
        if type(self) is Client:
            return ("honest", id(self.f), id(self.ff), phase)
        return (id(self), phase)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class BadClient(Client):
    """Malicious client running the GAN attack (Hitaj et al. adapted to split learning).

    ``BadClient(f, ff, G, batch_size, target_class)`` as in the original; the package's settings are keywords.

    Parameters
    ----------
    f, ff : keras.Model
        The (shared) client front and head.
    generator : keras.Model
        ``G``: [B, latent_dim] -> images of the client input shape.
    batch_size : int or None
        Size of the latent batch of every attack step and of :meth:`generate` without ``n`` (original: 256).
        None: the server's batch size.
    target_class : int
        Digit whose samples the attacker wants to reconstruct, 0..9 (original: 1).
    gradient_factor : float
        Factor of :func:`scale_up` / :func:`scale_down`, > 0 (original: 1e5).
    fake_class : int
        Label given to generated images in the poisoning step (original: 10 of 11 classes).
    latent_dim : int or None
        Latent size; by default read from ``generator``'s input.
    seed : int or None
        Seed of the noise generator (a Keras ``SeedGenerator``, whose state is saved with the server's
        checkpoints). None draws one from NumPy's global RNG, so seeding NumPy makes the run reproducible.
    """

    kind = "malicious"

    def __init__(self, f, ff, generator, batch_size=None, target_class=None, *, gradient_factor=GRADIENT_FACTOR,
                 fake_class=FAKE_CLASS, latent_dim=None, seed=None, name=None):
        super().__init__(f, ff, name=name)
        self.generator = _check_model(generator, "generator")
        if target_class is None:
            raise TypeError("BadClient needs target_class: BadClient(f, ff, G, batch_size, target_class) or "
                            "BadClient(f, ff, G, target_class=...)")
        if (isinstance(target_class, bool) or not isinstance(target_class, numbers.Integral)
                or not 0 <= int(target_class) <= 9):
            raise ValueError(f"target_class must be an integer digit in 0..9, got {target_class!r}")
        self.target_class = int(target_class)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.batch_size = None if batch_size is None else int(batch_size)
        if (isinstance(fake_class, bool) or not isinstance(fake_class, numbers.Integral)
                or int(fake_class) < 0):
            raise ValueError(f"fake_class must be a non-negative integer, got {fake_class!r}")
        self.fake_class = int(fake_class)
        if self.fake_class == self.target_class:
            raise ValueError(f"fake_class ({self.fake_class}) must differ from target_class")
        self.gradient_factor = validate_factor(gradient_factor)
        if latent_dim is None:
            try:
                shape = tuple(generator.inputs[0].shape)
            except (AttributeError, IndexError, TypeError, ValueError):
                shape = (None, LATENT_DIM)
            if len(shape) != 2 or shape[1] is None:
                raise ValueError(f"generator input must be [batch, latent_dim], got {shape}")
            latent_dim = shape[1]
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, numbers.Integral) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self.seed = int(seed)
        self.noise_generator = keras.random.SeedGenerator(self.seed, name=f"{self.name}_noise")

    # -- phases -----------------------------------------------------------------------------
    def phases(self):
        return (GENERATOR, POISON)

    def phase_for(self, iteration):
        """Original schedule: G-step at even iterations, poisoning step at odd ones."""
        return GENERATOR if iteration % 2 == 0 else POISON

    def sample_noise(self, n=None):
        """``z ~ N(0, 1)`` of shape [n, latent_dim] (default n: ``batch_size``) from this client's seeded
        generator (original ``sample``)."""
        n = self._size(n)
        return keras.random.normal((n, self.latent_dim), dtype="float32", seed=self.noise_generator)

    def sample(self):
        """The original's name: one latent batch of ``batch_size``."""
        return self.sample_noise()

    def _size(self, n):
        if n is None:
            if self.batch_size is None:
                raise ValueError("n is needed: this BadClient has no batch_size (give one to BadClient or "
                                 "attach it to a Server)")
            n = self.batch_size
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        return int(n)

    def _check_phase(self, phase):
        if phase not in (GENERATOR, POISON):
            raise ValueError(f"unknown phase {phase!r} for BadClient (expected {GENERATOR!r} or {POISON!r})")

    def step0(self, inputs, phase, call=call_model):
        """``inputs`` is the latent batch z."""
        self._check_phase(phase)
        a = call(self.f, call(self.generator, inputs, True), True)
        return scale_up(a, self.gradient_factor) if phase == GENERATOR else a

    def step1(self, server_out, labels=None, phase=GENERATOR, call=call_model):
        """Loss on the attacker's side; ``labels`` is ignored (the attacker makes its own)."""
        self._check_phase(phase)
        batch = ops.shape(server_out)[0]
        if phase == GENERATOR:
            server_out = scale_down(server_out, self.gradient_factor)
            y = ops.full((batch,), self.target_class, dtype="int32")
        else:
            y = ops.full((batch,), self.fake_class, dtype="int32")
        return _ce(y, call(self.ff, server_out, True))

    def trainable_variables(self, phase):
        self._check_phase(phase)
        if phase == GENERATOR:
            return list(self.generator.trainable_variables)
        return list(self.f.trainable_variables) + list(self.ff.trainable_variables)

    def all_trainable_variables(self):
        return self.trainable_variables(POISON) + self.trainable_variables(GENERATOR)

    def models(self):
        return {"f": self.f, "ff": self.ff, "generator": self.generator}

    def step_models(self, phase):
        return [self.generator, self.f, self.ff]

    def step_key(self, phase):
        return (id(self), phase)

    # -- sampling ---------------------------------------------------------------------------
    def generate(self, n=None, training=True, batch_size=250, z=None, keep_bn_statistics=True):
        """Return ``n`` generated images in [-1, 1] (NumPy; ``.numpy()`` works too, as on the original's tensor).

        ``generate()`` is the original's: one training-mode batch of ``batch_size`` (the client's) fresh samples.
        With ``n``, the samples are drawn in chunks of ``batch_size`` (the keyword's, default 250). The original
        samples in training mode (BatchNorm uses batch statistics), which is the default. In Keras 3 a
        training-mode call also updates the BN moving statistics; with ``keep_bn_statistics`` (default) they
        are restored afterwards so that sampling has no side effect on ``G``.
        """
        if n is None and z is None:
            n = self._size(None)
            batch_size = n
        elif n is None:
            n = int(ops.shape(z)[0])
        n = self._size(n)
        if z is None:
            z = self.sample_noise(n)
        saved = ([backend.to_numpy(v.value) for v in self.generator.non_trainable_variables]
                 if keep_bn_statistics else None)
        out = []
        for i in range(0, n, int(batch_size)):
            out.append(backend.to_numpy(self.generator(z[i:i + batch_size], training=training)))
        if saved is not None:
            for v, val in zip(self.generator.non_trainable_variables, saved):
                v.assign(val)
        return np.concatenate(out, axis=0).view(Images)

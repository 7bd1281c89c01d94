"""Honest and malicious clients of sequential multi-client split learning (spec ``fsha.md`` §9.3, §9.5).

Every client owns (usually shares) a front network ``f`` and a head ``ff``; the server network sits
between them. A training step runs, inside one gradient tape::

    a    = client.step0(inputs, phase)        # on the client
    out  = server(a)                          # on the server, no training flag
    loss = client.step1(out, labels, phase)   # on the client

and one optimizer step is applied to the server's variables plus
``client.trainable_variables(phase)`` (see :class:`ClientSideAttack.server.Server`).

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
import tensorflow as tf

from .archs import FAKE_CLASS, LATENT_DIM
from .settings import GENERATOR, GRADIENT_FACTOR, HONEST, POISON, validate_factor


__all__ = [
    "GRADIENT_FACTOR", "HONEST", "GENERATOR", "POISON", "scale_up", "scale_down",
    "validate_factor", "Client", "BadClient",
]


def scale_up(x, factor=GRADIENT_FACTOR):
    """Identity in the forward pass; multiplies the incoming gradient by ``factor``."""
    factor = validate_factor(factor)

    @tf.custom_gradient
    def _scale_up(t):
        def grad(dy):
            return dy * tf.cast(factor, dy.dtype)
        return tf.identity(t), grad

    return _scale_up(x)


def scale_down(x, factor=GRADIENT_FACTOR):
    """Identity in the forward pass; divides the incoming gradient by ``factor``."""
    factor = validate_factor(factor)

    @tf.custom_gradient
    def _scale_down(t):
        def grad(dy):
            # A true division, also inside tf.function: Grappler's constant folding rewrites
            # ``dy / c`` into ``dy * (1 / c)``, which is off by up to one ulp. DivNoNan is not
            # rewritten and equals ``dy / c`` for c != 0 (factor > 0 is validated).
            return tf.math.divide_no_nan(dy, tf.cast(factor, dy.dtype))
        return tf.identity(t), grad

    return _scale_down(x)


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} must be a keras.Model, got {type(model).__name__}")
    return model


def _ce(labels, logits):
    """Mean sparse categorical cross-entropy from logits (Keras default reduction)."""
    return tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


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

    def step0(self, inputs, phase=HONEST):
        return self.f(inputs, training=True)

    def step1(self, server_out, labels, phase=HONEST):
        return _ce(labels, self.ff(server_out, training=True))

    def trainable_variables(self, phase=HONEST):
        """Client-side variables trained (together with the server's) in ``phase``."""
        return list(self.f.trainable_variables) + list(self.ff.trainable_variables)

    def all_trainable_variables(self):
        """Every variable this client may ever train (for building the shared optimizer)."""
        return self.trainable_variables(HONEST)

    def models(self):
        return {"f": self.f, "ff": self.ff}

    def step_key(self, phase):
        # Honest clients that share f and ff (the original's set-up) share one compiled step.
        if type(self) is Client:
            return ("honest", id(self.f), id(self.ff), phase)
        return (id(self), phase)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class BadClient(Client):
    """Malicious client running the GAN attack (Hitaj et al. adapted to split learning).

    Parameters
    ----------
    f, ff : keras.Model
        The (shared) client front and head.
    generator : keras.Model
        ``G``: [B, latent_dim] -> images of the client input shape.
    target_class : int
        Digit whose samples the attacker wants to reconstruct, 0..9 (original: 1).
    gradient_factor : float
        Factor of :func:`scale_up` / :func:`scale_down`, > 0 (original: 1e5).
    fake_class : int
        Label given to generated images in the poisoning step (original: 10 of 11 classes).
    latent_dim : int or None
        Latent size; by default read from ``generator``'s input.
    seed : int or None
        Seed of the noise generator. None draws one from NumPy's global RNG, so
        ``splitnn.utils.set_seed`` makes the run reproducible.
    """

    kind = "malicious"

    def __init__(self, f, ff, generator, target_class, gradient_factor=GRADIENT_FACTOR,
                 fake_class=FAKE_CLASS, latent_dim=None, seed=None, name=None):
        super().__init__(f, ff, name=name)
        self.generator = _check_model(generator, "generator")
        if (isinstance(target_class, bool) or not isinstance(target_class, numbers.Integral)
                or not 0 <= int(target_class) <= 9):
            raise ValueError(f"target_class must be an integer digit in 0..9, got {target_class!r}")
        self.target_class = int(target_class)
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
        self._rng = tf.random.Generator.from_seed(self.seed)

    # -- phases -----------------------------------------------------------------------------
    def phases(self):
        return (GENERATOR, POISON)

    def phase_for(self, iteration):
        """Original schedule: G-step at even iterations, poisoning step at odd ones."""
        return GENERATOR if iteration % 2 == 0 else POISON

    def sample_noise(self, n):
        """``z ~ N(0, 1)`` of shape [n, latent_dim] from this client's seeded generator."""
        return self._rng.normal([int(n), self.latent_dim], dtype=tf.float32)

    def step0(self, inputs, phase):
        """``inputs`` is the latent batch z."""
        a = self.f(self.generator(inputs, training=True), training=True)
        if phase == GENERATOR:
            a = scale_up(a, self.gradient_factor)
        elif phase != POISON:
            raise ValueError(f"unknown phase {phase!r} for BadClient (expected {GENERATOR!r} or {POISON!r})")
        return a

    def step1(self, server_out, labels=None, phase=GENERATOR):
        """Loss on the attacker's side; ``labels`` is ignored (the attacker makes its own)."""
        batch = tf.shape(server_out)[0]
        if phase == GENERATOR:
            server_out = scale_down(server_out, self.gradient_factor)
            y = tf.fill([batch], self.target_class)
        elif phase == POISON:
            y = tf.fill([batch], self.fake_class)
        else:
            raise ValueError(f"unknown phase {phase!r} for BadClient (expected {GENERATOR!r} or {POISON!r})")
        return _ce(y, self.ff(server_out, training=True))

    def trainable_variables(self, phase):
        if phase == GENERATOR:
            return list(self.generator.trainable_variables)
        if phase == POISON:
            return list(self.f.trainable_variables) + list(self.ff.trainable_variables)
        raise ValueError(f"unknown phase {phase!r} for BadClient (expected {GENERATOR!r} or {POISON!r})")

    def all_trainable_variables(self):
        return self.trainable_variables(POISON) + self.trainable_variables(GENERATOR)

    def models(self):
        return {"f": self.f, "ff": self.ff, "generator": self.generator}

    def step_key(self, phase):
        return (id(self), phase)

    # -- sampling ---------------------------------------------------------------------------
    def generate(self, n, training=True, batch_size=250, z=None, keep_bn_statistics=True):
        """Return ``n`` generated images (NumPy, [-1, 1]).

        The original notebook samples in training mode (BatchNorm uses batch statistics), which is
        the default. In Keras 3 a training-mode call also updates the BN moving statistics; with
        ``keep_bn_statistics`` (default) they are restored afterwards so that sampling has no side
        effect on ``G``.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if z is None:
            z = self.sample_noise(n)
        saved = ([v.numpy() for v in self.generator.non_trainable_variables]
                 if keep_bn_statistics else None)
        out = []
        for i in range(0, int(n), int(batch_size)):
            out.append(self.generator(z[i:i + batch_size], training=training).numpy())
        if saved is not None:
            for v, val in zip(self.generator.non_trainable_variables, saved):
                v.assign(val)
        return np.concatenate(out, axis=0)

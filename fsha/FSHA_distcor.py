"""FSHA against a client that applies the distance-correlation (NoPeek) defense (spec ``fsha.md`` §7).

``FSHA_dc(xpriv, xpub, id_setup, batch_size, hparams)`` is :class:`fsha.FSHA.FSHA` with two changes:

* the client adds ``alpha1 * dCor(x_priv, f(x_priv))`` to what it minimises (``hparams['alpha1']``);
* the attacker scales the adversarial loss it sends back by ``alpha2`` (``hparams['alpha2']``), to
  overwhelm the client's defense term.

Faithful by default, the update order of the original is f~ + decoder, D, then **two** Adam steps of f on
the same optimizer, first with the gradient of the dCor term and then with the gradient of
``alpha2 * f_loss``, all evaluated at the same forward pass (the client's Adam step counter advances by two
per iteration). ``update='combined'`` (not in the original) takes one step on their sum instead.
``dcor_form='log'`` penalises log dCor (an option; the original penalises plain dCor).

The LOG keeps the original's four columns (``alpha2 * f_loss``, tilde_f_loss, D_loss, loss_c_verification)
and appends a fifth, the dCor of the private batch, which the original never logged.

Deviation: ``alpha1`` and ``alpha2`` are checked when the attack is built. The original needs both but
crashes mid-training without them (KeyError without alpha2 because its guard is an always-true list
literal; TypeError without alpha1); here a missing or invalid value raises a ValueError naming both.
``alpha2=1`` leaves the adversarial loss unscaled. ``alpha1=0`` removes the defense term but, in the default
``two_steps`` scheme, f still takes the (then zero-gradient) first Adam step every iteration, which moves it by
the optimizer's momentum and advances its counter, exactly as the original would: it is **not** plain FSHA. Use
:class:`fsha.FSHA.FSHA` (or ``update='combined'``) as the undefended baseline.
"""
from __future__ import annotations

import tensorflow as tf

from defenses import DCOR_FORMS, distance_correlation
from fsha.FSHA import FSHA
from fsha.hparams import alphas as _alphas

UPDATE_SCHEMES = ("two_steps", "combined")


class FSHA_dc(FSHA):  # noqa: N801 (original name)
    """FSHA with the client-side distance-correlation defense; see the module docstring.

    Extra keyword options: ``update='two_steps'|'combined'`` and ``dcor_form='plain'|'log'``.
    """

    LOG_COLUMNS = FSHA.LOG_COLUMNS + ("dcor",)
    REQUIRED_HPARAMS = FSHA.REQUIRED_HPARAMS

    def __init__(self, xpriv, xpub, id_setup, batch_size, hparams, *, update="two_steps", dcor_form="plain",
                 **kwargs):
        self.alpha1, self.alpha2 = _alphas(hparams)
        if update not in UPDATE_SCHEMES:
            raise ValueError(f"update must be one of {UPDATE_SCHEMES} ('two_steps' is the original's), "
                             f"got {update!r}")
        if dcor_form not in DCOR_FORMS:
            raise ValueError(f"dcor_form must be one of {DCOR_FORMS}, got {dcor_form!r}")
        self.update, self.dcor_form = update, dcor_form
        super().__init__(xpriv, xpub, id_setup, batch_size, hparams, **kwargs)

    def _trace_messages(self):
        super()._trace_messages()
        print(f"With client \\alpha_1: {self.alpha1}")
        print(f"Scale adversarial loss server: {self.alpha2}")

    def train_step(self, x_private, x_public, label_private, label_public):
        """Returns (alpha2 * f_loss, tilde_f_loss, D_loss, loss_c_verification, dcor)."""
        self._trace_messages()
        with tf.GradientTape(persistent=True) as tape:
            out = self.forward_losses(x_private, x_public)
            f_loss = self.alpha2 * out['f_loss']
            dcor = distance_correlation(x_private, out['z_private'])
            penalty = dcor if self.dcor_form == "plain" else tf.math.log(tf.maximum(dcor, 1e-12))
            def_loss = self.alpha1 * penalty
            combined = def_loss + f_loss
        tilde_f_loss, d_loss = out['tilde_f_loss'], out['D_loss']
        self.apply_loss(tape, tilde_f_loss, self.tilde_f.trainable_variables + self.decoder.trainable_variables,
                        self.optimizer1)
        self.apply_loss(tape, d_loss, self.D.trainable_variables, self.optimizer2)
        if self.update == "two_steps":
            self.apply_loss(tape, def_loss, self.f.trainable_variables, self.optimizer0)
            self.apply_loss(tape, f_loss, self.f.trainable_variables, self.optimizer0)
        else:
            self.apply_loss(tape, combined, self.f.trainable_variables, self.optimizer0)
        del tape
        return f_loss, tilde_f_loss, d_loss, out['loss_c_verification'], dcor

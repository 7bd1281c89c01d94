"""FSHA against a client that applies the distance-correlation (NoPeek) defense (the original's ``FSHA_distcor.py`` / ``defense.py``).

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

from keras import ops

from defenses.distcor import DCOR_FORMS, distance_correlation
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

    def forward(self, tv, ntv, x_private, x_public, label_private, label_public, alpha):
        """Losses: ``def_loss = alpha1 * dCor(x_priv, f(x_priv))`` (or its log form), ``f_loss = alpha2 *``
        FSHA's f_loss, their sum ``combined``, and FSHA's tilde_f_loss and D_loss; LOG row (alpha2 * f_loss,
        tilde_f_loss, D_loss, loss_c_verification, dcor)."""
        out, ntv = self.forward_core(tv, ntv, x_private, x_public, alpha)
        f_loss = self.alpha2 * out['f_loss']
        dcor = distance_correlation(x_private, out['z_private'])
        penalty = dcor if self.dcor_form == "plain" else ops.log(ops.maximum(dcor, 1e-12))
        def_loss = self.alpha1 * penalty
        losses = {'f_loss': f_loss, 'def_loss': def_loss, 'combined': def_loss + f_loss,
                  'tilde_f_loss': out['tilde_f_loss'], 'D_loss': out['D_loss']}
        return losses, (f_loss, out['tilde_f_loss'], out['D_loss'], out['loss_c_verification'], dcor), ntv

    def update_plan(self):
        """The original's order: f~ + decoder, D, then f twice on its one Adam (the dCor term's gradient, then
        alpha2 * f_loss's), every gradient at the step's starting point; ``update='combined'``: f once on the sum."""
        f_steps = ([('def_loss', 'f'), ('f_loss', 'f')] if self.update == "two_steps" else [('combined', 'f')])
        return [('tilde_f_loss', 'attacker'), ('D_loss', 'D')] + f_steps

"""Experiment drivers around :class:`fsha.FSHA.FSHA` (not modules of the original).

:func:`mangled_experiment` is ``FSHA_mangled.ipynb`` with the per-class numbers the notebook lacks: the
attacker's public set misses one class, and the reconstruction error is reported separately on the private
images of that class and of the other classes (``scoreAttack`` on each, MSE on the [-1, 1] scale).
"""

import dataclasses

import numpy as np

from fsha.FSHA import FSHA, REFERENCE_HPARAMS


@dataclasses.dataclass
class MangledResult:
    class_removed: int
    log: np.ndarray
    removed_class_mse: float
    other_classes_mse: float
    attack: FSHA

    @property
    def validation_history(self):
        """``(steps, values)``: the printed running-mean validation of the attack (``attack.validation_history``)."""
        return self.attack.validation_history

    def summary(self):
        return (f'class {self.class_removed} removed from Xpub: scoreAttack MSE ([-1, 1] scale) on the removed '
                f'class {self.removed_class_mse:.4f}, on the other classes {self.other_classes_mse:.4f}')


def mangled_experiment(class_to_remove=0, iterations=10_000, id_setup=3, batch_size=64, hparams=None,
                       log_frequency=500, verbose=True, progress_bar=False, eval_examples=None, streams=None,
                       **fsha_options):
    """Run FSHA with ``class_to_remove`` missing from Xpub; score the removed class and the others apart.

    ``streams`` replaces ``fsha.datasets.load_mnist_mangled(class_to_remove)`` (the 4-tuple it returns);
    ``eval_examples`` limits each evaluation set to its first n examples (None: all, 5,923 and 54,077 for
    class 0). Other keyword arguments go to :class:`FSHA` (e.g. small networks, ``seed``). Training is one
    ``attack(iterations, verbose=verbose, progress_bar=progress_bar, log_frequency=log_frequency)`` call, so
    ``verbose`` prints the original's validation lines; the curves are in ``result.attack.running_mean_history``
    (``result.validation_history`` for the printed one).
    """
    if streams is None:
        from fsha import datasets
        streams = datasets.load_mnist_mangled(class_to_remove)
    xpriv, xpub, xremoved, xother = streams
    if eval_examples is not None:
        xremoved, xother = xremoved.take(eval_examples), xother.take(eval_examples)
    attack = FSHA(xpriv, xpub, id_setup, batch_size, REFERENCE_HPARAMS if hparams is None else hparams,
                  **fsha_options)
    log = attack(iterations, verbose=verbose, progress_bar=progress_bar, log_frequency=log_frequency)
    result = MangledResult(int(class_to_remove), log, attack.scoreAttack(xremoved, progress_bar=progress_bar),
                           attack.scoreAttack(xother, progress_bar=progress_bar), attack)
    if verbose:
        print(result.summary())
    return result

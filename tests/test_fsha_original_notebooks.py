"""The call sequences of the original FSHA notebooks (pasquini-dario/SplitNN_FSHA: ``FSHA.ipynb``,
``FSHA_with_distance_cor.ipynb``, ``FSHA_mangled.ipynb``) run against the package with only their imports changed,
under TensorFlow and under JAX: the loaders, ``getImagesDS``, ``plot``, the constructors with the original's
positional arguments and hparams (``style_loss`` included), ``fsha(iterations, verbose=, progress_bar=,
log_frequency=)`` and ``fsha.attack``. Only the iteration count is cut (10,000 -> 2), so every network is the
released level-4 one.
"""
import matplotlib
import numpy as np
import pytest
from available_data import needs

matplotlib.use('Agg')

pytestmark = [pytest.mark.backend, needs('mnist')]

# the notebooks' hparams, as written there
HPARAMS = {'WGAN': True, 'gradient_penalty': 500., 'style_loss': None, 'lr_f': 0.00001, 'lr_tilde': 0.00001,
           'lr_D': 0.0001}


def original_cells(make_attack, load, attacked_stream_index=0):
    """The notebooks' cells, in order, with the imports changed (``import FSHA`` -> ``from fsha import FSHA``...)."""
    import matplotlib.pyplot as plt

    from fsha import datasets
    from fsha.datasets import getImagesDS

    streams = load()
    xpriv, xpub = streams[0], streams[1]
    n = 15
    x_priv = datasets.getImagesDS(xpriv, n)
    x_pub = datasets.getImagesDS(xpub, n)
    datasets.plot(x_priv)
    datasets.plot(x_pub)
    batch_size, id_setup = 64, 4
    fsha = make_attack(xpriv, xpub, id_setup - 1, batch_size)
    log_frequency = 1
    LOG = fsha(2, verbose=True, progress_bar=False, log_frequency=log_frequency)
    X = getImagesDS(streams[attacked_stream_index], 20)
    X_recovered, control = fsha.attack(X)
    plt.close('all')
    return LOG, X, X_recovered, control, fsha


def check(LOG, X, X_recovered, control, columns):
    assert LOG.shape == (2, columns) and np.all(np.isfinite(LOG))
    assert X.shape == X_recovered.shape == control.shape == (20, 32, 32, 3)
    assert np.all(np.abs(X_recovered) <= 1.0)  # the decoder's tanh


def test_FSHA_ipynb(capsys):
    from fsha import FSHA
    from fsha.datasets import load_mnist

    out = original_cells(lambda *a: FSHA.FSHA(*a, HPARAMS), load_mnist)
    check(*out[:4], columns=4)
    printed = capsys.readouterr().out
    assert 'log--00%-0000000] validation:' in printed and 'log--50%-0000001] validation:' in printed


def test_FSHA_with_distance_cor_ipynb():
    from fsha import FSHA_distcor
    from fsha.datasets import load_mnist

    hparams = dict(HPARAMS, alpha1=10000, alpha2=50)
    out = original_cells(lambda *a: FSHA_distcor.FSHA_dc(*a, hparams), load_mnist)
    check(*out[:4], columns=5)


def test_FSHA_mangled_ipynb():
    from fsha import FSHA
    from fsha.datasets import load_mnist_mangled

    class_to_remove = 0
    load = lambda: load_mnist_mangled(class_to_remove)  # noqa: E731  (xpriv, xpub, xremoved_examples, _)
    LOG, X, X_recovered, control, fsha = original_cells(lambda *a: FSHA.FSHA(*a, HPARAMS), load,
                                                        attacked_stream_index=2)
    check(LOG, X, X_recovered, control, columns=4)

"""FSHA's hyperparameters and options, checked early (shared by the TensorFlow classes and the JAX runner).

TensorFlow-free on purpose: the attack runs on Keras' JAX backend too, on machines without TensorFlow.
"""
import math
import numbers
from collections.abc import Mapping

import numpy as np

from fsha import architectures

GP_NORMS = ('per_channel', 'per_sample')

#: The hyperparameters of every reference notebook (level 4, batch 64).
REFERENCE_HPARAMS = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 1e-5, 'lr_tilde': 1e-5, 'lr_D': 1e-4}

#: Options that may be given either as keyword arguments or as hparams keys (keyword wins).
OPTION_DEFAULTS = {
    'architecture': 'final',
    'd_stem': 'effective',
    'resblock_bn': False,
    'gp_norm': 'per_channel',
    'gp_eps': 0.0,
    'saturating_f_loss': False,
    'seed': None,
    'jit_compile': False,
}


def _positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
    return int(value)


def _check_float(hparams, key, positive=True):
    value = hparams[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or (
            value <= 0 if positive else value < 0):
        raise ValueError(f"hparams[{key!r}] must be a finite number {'> 0' if positive else '>= 0'}, "
                         f'got {value!r}')
    return float(value)


#: Keys of the original code's hparams dicts (``style_loss`` appears in its notebooks and is unused there too;
#: ``alpha1``/``alpha2`` are FSHA_dc's, ``class_num`` the property head's).
ORIGINAL_HPARAMS = ('WGAN', 'gradient_penalty', 'style_loss', 'lr_f', 'lr_tilde', 'lr_D', 'alpha1', 'alpha2',
                    'class_num')


def check_known_keys(hparams):
    """An unknown key (a misspelt ``gradient_penalty`` would silently turn the penalty off) is a ValueError that
    names the closest valid key; the valid keys are the original's and the package's options."""
    from splitnn.utils import closest_name

    known = ORIGINAL_HPARAMS + tuple(OPTION_DEFAULTS)
    for key in hparams:
        if key not in known:
            close = closest_name(key, known)
            hint = f"; did you mean {close!r}?" if close else ''
            raise ValueError(f'unknown hparams key {key!r}{hint} (known: {", ".join(known)})')


def validate_hparams(hparams, required=('WGAN', 'lr_f', 'lr_tilde', 'lr_D')):
    """Check the hparams dict early; return it as a plain dict."""
    if not isinstance(hparams, Mapping):
        raise TypeError(f'hparams must be a dict, got {type(hparams).__name__}')
    check_known_keys(hparams)
    missing = [k for k in required if k not in hparams]
    if missing:
        raise ValueError(f'hparams is missing {missing}; FSHA needs WGAN (True/False), lr_f, lr_tilde and '
                         f'lr_D, e.g. {{"WGAN": True, "gradient_penalty": 500.0, "lr_f": 1e-5, '
                         f'"lr_tilde": 1e-5, "lr_D": 1e-4}}')
    if not isinstance(hparams['WGAN'], (bool, np.bool_)) and hparams['WGAN'] not in (0, 1):
        raise ValueError(f"hparams['WGAN'] must be True or False, got {hparams['WGAN']!r}")
    for key in ('lr_f', 'lr_tilde', 'lr_D'):
        if key in hparams:
            _check_float(hparams, key)
    if hparams.get('gradient_penalty') is not None:
        _check_float(hparams, 'gradient_penalty', positive=False)
    return dict(hparams)


def resolve_options(options, hparams, defaults=OPTION_DEFAULTS):
    """The attack's options: each keyword in ``options``, else the hparams key of that name, else the default.

    Unknown keywords and invalid values raise here, before anything is built."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f'unknown options {sorted(unknown)}; known: {sorted(defaults)}')
    opts = {k: next((v for v in (options.get(k), hparams.get(k)) if v is not None), d)
            for k, d in defaults.items()}
    if opts['gp_norm'] not in GP_NORMS:
        raise ValueError(f"gp_norm must be one of {GP_NORMS}, got {opts['gp_norm']!r}")
    if opts['architecture'] not in architectures.ARCHITECTURES:
        raise ValueError(f'architecture must be one of {architectures.ARCHITECTURES}, got '
                         f"{opts['architecture']!r}")
    if opts['d_stem'] not in architectures.D_STEMS:
        raise ValueError(f"d_stem must be one of {architectures.D_STEMS}, got {opts['d_stem']!r}")
    if not (isinstance(opts['gp_eps'], numbers.Real) and opts['gp_eps'] >= 0):
        raise ValueError(f"gp_eps must be a number >= 0, got {opts['gp_eps']!r}")
    return opts


def make_optimizers(hparams, f, tilde_f, decoder, D):
    """The attack's three Adams, built: f (``lr_f``), f~ + decoder (``lr_tilde``), D (``lr_D``)."""
    import keras

    groups = ((hparams['lr_f'], f.trainable_variables),
              (hparams['lr_tilde'], tilde_f.trainable_variables + decoder.trainable_variables),
              (hparams['lr_D'], D.trainable_variables))
    optimizers = []
    for lr, variables in groups:
        opt = keras.optimizers.Adam(learning_rate=lr)
        opt.build(variables)
        optimizers.append(opt)
    return tuple(optimizers)


def alphas(hparams):
    """``(alpha1, alpha2)`` from hparams, or a ValueError saying what is missing or wrong."""
    if not hasattr(hparams, "get"):
        raise TypeError(f"hparams must be a dict, got {type(hparams).__name__}")
    missing = [k for k in ("alpha1", "alpha2") if hparams.get(k) is None]
    if missing:
        raise ValueError(
            f"FSHA_dc needs hparams 'alpha1' (the client's dCor weight, e.g. 10000; 0 = no dCor term) and "
            f"'alpha2' (the attacker's scale on the adversarial loss, e.g. 50; 1 = unscaled); missing: {missing}")
    out = []
    for key in ("alpha1", "alpha2"):
        value = hparams[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"hparams[{key!r}] must be a finite number >= 0, got {value!r}")
        out.append(float(value))
    return tuple(out)

"""Client-side GAN attack on multi-client split learning (Pasquini et al., CCS 2021, §5).

A malicious client trains a generator against the shared split model (gradient scaled down by
1e5 on the way to the server and up again before the generator) and poisons the shared model with
the generated samples labelled as an extra "fake" class. See :mod:`ClientSideAttack.server` for the
optimizer (Keras 3) and training-flag details.

Quick start::

    from ClientSideAttack import build_attack, Judge
    server = build_attack(honest_clients=10, target_class=1, seed=0)
    server(5000)
    bad = server.clients[0]
    rate = Judge.load().target_rate(bad.generate(1000), target_class=1)

Long runs: ``server.save(folder)`` and, on a server built the same way, ``server.restore(folder)``
continue the run exactly (``benchmarks/clientside_attack.py --checkpoint DIR --max-seconds S``).

One implementation on :mod:`splitnn.backend`: TensorFlow by default, the same code under ``KERAS_BACKEND=jax``
(nothing then imports TensorFlow). The names below are imported lazily (on first access), so that importing the
package is cheap.
"""

import importlib

# public name -> submodule defining it
_EXPORTS = {
    "FAKE_CLASS": "archs", "IMAGE_SHAPE": "archs", "LATENT_DIM": "archs", "NUM_CLASSES": "archs",
    "make_f": "archs", "make_ff": "archs", "make_generator": "archs", "make_s": "archs",
    "GENERATOR": "settings", "GRADIENT_FACTOR": "settings", "HONEST": "settings", "POISON": "settings",
    "BadClient": "clients", "Client": "clients", "scale_down": "clients", "scale_up": "clients",
    "JUDGE_VERSION": "judge", "Judge": "judge",
    "OPTIMIZER_MODES": "settings", "Server": "server", "build_attack": "server",
}
_SUBMODULES = ("archs", "clients", "dataset", "experiment", "judge", "server", "settings")

__all__ = [
    "FAKE_CLASS", "IMAGE_SHAPE", "LATENT_DIM", "NUM_CLASSES", "make_f", "make_ff", "make_generator",
    "make_s", "GENERATOR", "GRADIENT_FACTOR", "HONEST", "POISON", "BadClient", "Client",
    "scale_down", "scale_up", "JUDGE_VERSION", "Judge", "OPTIMIZER_MODES", "Server", "build_attack",
]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))

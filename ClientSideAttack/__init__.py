"""Client-side GAN attack on multi-client split learning (Pasquini et al., CCS 2021, §9 of the spec).

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
"""

from .archs import (FAKE_CLASS, IMAGE_SHAPE, LATENT_DIM, NUM_CLASSES, make_f, make_ff,
                    make_generator, make_s)
from .clients import (GENERATOR, GRADIENT_FACTOR, HONEST, POISON, BadClient, Client, scale_down,
                      scale_up)
from .judge import JUDGE_VERSION, Judge
from .server import OPTIMIZER_MODES, Server, build_attack

__all__ = [
    "FAKE_CLASS", "IMAGE_SHAPE", "LATENT_DIM", "NUM_CLASSES", "make_f", "make_ff", "make_generator",
    "make_s", "GENERATOR", "GRADIENT_FACTOR", "HONEST", "POISON", "BadClient", "Client",
    "scale_down", "scale_up", "JUDGE_VERSION", "Judge", "OPTIMIZER_MODES", "Server", "build_attack",
]

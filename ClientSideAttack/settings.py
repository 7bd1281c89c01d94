"""Constants and argument checks of the client-side attack, shared by the TensorFlow classes
(:mod:`ClientSideAttack.clients`, :mod:`ClientSideAttack.server`) and the Keras-JAX runner
(:mod:`ClientSideAttack.jax_runner`). TensorFlow-free on purpose: the runner's GPU machines have none.
"""
import math
import numbers

#: Gradient factor of the original.
GRADIENT_FACTOR = 1e5
#: Phase names.
HONEST = "honest"
GENERATOR = "generator"
POISON = "poison"
PHASES = (HONEST, GENERATOR, POISON)
#: Optimizer modes: one Adam over the union of all variables (the original's shared moments) or one per group.
OPTIMIZER_MODES = ("shared", "per_group")

__all__ = ["GRADIENT_FACTOR", "HONEST", "GENERATOR", "POISON", "PHASES", "OPTIMIZER_MODES", "validate_factor",
           "check_training_options"]


def validate_factor(factor):
    """Return ``factor`` as a float; raise ValueError unless it is a finite real number > 0."""
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        raise ValueError(f"gradient_factor must be a finite real number > 0, got {factor!r}")
    factor = float(factor)
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"gradient_factor must be a finite real number > 0, got {factor!r}")
    return factor


def check_training_options(batch_size, learning_rate, optimizer, server_training):
    """``(batch_size, learning_rate, optimizer, server_training)`` checked; ValueError naming a bad one."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
            or not math.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    if optimizer not in OPTIMIZER_MODES:
        raise ValueError(f"optimizer must be one of {OPTIMIZER_MODES}, got {optimizer!r}")
    if server_training not in (None, True, False):
        raise ValueError(f"server_training must be None, True or False, got {server_training!r}")
    return int(batch_size), float(learning_rate), optimizer, server_training

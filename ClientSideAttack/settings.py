"""Constants and argument checks of the client-side attack (:mod:`ClientSideAttack.clients`,
:mod:`ClientSideAttack.server`, the benchmark). Backend-free: imports neither Keras nor TensorFlow.
"""
import math
import numbers
from pathlib import Path

#: Gradient factor of the original.
GRADIENT_FACTOR = 1e5
#: Phase names.
HONEST = "honest"
GENERATOR = "generator"
POISON = "poison"
PHASES = (HONEST, GENERATOR, POISON)
#: Optimizer modes: one Adam over the union of all variables (the original's shared moments) or one per group.
OPTIMIZER_MODES = ("shared", "per_group")

#: The original notebook's run, printed by the benchmarks next to their results.
REFERENCE_RUN = ("reference (original notebook, GPU): 5,000 iterations in 11:16 (7.39 it/s); "
                 "all 15 samples look like the target '1'; acceptance: >= 80% target rate")

__all__ = ["GRADIENT_FACTOR", "HONEST", "GENERATOR", "POISON", "PHASES", "OPTIMIZER_MODES", "REFERENCE_RUN",
           "validate_factor", "check_training_options", "add_experiment_arguments"]


def add_experiment_arguments(parser, out):
    """The experiment's flags of ``benchmarks/clientside_attack.py`` (either backend); the defaults are
    the original run (target 1, 10 honest clients, batch 256, factor 1e5, 5,000 iterations). ``out``: the
    default output folder."""
    parser.add_argument("--iterations", type=int, default=5000, help="total iterations (resumed runs included)")
    parser.add_argument("--honest-clients", type=int, default=10)
    parser.add_argument("--target", type=int, default=1, help="target class 0..9")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(out), help="folder for the sample grid and the JSON summary")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--factor", type=float, default=GRADIENT_FACTOR, help="gradient factor (original 1e5)")
    parser.add_argument("--optimizer", choices=list(OPTIMIZER_MODES), default="shared")
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--grid-samples", type=int, default=15)
    return parser


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

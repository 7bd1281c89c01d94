"""Covert attacks on ML training in passively secure MPC: our reconstruction of the mechanisms of Jagielski,
Escudero, Rachuri, Scholl, *Covert Attacks on Machine Learning Training in Passively Secure MPC*, 2025
(arXiv 2505.17092), simulated in Keras and on a small, exact two-party secret-sharing protocol.

Modules: :mod:`covert_mpc.ring` (fixed-point Z_2^k), :mod:`covert_mpc.protocol` (additive sharing, Beaver
multiplication, truncation, comparison, the adversary, secure SGD), :mod:`covert_mpc.deviations` (what the
adversary does, shared by both simulations), :mod:`covert_mpc.plaintext` (the Keras simulation),
:mod:`covert_mpc.attacks` (the attacks), :mod:`covert_mpc.demo` (command line). The paper's tables and figures
were not available: every number produced here is our reconstruction of the paper's mechanism, not the paper's.
Only :mod:`covert_mpc.plaintext` and :mod:`covert_mpc.attacks` import Keras.
"""
from covert_mpc.deviations import (Deviation, beaver_shift, error, flip_relu, gradient_shift,  # noqa: F401
                                   offset_relu, weight)
from covert_mpc.models import TrainConfig  # noqa: F401
from covert_mpc.ring import Ring  # noqa: F401

"""Defenses against split-learning inference attacks.

* :mod:`defenses.distcor` - the sample distance correlation of the original ``defense.py``
  (Vepakomma et al.'s NoPeek statistic): :func:`distance_correlation`, :func:`distance_covariance`,
  :func:`distance_variance`, :func:`distance_correlation_sq` (alias :func:`dcor_squared`),
  :func:`log_distance_correlation`, :func:`dcor_penalty`, :func:`pairwise_distances`.
* :mod:`defenses.nopeek` - NoPeek split learning (:class:`NoPeekSplitModel`) and the MNIST
  trade-off study (:func:`tradeoff_study`).
"""

from defenses.distcor import (  # noqa: F401
    DCOR_FORMS,
    DEFAULT_EPS,
    dcor_penalty,
    dcor_squared,
    distance_correlation,
    distance_correlation_sq,
    distance_covariance,
    distance_variance,
    double_centre,
    flatten_batch,
    log_distance_correlation,
    pairwise_distances,
)
from defenses.nopeek import (  # noqa: F401
    NoPeekSplitModel,
    TradeoffResult,
    check_split_compatible,
    tradeoff_study,
    validate_alpha,
)

"""Sample distance correlation between a batch of inputs and a batch of smashed data.

This is the statistic of the original FSHA ``defense.py`` (Pasquini et al.'s FSHA code), written
from the definition, not from that file. For a batch of ``n`` samples, every input is flattened
per sample, ``X`` in R^{n x p}, ``Y`` in R^{n x q}, and

1. **Euclidean** (not squared) distances with the clamp *before* the square root::

       a_ij = sqrt(max(||X_i||^2 + ||X_j||^2 - 2 <X_i, X_j>, eps)),   eps = 1e-7

   The clamp keeps the gradient finite where two points coincide (the diagonal holds
   sqrt(1e-7) ~ 3.16e-4 instead of 0; this is kept, as in the original).
2. double centring ``A_ij = a_ij - mean_i. - mean_.j + mean_..`` (same for ``B``);
3. ``dCov(X, Y) = sqrt(mean(A * B))``, ``dVar(X) = sqrt(mean(A * A))``, ``dVar(Y) = sqrt(mean(B * B))``;
4. ``dCor(X, Y) = dCov(X, Y) / sqrt(dVar(X) * dVar(Y))``.

This is Szekely's sample distance correlation in its square-root V-statistic form; it equals
``dcor.distance_correlation`` (which returns dCor, not dCor^2) up to the 1e-7 clamp. The clamp's
bias is ~1e-8 at FSHA's shapes (n = 64, 3,072 vs 4,096 features) but reaches a few 1e-6 on 1-D data
at n = 256 and a few 1e-5 for small, low-dimensional batches (n = 8); ``eps=0`` gives the exact
statistic (for values only: the gradient is then infinite where two distinct rows coincide).

Numerical details (none of them changes the statistic; all are documented deviations in
*rounding* only, or in cases where the original returns NaN):

- Before the Gram matrix is formed, each feature is centred over the batch (``X - mean(X, 0)``).
  Pairwise distances are translation invariant, so the formula is unchanged, but the
  cancellation in ``||X_i||^2 + ||X_j||^2 - 2<X_i, X_j>`` is much smaller in float32.
- Squared distances at or below the Gram formula's rounding resolution
  (``16 * machine_eps * (||X_i||^2 + ||X_j||^2)``, after centring) are set to exactly 0 before the
  clamp: they are rounding noise of coinciding rows. So the diagonal holds exactly sqrt(eps), as the
  original's clamp gives, and so do duplicated rows, identically in eager mode and under XLA (whose
  different summation order otherwise turns a duplicate pair into a random distance ~ 1e-3 with a
  gradient ~ 1e2 times the usual). In float64 the resolution is negligible. In float32 it is
  16 ulp of the squared norms, about what the Gram formula can resolve at all (measured rounding
  noise of coinciding rows: up to ~4.5 ulp); on 1-D data it moves dCor by ~1e-6 (x vs x^2, n = 256).
  The original instead leaves such pairs (and, for large-norm rows, its diagonal) at a random
  rounding-noise distance.
- Square roots of the (non-negative in exact arithmetic) statistics use a "safe" square root
  whose value is 0 and whose gradient is 0 at 0, so no NaN/inf gradient ever appears.
- Degenerate batch: when every squared distance of X (or of Y) is at or below the clamp (all
  rows identical at the clamp's resolution), both distance variances are 0 in exact arithmetic
  and the original computes 0/0. Following Szekely's convention, dCor is then 0 (with a zero
  gradient). dCov is 0 in that case as well.

All functions work on any input rank (the first axis is the batch), in float32 and float64,
eagerly, inside ``tf.function``, under XLA (``jit_compile=True``) and under ``jax.jit`` (they are written in
``keras.ops``: Keras' TensorFlow and JAX backends alike), and are differentiable.
Integer inputs (e.g. uint8 images) are cast to float32. Mixed float inputs are computed in the
widest of the two dtypes (float16/bfloat16 are computed in float32); the result has that dtype.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

__all__ = [
    "DEFAULT_EPS",
    "DCOR_FORMS",
    "flatten_batch",
    "pairwise_distances",
    "double_centre",
    "distance_covariance",
    "distance_variance",
    "distance_correlation_sq",
    "dcor_squared",
    "distance_correlation",
    "log_distance_correlation",
    "dcor_penalty",
]

#: Clamp applied to squared distances before the square root (original value).
DEFAULT_EPS = 1e-7

#: Penalty forms accepted by :func:`dcor_penalty` (``'plain'`` is the original's; ``'log'`` an option).
DCOR_FORMS = ("plain", "log")

# Floor used by the log form so that log(0) (degenerate batch) stays finite.
_LOG_FLOOR = 1e-12


# --------------------------------------------------------------------------- helpers


def _dtype(t):
    return keras.backend.standardize_dtype(t.dtype)


def _compute_dtype(*tensors):
    """float64 if any input is float64, else float32 (ints and half types -> float32)."""
    return 'float64' if any(_dtype(t) == 'float64' for t in tensors) else 'float32'


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        # tensors are allowed too (e.g. a variable); only python numbers are validated here
        if ops.is_tensor(eps) or isinstance(eps, keras.Variable):
            return
        raise TypeError(f"eps must be a real number (the clamp on squared distances, default "
                        f"{DEFAULT_EPS}); got {eps!r} of type {type(eps).__name__}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be finite and >= 0 (default {DEFAULT_EPS}); got {eps!r}")


def flatten_batch(x, dtype=None):
    """Flatten every sample of a batch: ``[n, ...] -> [n, d]`` (rank-1 input -> ``[n, 1]``).

    ``dtype`` defaults to float64 for float64 input and float32 otherwise.
    """
    x = ops.convert_to_tensor(x)
    if len(x.shape) == 0:
        raise ValueError(f"expected a batch with a leading sample axis, got a scalar (shape "
                         f"{tuple(x.shape)})")
    if dtype is None:
        dtype = _compute_dtype(x)
    if _dtype(x) != dtype:
        x = ops.cast(x, dtype)
    if len(x.shape) == 1:
        return x[:, None]
    if len(x.shape) == 2:
        return x
    if all(d is not None for d in x.shape[1:]):
        return ops.reshape(x, [-1, int(np.prod(x.shape[1:]))])
    return ops.reshape(x, [ops.shape(x)[0], -1])  # per-sample shape known only at run time (tf.function)


def _prepare_pair(x, y):
    x = ops.convert_to_tensor(x)
    y = ops.convert_to_tensor(y)
    for name, t in (("x", x), ("y", y)):
        if len(t.shape) == 0:
            raise ValueError(f"{name} must be a batch with a leading sample axis, got a scalar")
    nx, ny = x.shape[0], y.shape[0]
    if nx is not None and ny is not None and nx != ny:
        raise ValueError(f"x and y must have the same number of samples (first axis); got "
                         f"x.shape={tuple(x.shape)} and y.shape={tuple(y.shape)}")
    dtype = _compute_dtype(x, y)
    return flatten_batch(x, dtype), flatten_batch(y, dtype)


def _squared_distances(x2d):
    """||X_i||^2 + ||X_j||^2 - 2<X_i, X_j> on feature-centred rows (exactly the same quantity).

    Values at or below the formula's rounding resolution, ``16 * machine_eps * (||X_i||^2 +
    ||X_j||^2)``, are set to 0: they are rounding noise of coinciding rows (and the diagonal).
    """
    xc = x2d - ops.mean(x2d, axis=0, keepdims=True)
    sq = ops.sum(ops.square(xc), axis=1, keepdims=True)
    gram = ops.matmul(xc, ops.transpose(xc))
    norms = sq + ops.transpose(sq)
    d2 = norms - 2.0 * gram
    resolution = (16.0 * float(np.finfo(_dtype(x2d)).eps)) * norms
    zeros = ops.zeros_like(d2)
    d2 = ops.where(d2 <= resolution, zeros, d2)
    # ||x_i - x_i||^2 is exactly 0 (already the case above unless all norms are 0; kept explicit)
    n = ops.shape(d2)[0]
    return ops.where(ops.cast(ops.eye(n), 'bool'), zeros, d2)


def _safe_sqrt(v):
    """sqrt(max(v, 0)) with value 0 and gradient 0 where v <= 0 (never NaN/inf)."""
    pos = v > 0
    return ops.where(pos, ops.sqrt(ops.where(pos, v, ops.ones_like(v))), ops.zeros_like(v))


def pairwise_distances(x, eps=DEFAULT_EPS):
    """Euclidean distance matrix ``[n, n]`` of the flattened samples, clamped as in the original.

    ``a_ij = sqrt(max(||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>, eps))``. The diagonal is ``sqrt(eps)``.
    """
    _check_eps(eps)
    x2d = flatten_batch(x)
    d2 = _squared_distances(x2d)
    return ops.sqrt(ops.maximum(d2, ops.cast(eps, _dtype(d2))))


def double_centre(a):
    """``A_ij = a_ij - mean_i. - mean_.j + mean_..`` for a square matrix ``a``."""
    a = ops.convert_to_tensor(a)
    row = ops.mean(a, axis=1, keepdims=True)
    col = ops.mean(a, axis=0, keepdims=True)
    return a - row - col + ops.mean(row)


def _centred_distances(x2d, eps):
    d2 = _squared_distances(x2d)
    eps_t = ops.cast(eps, _dtype(d2))
    a = ops.sqrt(ops.maximum(d2, eps_t))
    # all squared distances at/below the clamp: a is constant, A is 0 up to rounding
    degenerate = ops.max(d2) <= eps_t
    return double_centre(a), degenerate


def _moments(x, y, eps):
    """mean(A*B), mean(A*A), mean(B*B) and the degenerate flag."""
    _check_eps(eps)
    x2d, y2d = _prepare_pair(x, y)
    a, deg_x = _centred_distances(x2d, eps)
    b, deg_y = _centred_distances(y2d, eps)
    return ops.mean(a * b), ops.mean(a * a), ops.mean(b * b), ops.logical_or(deg_x, deg_y)


def _zero_where(flag, v):
    return ops.where(flag, ops.zeros_like(v), v)


# --------------------------------------------------------------------------- public API


def distance_covariance(x, y, eps=DEFAULT_EPS):
    """Sample distance covariance ``dCov(X, Y) = sqrt(mean(A * B))`` (V-statistic, not squared).

    Matches ``dcor.distance_covariance`` up to the clamp. Returns a scalar tensor.
    """
    sab, _, _, deg = _moments(x, y, eps)
    return _zero_where(deg, _safe_sqrt(sab))


def distance_variance(x, eps=DEFAULT_EPS):
    """Sample distance variance ``dVar(X) = sqrt(mean(A * A))`` (= dCov(X, X))."""
    _check_eps(eps)
    x2d = flatten_batch(x)
    a, deg = _centred_distances(x2d, eps)
    return _zero_where(deg, _safe_sqrt(ops.mean(a * a)))


def distance_correlation_sq(x, y, eps=DEFAULT_EPS):
    """Squared distance correlation ``dCor^2 = mean(A*B) / sqrt(mean(A*A) * mean(B*B))``.

    This is *not* what the original penalises (it uses :func:`distance_correlation`); it is
    provided as a helper (``dcor.distance_correlation_sqr`` equivalent). 0 for a degenerate batch.
    """
    sab, saa, sbb, deg = _moments(x, y, eps)
    den = _safe_sqrt(saa) * _safe_sqrt(sbb)
    ok = ops.logical_and(ops.logical_not(deg), den > 0)
    r2 = sab / ops.where(ok, den, ops.ones_like(den))
    # mean(A*B) >= 0 in exact arithmetic (V-statistic); clip rounding noise below 0
    return ops.where(ok, ops.maximum(r2, ops.zeros_like(r2)), ops.zeros_like(r2))


#: Alias of :func:`distance_correlation_sq`.
dcor_squared = distance_correlation_sq


def distance_correlation(x, y, eps=DEFAULT_EPS, log=False):
    """Sample distance correlation ``dCor(X, Y) = dCov(X, Y) / sqrt(dVar(X) dVar(Y))``.

    Args:
      x, y: batches with the same leading size ``n`` and any rank (flattened per sample), e.g.
        the raw client input ``[n, 32, 32, 3]`` and the smashed data ``[n, 4, 4, 256]``.
      eps: clamp on squared distances before the square root (original: 1e-7).
      log: return ``log(dCor)`` instead (an option only; the original FSHA code penalises plain
        dCor). ``dCor`` is floored at 1e-12 before the log.

    Returns:
      a scalar tensor (float64 if an input is float64, else float32), in [0, 1] up to rounding.
      Equal to ``dcor.distance_correlation(X, Y)`` (V-statistic dCor, not dCor^2) up to the clamp.
    """
    value = _safe_sqrt(distance_correlation_sq(x, y, eps=eps))
    if log:
        return ops.log(ops.maximum(value, ops.cast(_LOG_FLOOR, _dtype(value))))
    return value


def log_distance_correlation(x, y, eps=DEFAULT_EPS):
    """``log(dCor(X, Y))`` (dCor floored at 1e-12). Option only; not the original's penalty."""
    return distance_correlation(x, y, eps=eps, log=True)


def dcor_penalty(x, y, form="plain", eps=DEFAULT_EPS):
    """The defense term before the ``alpha1`` factor: ``dCor`` (``form="plain"``, faithful default)
    or ``log dCor`` (``form="log"``)."""
    if form not in DCOR_FORMS:
        raise ValueError(f"form must be one of {DCOR_FORMS} ('plain' is the original's); got "
                         f"{form!r}")
    return distance_correlation(x, y, eps=eps, log=(form == "log"))

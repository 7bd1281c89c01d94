"""Fixed-point numbers in the ring Z_{2^k} (NumPy ``uint64``, wrap-around arithmetic).

A real ``x`` is encoded as ``round(x * 2^f) mod 2^k`` (round half up) and decoded by reading the ring element as a
signed integer in ``[-2^(k-1), 2^(k-1))`` and dividing by ``2^f``. ``k = 64`` uses the ``uint64`` wrap-around of
NumPy directly; for ``k < 64`` every result is masked to its low ``k`` bits. ``k = 64, f = 16`` is CrypTen's default
precision (SecureML used ``k = 64, f = 13``). TensorFlow-free.
"""
from __future__ import annotations

import numpy as np

U64 = np.uint64


def check_ring(k, f) -> tuple[int, int]:
    """``(k, f)`` as ints, or a ValueError naming the bad value: ``1 <= f < k <= 64``."""
    for name, value in (("k", k), ("f", f)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    k, f = int(k), int(f)
    if k > 64:
        raise ValueError(f"k = {k}: the ring Z_2^k is held in uint64, so k must be <= 64")
    if f < 1:
        raise ValueError(f"f = {f}: the fixed-point encoding needs at least one fractional bit (f >= 1)")
    if k <= f:
        raise ValueError(f"k = {k} <= f = {f}: the ring must have more bits than the fractional part "
                         f"(k > f; k = 64, f = 16 is the default)")
    return k, f


class Ring:
    """Z_{2^k} with ``f`` fractional bits. All arrays are ``uint64`` holding values in ``[0, 2^k)``."""

    def __init__(self, k: int = 64, f: int = 16):
        self.k, self.f = check_ring(k, f)
        self.mask = U64((1 << self.k) - 1) if self.k < 64 else U64(0xFFFFFFFFFFFFFFFF)
        self.scale = float(2 ** self.f)

    def __repr__(self):
        return f"Ring(k={self.k}, f={self.f})"

    @property
    def limit(self) -> float:
        """Largest magnitude that encodes without wrapping: ``2^(k-f-1)`` (about 1.4e14 for k=64, f=16)."""
        return 2.0 ** (self.k - self.f - 1)

    # ----------------------------------------------------------------------------------------- conversions
    def reduce(self, a) -> np.ndarray:
        a = np.asarray(a, dtype=U64)
        return a if self.k == 64 else a & self.mask

    def from_signed(self, v) -> np.ndarray:
        """Signed integers (int64 arrays or Python ints in int64's range) to ring elements."""
        return self.reduce(np.asarray(v, dtype=np.int64).view(U64))

    def signed(self, a) -> np.ndarray:
        """Ring elements as signed int64 in ``[-2^(k-1), 2^(k-1))``."""
        a = self.reduce(a)
        if self.k == 64:
            return a.view(np.int64)
        s = a.astype(np.int64)
        return np.where(s >= (1 << (self.k - 1)), s - (1 << self.k), s)

    def encode(self, x, wrap: bool = False) -> np.ndarray:
        """``round(x * 2^f) mod 2^k``. A value whose magnitude reaches :attr:`limit` raises ValueError unless
        ``wrap`` (then it wraps around, as it would inside the protocol)."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot encode NaN or infinite values")
        t = np.floor(x * self.scale + 0.5)
        if not wrap:
            bad = np.abs(t) >= 2.0 ** (self.k - 1)
            if np.any(bad):
                worst = float(np.max(np.abs(x)))
                raise ValueError(f"value {worst:.6g} overflows the ring Z_2^{self.k} with f = {self.f}: fixed-point "
                                 f"magnitudes must stay below 2^(k-f-1) = {self.limit:.6g}")
            return self.reduce(t.astype(np.int64).view(U64))
        half, full = 2.0 ** (self.k - 1), 2.0 ** self.k
        # wrap only what is out of range: a float holds |t| < 2^53 exactly, larger values have lost their low bits
        t = np.where((t >= half) | (t < -half), np.mod(t + half, full) - half, t)
        return self.from_signed(t.astype(np.int64))

    def decode(self, a) -> np.ndarray:
        return self.signed(a).astype(np.float64) / self.scale

    def quantize(self, x) -> np.ndarray:
        """``decode(encode(x, wrap=True))``: the float that the ring holds for ``x``."""
        return self.decode(self.encode(x, wrap=True))

    def random(self, shape, rng: np.random.Generator) -> np.ndarray:
        return self.reduce(rng.integers(0, 2 ** 63, size=shape, dtype=np.uint64) * U64(2)
                           + rng.integers(0, 2, size=shape, dtype=np.uint64))

    # ----------------------------------------------------------------------------------------- arithmetic
    def add(self, a, b):
        return self.reduce(np.add(a, b, dtype=U64))

    def sub(self, a, b):
        return self.reduce(np.subtract(a, b, dtype=U64))

    def neg(self, a):
        return self.reduce(np.subtract(U64(0), a, dtype=U64))

    def mul(self, a, b):
        return self.reduce(np.multiply(a, b, dtype=U64))

    def matmul(self, a, b):
        return self.reduce(np.matmul(np.asarray(a, U64), np.asarray(b, U64)))

    def shift_right(self, a, bits: int | None = None):
        """Arithmetic shift of the signed value by ``bits`` (default ``f``), rounding half up: the exact
        truncation of a product held at scale ``2^(2f)`` back to ``2^f``."""
        bits = self.f if bits is None else bits
        s = self.signed(a)
        return self.from_signed((s + np.int64(1 << (bits - 1))) >> np.int64(bits))

"""A small, exact two-party MPC protocol over Z_{2^k} with a dealer, and an active adversary controlling party 1.

Passive (semi-honest) security only, as the protocols the paper attacks: nothing checks that a party follows it.

* **Sharing**: ``x = x0 + x1 mod 2^k``, ``x0`` uniform (:func:`share`). Additions and public-constant products are
  local.
* **Multiplication** (:meth:`Protocol.mul`, :meth:`Protocol.matmul`): Beaver triples ``(a, b, c = a*b)`` (or
  ``c = a @ b``) from a trusted dealer; the parties open ``d = x - a`` and ``e = y - b`` and set
  ``z = c + d*b + a*e + d*e`` (party 0 adds ``d*e``) [Beaver 1991; SecureML uses matrix triples].
* **Truncation** (:meth:`Protocol.trunc`) of a product held at scale ``2^(2f)``: ``'exact'`` (default) is a dealer
  functionality that returns fresh shares of ``round(x / 2^f)``; ``'local'`` is SecureML's local share truncation
  (party 0 floors its share, party 1 computes ``2^k - floor((2^k - x1) / 2^f)``), correct to one unit in the last
  place except with probability about ``2^(l+1-k)`` for ``|x| < 2^l``, when the result is off by about
  ``2^(k-f)`` (Mohassel and Zhang, SecureML, S&P 2017, Theorem 1).
* **Comparison** (:meth:`Protocol.relu_bit`): an ideal functionality (played by the dealer) that returns
  XOR-shares of ``b = [z >= 0]``, converted to arithmetic shares by one Beaver product
  (``b = b0 + b1 - 2 b0 b1``). Real protocols compute this bit with a comparison circuit (e.g. CrypTen's); what
  matters for the attacks is that each party then *holds a share of the bit*, which it may change.
* **Softmax** (:meth:`Protocol.softmax`): an ideal functionality (the dealer reconstructs the logits, computes the
  softmax in float64 and reshares it), standing in for the polynomial / iterative approximations of real
  frameworks. It is not attacked.

The :class:`Adversary` controls party 1 and may (i) add an error to its share of a wire, (ii) shift the value it
opens in a Beaver multiplication, (iii) XOR 1 into its Boolean share of a comparison bit or (iv) add ``delta`` to
its arithmetic share of it. These are the additive attacks of Genkin, Ishai, Prabhakaran, Sahai and Tromer
(STOC 2014): every deviation of a party amounts to input-independent errors on wires. :func:`train_secure` trains
the models of :mod:`covert_mpc.models` on secret-shared data with such an adversary. TensorFlow-free.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from covert_mpc import models
from covert_mpc.deviations import Deviation, StepArrays, step_arrays
from covert_mpc.ring import U64, Ring

TRUNCATIONS = ("exact", "local")


@dataclasses.dataclass
class Shared:
    """Two additive shares of a ring array."""
    s0: np.ndarray
    s1: np.ndarray
    ring: Ring

    @property
    def shape(self):
        return self.s0.shape

    def reveal(self) -> np.ndarray:
        return self.ring.add(self.s0, self.s1)

    def decode(self) -> np.ndarray:
        return self.ring.decode(self.reveal())

    def __add__(self, other: "Shared") -> "Shared":
        return Shared(self.ring.add(self.s0, other.s0), self.ring.add(self.s1, other.s1), self.ring)

    def __sub__(self, other: "Shared") -> "Shared":
        return Shared(self.ring.sub(self.s0, other.s0), self.ring.sub(self.s1, other.s1), self.ring)

    def __getitem__(self, idx) -> "Shared":
        return Shared(self.s0[idx], self.s1[idx], self.ring)

    @property
    def T(self) -> "Shared":
        return Shared(self.s0.T, self.s1.T, self.ring)

    def add_public(self, c) -> "Shared":
        """``x + c`` for a public ring element ``c`` (party 0 adds it)."""
        return Shared(self.ring.add(self.s0, c), self.s1.copy(), self.ring)

    def mul_public(self, c) -> "Shared":
        """``x * c`` for public ring elements ``c`` (each party multiplies its share; no truncation)."""
        return Shared(self.ring.mul(self.s0, c), self.ring.mul(self.s1, c), self.ring)

    def sum(self, axis) -> "Shared":
        return Shared(self.ring.reduce(self.s0.sum(axis=axis, dtype=U64)),
                      self.ring.reduce(self.s1.sum(axis=axis, dtype=U64)), self.ring)


def share(ring: Ring, value, rng: np.random.Generator, encoded: bool = False) -> Shared:
    """Fresh shares of ``value`` (floats, encoded with :meth:`Ring.encode`, or ring elements if ``encoded``)."""
    v = ring.reduce(value) if encoded else ring.encode(value)
    s0 = ring.random(np.shape(v), rng)
    return Shared(s0, ring.sub(v, s0), ring)


class Dealer:
    """The trusted dealer of the preprocessing model: Beaver triples, and the ideal functionalities (exact
    truncation, comparison, softmax) that this small protocol does not implement as circuits."""

    def __init__(self, ring: Ring, rng: np.random.Generator):
        self.ring, self.rng = ring, rng

    def _share(self, v):
        return share(self.ring, v, self.rng, encoded=True)

    def triple(self, shape_x, shape_y, matmul: bool):
        a, b = self.ring.random(shape_x, self.rng), self.ring.random(shape_y, self.rng)
        c = self.ring.matmul(a, b) if matmul else self.ring.mul(a, b)
        return self._share(a), self._share(b), self._share(c)


class Adversary:
    """Party 1, actively corrupt. It deviates as its :class:`~covert_mpc.deviations.Deviation` list says
    (scheduled by :func:`train_secure` each step), or as low-level hooks set with :meth:`set` say.

    Hooks, each a ring array added to (or XORed into) what party 1 holds or sends at a named place:
    ``('wire', name)``: its share of a wire; ``('open_left', product)`` / ``('open_right', product)``: the value it
    contributes when ``d = x - a`` / ``e = y - b`` of a Beaver product is opened; ``('bit_xor', name)``: its Boolean
    share of a comparison bit; ``('bit_add', name)``: its arithmetic share of that bit. Every use is logged in
    :attr:`log` (``(step, hook, site)``).
    """

    def __init__(self, deviations=()):
        self.deviations = list(deviations)
        for d in self.deviations:
            if not isinstance(d, Deviation):
                raise TypeError(f"Adversary takes Deviation objects, got {type(d).__name__}")
            if d.kind == "weight":
                raise ValueError("a 'weight' deviation (gradient scaling/zeroing by a loss weight) has no direct "
                                 "share-level form in this protocol: use error('output_error', ...) or "
                                 "offset_relu(...), its additive realisations")
        self.hooks: dict = {}
        self.step = None
        self.log: list = []

    def set(self, hook: str, site: str, array) -> None:
        self.hooks[(hook, site)] = array

    def clear(self) -> None:
        self.hooks = {}

    def take(self, hook: str, site: str):
        arr = self.hooks.get((hook, site))
        if arr is not None:
            self.log.append((self.step, hook, site))
        return arr

    def schedule(self, arrays: StepArrays, ring: Ring, lr: float) -> None:
        """Turn one step's deviation arrays into share-level hooks (called by :func:`train_secure`)."""
        self.clear()
        if not arrays.any:
            return
        for name, arr in (("hidden", arrays.hidden), ("logits", arrays.logits),
                          ("output_error", arrays.output_error)):
            if np.any(arr):
                self.set("wire", name, ring.encode(arr))
        if np.any(arrays.input_shift):
            self.set("open_left", "input", ring.encode(arrays.input_shift))
        if np.any(arrays.flip):
            self.set("bit_xor", "relu", arrays.flip.astype(U64))
        if np.any(arrays.offset):
            if not np.all(arrays.offset == np.round(arrays.offset)):
                raise ValueError("in the protocol the comparison bit is an integer ring element: offsets b -> "
                                 "b + delta need integer delta")
            self.set("bit_add", "relu", ring.from_signed(arrays.offset.astype(np.int64)))
        for p, s in arrays.grad_shift.items():
            if np.any(s):
                self.set("wire", p, ring.encode(-lr * s))


class Protocol:
    """The two parties, the dealer and (optionally) the adversary, with the operations of the training code."""

    def __init__(self, ring: Ring, seed: int = 0, adversary: Adversary | None = None, truncation: str = "exact"):
        if truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        self.ring = ring
        self.rng = np.random.default_rng(seed)
        self.dealer = Dealer(ring, np.random.default_rng(seed + 10_007))
        self.adversary = adversary
        self.truncation = truncation
        self.opened: dict = {}   # last opened (d, e) per product site, for inspection

    def share(self, value, encoded: bool = False) -> Shared:
        return share(self.ring, value, self.rng, encoded=encoded)

    def _hook(self, hook, site):
        return None if self.adversary is None or site is None else self.adversary.take(hook, site)

    def wire(self, name: str, x: Shared) -> Shared:
        """A named wire: the adversary may add an error to its share."""
        err = self._hook("wire", name)
        if err is None:
            return x
        return Shared(x.s0, self.ring.add(x.s1, np.broadcast_to(err, x.shape)), self.ring)

    def _open(self, v0, v1, hook, site):
        err = self._hook(hook, site)
        if err is not None:
            v1 = self.ring.add(v1, np.broadcast_to(err, v1.shape))
        return self.ring.add(v0, v1)

    def _beaver(self, x: Shared, y: Shared, matmul: bool, site: str | None):
        r = self.ring
        a, b, c = self.dealer.triple(x.shape, y.shape, matmul)
        d = self._open(r.sub(x.s0, a.s0), r.sub(x.s1, a.s1), "open_left", site)
        e = self._open(r.sub(y.s0, b.s0), r.sub(y.s1, b.s1), "open_right", site)
        if site is not None:
            self.opened[site] = (d, e)
        op = r.matmul if matmul else r.mul
        z0 = r.add(r.add(c.s0, op(d, b.s0)), r.add(op(a.s0, e), op(d, e)))
        z1 = r.add(c.s1, r.add(op(d, b.s1), op(a.s1, e)))
        return Shared(z0, z1, r)

    def mul(self, x: Shared, y: Shared, site: str | None = None) -> Shared:
        """Elementwise product (no truncation: the result is at the sum of the operands' scales)."""
        return self._beaver(x, y, False, site)

    def matmul(self, x: Shared, y: Shared, site: str | None = None) -> Shared:
        """Matrix product (no truncation)."""
        return self._beaver(x, y, True, site)

    def trunc(self, x: Shared) -> Shared:
        """Divide by 2^f (``'exact'``: dealer functionality, round half up; ``'local'``: SecureML)."""
        r = self.ring
        if self.truncation == "exact":
            return share(r, r.shift_right(x.reveal()), self.dealer.rng, encoded=True)
        t0 = r.reduce(x.s0 >> U64(r.f))
        t1 = r.neg(r.reduce(r.neg(x.s1) >> U64(r.f)))
        return Shared(t0, t1, r)

    def relu_bit(self, z: Shared, site: str = "relu") -> Shared:
        """Arithmetic shares of ``b = [z >= 0]`` (integer 0/1, not fixed-point): ideal comparison to XOR shares,
        the adversary's Boolean hook, Beaver B2A, the adversary's arithmetic hook."""
        r = self.ring
        bit = (r.signed(z.reveal()) >= 0).astype(U64)
        b0 = self.dealer.rng.integers(0, 2, size=bit.shape, dtype=np.uint64)
        b1 = bit ^ b0
        flip = self._hook("bit_xor", site)
        if flip is not None:
            b1 = b1 ^ np.broadcast_to(flip, b1.shape)
        # B2A: b = b0 + b1 - 2 b0 b1, with b0 input by party 0 and b1 by party 1 (as arithmetic sharings)
        zero = np.zeros(bit.shape, dtype=U64)
        A0, A1 = Shared(b0.copy(), zero, r), Shared(zero.copy(), b1.copy(), r)
        prod = self.mul(A0, A1)
        b = (A0 + A1) - prod.mul_public(U64(2))
        off = self._hook("bit_add", site)
        if off is not None:
            b = Shared(b.s0, r.add(b.s1, np.broadcast_to(off, b.shape)), r)
        return b

    def softmax(self, z: Shared) -> Shared:
        """Ideal softmax functionality over the last axis (float64), resharing the encoded probabilities."""
        v = z.decode()
        v = v - v.max(axis=-1, keepdims=True)
        p = np.exp(v)
        p /= p.sum(axis=-1, keepdims=True)
        return share(self.ring, self.ring.encode(p), self.dealer.rng, encoded=True)


# -------------------------------------------------------------------------------------------------- training

@dataclasses.dataclass
class SecureRun:
    params: dict           # revealed final parameters (float64, decoded)
    config: object
    steps: int
    adversary_log: list


def train_secure(x, y, config, deviations=(), params=None, batches=None, n_classes: int = 10,
                 truncation: str = "exact", seed: int = 0, step_offset: int = 0) -> SecureRun:
    """SGD on secret-shared data, as :func:`covert_mpc.plaintext.train` computes in the clear.

    ``x`` float [N, D] (encoded and shared by the data owners), ``y`` int labels. ``batches`` defaults to
    :func:`covert_mpc.models.schedule`; ``params`` to :func:`covert_mpc.models.init_params`. The public scaling of
    the output error by ``lr / batch_size`` is a public-constant product followed by one truncation; every product
    of two fixed-point values is truncated once. ``config.arithmetic`` is ignored (the protocol is fixed-point).
    """
    ring = Ring(config.k, config.f)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    d = x.shape[1]
    dm = models.dims(config, d, n_classes)
    if params is None:
        params = models.init_params(config, d, n_classes)
    if batches is None:
        batches = models.schedule(len(x), config.batch_size, config.epochs, config.seed)
    adversary = Adversary(deviations)
    proto = Protocol(ring, seed=seed, adversary=adversary, truncation=truncation)
    X = proto.share(x)
    Y = proto.share(np.eye(n_classes)[y])
    P = {k: proto.share(v) for k, v in params.items()}
    for t, rows in enumerate(batches):
        step = t + step_offset
        adversary.step = step
        arrays = step_arrays(deviations, step, rows, dm)
        adversary.schedule(arrays, ring, config.lr)
        if not np.all(arrays.weight == 1.0):
            raise ValueError("the protocol trains with public example weights 1 (see Adversary)")
        P = _secure_step(proto, P, X[rows], Y[rows], config, len(rows))
    return SecureRun({k: v.decode() for k, v in P.items()}, config, len(batches), adversary.log)


def _secure_step(proto: Protocol, P: dict, Xb: Shared, Yb: Shared, config, B: int) -> dict:
    r = proto.ring

    def linear(inp, W, b, site):
        return proto.trunc(proto.matmul(inp, W, site=site)) + Shared(
            np.broadcast_to(b.s0, (B,) + b.shape), np.broadcast_to(b.s1, (B,) + b.shape), r)

    coef = r.encode(config.lr / B)
    if config.arch == "lr":
        z = proto.wire("logits", linear(Xb, P["W"], P["b"], "input"))
        e = proto.wire("output_error", proto.softmax(z) - Yb)
        e = proto.trunc(e.mul_public(coef))
        gW = proto.trunc(proto.matmul(Xb.T, e, site="grad_W"))
        gb = e.sum(axis=0)
        return {"W": proto.wire("W", P["W"] - gW), "b": proto.wire("b", P["b"] - gb)}
    z1 = proto.wire("hidden", linear(Xb, P["W1"], P["b1"], "input"))
    bit = proto.relu_bit(z1, "relu")
    h = proto.mul(bit, z1, site="relu_fwd")          # integer bit * fixed-point: no truncation
    z2 = proto.wire("logits", linear(h, P["W2"], P["b2"], "hidden_out"))
    e = proto.wire("output_error", proto.softmax(z2) - Yb)
    e = proto.trunc(e.mul_public(coef))
    gW2 = proto.trunc(proto.matmul(h.T, e, site="grad_W2"))
    gb2 = e.sum(axis=0)
    dh = proto.trunc(proto.matmul(e, P["W2"].T, site="grad_h"))
    dz1 = proto.mul(bit, dh, site="relu_bwd")        # the backward pass reuses the same shared bit
    gW1 = proto.trunc(proto.matmul(Xb.T, dz1, site="grad_W1"))
    gb1 = dz1.sum(axis=0)
    return {"W1": proto.wire("W1", P["W1"] - gW1), "b1": proto.wire("b1", P["b1"] - gb1),
            "W2": proto.wire("W2", P["W2"] - gW2), "b2": proto.wire("b2", P["b2"] - gb2)}

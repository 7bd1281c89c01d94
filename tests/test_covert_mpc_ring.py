"""covert_mpc: the ring, the protocol's building blocks and the adversary's share-level deviations (NumPy only)."""
import numpy as np
import pytest

from covert_mpc.deviations import Deviation, error, offset_relu, step_arrays, weight
from covert_mpc.protocol import Adversary, Protocol, share
from covert_mpc.ring import Ring


@pytest.mark.parametrize("k,f,msg", [(16, 16, "k = 16 <= f = 16"), (8, 16, "k = 8 <= f = 16"), (64, 0, "f = 0"),
                                     (65, 16, "k = 65"), (64.0, 16, "k must be an integer")])
def test_bad_rings_are_refused(k, f, msg):
    with pytest.raises(ValueError, match=msg):
        Ring(k, f)


@pytest.mark.parametrize("k,f", [(64, 16), (31, 16), (64, 13)])
def test_encode_decode_and_overflow(k, f):
    r = Ring(k, f)
    x = np.concatenate([[0.0, 1.5, -2.25, 1234.5678, -0.3], np.random.default_rng(0).uniform(-100, 100, 1000)])
    assert np.max(np.abs(r.decode(r.encode(x)) - x)) <= 2.0 ** -(f + 1)     # round to nearest
    assert r.decode(r.encode([2.0 ** -(f + 1), -(2.0 ** -(f + 1))])).tolist() == [2.0 ** -f, 0.0]  # half up
    assert np.all(r.encode(x) <= int(r.mask))
    with pytest.raises(ValueError, match="overflows the ring"):
        r.encode([r.limit * 1.01])
    # in wrap mode the value wraps around as in the protocol: limit + 1 reads as -limit + 1
    assert r.decode(r.encode([r.limit + 1.0], wrap=True))[0] == -r.limit + 1.0


@pytest.mark.parametrize("k", [64, 31])
def test_share_error_decodes_to_e_over_2f_exactly(k):
    r = Ring(k, 16)
    rng = np.random.default_rng(0)
    x = rng.normal(size=100) * 50
    sh = share(r, x, rng)
    e = rng.integers(-10 ** 6, 10 ** 6, size=100)
    sh.s1 = r.add(sh.s1, r.from_signed(e))
    np.testing.assert_array_equal(sh.decode() - r.decode(r.encode(x)), e / 2.0 ** 16)


@pytest.mark.parametrize("k", [64, 31])
def test_adding_half_the_ring_flips_sign_and_magnitude(k):
    """+2^(k-1) on a share: x >= 0 decodes to x - 2^(k-f-1), x < 0 to x + 2^(k-f-1)."""
    r = Ring(k, 16)
    rng = np.random.default_rng(1)
    x = r.quantize(np.array([0.0, 3.5, -3.5, 1000.25, -0.125]))
    sh = share(r, x, rng)
    sh.s1 = r.add(sh.s1, r.from_signed(np.int64(1) << np.int64(k - 1)) if k < 64 else np.uint64(1 << 63))
    want = np.where(x >= 0, x - r.limit, x + r.limit)
    np.testing.assert_array_equal(sh.decode(), want)


@pytest.mark.parametrize("matmul", [False, True])
def test_shifted_beaver_opening_gives_x_plus_delta_times_y(matmul):
    r = Ring()
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(4, 4) if matmul else (3, 4))
    delta = np.zeros((3, 4))
    delta[1, 2] = 7.0
    adv = Adversary()
    adv.set("open_left", "p", r.encode(delta))
    proto = Protocol(r, adversary=adv)
    z = (proto.matmul if matmul else proto.mul)(proto.share(x), proto.share(y), site="p").reveal()
    op = r.matmul if matmul else r.mul
    np.testing.assert_array_equal(z, op(r.add(r.encode(x), r.encode(delta)), r.encode(y)))   # bit-exact
    honest = (Protocol(r).matmul if matmul else Protocol(r).mul)
    assert not np.array_equal(z, honest(share(r, x, rng), share(r, y, rng)).reveal())
    # the right operand: x * (y + delta)
    adv2 = Adversary()
    adv2.set("open_right", "p", r.encode(delta[:, :4] if not matmul else np.eye(4)[:4] * 3.0))
    proto2 = Protocol(r, adversary=adv2)
    d2 = delta[:, :4] if not matmul else np.eye(4) * 3.0
    z2 = (proto2.matmul if matmul else proto2.mul)(proto2.share(x), proto2.share(y), site="p").reveal()
    np.testing.assert_array_equal(z2, op(r.encode(x), r.add(r.encode(y), r.encode(d2))))


@pytest.mark.parametrize("truncation", ["exact", "local"])
def test_products_and_truncation_within_2_to_minus_f_per_operation(truncation):
    r = Ring()
    rng = np.random.default_rng(3)
    proto = Protocol(r, truncation=truncation)
    x, y = r.quantize(rng.uniform(-3, 3, (50, 20))), r.quantize(rng.uniform(-3, 3, (20, 10)))
    X, Y = proto.share(x), proto.share(y)
    assert np.max(np.abs(proto.trunc(proto.matmul(X, Y)).decode() - x @ y)) <= 2.0 ** -16
    assert np.max(np.abs(proto.trunc(proto.mul(X, X)).decode() - x * x)) <= 2.0 ** -16
    # a chain of n products: error within n * 2^-f of the float chain (factors of magnitude < 1)
    v = r.quantize(rng.uniform(-1, 1, 200))
    V, acc, ref = proto.share(v), proto.share(v), v.copy()
    for _ in range(5):
        acc = proto.trunc(proto.mul(acc, V))
        ref = ref * v
    assert np.max(np.abs(acc.decode() - ref)) <= 5 * 2.0 ** -16


def test_local_truncation_rare_error_rate():
    """SecureML's local truncation of a value |v| < 2^l (at scale 2^2f) is right to one unit except with
    probability at most 2^(l+1-k) (for uniform |v| about a quarter of that), when it is off by about 2^(k-f)."""
    r, l = Ring(24, 8), 16
    rng = np.random.default_rng(4)
    v = rng.integers(-(2 ** l) + 1, 2 ** l, 200_000)
    sh = share(r, r.from_signed(v), rng, encoded=True)
    exact = np.floor(v / 2.0 ** 8 + 0.5)
    got = r.signed(Protocol(r, truncation="local").trunc(sh).reveal())
    err = np.abs(got - exact)
    big = err > 2
    bound = 2.0 ** (l + 1 - r.k)
    assert 0.1 * bound < big.mean() <= bound, (big.mean(), bound)
    assert np.all(err[~big] <= 1)
    assert np.allclose(err[big], 2.0 ** (r.k - r.f), rtol=0.01)
    np.testing.assert_array_equal(r.signed(Protocol(r, truncation="exact").trunc(sh).reveal()), exact)


def test_comparison_bit_flip_and_offset():
    r = Ring()
    rng = np.random.default_rng(5)
    z = r.quantize(rng.normal(size=(4, 6)))
    b = (z >= 0).astype(np.int64)
    proto = Protocol(r)
    np.testing.assert_array_equal(r.signed(proto.relu_bit(proto.share(z)).reveal()), b)
    flip = np.zeros((4, 6), np.uint64)
    flip[0, :] = 1
    adv = Adversary()
    adv.set("bit_xor", "relu", flip)
    adv.set("bit_add", "relu", r.from_signed(np.full((4, 6), 0, np.int64) + np.eye(4, 6, dtype=np.int64) * 1000))
    proto = Protocol(r, adversary=adv)
    got = r.signed(proto.relu_bit(proto.share(z)).reveal())
    want = np.where(flip == 1, 1 - b, b) + np.eye(4, 6, dtype=np.int64) * 1000
    np.testing.assert_array_equal(got, want)
    # ReLU = b * z with the offset bit: (b + delta) z, exactly
    h = proto.mul(share(r, r.from_signed(want), rng, encoded=True), proto.share(z)).decode()
    np.testing.assert_array_equal(h, want * z)


def test_adversary_validation_and_step_arrays():
    with pytest.raises(ValueError, match="no direct share-level form"):
        Adversary([weight(10.0, examples=[1])])
    with pytest.raises(ValueError, match="unknown deviation kind"):
        Deviation("scale", None)
    with pytest.raises(ValueError, match="acts on"):
        error("relu", 1.0)
    dims = {"D": 3, "H": 2, "C": 4, "shapes": {"W1": (3, 2)}}
    a = step_arrays([error("logits", 2.0, steps=1, examples=[7], units=3), offset_relu(5, examples=[9], units=1)],
                    1, np.array([9, 7, 8]), dims)
    assert a.logits[1, 3] == 2.0 and a.logits.sum() == 2.0 and a.offset[0, 1] == 5 and a.offset.sum() == 5
    assert not step_arrays([error("logits", 2.0, steps=1)], 0, np.array([1]), dims).any
    r = Ring()
    adv = Adversary()
    a.offset[0, 1] = 0.5
    with pytest.raises(ValueError, match="integer delta"):
        adv.schedule(a, r, 0.1)

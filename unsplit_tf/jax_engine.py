"""UnSplit's inversion + stealing engine transcribed to pure JAX (for timing on a machine without TensorFlow).

Mirrors :class:`unsplit_tf.attacks._InversionEngine` with ``optimizer='torch'`` as
:func:`unsplit_tf.attacks._run_engine` drives it (the batched inversion, spec §5): per target b its own x~
(constant 0.5 start), its own copy of the clone's layers 0..d and two PyTorch-exact AMSGrad Adams (lr 1e-3,
betas (0.9, 0.999), eps 1e-8) re-created for the call; ``main_iters`` rounds of ``input_iters`` steps on x~
(MSE + lambda_tv*TV + lambda_l2*mean(x~^2)) then ``model_iters`` steps on the clone copy (MSE only, x~ fixed);
one step counter per optimizer, counting across rounds as in the TF engine. The objective of the batch is the
sum of the per-target objectives, so each target follows its single-target trajectory; here that is built in:
the single-target run is written once and ``jax.vmap``-ed over the target axis, and the whole run is one
``jax.jit`` (``lax.fori_loop`` for the three loops).

Layouts are the TF engine's internal ones: NCHW images, PyTorch parameter layouts (conv [O, I, kh, kw], linear
[out, in]) with a leading target axis, i.e. what ``F.keras_to_torch`` produces from the Keras clone.

It imports only JAX, NumPy and the TensorFlow-free layer tables (:mod:`unsplit_tf.layers`).

Differences from the TF engine (none changes the mathematics):

* Convolutions are ``lax.conv_general_dilated`` (NCHW/OIHW, per target; under ``vmap`` a grouped convolution),
  not the TF engine's im2col + matmul with a custom col2im gradient, and the clone phase does not precompute
  the first layer's patch matrix. Same products, different summation order: float32 rounding differs.
* Convolutions and matrix products run at ``precision='highest'`` by default, so a GPU does not silently
  switch float32 to TF32 (the TF engine on a CPU is plain float32).
* Adam's bias corrections ``lr / (1 - b1^t)`` and ``sqrt(1 - b2^t)`` are computed in float64 with NumPy for every
  step number ahead of time and cast to float32 (JAX runs without float64 by default); the TF engine computes the
  same float64 values in the graph and casts them. Step counters are int32 (the TF engine's int64); at most
  ``main_iters * max(input_iters, model_iters)`` steps, far below 2^31.
* Only ``optimizer='torch'``, float32, no ``clamp_x`` and the constant 0.5 start (the faithful settings); the
  Keras Adam rule, float64, clamping and ``_run_engine``'s ``x0`` are not transcribed. Iteration counts are
  static (a new schedule recompiles); the TF engine takes them as loop bounds at run time.
* The max-pool keeps the TF engine's tie rule (gradient to the first maximum of each 2x2 window in row-major
  order) through a ``jax.custom_vjp``; ReLU's gradient at 0 is 0 (``jax.nn.relu``) as in TF.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from unsplit_tf.layers import ARCHITECTURES

BETA1 = 0.9
BETA2 = 0.999
TORCH_EPS = 1e-8
TV_PAPER_EPS = 1e-8



def _as_tuple(spec):
    if spec.kind == "conv":
        return ("conv", spec.in_units, spec.out_units, spec.kernel, spec.padding)
    if spec.kind == "dense":
        return ("dense", spec.in_units, spec.out_units)
    return (spec.kind,)


#: The layer tables of :data:`unsplit_tf.layers.ARCHITECTURES` as (kind, in_units, out_units, kernel, padding).
LAYERS = {arch: tuple(_as_tuple(spec) for spec in specs) for arch, specs in ARCHITECTURES.items()}
IMAGE_SHAPES_NCHW = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
TV_FORMS = ("code", "paper")


def check_arch_split(arch: str, split_depth: int) -> int:
    """The TF attack's range check: 0 <= split < last layer index (the last layer is never on the client)."""
    if arch not in LAYERS:
        raise ValueError(f"architecture {arch!r} unknown; expected one of {sorted(LAYERS)}")
    d = int(split_depth)
    last = len(LAYERS[arch]) - 1
    if d != split_depth or not 0 <= d < last:
        raise ValueError(f"split depth {split_depth!r} out of range for {arch}: expected 0-{last - 1}")
    return d


def param_shapes(arch: str, split_depth: int):
    """PyTorch-layout shapes of the parameters of layers 0..split_depth, in order (weight, bias, ...)."""
    shapes = []
    for spec in LAYERS[arch][:check_arch_split(arch, split_depth) + 1]:
        if spec[0] == "conv":
            _, cin, cout, k, _ = spec
            shapes += [(cout, cin, k, k), (cout,)]
        elif spec[0] == "dense":
            _, fin, fout = spec
            shapes += [(fout, fin), (fout,)]
    return shapes


def output_shape(arch: str, split_depth: int):
    """Shape of the smashed data (client output) of one image, NCHW without the batch axis."""
    split = check_arch_split(arch, split_depth)
    c, h, w = IMAGE_SHAPES_NCHW[arch]
    flat = None
    for spec in LAYERS[arch][:split + 1]:
        if spec[0] == "conv":
            _, _, c, k, pad = spec
            if pad == "valid":
                h, w = h - k + 1, w - k + 1
        elif spec[0] == "pool":
            h, w = h // 2, w // 2
        elif spec[0] == "dense":
            flat = spec[2]
    return (flat,) if flat is not None else (c, h, w)


def init_client_params(arch: str, split_depth: int, seed: int = 0, batch: int | None = None):
    """PyTorch's default initialisation in NumPy (float32, PyTorch layout): weight and bias both
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5) gives exactly that bound for the weight).
    Not PyTorch's random stream. ``batch``: repeat every parameter over a leading target axis."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in param_shapes(arch, split_depth):
        if len(shape) == 1:  # the bias shares its weight's fan_in
            fan_in = int(np.prod(out[-1].shape[1:]))
        else:
            fan_in = int(np.prod(shape[1:]))
        bound = 1.0 / math.sqrt(fan_in)
        out.append(rng.uniform(-bound, bound, shape).astype(np.float32))
    if batch is not None:
        out = [np.repeat(p[None], batch, axis=0) for p in out]
    return out


# ------------------------------------------------------------------------------------------------ layers
@jax.custom_vjp
def max_pool_2x2_first(x):
    """2x2/stride-2 max pooling of [..., H, W]; the gradient goes to the first (row-major) maximum of a window,
    the tie rule of TensorFlow's and PyTorch's CPU kernels (XLA's select-and-scatter leaves ties unspecified).
    Ties are the rule, not the exception, here: x~ starts constant, so at step 0 every window is a tie."""
    return _pool_fwd(x)[0]


def _pool_fwd(x):
    *lead, h, w = x.shape
    r = x.reshape(tuple(lead) + (h // 2, 2, w // 2, 2))
    top = jnp.max(r, axis=(-3, -1), keepdims=True)
    pos = jnp.array([[0.0, 1.0], [2.0, 3.0]], x.dtype)[:, None, :]  # aligned with the axes (-3, -2, -1)
    first = jnp.min(jnp.where(r == top, pos, jnp.asarray(4.0, x.dtype)), axis=(-3, -1), keepdims=True)
    mask = (pos == first).astype(x.dtype)
    return top.reshape(tuple(lead) + (h // 2, w // 2)), mask


def _pool_bwd(mask, g):
    full = mask * g[..., :, None, :, None]
    *lead, h2, _, w2, _ = full.shape
    return (full.reshape(tuple(lead) + (2 * h2, 2 * w2)),)


max_pool_2x2_first.defvjp(_pool_fwd, _pool_bwd)


def forward(arch: str, split_depth: int, params, x, precision="highest"):
    """Layers 0..split_depth of ``arch`` for ONE image x [C, H, W] and one parameter set (no batch axes)."""
    it = iter(params)
    for spec in LAYERS[arch][:split_depth + 1]:
        kind = spec[0]
        if kind == "conv":
            w, b = next(it), next(it)
            k, pad = spec[3], spec[4]
            padding = "VALID" if pad == "valid" else [(k // 2, k // 2), (k // 2, k // 2)]
            y = lax.conv_general_dilated(x[None], w, (1, 1), padding, dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                         precision=precision)
            x = y[0] + b[:, None, None]
        elif kind == "dense":
            w, b = next(it), next(it)
            if x.ndim != 1:
                x = x.reshape(-1)  # C, H, W order: PyTorch's flatten
            x = jnp.dot(w, x, precision=precision) + b
        elif kind == "relu":
            x = jax.nn.relu(x)  # gradient 0 at 0, as tf.nn.relu (jnp.maximum would split a tie)
        elif kind == "pool":
            x = max_pool_2x2_first(x)
        elif kind == "sigmoid":
            x = jax.nn.sigmoid(x)
    return x


def tv_code(x):
    """``util.tv_code_per_sample`` of one NCHW image [C, H, W]: squared, anisotropic, mean-normalised."""
    c, h, w = x.shape
    dh = x[:, 1:, :] - x[:, :-1, :]
    dw = x[:, :, 1:] - x[:, :, :-1]
    return jnp.sum(dh * dh) / float(c * (h - 1) * w) + jnp.sum(dw * dw) / float(c * h * (w - 1))


def tv_paper(x, reduction="sum"):
    """``util.tv_paper_per_sample`` of one image [C, H, W] (isotropic, eps 1e-8 inside the square root)."""
    c, h, w = x.shape
    dh = x[:, 1:, :-1] - x[:, :-1, :-1]
    dw = x[:, :-1, 1:] - x[:, :-1, :-1]
    t = jnp.sum(jnp.sqrt(dh * dh + dw * dw + jnp.asarray(TV_PAPER_EPS, x.dtype)))
    return t if reduction == "sum" else t / float(c * (h - 1) * (w - 1))


# ---------------------------------------------------------------------------------------------------- Adam
def _bias_tables(n_steps: int, lr: float):
    """float32 (lr / (1 - b1^t), sqrt(1 - b2^t)) for t = 0..n_steps, computed in float64 (PyTorch's Python floats,
    ``optim._bias_terms``); row 0 is unused."""
    t = np.arange(n_steps + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        step_size = lr / (1.0 - np.power(BETA1, t))
    bc2_sqrt = np.sqrt(1.0 - np.power(BETA2, t))
    step_size[0] = 0.0
    return jnp.asarray(step_size.astype(np.float32)), jnp.asarray(bc2_sqrt.astype(np.float32))


def _adam(p, g, m, v, vmax, step_size, bc2_sqrt):
    """``optim.torch_adam_update`` (amsgrad=True), same operations in the same order."""
    dt = p.dtype
    m = m * jnp.asarray(BETA1, dt) + g * jnp.asarray(1.0 - BETA1, dt)
    v = v * jnp.asarray(BETA2, dt) + (g * g) * jnp.asarray(1.0 - BETA2, dt)
    vmax = jnp.maximum(vmax, v)
    denom = jnp.sqrt(vmax) / bc2_sqrt + jnp.asarray(TORCH_EPS, dt)
    return p - step_size * (m / denom), m, v, vmax


# -------------------------------------------------------------------------------------------------- engine
def _single_run(arch, split, main_iters, input_iters, model_iters, tv_form, tv_reduction, lr, precision):
    """The run for one target: (params list, target, lam_tv, lam_l2) -> (x_hat [C, H, W], params)."""
    x_size, x_bc2 = _bias_tables(main_iters * input_iters, lr)
    w_size, w_bc2 = _bias_tables(main_iters * model_iters, lr)

    def net(params, x):
        return forward(arch, split, params, x, precision)

    def mse(y, target):
        d = y - target
        return jnp.mean(d * d)

    def tv(x):
        return tv_code(x) if tv_form == "code" else tv_paper(x, tv_reduction)

    def run(params, target, lam_tv, lam_l2):
        params = list(params)
        x = jnp.full(IMAGE_SHAPES_NCHW[arch], 0.5, target.dtype)
        zeros = [jnp.zeros_like(p) for p in params]
        x_state = (x, jnp.zeros_like(x), jnp.zeros_like(x), jnp.zeros_like(x), jnp.int32(0))
        p_state = (params, zeros, zeros, zeros, jnp.int32(0))

        def input_loss(x, params):
            return mse(net(params, x), target) + lam_tv * tv(x) + lam_l2 * jnp.mean(x * x)

        def model_loss(params, x):
            return mse(net(params, x), target)

        def input_phase(x_state, params):
            def body(_, s):
                x, m, v, vm, t = s
                g = jax.grad(input_loss)(x, params)
                t = t + 1
                x, m, v, vm = _adam(x, g, m, v, vm, x_size[t], x_bc2[t])
                return x, m, v, vm, t
            return lax.fori_loop(0, input_iters, body, x_state)

        def model_phase(p_state, x):
            def body(_, s):
                ps, ms, vs, vms, t = s
                grads = jax.grad(model_loss)(ps, x)
                t = t + 1
                new = [_adam(p, g, m, v, vm, w_size[t], w_bc2[t]) for p, g, m, v, vm in zip(ps, grads, ms, vs, vms)]
                return [n[0] for n in new], [n[1] for n in new], [n[2] for n in new], [n[3] for n in new], t
            return lax.fori_loop(0, model_iters, body, p_state)

        def round_body(_, s):
            x_state, p_state = s
            x_state = input_phase(x_state, p_state[0])
            p_state = model_phase(p_state, x_state[0])
            return x_state, p_state

        x_state, p_state = lax.fori_loop(0, main_iters, round_body, (x_state, p_state))
        return x_state[0], p_state[0]

    return run


@functools.lru_cache(maxsize=None)
def compiled_run(arch, split, main_iters, input_iters, model_iters, tv_form="code", tv_reduction="sum", lr=1e-3,
                 precision="highest"):
    """The jitted, target-batched run: ``fn(params [list of [B, ...]], targets [B, ...], lam_tv, lam_l2)``.
    Cached per static configuration (a new batch size or dtype retraces, as ``jax.jit`` does)."""
    single = _single_run(arch, split, main_iters, input_iters, model_iters, tv_form, tv_reduction, lr, precision)
    return jax.jit(jax.vmap(single, in_axes=(0, 0, None, None)))


def invert_batched(arch, split_depth, params, targets, main_iters, input_iters, model_iters, lambda_tv,
                   lambda_l2=1.0, tv_form="code", lr=1e-3, tv_reduction="sum", precision="highest"):
    """Invert B smashed targets at once, each with its own x~ (0.5 start), clone copy and Adam states.

    Args:
        arch: 'mnist' (MnistNet) or 'cifar' (CifarNet). split_depth: last client layer (flat index, 0..last-1).
        params: PyTorch-layout parameters of layers 0..split_depth, each with a leading target axis B.
        targets: the smashed data [B, ...] (NCHW, or [B, F] after a linear layer).
        main_iters, input_iters, model_iters: the schedule (faithful: 1000, 100, 100).
        lambda_tv, lambda_l2: weights of TV and mean(x~^2) in the input phase. tv_form: 'code' or 'paper'
        (with ``tv_reduction`` 'sum' or 'mean'). lr: both Adams' learning rate.
        precision: of convolutions and products ('highest' = true float32 also on GPUs).
    Returns ``(x_hat [B, C, H, W], params)`` as JAX arrays (float32), params in the input layout.
    """
    split = check_arch_split(arch, split_depth)
    if tv_form not in TV_FORMS:
        raise ValueError(f"tv_form {tv_form!r} unknown; expected one of {TV_FORMS}")
    if tv_reduction not in ("sum", "mean"):
        raise ValueError(f"tv_reduction {tv_reduction!r} unknown; expected 'sum' or 'mean'")
    for name, value in (("main_iters", main_iters), ("input_iters", input_iters), ("model_iters", model_iters)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    targets = jnp.asarray(targets, jnp.float32)
    b = int(targets.shape[0])
    if tuple(targets.shape[1:]) != output_shape(arch, split):
        raise ValueError(f"targets must be [B, {', '.join(map(str, output_shape(arch, split)))}] for {arch} split "
                         f"{split}, got {tuple(targets.shape)}")
    expected = param_shapes(arch, split)
    params = [jnp.asarray(p, jnp.float32) for p in params]
    got = [tuple(p.shape) for p in params]
    if got != [(b,) + s for s in expected]:
        raise ValueError(f"params must have shapes {[(b,) + s for s in expected]} (PyTorch layout, leading target "
                         f"axis), got {got}")
    fn = compiled_run(arch, split, int(main_iters), int(input_iters), int(model_iters), tv_form, tv_reduction,
                      float(lr), precision)
    x_hat, out = fn(params, targets, jnp.float32(lambda_tv), jnp.float32(lambda_l2))
    return x_hat, list(out)


__all__ = ["invert_batched", "compiled_run", "forward", "max_pool_2x2_first", "tv_code", "tv_paper", "LAYERS",
           "IMAGE_SHAPES_NCHW", "param_shapes", "output_shape", "init_client_params", "check_arch_split"]

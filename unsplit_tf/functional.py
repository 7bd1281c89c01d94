"""The TensorFlow fast path of UnSplit's inversion: a pure-function forward of MnistNet/CifarNet (im2col, NCHW).

Optional and TensorFlow-only (imported only under TensorFlow, where it is the default: ``InversionConfig(engine=
'fast')``). The attack itself (:mod:`unsplit_tf.attacks`) is written once in ``keras.ops``; its generic clone
forward runs the Keras layers on any backend. This forward computes the same function (tested against it and
against the golden trajectories) and is faster on a CPU under XLA. The Keras models (:mod:`unsplit_tf.models`)
hold the variables and run in NHWC; the attack loops carry the clone's parameters as plain tensors and evaluate
the network with :func:`forward`, which works on a **batch of models**: every parameter has a leading axis B and
image b goes through model b (the batched inversion gives each target its own clone copy; the faithful
single-target attack is the case B = 1).

Layout: the loops run in **NCHW with PyTorch's parameter layouts** (conv weight [out, in, kh, kw], linear weight
[out, in]); :func:`keras_to_torch` / :func:`torch_to_keras` convert the Keras variables on the way in and out.
Reasons, all value-preserving (the tests compare against the Keras layers):

* Convolutions are ``im2col`` + one matrix product per model, ``W[O, C*k*k] @ cols[C*k*k, H*W]``. With the taps
  on a major axis every im2col copy (and its gradient, a sum of padded blocks) moves contiguous rows; in NHWC
  with a channel-minor im2col, XLA on a CPU spent most of a step scattering single floats.
* Flattening before the first linear layer is a plain reshape (PyTorch's C,H,W order by construction).
* 2x2 max pooling routes the gradient to the **first** maximal element of each window in row-major order, the
  tie rule of PyTorch's and TensorFlow's CPU kernels. Ties matter: the attack starts from a constant image, so at
  step 0 every window is a tie. Implemented with explicit comparisons, independent of the backend's
  select-and-scatter.
"""
from __future__ import annotations

import tensorflow as tf

from unsplit_tf.models import ARCHITECTURES


def keras_to_torch(value, kind: str):
    """A Keras kernel in PyTorch layout: conv [kh, kw, in, out] -> [out, in, kh, kw]; dense [in, out] -> [out, in].
    Biases pass through. A leading model axis is kept (``value`` of rank 5 / 3 for batched kernels)."""
    r = len(value.shape)
    if kind == "conv_kernel":
        perm = (3, 2, 0, 1) if r == 4 else (0, 4, 3, 1, 2)
    elif kind == "dense_kernel":
        perm = (1, 0) if r == 2 else (0, 2, 1)
    else:
        return value
    return tf.transpose(value, perm)


def torch_to_keras(value, kind: str):
    r = len(value.shape)
    if kind == "conv_kernel":
        perm = (2, 3, 1, 0) if r == 4 else (0, 3, 4, 2, 1)
    elif kind == "dense_kernel":
        perm = (1, 0) if r == 2 else (0, 2, 1)
    else:
        return value
    return tf.transpose(value, perm)


def param_kinds(arch: str, start: int, end: int):
    """Kinds ('conv_kernel', 'bias', 'dense_kernel') of the parameters of layers start..end, in order."""
    out = []
    for s in ARCHITECTURES[arch][start:end + 1]:
        if s.kind == "conv":
            out += ["conv_kernel", "bias"]
        elif s.kind == "dense":
            out += ["dense_kernel", "bias"]
    return out


def _im2col_forward(x, k, ho, wo):
    taps = [x[:, :, i:i + ho, j:j + wo] for i in range(k) for j in range(k)]
    b, c = x.shape[0], x.shape[1]
    return tf.reshape(tf.stack(taps, axis=2), (b, c * k * k, ho * wo))  # rows ordered (c, kh, kw)


def _col2im(cols, shape, k, ho, wo, xla):
    """Adjoint of :func:`_im2col_forward`: add every tap's block back at its offset."""
    b, c, h, w = shape
    d = tf.reshape(cols, (b, c, k * k, ho, wo))
    if xla:
        # In-place accumulation with dynamic-update-slice: every update moves contiguous rows. (A sum of k*k
        # zero-padded blocks evaluates k*k bounds-checked branches per element under XLA's CPU fusion.)
        from tensorflow.compiler.tf2xla.python import xla as tfxla

        buf = tf.zeros(shape, cols.dtype)
        for i in range(k):
            for j in range(k):
                cur = tf.slice(buf, [0, 0, i, j], [b, c, ho, wo])
                buf = tfxla.dynamic_update_slice(buf, cur + d[:, :, i * k + j], tf.constant([0, 0, i, j]))
        return buf
    return tf.add_n([tf.pad(d[:, :, i * k + j], [[0, 0], [0, 0], [i, h - ho - i], [j, w - wo - j]])
                     for i in range(k) for j in range(k)])


def _im2col(x, k, padding, xla=True):
    """[B, C, H, W] -> [B, C*k*k, Ho*Wo], rows ordered (c, kh, kw) like a PyTorch weight row."""
    if padding == "same":
        p = k // 2
        x = tf.pad(x, [[0, 0], [0, 0], [p, p], [p, p]])
    shape = tuple(x.shape)
    ho, wo = shape[2] - k + 1, shape[3] - k + 1

    @tf.custom_gradient
    def im2col(x):
        def grad(g):
            return _col2im(g, shape, k, ho, wo, xla)
        return _im2col_forward(x, k, ho, wo), grad
    return im2col(x), ho, wo


def conv2d(x, weight, bias, padding, xla=True):
    """Per-model stride-1 convolution: x [B, C, H, W], weight [B, O, C, k, k], bias [B, O] -> [B, O, Ho, Wo].

    ``xla``: the caller is compiled with XLA (selects the in-place col2im for the input gradient)."""
    b, o, c, k, _ = weight.shape
    cols, ho, wo = _im2col(x, k, padding, xla)
    y = tf.matmul(tf.reshape(weight, (b, o, c * k * k)), cols)  # [B, O, Ho*Wo]
    return tf.reshape(y, (b, o, ho, wo)) + bias[:, :, None, None]


def im2col_constant(x, weight_shape, padding):
    """Precompute the patch matrix of a fixed input for :func:`conv2d_from_cols` (the clone phase of the attack
    keeps x~ fixed for ``model_iters`` steps): returns ``(cols, cols_t, ho, wo)``."""
    k = weight_shape[-1]
    if padding == "same":
        p = k // 2
        x = tf.pad(x, [[0, 0], [0, 0], [p, p], [p, p]])
    ho, wo = x.shape[2] - k + 1, x.shape[3] - k + 1
    cols = _im2col_forward(x, k, ho, wo)
    return cols, tf.transpose(cols, (0, 2, 1)), ho, wo


def conv2d_from_cols(pre, weight, bias):
    """:func:`conv2d` on a precomputed patch matrix ``pre = im2col_constant(...)``; differentiable in the weights
    only. The weight gradient uses the pre-transposed patches (a plain [O, HW] x [HW, CKK] product per model)."""
    cols, cols_t, ho, wo = pre
    b, o, c, k, _ = weight.shape

    @tf.custom_gradient
    def product(wmat):
        def grad(dy):
            return tf.matmul(dy, cols_t)
        return tf.matmul(wmat, cols), grad
    y = product(tf.reshape(weight, (b, o, c * k * k)))
    return tf.reshape(y, (b, o, ho, wo)) + bias[:, :, None, None]


def dense(x, weight, bias):
    """Per-model linear layer: x [B, in], weight [B, out, in], bias [B, out]."""
    return tf.squeeze(tf.matmul(weight, x[:, :, None]), -1) + bias


@tf.custom_gradient
def max_pool_2x2_first(x):
    """2x2/stride-2 max pooling of [B, C, H, W]; the gradient goes to the first (row-major) maximum."""
    b, c, h, w = x.shape
    r = tf.reshape(x, (b, c, h // 2, 2, w // 2, 2))
    top = tf.reduce_max(r, axis=(3, 5), keepdims=True)
    pos = tf.constant([[0.0, 1.0], [2.0, 3.0]], x.dtype)[None, None, None, :, None, :]  # row-major window order
    first = tf.reduce_min(tf.where(tf.equal(r, top), pos, tf.constant(4.0, x.dtype)), axis=(3, 5), keepdims=True)
    mask = tf.cast(tf.equal(pos, first), x.dtype)

    def grad(g):
        return tf.reshape(mask * g[:, :, :, None, :, None], (b, c, h, w))
    return tf.reshape(top, (b, c, h // 2, w // 2)), grad


def forward(arch: str, params, x, start: int = 0, end: int | None = None, xla: bool = True, first_cols=None):
    """Apply flat layers ``start..end`` (inclusive, absolute indices) of ``arch``, one model per image.

    ``params`` lists the PyTorch-layout parameters [weight, bias, ...] of exactly the layers with parameters in
    start..end (see :func:`param_kinds`), each with a leading model axis B; ``x`` is [B, C, H, W] (or [B, F] when
    starting at a linear layer). ``xla``: the caller is XLA-compiled (False selects a portable col2im).
    ``first_cols``: :func:`im2col_constant` of ``x`` for a first conv layer whose input is a constant (then ``x``
    is not differentiated).
    """
    specs = ARCHITECTURES[arch]
    end = len(specs) - 1 if end is None else end
    first_dense = next(s.index for s in specs if s.kind == "dense")
    it = iter(params)
    for spec in specs[start:end + 1]:
        if spec.index == first_dense and len(x.shape) == 4:
            x = tf.reshape(x, (x.shape[0], -1))
        if spec.kind == "conv":
            if first_cols is not None and spec.index == start:
                x = conv2d_from_cols(first_cols, next(it), next(it))
            else:
                x = conv2d(x, next(it), next(it), spec.padding, xla)
        elif spec.kind == "dense":
            x = dense(x, next(it), next(it))
        elif spec.kind == "relu":
            x = tf.nn.relu(x)
        elif spec.kind == "pool":
            x = max_pool_2x2_first(x)
        elif spec.kind == "sigmoid":
            x = tf.sigmoid(x)
    return x


def nhwc_to_nchw(x):
    return tf.transpose(x, (0, 3, 1, 2)) if len(x.shape) == 4 else x


def nchw_to_nhwc(x):
    return tf.transpose(x, (0, 2, 3, 1)) if len(x.shape) == 4 else x


__all__ = ["forward", "param_kinds", "keras_to_torch", "torch_to_keras", "conv2d", "dense", "max_pool_2x2_first",
           "nhwc_to_nchw", "nchw_to_nhwc"]

"""Regularisers, target selection, test scores and runtime helpers (the original's ``unsplit/util.py``).

Layout: every image tensor here is NHWC (height axis 1, width axis 2, channels axis 3). TV must difference
along height and width; an existing TF port differenced axes 2 and 3 (width and *channels*) of an NHWC tensor,
which the tests guard against with B > 1 and H != W.
"""
from __future__ import annotations

import os

import numpy as np
from keras import ops

from splitnn.data import first_index_per_class  # noqa: F401 (the inversion targets; re-exported)

# ------------------------------------------------------------------------------------------------ regularisers


def mean(x, axis=None):
    """``sum / count``: ``keras.ops.mean`` on JAX accumulates float64 in float32 (Keras 3.15), which moved the
    float64 trajectories by 1e-7 relative; a sum keeps the input's precision on both backends."""
    x = ops.convert_to_tensor(x)
    axes = range(len(x.shape)) if axis is None else ([axis] if isinstance(axis, int) else axis)
    count = 1
    for a in axes:
        count *= int(x.shape[a])
    return ops.sum(x, axis=axis) / ops.convert_to_tensor(count, x.dtype)



def tv_code(x):
    """TV as the original implements it (``unsplit/util.py``, ``TV``): squared, anisotropic, mean-normalised.

    TV = (S_h / (C*(H-1)*W) + S_w / (C*H*(W-1))) / B, where S_h, S_w are the sums of squared differences of
    vertically / horizontally neighbouring pixels over all channels and samples.
    """
    x = ops.convert_to_tensor(x)
    b, h, w, c = x.shape
    dh = x[:, 1:, :, :] - x[:, :-1, :, :]
    dw = x[:, :, 1:, :] - x[:, :, :-1, :]
    sh = ops.sum(dh * dh) / float(c * (h - 1) * w)
    sw = ops.sum(dw * dw) / float(c * h * (w - 1))
    return (sh + sw) / float(b)


def _hw(x, data_format):
    """(x viewed as [B, H, W, C] slicer helpers): returns h, w, c and difference tensors along H and W."""
    if data_format == "NHWC":
        _, h, w, c = x.shape
        return h, w, c, x[:, 1:, :, :] - x[:, :-1, :, :], x[:, :, 1:, :] - x[:, :, :-1, :]
    if data_format == "NCHW":
        _, c, h, w = x.shape
        return h, w, c, x[:, :, 1:, :] - x[:, :, :-1, :], x[:, :, :, 1:] - x[:, :, :, :-1]
    raise ValueError(f"data_format {data_format!r} unknown; expected 'NHWC' or 'NCHW'")


def tv_code_per_sample(x, data_format: str = "NHWC"):
    """:func:`tv_code` of every sample on its own (batch of one each); shape [B]."""
    x = ops.convert_to_tensor(x)
    h, w, c, dh, dw = _hw(x, data_format)
    return (ops.sum(dh * dh, axis=(1, 2, 3)) / float(c * (h - 1) * w)
            + ops.sum(dw * dw, axis=(1, 2, 3)) / float(c * h * (w - 1)))


#: Square-root epsilon of the paper-form TV. Mandatory: x starts as a constant image, where every difference is
#: 0 and the gradient of sqrt would be infinite (NaN in TF).
TV_PAPER_EPS = 1e-8


def tv_paper_per_sample(x, reduction: str = "sum", eps: float = TV_PAPER_EPS, data_format: str = "NHWC"):
    """The paper's isotropic TV (paper §4.2, the TV term of eq. (1)) of every sample; shape [B].

    TV(x) = sum_{c, i<H-1, j<W-1} sqrt((x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2 + eps).
    Choices the paper leaves open, fixed here: both differences are taken on the (H-1)x(W-1) grid where both
    exist; channels are summed; ``reduction='sum'`` (paper-literal) or ``'mean'`` (divided by C*(H-1)*(W-1));
    eps = 1e-8 inside the square root.
    """
    x = ops.convert_to_tensor(x)
    if data_format == "NCHW":
        x = ops.transpose(x, (0, 2, 3, 1))
    _, h, w, c = x.shape
    dh = x[:, 1:, :-1, :] - x[:, :-1, :-1, :]
    dw = x[:, :-1, 1:, :] - x[:, :-1, :-1, :]
    t = ops.sum(ops.sqrt(dh * dh + dw * dw + ops.convert_to_tensor(eps, x.dtype)), axis=(1, 2, 3))
    if reduction == "sum":
        return t
    if reduction == "mean":
        return t / float(c * (h - 1) * (w - 1))
    raise ValueError(f"tv reduction {reduction!r} unknown; expected 'sum' or 'mean'")


def tv_paper(x, reduction: str = "sum", eps: float = TV_PAPER_EPS, batch_reduction: str = "mean"):
    """:func:`tv_paper_per_sample` summed or averaged over the batch (irrelevant at batch 1)."""
    per = tv_paper_per_sample(x, reduction, eps)
    return mean(per) if batch_reduction == "mean" else ops.sum(per)


def l2loss(x):
    """The original's l2 prior: mean(x^2) over all elements (a sum would be 784x too strong on MNIST)."""
    x = ops.convert_to_tensor(x)
    return mean(x * x)


def l2loss_per_sample(x):
    x = ops.convert_to_tensor(x)
    return mean(x * x, axis=tuple(range(1, len(x.shape))))


TV_SCHEDULES = ("code", "paper")


def tv_weight_for(split_depth: int, schedule="code") -> float:
    """lambda_TV for a split depth: 'code' = constant 0.1 (the original), 'paper' = 0.1 for d <= 3, 1.0 for
    d >= 4 (the paper), or a number used as-is."""
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        return float(schedule)
    if schedule == "code":
        return 0.1
    if schedule == "paper":
        return 0.1 if int(split_depth) <= 3 else 1.0
    try:
        return float(schedule)
    except (TypeError, ValueError):
        raise ValueError(f"TV schedule {schedule!r} unknown; expected 'code', 'paper' or a number") from None


def describe_tv(schedule="code", form: str = "code", reduction: str = "sum", split_depth: int | None = None) -> str:
    """One line saying which TV weight schedule and TV form an attack used, for printed tables and demo output.

    ``schedule``: 'code' (the original code: 0.1 at every depth), 'paper' (the paper's §5.1: 0.1 for split depths
    1-3, 1.0 deeper) or a number; ``form``: 'code' (the original ``unsplit/util.py`` ``TV``: squared, anisotropic,
    mean-normalised) or 'paper' (§4.2: isotropic square root, summed or averaged over pixels per ``reduction``).
    With ``split_depth``, the paper schedule's weight at that depth is added."""
    if isinstance(schedule, str) and schedule in TV_SCHEDULES:
        what = {"code": "lambda_TV 0.1 at every depth, the original code's",
                "paper": "lambda_TV 0.1 for depths 1-3 and 1.0 deeper, the paper's"}[schedule]
        text = f"TV schedule {schedule} ({what})"
    else:
        text = f"TV weight {tv_weight_for(1, schedule):g} at every depth (custom)"
    if split_depth is not None and schedule == "paper":
        text += f", lambda_TV {tv_weight_for(split_depth, schedule):g} at depth {int(split_depth)}"
    if form == "code":
        text += ", TV form code (squared, anisotropic, mean-normalised, the original code's)"
    elif form == "paper":
        text += f", TV form paper (isotropic square root, {reduction} over pixels, the paper's)"
    else:
        raise ValueError(f"tv_form {form!r} unknown; expected 'code' or 'paper'")
    return text


# ------------------------------------------------------------------------------------------ post-processing


def normalize(x):
    """The original's CIFAR post-processing: min-max over the **whole** tensor (all channels together);
    all zeros if the range is 0. Works per call, so pass one image (batch of 1) at a time."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(), x.max()
    if hi - lo == 0:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def normalize_per_image(x):
    """:func:`normalize` applied to every image of a batch separately."""
    return np.stack([normalize(xi) for xi in np.asarray(x)])


# -------------------------------------------------------------------------------------------------- targets


def get_examples_by_class(x, y, count: int = 1, num_classes: int = 10):
    """The first ``count`` examples of each class in dataset order, classes in order: (images, labels, indices).

    ``count=1`` gives the original demo's targets. (The original notebook breaks for ``count > 1``; this does
    not.)"""
    y = np.asarray(y).reshape(-1)
    idx = []
    for c in range(num_classes):
        hits = np.flatnonzero(y == c)[:count]
        if hits.size < count:
            raise ValueError(f"class {c} has only {hits.size} examples, {count} requested")
        idx.extend(int(i) for i in hits)
    idx = np.asarray(idx, dtype=np.int64)
    return np.asarray(x)[idx], y[idx], idx


# ---------------------------------------------------------------------------------------------- test score


def repo_sampler_indices(n: int, count: int = 2000, rng=None) -> np.ndarray:
    """The original ``get_test_score`` sampler (``unsplit/util.py``): ``count`` uniform draws *with replacement* whose
    de-duplication test wrongly checks the **loop counter** against the indices drawn so far, skipping a draw
    when the counter is among them. About 1,820 effective draws for n = 10,000 and count = 2,000."""
    rng = np.random.default_rng(rng)
    drawn = []
    seen = set()
    for i in range(int(count)):
        idx = int(rng.integers(0, n))
        if i in seen:  # the original's bug: the counter, not idx, is tested
            continue
        drawn.append(idx)
        seen.add(idx)
    return np.asarray(drawn, dtype=np.int64)


def accuracy(predict, x, y, indices=None, batch_size: int = 500) -> float:
    """Percentage of ``argmax(predict(x)) == y`` over ``indices`` (all when None), evaluated in batches.

    The original evaluates one sample at a time; batching does not change a prediction (no BatchNorm/dropout).
    """
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if indices is None:
        indices = np.arange(len(y))
    indices = np.asarray(indices)
    if indices.size == 0:
        return float("nan")
    correct = 0
    for s in range(0, len(indices), batch_size):
        sel = indices[s:s + batch_size]
        logits = ops.convert_to_numpy(predict(ops.convert_to_tensor(x[sel])))
        correct += int(np.sum(np.argmax(np.asarray(logits), axis=1) == y[sel]))
    return 100.0 * correct / len(indices)


def get_test_score(m1, m2, x, y, split: int, sampler: str = "repo", count: int = 2000, rng=None,
                   batch_size: int = 500) -> float:
    """Accuracy (%) of ``m2(m1(x, end=split), start=split+1)``, the original's ``get_test_score``.

    ``sampler='repo'`` reproduces the original's ~1,820 random draws with replacement (see
    :func:`repo_sampler_indices`); ``sampler='full'`` uses the whole test set (recommended for reporting).
    """
    if sampler == "repo":
        indices = repo_sampler_indices(len(np.asarray(y).reshape(-1)), count, rng)
    elif sampler == "full":
        indices = None
    else:
        raise ValueError(f"sampler {sampler!r} unknown; expected 'repo' or 'full'")

    def predict(xb):
        return m2(m1(ops.cast(xb, m1.dtype), end=split), start=split + 1)
    return accuracy(predict, x, y, indices, batch_size)


# ---------------------------------------------------------------------------------------------- runtime


def configure_threads(intra_op: int | None = 1, inter_op: int | None = 1) -> bool:
    """Set TF's thread pools (call before TF runs its first op). One intra-op thread is best for these tiny
    models on CPU: with two, thread contention made a step many times slower. Returns False when TF was already
    initialised and the setting was ignored, or under another Keras backend (JAX sizes its pools from XLA_FLAGS
    before it starts)."""
    from splitnn import backend

    if not backend.is_tensorflow():
        return False
    import tensorflow as tf

    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
        return True
    except RuntimeError:
        return False


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


__all__ = ["tv_code", "tv_code_per_sample", "tv_paper", "tv_paper_per_sample", "l2loss", "l2loss_per_sample",
           "tv_weight_for", "describe_tv", "TV_SCHEDULES", "TV_PAPER_EPS", "normalize", "normalize_per_image",
           "first_index_per_class", "get_examples_by_class", "repo_sampler_indices", "accuracy",
           "get_test_score", "configure_threads"]

"""UnSplit's attacks: model inversion + model stealing, and label inference (the original's ``attacks.py``).

Model inversion and stealing (spec §5)
--------------------------------------
:func:`model_inversion_stealing` keeps the original's signature and semantics:

* x~ starts as the **constant 0.5** image (never random, never clamped unless ``clamp_x=True``, not original);
* two AMSGrad Adams (lr 1e-3, PyTorch-exact, :mod:`unsplit_tf.optim`) are **re-created for every call**, one for
  x~ and one for the clone's layers 0..d (the only ones that ever get a gradient);
* ``main_iters`` rounds of ``input_iters`` steps on x~ (loss MSE + lambda_tv*TV + lambda_l2*mean(x~^2)) then
  ``model_iters`` steps on the clone (loss MSE only, x~ fixed);
* the target (the client's smashed data) is a constant: the original let every backward run through the
  victim's graph, which changes nothing but time;
* the clone is updated **in place**, so a caller that loops over targets carries one clone across them
  (model stealing accumulates over the 10 targets), as the original demo does.

Each phase runs as a compiled ``tf.while_loop`` (optionally XLA, the default); all ``main_iters`` rounds are one
call of a compiled function, with no Python per step.

Beyond the original: **batched inversion** (:func:`model_inversion_stealing_batched`). B targets are inverted at
once, each with its own x~, its own Adam states and **its own copy of the clone** (all copies start from the
clone's current weights), vectorised over a leading batch axis. The objective is the sum of the per-target
objectives, so every target follows exactly the trajectory of a single-target run from the same clone. This is
*not* the faithful carried clone: there, target k starts from the clone already trained on targets 0..k-1;
in batched mode every target starts from the same clone and model stealing does not accumulate across targets
(the result holds B stolen clones). Equal to the per-image loop with ``clone_reuse='fresh'`` (tested).

Label inference (spec §8)
-------------------------
:func:`label_inference` scores every candidate label by the MSE between the gradient the attacker observes
(by default the client's last-layer weight gradient) and the gradient of ``CE(clone(h), candidate)`` with respect
to the same clone parameter, and returns the first argmin. ``vectorized=True`` (default) scores all candidates in
one pass (a Jacobian of the K candidate losses); ``vectorized=False`` is the original's per-label loop.
"""
from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Any

import numpy as np
import tensorflow as tf

from unsplit_tf import functional as F
from unsplit_tf.models import ARCHITECTURES, SplitNet, label_split_index
from unsplit_tf.optim import update_rule
from unsplit_tf.util import (l2loss_per_sample, normalize_per_image, tv_code_per_sample, tv_paper_per_sample,
                             tv_weight_for)

TV_FORMS = ("code", "paper")


# ============================================================================================ configuration
@dataclasses.dataclass(frozen=True)
class InversionConfig:
    """Every knob of the inversion/stealing attack; defaults are the original code's (spec §13).

    Attributes:
        main_iters, input_iters, model_iters: the schedule (1000, 100, 100).
        tv_schedule: 'code' (constant 0.1, faithful), 'paper' (0.1 for depth <= 3, 1.0 deeper) or a number.
        tv_form: 'code' (squared, anisotropic, mean-normalised) or 'paper' (isotropic sqrt form, spec §4.2).
        tv_reduction: for tv_form='paper': 'sum' (paper-literal) or 'mean'.
        lambda_l2: weight of mean(x~^2) in the input phase (1.0; the paper's eq. 1 has 0).
        optimizer: 'torch' (PyTorch-exact AMSGrad Adam, faithful) or 'keras' (the Keras 3 Adam rule).
        lr: learning rate of both Adams (1e-3). keras_epsilon: epsilon of the 'keras' rule (1e-7).
        clamp_x: clip x~ to [0, 1] after every input step (False; not in the original).
        cifar_minmax: min-max normalise CIFAR reconstructions before the MSE and saving (True, as the code;
            the paper claims no post-processing).
        jit_compile: compile the loops with XLA. None (default) chooses per path: on for the MnistNet/CifarNet
            engine (NCHW im2col loops written for XLA), off for arbitrary Keras clients
            (:mod:`unsplit_tf.keras_client`: Keras layers in NHWC, which XLA ran 1.4x slower on a CPU for MnistNet's
            depth 2 and 12x slower for CifarNet's depth 4). True or False is used as given.
    """
    main_iters: int = 1000
    input_iters: int = 100
    model_iters: int = 100
    tv_schedule: Any = "code"
    tv_form: str = "code"
    tv_reduction: str = "sum"
    lambda_l2: float = 1.0
    optimizer: str = "torch"
    lr: float = 1e-3
    keras_epsilon: float = 1e-7
    clamp_x: bool = False
    cifar_minmax: bool = True
    jit_compile: bool | None = None

    def __post_init__(self):
        for name in ("main_iters", "input_iters", "model_iters"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.tv_form not in TV_FORMS:
            raise ValueError(f"tv_form {self.tv_form!r} unknown; expected one of {TV_FORMS}")
        if self.tv_reduction not in ("sum", "mean"):
            raise ValueError(f"tv_reduction {self.tv_reduction!r} unknown; expected 'sum' or 'mean'")
        update_rule(self.optimizer)
        tv_weight_for(1, self.tv_schedule)

    def xla(self, default: bool) -> bool:
        """Whether to compile with XLA: ``jit_compile``, or ``default`` when it is None."""
        return default if self.jit_compile is None else bool(self.jit_compile)

    def lambda_tv(self, split_depth: int) -> float:
        return tv_weight_for(split_depth, self.tv_schedule)


@dataclasses.dataclass
class InversionResult:
    """What an inversion run over one or more targets produced.

    Attributes:
        x_hat: raw reconstructions [N, H, W, C] (unclamped x~, as returned by the attack).
        x_eval: what the MSE is computed on: ``x_hat`` itself, or its per-image min-max normalisation for
            CIFAR with ``cifar_minmax`` (the original's post-processing).
        targets: the original images [N, H, W, C] in [0, 1].
        mse: per-image MSE on the [0, 1] scale, shape [N]. ``mean_mse``: their mean ("Average MSE").
        clone: the stolen Keras model (the carried clone in faithful mode; in batched mode the clone copy of
            the last target, see ``clone_params``).
        clone_params: batched mode only: a list, per target, of that target's clone parameters for layers
            0..d (NumPy arrays in Keras layout).
        split_depth, lambda_tv, config, batched, clone_reuse, seconds (wall time of the attack loops).
    """
    x_hat: np.ndarray
    x_eval: np.ndarray
    targets: np.ndarray
    mse: np.ndarray
    split_depth: int
    lambda_tv: float
    config: InversionConfig
    clone: SplitNet | None = None
    clone_params: list | None = None
    batched: bool = False
    clone_reuse: str = "carry"
    seconds: float = 0.0
    labels: np.ndarray | None = None

    @property
    def mean_mse(self) -> float:
        return float(np.mean(self.mse))

    def clone_copy(self, i: int) -> SplitNet:
        """A Keras clone carrying target ``i``'s stolen layers 0..d (batched mode); the layers above d are
        those of the clone the batch started from."""
        if self.clone_params is None:
            return self.clone
        model = SplitNet(self.clone.arch, dtype=self.clone.dtype)
        model.copy_from(self.clone)
        for w, v in zip(model.client_weights(self.split_depth), self.clone_params[i]):
            w.assign(v)
        return model


# ================================================================================================= engine
def coordinate_descent(net, tv_fn, step_fn, clamp_x: bool = False, clone_loss: str = "sum",
                       precompute=None):
    """UnSplit's coordinate descent (spec §5) as one function of tensors, to be compiled.

    ``net(params, x, pre)`` is the clone's bottom with parameters ``params`` (a list of tensors), ``tv_fn(x)`` the
    per-target TV [B], ``step_fn(p, g, m, v, vmax, t)`` an Adam rule (:func:`unsplit_tf.optim.update_rule`),
    ``precompute(x, params)`` an optional constant computed once per model phase from the fixed x~ (passed to
    ``net`` as ``pre``; None in the input phase). ``clone_loss``: 'sum' of the per-target MSEs (right when every
    target has its own clone copy: each copy gets its own gradient) or their 'mean' (one clone shared by the
    targets, a batch loss). The input phase always sums, so each x~ gets exactly its single-target gradient.

    The returned ``run(x, xm, xv, xvm, tx, params, pm, pv, pvm, tw, target, n_rounds, input_iters, model_iters,
    lam_tv, lam_l2)`` advances ``n_rounds`` rounds of ``input_iters`` x~ steps (MSE + lam_tv TV + lam_l2
    mean(x~^2)) then ``model_iters`` clone steps (MSE only) and returns the new state.
    """
    if clone_loss not in ("sum", "mean"):
        raise ValueError(f"clone_loss must be 'sum' or 'mean', got {clone_loss!r}")
    reduce_clone = tf.reduce_sum if clone_loss == "sum" else tf.reduce_mean

    def mse_per_target(y, target):
        d = y - target
        return tf.reduce_mean(d * d, axis=list(range(1, len(d.shape))))

    def run(x, xm, xv, xvm, tx, params, pm, pv, pvm, tw, target, n_rounds, input_iters, model_iters,
            lam_tv, lam_l2):
        def input_phase(x, xm, xv, xvm, tx, params):
            def body(i, x, xm, xv, xvm, tx):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(mse_per_target(net(params, x, None), target) + lam_tv * tv_fn(x)
                                         + lam_l2 * l2loss_per_sample(x))
                g = tape.gradient(loss, x)
                tx = tx + 1
                x, xm, xv, xvm = step_fn(x, g, xm, xv, xvm, tx)
                if clamp_x:
                    x = tf.clip_by_value(x, 0.0, 1.0)
                return i + 1, x, xm, xv, xvm, tx
            out = tf.while_loop(lambda i, *a: i < input_iters, body, (tf.constant(0), x, xm, xv, xvm, tx))
            return out[1:]

        def model_phase(x, params, pm, pv, pvm, tw):
            pre = precompute(x, params) if precompute is not None else None  # x~ is fixed in this phase

            def body(i, params, pm, pv, pvm, tw):
                with tf.GradientTape() as tape:
                    tape.watch(params)
                    loss = reduce_clone(mse_per_target(net(params, x, pre), target))
                grads = tape.gradient(loss, params)
                tw = tw + 1
                new = [step_fn(p, g, m, v, vm, tw) for p, g, m, v, vm in zip(params, grads, pm, pv, pvm)]
                return (i + 1, [n[0] for n in new], [n[1] for n in new], [n[2] for n in new],
                        [n[3] for n in new], tw)
            out = tf.while_loop(lambda i, *a: i < model_iters, body, (tf.constant(0), params, pm, pv, pvm, tw))
            return out[1:]

        def round_body(r, x, xm, xv, xvm, tx, params, pm, pv, pvm, tw):
            x, xm, xv, xvm, tx = input_phase(x, xm, xv, xvm, tx, params)
            params, pm, pv, pvm, tw = model_phase(x, params, pm, pv, pvm, tw)
            return r + 1, x, xm, xv, xvm, tx, params, pm, pv, pvm, tw

        out = tf.while_loop(lambda r, *a: r < n_rounds, round_body,
                            (tf.constant(0), x, xm, xv, xvm, tx, params, pm, pv, pvm, tw))
        return out[1:]

    return run


def adam_step_fn(cfg: "InversionConfig"):
    """``step_fn(p, g, m, v, vmax, t)`` of ``cfg.optimizer`` at ``cfg.lr`` (the Keras rule with its epsilon)."""
    rule = update_rule(cfg.optimizer)
    eps_kw = {"eps": cfg.keras_epsilon} if cfg.optimizer == "keras" else {}

    def step_fn(p, g, m, v, vm, t):
        return rule(p, g, m, v, vm, t, lr=cfg.lr, **eps_kw)
    return step_fn


def call_compiled(run, state, target, n_rounds, input_iters, model_iters, lam_tv, lam_l2, dtype):
    """Call a compiled :func:`coordinate_descent` ``run`` with Python numbers as constants; returns a list."""
    c = lambda v, dt=tf.int32: tf.constant(v, dt)  # noqa: E731
    out = run(*state, target, c(n_rounds), c(input_iters), c(model_iters), c(lam_tv, dtype), c(lam_l2, dtype))
    return list(out)


class _InversionEngine:
    """Compiled coordinate-descent loop for one (architecture, split, dtype, options) combination.

    State per target b (leading axis B): x~, its Adam moments, the clone's layers 0..d and their Adam moments.
    Step counters are shared (all targets start together). ``run`` advances ``n_rounds`` rounds.
    """

    def __init__(self, arch, split_depth, dtype, tv_form, tv_reduction, optimizer, lr, keras_epsilon,
                 clamp_x, jit_compile):
        self.arch = arch
        self.split = split_depth
        self.dtype = tf.as_dtype(dtype)
        step_fn = adam_step_fn(InversionConfig(optimizer=optimizer, lr=lr, keras_epsilon=keras_epsilon))

        def net(params, x, pre):
            return F.forward(arch, params, x, 0, split_depth, xla=jit_compile, first_cols=pre)

        first = ARCHITECTURES[arch][0]
        first_padding = first.padding if first.kind == "conv" else None

        def first_cols(x, params):  # the first conv's patch matrix of the fixed x~
            return F.im2col_constant(x, params[0].shape, first_padding)

        def tv_fn(x):
            if tv_form == "code":
                return tv_code_per_sample(x, "NCHW")
            return tv_paper_per_sample(x, tv_reduction, data_format="NCHW")

        run = coordinate_descent(net, tv_fn, step_fn, clamp_x, clone_loss="sum",
                                 precompute=first_cols if first_padding else None)
        self._run = tf.function(run, jit_compile=jit_compile, autograph=False)

    def __call__(self, state, target, n_rounds, input_iters, model_iters, lam_tv, lam_l2):
        return call_compiled(self._run, state, target, n_rounds, input_iters, model_iters, lam_tv, lam_l2,
                             self.dtype)


_ENGINES: dict = {}


def _engine(arch, split, dtype, cfg: InversionConfig) -> _InversionEngine:
    key = (arch, split, tf.as_dtype(dtype).name, cfg.tv_form, cfg.tv_reduction, cfg.optimizer, cfg.lr,
           cfg.keras_epsilon, cfg.clamp_x, cfg.xla(default=True))
    if key not in _ENGINES:
        _ENGINES[key] = _InversionEngine(*key)
    return _ENGINES[key]


def initial_state(x0, params):
    z = tf.zeros_like
    return [x0, z(x0), z(x0), z(x0), tf.constant(0, tf.int64), list(params), [z(p) for p in params],
            [z(p) for p in params], [z(p) for p in params], tf.constant(0, tf.int64)]


def _run_engine(clone: SplitNet, split_depth: int, targets, cfg: InversionConfig, lambda_tv: float,
                params=None, x0=None):
    """Invert a batch of smashed targets [B, ...] (NHWC) with per-target clone copies.

    ``params``: Keras-layout parameters of layers 0..split with a leading target axis (default: the clone's,
    repeated). Returns ``(x_hat [B, H, W, C], params)`` in the same layouts.
    """
    dtype = clone.dtype
    targets = F.nhwc_to_nchw(tf.cast(tf.convert_to_tensor(targets), dtype))
    b = int(targets.shape[0])
    if params is None:
        params = [tf.repeat(tf.convert_to_tensor(w)[None], b, axis=0) for w in clone.client_weights(split_depth)]
    kinds = F.param_kinds(clone.arch, 0, split_depth)
    params = [F.keras_to_torch(tf.cast(p, dtype), k) for p, k in zip(params, kinds)]
    if x0 is None:
        h, w, c = clone.image_shape
        x0 = tf.fill((b, c, h, w), tf.constant(0.5, dtype))
    else:
        x0 = F.nhwc_to_nchw(tf.cast(x0, dtype))
    state = initial_state(x0, params)
    if cfg.main_iters > 0:
        engine = _engine(clone.arch, split_depth, dtype, cfg)
        state = engine(state, targets, cfg.main_iters, cfg.input_iters, cfg.model_iters, lambda_tv,
                       cfg.lambda_l2)
    return F.nchw_to_nhwc(state[0]), [F.torch_to_keras(p, k) for p, k in zip(state[5], kinds)]


def _check_split(clone: SplitNet, split: int) -> int:
    split = int(split)
    if not 0 <= split < clone.last_index:
        raise ValueError(f"split {split} out of range for {clone.name}: expected 0-{clone.last_index - 1}")
    return split


# ======================================================================================= original's API
def model_inversion_stealing(clone: SplitNet, split: int, target, input_size=None, lambda_tv: float = 0.1,
                             lambda_l2: float = 1.0, main_iters: int = 1000, input_iters: int = 100,
                             model_iters: int = 100, *, config: InversionConfig | None = None):
    """Invert one smashed tensor and steal the client's layers 0..split into ``clone`` (in place).

    Args mirror the original: ``target`` is the client's output ``client(x, end=split)`` (batch of 1, NHWC),
    ``input_size`` the image shape (e.g. (1, 28, 28, 1); defaults to the clone's input shape). ``config`` sets
    the remaining options (TV form, optimizer, clamping, XLA); its schedule and weights are overridden by the
    explicit arguments. Returns x~ as a tensor [1, H, W, C].
    """
    split = _check_split(clone, split)
    cfg = dataclasses.replace(config or InversionConfig(), main_iters=int(main_iters),
                              input_iters=int(input_iters), model_iters=int(model_iters),
                              lambda_l2=float(lambda_l2))
    target = tf.convert_to_tensor(target)
    if target.shape[0] != 1:
        raise ValueError(f"target must be one smashed sample (batch 1), got shape {tuple(target.shape)}; use "
                         f"model_inversion_stealing_batched for several")
    if input_size is not None and tuple(input_size)[-3:] != tuple(clone.image_shape):
        raise ValueError(f"input_size {tuple(input_size)} does not match the clone's input {clone.image_shape}")
    x_hat, params = _run_engine(clone, split, target, cfg, float(lambda_tv))
    for w, p in zip(clone.client_weights(split), params):
        w.assign(p[0])
    return x_hat


def model_inversion_stealing_batched(clone: SplitNet, split: int, targets, lambda_tv: float = 0.1,
                                     lambda_l2: float = 1.0, main_iters: int = 1000, input_iters: int = 100,
                                     model_iters: int = 100, *, config: InversionConfig | None = None):
    """Invert B smashed tensors at once, each with its own x~ and its own copy of ``clone`` (see module doc).

    ``clone`` is not modified. Returns ``(x_hat [B, H, W, C], clone_params)`` where ``clone_params[j]`` is the
    stack [B, ...] of the j-th parameter of layers 0..split over targets.
    """
    split = _check_split(clone, split)
    cfg = dataclasses.replace(config or InversionConfig(), main_iters=int(main_iters),
                              input_iters=int(input_iters), model_iters=int(model_iters),
                              lambda_l2=float(lambda_l2))
    return _run_engine(clone, split, targets, cfg, float(lambda_tv))


# =========================================================================================== high level
def invert_images(client: SplitNet, clone: SplitNet, images, split_depth: int,
                  config: InversionConfig | None = None, *, batched: bool = False, clone_reuse: str = "carry",
                  batch_size: int | None = None, labels=None, verbose: bool = False, printer=print
                  ) -> InversionResult:
    """Run the attack on every image of ``images`` [N, H, W, C] as the original demo does.

    The targets are ``client(x, end=split_depth)`` (gradient-free constants). Faithful mode (``batched=False``,
    ``clone_reuse='carry'``) loops over the images in order with one clone carried across them and fresh
    optimizers per image. ``clone_reuse='fresh'`` restores the clone's starting weights before every image.
    ``batched=True`` inverts ``batch_size`` (default all) images at once, each with its own clone copy.
    The MSE is on [0, 1], after the CIFAR min-max normalisation when ``config.cifar_minmax``.
    """
    cfg = config or InversionConfig()
    if clone_reuse not in ("carry", "fresh"):
        raise ValueError(f"clone_reuse {clone_reuse!r} unknown; expected 'carry' or 'fresh'")
    split_depth = _check_split(clone, split_depth)
    lam_tv = cfg.lambda_tv(split_depth)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != tuple(clone.image_shape):
        raise ValueError(f"images must be [N, {', '.join(map(str, clone.image_shape))}], got {images.shape}")
    smashed = client(tf.cast(images, client.dtype), end=split_depth)
    start = time.perf_counter()
    clone_params = None
    if batched:
        n = len(images)
        bs = n if batch_size is None else int(batch_size)
        xs, per_target = [], [[] for _ in range(n)]
        for s in range(0, n, bs):
            x_hat, params = model_inversion_stealing_batched(
                clone, split_depth, smashed[s:s + bs], lam_tv, cfg.lambda_l2, cfg.main_iters, cfg.input_iters,
                cfg.model_iters, config=cfg)
            xs.append(x_hat.numpy())
            for j in range(int(x_hat.shape[0])):
                per_target[s + j] = [p[j].numpy() for p in params]
        x_hat = np.concatenate(xs)
        clone_params = per_target
        out_clone = clone
    else:
        initial = clone.get_param_values() if clone_reuse == "fresh" else None
        xs = []
        for i in range(len(images)):
            if initial is not None:
                clone.set_param_values(initial)
            x_i = model_inversion_stealing(clone, split_depth, smashed[i:i + 1], None, lam_tv, cfg.lambda_l2,
                                           cfg.main_iters, cfg.input_iters, cfg.model_iters, config=cfg)
            xs.append(x_i.numpy())
            if verbose:
                printer(f"\tImage {i} done")
        x_hat = np.concatenate(xs)
        out_clone = clone
    seconds = time.perf_counter() - start
    x_eval = postprocess(x_hat, clone.arch, cfg.cifar_minmax)
    mse = np.mean((x_eval.astype(np.float64) - images.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return InversionResult(x_hat=x_hat, x_eval=x_eval, targets=images, mse=mse, split_depth=split_depth,
                           lambda_tv=lam_tv, config=cfg, clone=out_clone, clone_params=clone_params,
                           batched=batched, clone_reuse="independent" if batched else clone_reuse,
                           seconds=seconds, labels=None if labels is None else np.asarray(labels))


def postprocess(x_hat, arch: str, cifar_minmax: bool = True) -> np.ndarray:
    """The original's post-processing: per-image min-max normalisation for CIFAR (when enabled), else none."""
    x_hat = np.asarray(x_hat)
    if arch == "cifar" and cifar_minmax:
        return normalize_per_image(x_hat).astype(np.float32)
    return x_hat


# ======================================================================================== label inference
OBSERVED_PARAMS = ("last_layer_weight", "first_client_weight", "all_client_params")


def observed_variables(model: SplitNet, server_end: int, observed_param: str = "last_layer_weight"):
    """The client-side variables whose gradient the attacker observes (spec §8.1, §8.4).

    'last_layer_weight': the last linear layer's weight (the original's grad_index 8 / 14);
    'first_client_weight': the weight of the first client layer (fed by the server output);
    'all_client_params': every client weight and bias, compared as one concatenated vector.
    """
    if observed_param == "last_layer_weight":
        return [model.layer_weights(model.last_index)[0]]
    client = model.range_weights(server_end + 1, model.last_index)
    if observed_param == "first_client_weight":
        return [client[0]]
    if observed_param == "all_client_params":
        return client
    raise ValueError(f"observed_param {observed_param!r} unknown; expected one of {OBSERVED_PARAMS}")


def cross_entropy(logits, labels):
    """Sparse softmax cross-entropy from logits, mean over the batch (PyTorch's CrossEntropyLoss)."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def first_argmin(scores) -> int:
    """Index of the smallest score; ties go to the first index (the original's loop keeps the first best)."""
    scores = np.asarray(scores)
    return int(np.flatnonzero(scores == scores.min())[0])


def candidate_scores_loop(forward, h, target_grads, variables, candidates):
    """The original's per-label loop: MSE between the observed gradients and those of CE(forward(h), k) with
    respect to ``variables``, for each candidate k in order (a mean over all observed elements)."""
    scores = []
    total = sum(int(np.prod(v.shape)) for v in variables)
    for k in candidates:
        with tf.GradientTape() as tape:
            loss = cross_entropy(forward(h), tf.fill((int(h.shape[0]),), tf.constant(k, tf.int64)))
        grads = tape.gradient(loss, variables)
        sq = sum(tf.reduce_sum(tf.square(g - t)) for g, t in zip(grads, target_grads))
        scores.append(sq / total)
    return tf.stack(scores)


def candidate_scores_vectorized(forward, h, target_grads, variables, candidates):
    """:func:`candidate_scores_loop` in one pass: one forward, the Jacobian of the K candidate losses."""
    total = sum(int(np.prod(v.shape)) for v in variables)
    n = int(h.shape[0])
    k = len(candidates)
    with tf.GradientTape() as tape:
        logits = forward(h)
        labels = tf.repeat(tf.constant(candidates, tf.int64)[:, None], n, axis=1)  # [K, n]
        per = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=tf.broadcast_to(logits[None], (k,) + tuple(logits.shape)))
        losses = tf.reduce_mean(per, axis=1)  # [K]
    jac = tape.jacobian(losses, variables, experimental_use_pfor=True)
    sq = sum(tf.reduce_sum(tf.square(j - t[None]), axis=list(range(1, len(j.shape))))
             for j, t in zip(jac, target_grads))
    return sq / total


def label_inference(clone: SplitNet, h, target_grad, server_end: int, num_classes: int = 10,
                    observed_param: str = "last_layer_weight", vectorized: bool = True, candidates=None):
    """Infer the label of one sample from the client's parameter gradient (spec §8.1, eq. 3).

    The original's ``label_inference(pred, clone, target_grad, candidates, grad_index)`` differentiates the
    clone's precomputed logits ``pred``; TensorFlow cannot differentiate a finished tensor afterwards, so this
    takes the server output ``h`` and recomputes ``clone(h, start=server_end + 1)`` under a tape (same values).
    ``grad_index`` becomes ``observed_param`` ('last_layer_weight' = the original's index 8 / 14).

    Args:
        clone: the attacker's model; layers server_end+1..end are the client copy.
        h: the server output (smashed data) of the sample, batch of 1.
        target_grad: the observed client gradient(s): one array for a single observed variable, or a list
            in the order of :func:`observed_variables` (Keras layouts).
        server_end: last server layer (9 / 16 at client depth 1).
        candidates: candidate labels in the order tried (default ``range(num_classes)``).
    Returns ``(label, scores)``: the first argmin of the per-candidate MSE and the scores, one per candidate.
    """
    candidates = list(range(num_classes)) if candidates is None else [int(c) for c in candidates]
    variables = observed_variables(clone, server_end, observed_param)
    if not isinstance(target_grad, (list, tuple)):
        target_grad = [target_grad]
    target_grad = [tf.cast(tf.convert_to_tensor(t), v.dtype) for t, v in zip(target_grad, variables)]
    if len(target_grad) != len(variables):
        raise ValueError(f"{observed_param}: {len(variables)} observed gradients expected, got {len(target_grad)}")
    h = tf.cast(tf.convert_to_tensor(h), clone.dtype)
    key = (server_end, observed_param, tuple(candidates), bool(vectorized))
    cache = _SCORERS.setdefault(clone, {})
    if key not in cache:
        fn = candidate_scores_vectorized if vectorized else candidate_scores_loop
        model = weakref.ref(clone)  # the cache is keyed by the clone: no strong reference back
        cache[key] = tf.function(
            lambda h_, t_: fn(lambda x: model()(x, start=server_end + 1), h_, t_, variables, candidates),
            autograph=False)
    scores = cache[key](h, target_grad).numpy()
    return candidates[first_argmin(scores)], scores


_SCORERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class LabelInferenceResult:
    """Outcome of the online label-inference demo (spec §8.2)."""
    labels: np.ndarray
    predicted: np.ndarray
    client_depth: int
    observed_param: str
    dataset: str = ""
    label_server_update: str = "both"
    seconds: float = 0.0
    indices: np.ndarray | None = None  # test indices of the samples, in the order processed

    @property
    def correct(self) -> int:
        return int(np.sum(self.labels == self.predicted))

    @property
    def count(self) -> int:
        return int(len(self.labels))

    @property
    def accuracy(self) -> float:
        """Fraction correct (the original prints a fraction, not a percentage)."""
        return self.correct / self.count if self.count else float("nan")


def run_label_inference(x, y, arch: str, count: int = 100, client_depth: int = 1,
                        observed_param: str = "last_layer_weight", label_server_update: str = "both",
                        vectorized: bool = True, seed: int | None = None, indices=None, dtype="float32",
                        printer=None, dataset: str = "") -> LabelInferenceResult:
    """The original online label-inference loop (spec §8.2) on ``count`` shuffled samples, batch 1.

    server = layers 0..s, client = s+1..end (holds the labels), clone = a random copy used from s+1; all three
    untrained and trained online with PyTorch-exact AMSGrad Adams (lr 1e-3). Per sample: the client's CE
    gradient is observed, the label inferred, the clone trained on the inferred label, and (quirk reproduced by
    default, ``label_server_update='both'``) the server is stepped with the gradient of CE_client + CE_clone
    because the original does not detach h; ``'client_only'`` uses CE_client only.
    """
    from unsplit_tf.models import build_model
    from unsplit_tf.optim import TorchAdam

    if label_server_update not in ("both", "client_only"):
        raise ValueError(f"label_server_update {label_server_update!r} unknown; expected 'both' or 'client_only'")
    s = label_split_index(arch, client_depth)
    rng = np.random.default_rng(seed)
    sub_seed = (lambda k: None) if seed is None else (lambda k: int(seed) * 7 + k)  # noqa: E731
    server = build_model(arch, seed=sub_seed(1), dtype=dtype, name="server")
    client = build_model(arch, seed=sub_seed(2), dtype=dtype, name="client")
    clone = build_model(arch, seed=sub_seed(3), dtype=dtype, name="clone")
    sv, cv, kv = server.range_weights(0, s), client.range_weights(s + 1), clone.range_weights(s + 1)
    opt_s, opt_c, opt_k = TorchAdam().build(sv), TorchAdam().build(cv), TorchAdam().build(kv)
    observed_c = observed_variables(client, s, observed_param)
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if indices is None:
        indices = rng.permutation(len(y))[:int(count)]
    indices = np.asarray(indices)

    @tf.function(autograph=False)
    def victim_step(xb, yb):
        with tf.GradientTape(persistent=True) as tape:
            h = server(xb, end=s)
            loss = cross_entropy(client(h, start=s + 1), yb)
        g_server = tape.gradient(loss, sv)
        g_client = tape.gradient(loss, cv)
        g_obs = tape.gradient(loss, observed_c)
        del tape
        return h, g_server, g_client, g_obs

    @tf.function(autograph=False)
    def clone_step(xb, label, g_server, g_client):
        with tf.GradientTape(persistent=True) as tape:
            h = server(xb, end=s)
            loss = cross_entropy(clone(h, start=s + 1), label)
        g_clone = tape.gradient(loss, kv)
        g_server2 = tape.gradient(loss, sv)
        del tape
        opt_c.apply_gradients(zip(g_client, cv))
        opt_k.apply_gradients(zip(g_clone, kv))
        if label_server_update == "both":
            opt_s.apply_gradients(zip([a + b for a, b in zip(g_server, g_server2)], sv))
        else:
            opt_s.apply_gradients(zip(g_server, sv))

    labels, predicted = [], []
    start = time.perf_counter()
    for idx in indices:
        xb = tf.cast(x[idx:idx + 1], server.dtype)
        yb = tf.constant([int(y[idx])], tf.int64)
        h, g_server, g_client, g_obs = victim_step(xb, yb)
        pred, _ = label_inference(clone, h, list(g_obs), s, 10, observed_param, vectorized)
        clone_step(xb, tf.constant([pred], tf.int64), g_server, g_client)
        labels.append(int(y[idx]))
        predicted.append(pred)
        if printer is not None:
            printer(f"Label: {int(y[idx])} - Predicted: {pred}")
    return LabelInferenceResult(np.asarray(labels), np.asarray(predicted), int(client_depth), observed_param,
                                dataset, label_server_update, time.perf_counter() - start, indices)


__all__ = ["InversionConfig", "InversionResult", "model_inversion_stealing", "model_inversion_stealing_batched",
           "invert_images", "postprocess", "label_inference", "observed_variables", "first_argmin",
           "run_label_inference", "LabelInferenceResult", "OBSERVED_PARAMS", "TV_FORMS"]

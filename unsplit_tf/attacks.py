"""UnSplit's attacks: model inversion + model stealing, and label inference (the original's ``attacks.py``).

Model inversion and stealing
----------------------------
Paper §4.2 (Algorithm 1, eq. (1) and (2)); original ``unsplit/attacks.py``, ``model_inversion_stealing``.
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

Written once in ``keras.ops`` on :mod:`splitnn.backend` (gradients, compilation): each phase is a
``keras.ops.while_loop`` and all ``main_iters`` rounds are one call of a compiled function (``tf.function``,
XLA by default for the im2col forward, under TensorFlow; ``jax.jit`` under JAX), with no Python per step.

Beyond the original: **batched inversion** (:func:`model_inversion_stealing_batched`). B targets are inverted at
once, each with its own x~, its own Adam states and **its own copy of the clone** (all copies start from the
clone's current weights), vectorised over a leading batch axis. The objective is the sum of the per-target
objectives, so every target follows exactly the trajectory of a single-target run from the same clone. This is
*not* the faithful carried clone: there, target k starts from the clone already trained on targets 0..k-1;
in batched mode every target starts from the same clone and model stealing does not accumulate across targets
(the result holds B stolen clones). Equal to the per-image loop with ``clone_reuse='fresh'`` (tested).

Label inference
---------------
Paper §4.3 (Algorithm 2, eq. (3)); original ``unsplit/attacks.py``, ``label_inference``.
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

import keras
import numpy as np
from keras import ops

from splitnn import backend
from unsplit_tf.models import ARCHITECTURES, SplitNet, label_split_index
from unsplit_tf.optim import update_rule
from unsplit_tf.util import (l2loss_per_sample, mean, normalize_per_image, tv_code_per_sample, tv_paper_per_sample,
                             tv_weight_for)

TV_FORMS = ("code", "paper")


# ============================================================================================ configuration
@dataclasses.dataclass(frozen=True)
class InversionConfig:
    """Every knob of the inversion/stealing attack; defaults are the original code's (``unsplit/attacks.py``
    and ``model_inversion_demo.py``); every paper variant is an option.

    Attributes:
        main_iters, input_iters, model_iters: the schedule (1000, 100, 100).
        tv_schedule: 'code' (constant 0.1, faithful), 'paper' (0.1 for depth <= 3, 1.0 deeper) or a number.
        tv_form: 'code' (squared, anisotropic, mean-normalised) or 'paper' (isotropic sqrt form of the paper's §4.2,
            see :func:`unsplit_tf.util.tv_paper_per_sample`).
        tv_reduction: for tv_form='paper': 'sum' (paper-literal) or 'mean'.
        lambda_l2: weight of mean(x~^2) in the input phase (1.0; the paper's eq. 1 has 0).
        optimizer: 'torch' (PyTorch-exact AMSGrad Adam, faithful) or 'keras' (the Keras 3 Adam rule).
        lr: learning rate of both Adams (1e-3). keras_epsilon: epsilon of the 'keras' rule (1e-7).
        clamp_x: clip x~ to [0, 1] after every input step (False; not in the original).
        cifar_minmax: min-max normalise CIFAR reconstructions before the MSE and saving (True, as the code;
            the paper claims no post-processing).
        jit_compile: compile the loops with XLA (TensorFlow; JAX always compiles). None (default) chooses per
            path: on for the MnistNet/CifarNet fast path (NCHW im2col loops written for XLA), off for the Keras
            layers (the generic path and arbitrary Keras clients
            (:mod:`unsplit_tf.keras_client`: Keras layers in NHWC, which XLA ran 1.4x slower on a CPU for MnistNet's
            depth 2 and 12x slower for CifarNet's depth 4). True or False is used as given.
        engine: the clone's forward for MnistNet/CifarNet: 'auto' (default: 'fast' under TensorFlow, 'generic'
            otherwise), 'generic' (the Keras layers through ``keras.StatelessScope``, every backend) or 'fast'
            (the im2col forward of :mod:`unsplit_tf.functional`, TensorFlow only). Same mathematics (tested).
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
    engine: str = "auto"

    def __post_init__(self):
        for name in ("main_iters", "input_iters", "model_iters"):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.tv_form not in TV_FORMS:
            raise ValueError(f"tv_form {self.tv_form!r} unknown; expected one of {TV_FORMS}")
        if self.tv_reduction not in ("sum", "mean"):
            raise ValueError(f"tv_reduction {self.tv_reduction!r} unknown; expected 'sum' or 'mean'")
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r} unknown; expected one of {ENGINES}")
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
def _mse_per_target(y, target):
    d = y - target
    return mean(d * d, axis=tuple(range(1, len(d.shape))))


def coordinate_descent(net, tv_fn, step_fn, clamp_x: bool = False, clone_loss: str = "sum",
                       precompute=None):
    """UnSplit's coordinate descent (paper §4.2, Algorithm 1) as one pure function of tensors, in ``keras.ops``,
    to be compiled.

    ``net(params, x, pre, extra)`` is the clone's bottom with parameters ``params`` (a list of tensors; ``extra``
    the clone's other values, e.g. BatchNorm statistics, passed through unchanged), ``tv_fn(x)`` the per-target
    TV [B], ``step_fn(p, g, m, v, vmax, t)`` an Adam rule (:func:`unsplit_tf.optim.update_rule`),
    ``precompute(x, params)`` an optional constant computed once per clone phase from the fixed x~ (passed to
    ``net`` as ``pre``; None in the input phase). ``clone_loss``: 'sum' of the per-target MSEs (right when every
    target has its own clone copy: each copy gets its own gradient) or their 'mean' (one clone shared by the
    targets, a batch loss). The input phase always sums, so each x~ gets exactly its single-target gradient.

    The returned ``run(x, xm, xv, xvm, tx, params, pm, pv, pvm, tw, target, n_rounds, input_iters, model_iters,
    lam_tv, lam_l2, extra)`` advances ``n_rounds`` rounds of ``input_iters`` x~ steps (MSE + lam_tv TV + lam_l2
    mean(x~^2)) then ``model_iters`` clone steps (MSE only) and returns the new state (a list). ``run.gradients``
    gives both losses and their gradients at a state, computed as the loops compute them.
    """
    if clone_loss not in ("sum", "mean"):
        raise ValueError(f"clone_loss must be 'sum' or 'mean', got {clone_loss!r}")
    reduce_clone = ops.sum if clone_loss == "sum" else mean

    def input_objective(p, params, target, lam_tv, lam_l2, extra):
        x = p[0]
        loss = ops.sum(_mse_per_target(net(params, x, None, extra), target) + lam_tv * tv_fn(x)
                       + lam_l2 * l2loss_per_sample(x))
        return loss, None

    def clone_objective(params, x, pre, target, extra):
        return reduce_clone(_mse_per_target(net(params, x, pre, extra), target)), None

    def input_grad(x, params, target, lam_tv, lam_l2, extra):
        loss, _, (g,) = backend.value_and_grad(input_objective, [x], params, target, lam_tv, lam_l2, extra)
        return loss, g

    def clone_grad(params, x, pre, target, extra):
        loss, _, grads = backend.value_and_grad(clone_objective, list(params), x, pre, target, extra)
        return loss, grads

    def run(x, xm, xv, xvm, tx, params, pm, pv, pvm, tw, target, n_rounds, input_iters, model_iters,
            lam_tv, lam_l2, extra):
        def input_phase(x, xm, xv, xvm, tx, params):
            def body(i, x, xm, xv, xvm, tx):
                _, g = input_grad(x, params, target, lam_tv, lam_l2, extra)
                tx = tx + 1
                x, xm, xv, xvm = step_fn(x, g, xm, xv, xvm, tx)
                if clamp_x:
                    x = ops.clip(x, 0.0, 1.0)
                return i + 1, x, xm, xv, xvm, tx
            out = ops.while_loop(lambda i, *a: i < input_iters, body, (ops.zeros((), "int32"), x, xm, xv, xvm, tx))
            return tuple(out[1:])

        def model_phase(x, params, pm, pv, pvm, tw):
            pre = precompute(x, params) if precompute is not None else None  # x~ is fixed in this phase

            def body(i, params, pm, pv, pvm, tw):
                _, grads = clone_grad(params, x, pre, target, extra)
                tw = tw + 1
                new = [step_fn(p, g, m, v, vm, tw) for p, g, m, v, vm in zip(params, grads, pm, pv, pvm)]
                return (i + 1, [n[0] for n in new], [n[1] for n in new], [n[2] for n in new],
                        [n[3] for n in new], tw)
            out = ops.while_loop(lambda i, *a: i < model_iters, body,
                                 (ops.zeros((), "int32"), list(params), list(pm), list(pv), list(pvm), tw))
            return tuple(out[1:])

        def round_body(r, x, xm, xv, xvm, tx, params, pm, pv, pvm, tw):
            x, xm, xv, xvm, tx = input_phase(x, xm, xv, xvm, tx, params)
            params, pm, pv, pvm, tw = model_phase(x, params, pm, pv, pvm, tw)
            return r + 1, x, xm, xv, xvm, tx, list(params), list(pm), list(pv), list(pvm), tw

        out = ops.while_loop(lambda r, *a: r < n_rounds, round_body,
                             (ops.zeros((), "int32"), x, xm, xv, xvm, tx, list(params), list(pm), list(pv),
                              list(pvm), tw))
        return list(out[1:])

    def gradients(x, params, target, lam_tv, lam_l2, extra):
        """(input loss, dL/dx~, clone loss, dL/dparams) at (x~, params), as the loops compute them."""
        li, gx = input_grad(x, params, target, lam_tv, lam_l2, extra)
        pre = precompute(x, params) if precompute is not None else None
        lc, gp = clone_grad(params, x, pre, target, extra)
        return li, gx, lc, gp

    run.gradients = gradients
    return run


def adam_step_fn(cfg: "InversionConfig"):
    """``step_fn(p, g, m, v, vmax, t)`` of ``cfg.optimizer`` at ``cfg.lr`` (the Keras rule with its epsilon)."""
    rule = update_rule(cfg.optimizer)
    eps_kw = {"eps": cfg.keras_epsilon} if cfg.optimizer == "keras" else {}

    def step_fn(p, g, m, v, vm, t):
        return rule(p, g, m, v, vm, t, lr=cfg.lr, **eps_kw)
    return step_fn


def call_compiled(run, state, target, n_rounds, input_iters, model_iters, lam_tv, lam_l2, dtype, extra=()):
    """Call a compiled :func:`coordinate_descent` ``run`` with Python numbers as tensors; returns a list."""
    def c(v, dt="int32"):
        return ops.convert_to_tensor(v, dt)
    return list(run(*state, target, c(n_rounds), c(input_iters), c(model_iters), c(lam_tv, dtype),
                    c(lam_l2, dtype), list(extra)))


ENGINES = ("auto", "generic", "fast")


class _InversionEngine:
    """Compiled coordinate-descent loop for one (architecture, split, dtype, options) combination.

    State per target b (leading axis B): x~, its Adam moments, the clone's layers 0..d and their Adam moments.
    Step counters are shared (all targets start together). ``run`` advances ``n_rounds`` rounds.

    Two forwards of the clone, same mathematics (tested against each other):

    * ``generic`` (every backend): the Keras layers of a private MnistNet/CifarNet, NHWC and Keras layouts, with
      each target's parameters substituted (``keras.StatelessScope``), mapped over the targets (``jax.vmap``
      under JAX, an unrolled loop under TensorFlow);
    * ``fast`` (TensorFlow only, the default there): :mod:`unsplit_tf.functional`, NCHW im2col over a batch of
      models with a precomputed first-layer patch matrix in the clone phase, XLA-compiled. It is kept because it
      is measurably faster on a CPU: 5.9x the generic path's speed (MnistNet depth 2, one image, 20 rounds, one
      intra-op thread, 2-core shared CPU, December 2026: 0.148 s against 0.877 s, best of 5 interleaved runs;
      ``benchmarks/unsplit_speed.py --engine fast|generic``).
    """

    def __init__(self, arch, split_depth, dtype, tv_form, tv_reduction, optimizer, lr, keras_epsilon,
                 clamp_x, jit_compile, engine):
        self.arch = arch
        self.split = split_depth
        self.dtype = dtype
        self.engine = engine
        step_fn = adam_step_fn(InversionConfig(optimizer=optimizer, lr=lr, keras_epsilon=keras_epsilon))
        layout = "NCHW" if engine == "fast" else "NHWC"

        def tv_fn(x):
            if tv_form == "code":
                return tv_code_per_sample(x, layout)
            return tv_paper_per_sample(x, tv_reduction, data_format=layout)

        if engine == "fast":
            from unsplit_tf import functional as F

            def net(params, x, pre, extra):
                return F.forward(arch, params, x, 0, split_depth, xla=jit_compile, first_cols=pre)

            first = ARCHITECTURES[arch][0]
            first_padding = first.padding if first.kind == "conv" else None

            def first_cols(x, params):  # the first conv's patch matrix of the fixed x~
                return F.im2col_constant(x, params[0].shape, first_padding)
            precompute = first_cols if first_padding else None
        else:
            model = SplitNet(arch, seed=0, dtype=dtype, name=f"unsplit_{arch}_engine")
            weights = model.client_weights(split_depth)

            def one(args):  # target b through its own clone copy
                xb, pb = args
                with keras.StatelessScope(state_mapping=list(zip(weights, pb))):
                    return model(xb[None], end=split_depth)[0]

            def net(params, x, pre, extra):
                if backend.is_jax():  # jax.vmap: one batched (grouped) convolution for all the copies
                    return ops.vectorized_map(one, (x, list(params)))
                # TensorFlow's vectorized_map falls back to a loop for per-copy filters: unroll it here
                return ops.stack([one((x[b], [p[b] for p in params])) for b in range(int(x.shape[0]))])
            precompute = None
            self._model = model
        self.loop = coordinate_descent(net, tv_fn, step_fn, clamp_x, clone_loss="sum", precompute=precompute)
        self._run = backend.compile(self.loop, jit_compile=jit_compile)
        self._gradients = backend.compile(self.loop.gradients, jit_compile=jit_compile)

    def __call__(self, state, target, n_rounds, input_iters, model_iters, lam_tv, lam_l2):
        return call_compiled(self._run, state, target, n_rounds, input_iters, model_iters, lam_tv, lam_l2,
                             self.dtype)

    def to_engine(self, x_nhwc, params_keras):
        """Images and Keras-layout parameters (leading target axis) in this engine's layouts."""
        if self.engine != "fast":
            return x_nhwc, list(params_keras)
        from unsplit_tf import functional as F
        kinds = F.param_kinds(self.arch, 0, self.split)
        return F.nhwc_to_nchw(x_nhwc), [F.keras_to_torch(p, k) for p, k in zip(params_keras, kinds)]

    def from_engine(self, x, params):
        if self.engine != "fast":
            return x, list(params)
        from unsplit_tf import functional as F
        kinds = F.param_kinds(self.arch, 0, self.split)
        return F.nchw_to_nhwc(x), [F.torch_to_keras(p, k) for p, k in zip(params, kinds)]


_ENGINES: dict = {}


def resolve_engine(cfg: "InversionConfig") -> str:
    """'fast' (im2col, XLA) under TensorFlow unless ``cfg.engine`` says otherwise; 'generic' elsewhere."""
    if cfg.engine == "auto":
        return "fast" if backend.is_tensorflow() else "generic"
    if cfg.engine == "fast" and not backend.is_tensorflow():
        raise ValueError("engine='fast' (the im2col forward of unsplit_tf.functional) runs on TensorFlow only; "
                         "use engine='generic' or 'auto' under other Keras backends")
    return cfg.engine


def _engine(arch, split, dtype, cfg: InversionConfig) -> _InversionEngine:
    engine = resolve_engine(cfg)
    # the im2col loops were written for XLA; the generic Keras-layer loop runs faster without it on a CPU
    xla = cfg.xla(default=engine == "fast")
    key = (arch, split, keras.backend.standardize_dtype(dtype), cfg.tv_form, cfg.tv_reduction, cfg.optimizer,
           cfg.lr, cfg.keras_epsilon, cfg.clamp_x, xla, engine)
    if key not in _ENGINES:
        _ENGINES[key] = _InversionEngine(*key)
    return _ENGINES[key]


def initial_state(x0, params):
    z = ops.zeros_like
    return [x0, z(x0), z(x0), z(x0), ops.zeros((), "int32"), list(params), [z(p) for p in params],
            [z(p) for p in params], [z(p) for p in params], ops.zeros((), "int32")]


def _engine_inputs(clone: SplitNet, split_depth: int, targets, params=None, x0=None):
    dtype = clone.dtype
    targets = ops.cast(ops.convert_to_tensor(targets), dtype)
    b = int(targets.shape[0])
    if params is None:
        params = [ops.repeat(ops.expand_dims(ops.convert_to_tensor(w), 0), b, axis=0)
                  for w in clone.client_weights(split_depth)]
    params = [ops.cast(ops.convert_to_tensor(p), dtype) for p in params]
    if x0 is None:
        x0 = ops.full((b,) + tuple(clone.image_shape), 0.5, dtype)
    else:
        x0 = ops.cast(ops.convert_to_tensor(x0), dtype)
    return targets, params, x0


def _run_engine(clone: SplitNet, split_depth: int, targets, cfg: InversionConfig, lambda_tv: float,
                params=None, x0=None):
    """Invert a batch of smashed targets [B, ...] (NHWC) with per-target clone copies.

    ``params``: Keras-layout parameters of layers 0..split with a leading target axis (default: the clone's,
    repeated). Returns ``(x_hat [B, H, W, C], params)`` in the same layouts.
    """
    targets, params, x0 = _engine_inputs(clone, split_depth, targets, params, x0)
    engine = _engine(clone.arch, split_depth, clone.dtype, cfg)
    x0, params = engine.to_engine(x0, params)
    target = engine.to_engine(targets, [])[0]
    state = initial_state(x0, params)
    if cfg.main_iters > 0:
        state = engine(state, target, cfg.main_iters, cfg.input_iters, cfg.model_iters, lambda_tv, cfg.lambda_l2)
    return engine.from_engine(state[0], state[5])


def initial_gradients(clone: SplitNet, split_depth: int, targets, lambda_tv: float = 0.1, lambda_l2: float = 1.0,
                      config: InversionConfig | None = None):
    """Both losses of the attack and their gradients at its start (x~ = 0.5, per-target copies of the clone),
    computed by the same functions as the compiled loops: ``(input_loss, grad_x [B, H, W, C], clone_loss,
    grads)`` with ``grads`` in Keras layouts with a leading target axis. For tests and diagnostics."""
    cfg = config or InversionConfig()
    split_depth = _check_split(clone, split_depth)
    targets, params, x0 = _engine_inputs(clone, split_depth, targets)
    engine = _engine(clone.arch, split_depth, clone.dtype, cfg)
    x0, params = engine.to_engine(x0, params)
    target = engine.to_engine(targets, [])[0]
    dt = clone.dtype
    li, gx, lc, gp = engine._gradients(x0, params, target, ops.convert_to_tensor(lambda_tv, dt),
                                       ops.convert_to_tensor(lambda_l2, dt), [])
    gx, gp = engine.from_engine(gx, gp)
    return li, gx, lc, gp


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
    target = ops.convert_to_tensor(target)
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
    smashed = client(ops.cast(images, client.dtype), end=split_depth)
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
            xs.append(ops.convert_to_numpy(x_hat))
            for j in range(int(x_hat.shape[0])):
                per_target[s + j] = [ops.convert_to_numpy(p[j]) for p in params]
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
            xs.append(ops.convert_to_numpy(x_i))
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
    """The client-side variables whose gradient the attacker observes (paper §4.3; client depth 2 is
    the paper's Table 3 row 2, which the original code does not implement).

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
    return mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def first_argmin(scores) -> int:
    """Index of the smallest score; ties go to the first index (the original's loop keeps the first best)."""
    scores = np.asarray(scores)
    return int(np.flatnonzero(scores == scores.min())[0])


def candidate_scores(forward, h, target_grads, observed, others, candidates, vectorized=True):
    """Per candidate k, the MSE (mean over all observed elements) between the observed gradients and those of
    CE(forward(observed, others, h), k) with respect to the observed values.

    ``vectorized=True``: one forward pass, then the gradient of each candidate's loss from it
    (:func:`splitnn.backend.loss_grads`); ``False``: the original's per-label loop, a forward and backward pass
    per candidate. Same values.
    """
    total = sum(int(np.prod(t.shape)) for t in target_grads)
    n = int(h.shape[0])

    def labels(k):
        return ops.full((n,), k, "int32")

    if vectorized:
        def losses(params, h):
            logits = forward(params[0], params[1], h)
            return tuple(cross_entropy(logits, labels(k)) for k in candidates), None
        _, _, grads = backend.loss_grads(losses, (observed, others), [(i, 0) for i in range(len(candidates))], h)
    else:
        grads = []
        for k in candidates:
            def loss(params, h, k=k):
                return cross_entropy(forward(params, others, h), labels(k)), None
            grads.append(backend.value_and_grad(loss, list(observed), h)[2])
    scores = [sum(ops.sum(ops.square(g - t)) for g, t in zip(gk, target_grads)) / total for gk in grads]
    return ops.stack(scores)


def _substituted(model, variables, values, call):
    """``call()`` with ``model``'s ``variables`` read as ``values`` (a pure forward)."""
    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        return call()


def label_inference(clone: SplitNet, h, target_grad, server_end: int, num_classes: int = 10,
                    observed_param: str = "last_layer_weight", vectorized: bool = True, candidates=None):
    """Infer the label of one sample from the client's parameter gradient (paper §4.3, eq. (3); original
    ``unsplit/attacks.py``, ``label_inference``).

    The original's ``label_inference(pred, clone, target_grad, candidates, grad_index)`` differentiates the
    clone's precomputed logits ``pred``; a finished tensor cannot be differentiated afterwards here, so this
    takes the server output ``h`` and recomputes ``clone(h, start=server_end + 1)`` (same values).
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
    if len(target_grad) != len(variables):
        raise ValueError(f"{observed_param}: {len(variables)} observed gradients expected, got {len(target_grad)}")
    target_grad = [ops.cast(ops.convert_to_tensor(t), v.dtype) for t, v in zip(target_grad, variables)]
    h = ops.cast(ops.convert_to_tensor(h), clone.dtype)
    ids = {id(v) for v in variables}
    others = [w for w in clone.range_weights(server_end + 1) if id(w) not in ids]
    key = (server_end, observed_param, tuple(candidates), bool(vectorized))
    cache = _SCORERS.setdefault(clone, {})
    if key not in cache:
        model = weakref.ref(clone)  # the cache is keyed by the clone: no strong reference back

        def forward(obs, oth, x):
            return _substituted(model(), variables + others, list(obs) + list(oth),
                                lambda: model()(x, start=server_end + 1))
        cache[key] = backend.compile(
            lambda h_, t_, obs, oth: candidate_scores(forward, h_, t_, obs, oth, candidates, vectorized))
    scores = ops.convert_to_numpy(cache[key](h, target_grad, backend.variable_values(variables),
                                             backend.variable_values(others)))
    return candidates[first_argmin(scores)], scores


_SCORERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class LabelInferenceResult:
    """Outcome of the online label-inference demo (original ``label_inference_demo.py``)."""
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
    """The original online label-inference loop (``label_inference_demo.py``) on ``count`` shuffled samples, batch 1.

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

    obs_pos = [next(i for i, v in enumerate(cv) if v is o) for o in observed_c]
    ns, nc, nk = len(sv), len(cv), len(kv)
    slots = opt_s.slots(sv) + opt_c.slots(cv) + opt_k.slots(kv)

    def victim_loss(params, xb, yb):
        s_vals, c_vals = params
        h = _substituted(server, sv, s_vals, lambda: server(xb, end=s))
        logits = _substituted(client, cv, c_vals, lambda: client(h, start=s + 1))
        return (cross_entropy(logits, yb),), h

    def victim(s_vals, c_vals, xb, yb):
        _, h, (g_server, g_client) = backend.loss_grads(victim_loss, (s_vals, c_vals), [(0, 0), (0, 1)], xb, yb)
        return h, g_server, g_client

    victim_step = backend.compile(victim)

    def clone_loss(params, xb, label):
        s_vals, k_vals = params
        h = _substituted(server, sv, s_vals, lambda: server(xb, end=s))
        logits = _substituted(clone, kv, k_vals, lambda: clone(h, start=s + 1))
        return (cross_entropy(logits, label),), None

    def clone_update(values, xb, label, g_server, g_client):
        s_vals, c_vals, k_vals = values[:ns], values[ns:ns + nc], values[ns + nc:ns + nc + nk]
        slot_vals = values[ns + nc + nk:]
        os_, oc, ok = slot_vals[:4 * ns], slot_vals[4 * ns:4 * (ns + nc)], slot_vals[4 * (ns + nc):]
        _, _, (g_clone, g_server2) = backend.loss_grads(clone_loss, (s_vals, k_vals), [(0, 1), (0, 0)], xb, label)
        c_vals, oc = opt_c.stateless_step(c_vals, g_client, oc)
        k_vals, ok = opt_k.stateless_step(k_vals, g_clone, ok)
        if label_server_update == "both":  # the original does not detach h: CE_clone reaches the server too
            g_server = [a + b for a, b in zip(g_server, g_server2)]
        s_vals, os_ = opt_s.stateless_step(s_vals, g_server, os_)
        return list(s_vals) + list(c_vals) + list(k_vals) + list(os_) + list(oc) + list(ok), ()

    clone_step = backend.StatefulStep(clone_update, sv + cv + kv + slots)

    labels, predicted = [], []
    start = time.perf_counter()
    for idx in indices:
        xb = ops.cast(x[idx:idx + 1], server.dtype)
        yb = np.asarray([int(y[idx])], np.int32)
        h, g_server, g_client = victim_step(backend.variable_values(sv), backend.variable_values(cv), xb, yb)
        g_obs = [g_client[i] for i in obs_pos]
        pred, _ = label_inference(clone, h, list(g_obs), s, 10, observed_param, vectorized)
        clone_step(xb, np.asarray([pred], np.int32), list(g_server), list(g_client))
        labels.append(int(y[idx]))
        predicted.append(pred)
        if printer is not None:
            printer(f"Label: {int(y[idx])} - Predicted: {pred}")
    return LabelInferenceResult(np.asarray(labels), np.asarray(predicted), int(client_depth), observed_param,
                                dataset, label_server_update, time.perf_counter() - start, indices)


__all__ = ["InversionConfig", "InversionResult", "model_inversion_stealing", "model_inversion_stealing_batched",
           "invert_images", "postprocess", "label_inference", "observed_variables", "first_argmin",
           "run_label_inference", "LabelInferenceResult", "OBSERVED_PARAMS", "TV_FORMS"]

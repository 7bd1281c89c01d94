"""UnSplit against your own Keras client: model inversion + model stealing for any ``keras.Model``.

The original attacks MnistNet and CifarNet cut at a flat layer index (:mod:`unsplit_tf.attacks`). In split
learning as researchers build it, the client's part is usually a ``keras.Model`` of its own. UnSplit's threat
model fits it unchanged: the server knows the client's **architecture** but not its weights, receives the
client's outputs (the smashed data) and trains a **clone** of the architecture while it inverts them.

:func:`model_inversion_stealing_keras` is :func:`unsplit_tf.attacks.model_inversion_stealing` for such a clone,
with the same algorithm and defaults (paper §4.2, Algorithm 1; original ``unsplit/attacks.py``,
``model_inversion_stealing``): x~ starts as the constant 0.5, two AMSGrad Adams (PyTorch-exact
by default, lr 1e-3) are created afresh per call, then ``main_iters`` rounds of ``input_iters`` x~ steps
(MSE + lambda_tv TV + lambda_l2 mean(x~^2)) and ``model_iters`` clone steps (MSE only); the clone is updated in
place, so a loop over targets carries it (model stealing accumulates), and the smashed targets are constants.
All rounds run in one compiled function, the same ``keras.ops`` coordinate descent as
:mod:`unsplit_tf.attacks` (under TensorFlow without XLA unless ``config.jit_compile=True``: XLA's CPU convolutions
in NHWC were 1.4-12x slower here; ``jax.jit`` under JAX), with the clone evaluated through
``keras.Model.stateless_call``; its weights are the loop's tensors.

Batches. Several targets can be inverted in one call. Each has its own x~ (so each x~ follows exactly its
single-target trajectory for a given clone), but the targets **share one clone**, trained on the mean of their
MSEs (a batch loss). That is neither the original (one target at a time, clone carried: ``batch_size=1``, the
default of :func:`invert_keras_client`) nor :func:`unsplit_tf.attacks.model_inversion_stealing_batched` (a clone
copy per target, which needs the MnistNet/CifarNet engine). At one target per call it *is* the original.

Scope and conventions:

* The clone runs with ``training=False`` by default: Dropout is off and BatchNorm uses its moving statistics
  (not trainable; gamma and beta are, and are stolen with the other weights). ``training=True`` runs BatchNorm
  on batch statistics, as a client in training mode computes them. Moving statistics are never updated, the
  client's nor the clone's, and Dropout's seed state is not advanced inside the loop (one mask per call).
* TV needs image inputs (rank 4, in ``keras.config.image_data_format()``); for other inputs pass
  ``lambda_tv=0``. The constant-0.5 start and the l2 prior assume inputs roughly in [0, 1], UnSplit's scale;
  ``x0`` sets another start.
* The reported MSE is on the scale of the images you pass.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
import weakref

import keras
import numpy as np
from keras import ops

from splitnn import backend
from unsplit_tf.attacks import (InversionConfig, adam_step_fn, call_compiled, candidate_scores, coordinate_descent,
                                cross_entropy, first_argmin, initial_state)
from unsplit_tf.util import tv_code_per_sample, tv_paper_per_sample, tv_weight_for

CLONE_REUSE = ("carry", "fresh")


@dataclasses.dataclass
class KerasInversionResult:
    """What :func:`invert_keras_client` produced.

    Attributes:
        x_hat: raw reconstructions [N, ...] (unclamped unless ``config.clamp_x``).
        images: the client's inputs [N, ...] that were attacked.
        mse: per-image MSE between ``x_hat`` and ``images`` [N], on the images' own scale.
        clone: the stolen client (the clone the attack trained; with ``clone_reuse='carry'`` it has seen every
            target).
        lambda_tv, config, batch_size, clone_reuse; seconds: wall time of the attack loops.
    """
    x_hat: np.ndarray
    images: np.ndarray
    mse: np.ndarray
    clone: keras.Model
    lambda_tv: float
    config: InversionConfig
    batch_size: int
    clone_reuse: str
    seconds: float

    @property
    def mean_mse(self) -> float:
        return float(np.mean(self.mse))


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} must be a keras.Model (the client's part of the network), got "
                        f"{type(model).__name__}")


def _input_shape(model, input_shape, what):
    """Per-sample input shape: ``input_shape`` if given, else the model's own (functional/Sequential)."""
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
    else:
        try:
            shape = model.input_shape
        except (AttributeError, ValueError) as err:
            raise ValueError(f"{what} has no defined input shape (a subclassed model?): pass input_shape=, the "
                             f"shape of one input without the batch axis") from err
        if isinstance(shape, list):
            raise ValueError(f"{what} has several inputs; a split-learning client takes one")
        shape = tuple(shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"{what}: the input shape {shape} has unknown dimensions; pass input_shape= with every "
                         f"dimension known")
    return shape


def _training_kwargs(model, training) -> dict:
    """``{'training': training}`` if ``model.call`` takes it (``stateless_call`` passes it on unfiltered)."""
    params = inspect.signature(model.call).parameters
    takes = "training" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {"training": bool(training)} if takes else {}


def _input_dtype(model) -> str:
    """The dtype x~ lives in: the model's input dtype (functional/Sequential), else its weights' dtype."""
    inputs = getattr(model, "inputs", None)  # functional and Sequential models only
    if inputs:
        return keras.backend.standardize_dtype(inputs[0].dtype)
    if model.weights:
        return keras.backend.standardize_dtype(model.weights[0].dtype)
    return keras.backend.standardize_dtype(model.compute_dtype)


def fresh_clone(client: keras.Model, seed: int | None = None) -> keras.Model:
    """The attacker's clone: ``client``'s architecture with new random weights (``keras.models.clone_model``).

    Works for functional and Sequential models; for a subclassed model build a new instance yourself and pass it
    as ``clone=``. ``seed`` seeds the new weights.
    """
    _check_model(client, "client")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    try:
        clone = keras.models.clone_model(client)
    except Exception as err:  # the user's model: say what to do instead
        raise ValueError(f"cannot clone {client.name!r} with keras.models.clone_model ({err}); pass clone=, a new "
                         f"instance of the client's architecture") from err
    if not clone.built:
        clone.build((None,) + _input_shape(client, None, "client"))
    return clone


class _KerasEngine:
    """The compiled coordinate descent for one clone model, dtype and set of options."""

    def __init__(self, clone: keras.Model, cfg: InversionConfig, training: bool, shared_clone: bool):
        self.dtype = _input_dtype(clone)
        model = weakref.ref(clone)  # the engine lives in a cache keyed by the clone: no strong reference back
        call_kwargs = _training_kwargs(clone, training)

        def net(params, x, pre, extra):  # extra: the non-trainable values (BN statistics), read per call
            y, _ = model().stateless_call(params, extra, x, **call_kwargs)
            return ops.cast(y, x.dtype)  # the losses live in x~'s dtype (a no-op unless the model casts)

        data_format = "NHWC" if keras.config.image_data_format() == "channels_last" else "NCHW"

        def tv_fn(x):
            if len(x.shape) != 4:
                return ops.zeros(x.shape[:1], x.dtype)  # only reached with lambda_tv == 0 (checked)
            if cfg.tv_form == "code":
                return tv_code_per_sample(x, data_format)
            return tv_paper_per_sample(x, cfg.tv_reduction, data_format=data_format)

        run = coordinate_descent(net, tv_fn, adam_step_fn(cfg), cfg.clamp_x,
                                 clone_loss="mean" if shared_clone else "sum")
        self._run = backend.compile(run, jit_compile=cfg.xla(default=False))

    def __call__(self, state, target, cfg: InversionConfig, lam_tv: float, extra):
        return call_compiled(self._run, state, target, cfg.main_iters, cfg.input_iters, cfg.model_iters,
                             lam_tv, cfg.lambda_l2, self.dtype, extra)


_ENGINES: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def _engine(clone, cfg: InversionConfig, training: bool, shared_clone: bool) -> _KerasEngine:
    """One compiled loop per clone and options, kept while the clone lives (a loop over targets reuses it)."""
    key = (cfg.tv_form, cfg.tv_reduction, cfg.optimizer, cfg.lr, cfg.keras_epsilon, cfg.clamp_x,
           cfg.xla(default=False), training, shared_clone)
    per_clone = _ENGINES.setdefault(clone, {})
    if key not in per_clone:
        per_clone[key] = _KerasEngine(clone, cfg, training, shared_clone)
    return per_clone[key]


def _resolve_lambda_tv(lambda_tv, cfg: InversionConfig, split_depth):
    if lambda_tv is not None:
        return float(lambda_tv)
    if cfg.tv_schedule == "paper" and split_depth is None:
        raise ValueError("tv_schedule='paper' sets lambda_tv from the split depth (0.1 up to depth 3, 1.0 deeper); "
                         "pass split_depth= or lambda_tv=")
    return tv_weight_for(1 if split_depth is None else int(split_depth), cfg.tv_schedule)


def model_inversion_stealing_keras(clone: keras.Model, target, *, lambda_tv: float | None = None,
                                   config: InversionConfig | None = None, split_depth: int | None = None,
                                   input_shape=None, x0=0.5, training: bool = False):
    """Invert smashed data ``target`` [B, ...] through ``clone`` and steal the client into ``clone`` (in place).

    Args:
        clone: the attacker's copy of the client's architecture (:func:`fresh_clone`), updated in place.
        target: the client's outputs for B inputs. One target per call is the original algorithm; with B > 1
            every target gets its own x~ and all share the clone (module docstring).
        lambda_tv: TV weight; default from ``config.tv_schedule`` (the original's constant 0.1; the paper's
            schedule needs ``split_depth``).
        config: schedule, l2 weight, TV form, optimizer, clamping, XLA (:class:`unsplit_tf.attacks.InversionConfig`;
            ``cifar_minmax`` does not apply here).
        input_shape: per-sample input shape when ``clone`` does not define one.
        x0: start of x~, a number (0.5, the original) or an array [B, ...] / [...].
        training: run the clone in training mode (BatchNorm on batch statistics, Dropout on).

    Returns x~ as a tensor [B, ...].
    """
    _check_model(clone, "clone")
    cfg = config or InversionConfig()
    shape = _input_shape(clone, input_shape, "clone")
    lam_tv = _resolve_lambda_tv(lambda_tv, cfg, split_depth)
    if lam_tv != 0.0 and len(shape) != 3:
        raise ValueError(f"TV is defined on images [H, W, C]; the clone's inputs have shape {shape}: pass "
                         f"lambda_tv=0 for non-image inputs")
    dtype = _input_dtype(clone)
    out_shape = _output_shape(clone, shape, dtype)
    dtype = _input_dtype(clone)  # again: the probe built an unbuilt subclassed clone, which now has weights
    if not clone.trainable_variables and cfg.model_iters and cfg.main_iters:
        raise ValueError(f"clone {clone.name!r} has no trainable weights to steal; set model_iters=0 to invert "
                         f"only")
    target = ops.cast(ops.convert_to_tensor(target), dtype)
    if len(target.shape) < 2 or target.shape[0] == 0:
        raise ValueError(f"target must be a batch of smashed data [B, ...] with B >= 1, got shape "
                         f"{tuple(target.shape)}")
    if tuple(target.shape[1:]) != out_shape:
        raise ValueError(f"the clone's output shape per sample is {out_shape}, but the smashed data has "
                         f"{tuple(target.shape[1:])}: the clone must have the client's architecture")
    b = int(target.shape[0])
    x_start = ops.broadcast_to(ops.cast(ops.convert_to_tensor(x0), dtype), (b,) + shape)
    params = backend.variable_values(clone.trainable_variables)
    state = initial_state(x_start, params)
    if cfg.main_iters > 0:
        state = _engine(clone, cfg, bool(training), shared_clone=b > 1)(
            state, target, cfg, lam_tv, backend.variable_values(clone.non_trainable_variables))
    for v, p in zip(clone.trainable_variables, state[5]):
        v.assign(p)
    return state[0]


def _output_shape(model, shape, dtype):
    try:
        out = model(ops.zeros((1,) + shape, dtype), training=False)  # inference: no BatchNorm update
    except Exception as err:  # the user's model: report what it was given
        raise ValueError(f"{model.name!r} cannot be applied to inputs of shape {shape}: {err}") from err
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(f"{model.name!r} must have a single output (the smashed data), got {type(out).__name__}")
    return tuple(int(d) for d in out.shape[1:])


def _apply(model, x, training):
    """``model(x, training=...)`` without side effects on the model (no BatchNorm statistics update)."""
    y, _ = model.stateless_call(backend.variable_values(model.trainable_variables),
                                backend.variable_values(model.non_trainable_variables), x,
                                **_training_kwargs(model, training))
    return y


def invert_keras_client(client: keras.Model, images, *, clone: keras.Model | None = None,
                        config: InversionConfig | None = None, lambda_tv: float | None = None,
                        split_depth: int | None = None, batch_size: int = 1, clone_reuse: str = "carry",
                        training: bool = False, seed: int | None = None, verbose: bool = False,
                        printer=print) -> KerasInversionResult:
    """UnSplit against ``client`` on ``images`` [N, ...], as the original demo runs it on MnistNet/CifarNet.

    The targets are ``client(images)`` (what the server receives). The clone is ``clone`` or, by default, a
    :func:`fresh_clone` of ``client`` seeded with ``seed``. ``batch_size=1`` (faithful): one image per call in
    order, fresh optimizers per image, one clone carried across the images (``clone_reuse='fresh'`` restores the
    clone's starting weights before every call instead). ``batch_size=k`` inverts k images per call with a shared
    clone. Returns a :class:`KerasInversionResult` with per-image MSE on the images' scale.
    """
    _check_model(client, "client")
    if clone_reuse not in CLONE_REUSE:
        raise ValueError(f"clone_reuse {clone_reuse!r} unknown; expected one of {CLONE_REUSE}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    cfg = config or InversionConfig()
    if clone is None:
        clone = fresh_clone(client, seed)
    _check_model(clone, "clone")
    dtype = _input_dtype(client)
    images = np.asarray(images)
    try:
        shape = _input_shape(client, None, "client")
    except ValueError:  # a subclassed client: it must accept the images as they are
        shape = tuple(images.shape[1:])
    if images.ndim < 2 or len(images) == 0 or tuple(images.shape[1:]) != shape:
        raise ValueError(f"images must be a non-empty batch [N, {', '.join(map(str, shape))}] of the client's "
                         f"inputs, got shape {images.shape}")
    _output_shape(client, shape, dtype)  # builds a subclassed client; a client with several outputs is refused
    smashed = np.concatenate([ops.convert_to_numpy(_apply(client, ops.cast(images[s:s + 256], dtype), training))
                              for s in range(0, len(images), 256)])
    lam_tv = _resolve_lambda_tv(lambda_tv, cfg, split_depth)
    initial = [np.array(v) for v in clone.trainable_variables] if clone_reuse == "fresh" else None
    start = time.perf_counter()
    xs = []
    for s in range(0, len(images), batch_size):
        if initial is not None:
            for v, value in zip(clone.trainable_variables, initial):
                v.assign(value)
        x = model_inversion_stealing_keras(clone, smashed[s:s + batch_size], lambda_tv=lam_tv, config=cfg,
                                           input_shape=shape, training=training)
        xs.append(ops.convert_to_numpy(x))
        if verbose:
            printer(f"\tImages {s}-{s + len(xs[-1]) - 1} done")
    seconds = time.perf_counter() - start
    x_hat = np.concatenate(xs)
    diff = x_hat.astype(np.float64) - images.astype(np.float64)
    mse = np.mean(diff * diff, axis=tuple(range(1, diff.ndim)))
    return KerasInversionResult(x_hat=x_hat, images=images, mse=mse, clone=clone, lambda_tv=lam_tv, config=cfg,
                                batch_size=batch_size, clone_reuse=clone_reuse, seconds=seconds)


def splitnet_bottom(net, depth: int) -> keras.Model:
    """MnistNet/CifarNet layers 0..``depth`` as a plain functional ``keras.Model`` that shares ``net``'s layers.

    A Permute + Flatten before the first linear layer keeps PyTorch's flatten order. It makes the original's
    networks usable here like any user model; the tests check this path against the MnistNet engine.
    """
    depth = int(depth)
    net.check_range(0, depth)
    inp = keras.Input(net.image_shape, dtype=net.dtype)
    x = inp
    for i in range(depth + 1):
        if i == net.first_dense_index:
            x = keras.layers.Permute((3, 1, 2), dtype=net.dtype)(x)
            x = keras.layers.Flatten(dtype=net.dtype)(x)
        x = net.flat_layers[i](x)
    return keras.Model(inp, x, name=f"{net.name}_0_{depth}")


def stolen_model_accuracy(clone: keras.Model, server: keras.Model, x, y, batch_size: int = 500) -> float:
    """Accuracy (%) of the stolen client under the real server: ``argmax(server(clone(x))) == y``.

    UnSplit's meaningful clone metric ("clone bottom + trained server top", the "functionally similar" clone of
    the paper's threat model and Table 2; the original demo's printed "Clone test score" pairs the real client with the
    clone's untrained top instead, see :mod:`unsplit_tf.training`).
    """
    _check_model(clone, "clone")
    _check_model(server, "server")
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    correct = 0
    for s in range(0, len(x), int(batch_size)):
        logits = server(clone(x[s:s + batch_size], training=False), training=False)
        correct += int(np.sum(np.argmax(ops.convert_to_numpy(logits), axis=-1) == y[s:s + batch_size]))
    return 100.0 * correct / len(x)


# ======================================================================================== label inference
OBSERVED = ("last_layer_weight", "all_client_params")


def _leaf_layers(model) -> list:
    """The model's layers in order, nested models expanded (for a subclassed model: in attribute order)."""
    out = []
    for layer in model.layers:
        out += _leaf_layers(layer) if getattr(layer, "layers", None) else [layer]
    return out


def observed_indices(head: keras.Model, observed="last_layer_weight") -> list:
    """Positions in ``head.trainable_variables`` of the variables whose gradient the attacker observes.

    'last_layer_weight' (the original's ``grad_index``): the first weight (the kernel) of the last layer that has
    trainable weights; 'all_client_params': every trainable variable; or a list of positions. Positions are the
    same in the label owner's head and in the attacker's clone of it (same architecture).
    """
    _check_model(head, "head")
    variables = head.trainable_variables
    if not variables:
        raise ValueError(f"head {head.name!r} has no trainable weights (build it first, e.g. by calling it)")
    if isinstance(observed, str):
        if observed == "all_client_params":
            return list(range(len(variables)))
        if observed == "last_layer_weight":
            ids = {id(v): i for i, v in enumerate(variables)}
            last = [layer for layer in _leaf_layers(head) if layer.trainable_weights][-1]
            return [ids[id(last.trainable_weights[0])]]
        raise ValueError(f"observed {observed!r} unknown; expected one of {OBSERVED} or a list of positions")
    positions = [int(i) for i in observed]
    if not positions or any(not 0 <= i < len(variables) for i in positions):
        raise ValueError(f"observed positions must be in 0..{len(variables) - 1}, got {list(observed)}")
    return positions


def observed_gradients(head: keras.Model, h, labels, observed="last_layer_weight") -> list:
    """What the label owner's update reveals: the gradients of CE(head(h), labels) (mean over the batch) with
    respect to the observed variables. The original observes one sample per step (``h`` of batch 1)."""
    positions = observed_indices(head, observed)
    h = ops.convert_to_tensor(h)
    labels = ops.reshape(ops.cast(ops.convert_to_tensor(labels), "int32"), (-1,))
    if int(labels.shape[0]) != int(h.shape[0]):
        raise ValueError(f"{int(h.shape[0])} server outputs but {int(labels.shape[0])} labels")
    non_trainable = backend.variable_values(head.non_trainable_variables)

    def loss(params, h, labels):
        logits, _ = head.stateless_call(params, non_trainable, h, **_training_kwargs(head, False))
        return cross_entropy(logits, labels), None
    _, _, grads = backend.value_and_grad(loss, backend.variable_values(head.trainable_variables), h, labels)
    return [ops.convert_to_numpy(grads[i]) for i in positions]


def label_inference_keras(clone_head: keras.Model, h, observed_grads, observed="last_layer_weight",
                          candidates=None, vectorized: bool = True):
    """UnSplit's label inference (paper §4.3, eq. (3); original ``unsplit/attacks.py``, ``label_inference``)
    against a Keras head that holds the labels.

    Scores every candidate label by the MSE between ``observed_grads`` (from :func:`observed_gradients` on the
    label owner's head, or the real update) and the gradients of CE(clone_head(h), candidate) with respect to
    the same variables of the attacker's clone, and returns ``(label, scores)``: the first argmin (ties go to the
    first candidate, as in the original) and the per-candidate scores. ``h`` is one sample's server output
    (batch 1); ``vectorized=False`` is the original's per-label loop (same result).
    """
    positions = observed_indices(clone_head, observed)
    variables = [clone_head.trainable_variables[i] for i in positions]
    grads = observed_grads if isinstance(observed_grads, (list, tuple)) else [observed_grads]
    if len(grads) != len(variables):
        raise ValueError(f"{len(variables)} observed gradients expected for observed={observed!r}, got {len(grads)}")
    for g, v in zip(grads, variables):
        if tuple(np.shape(g)) != tuple(v.shape):
            raise ValueError(f"observed gradient of shape {tuple(np.shape(g))} does not match the clone's variable "
                             f"{v.path} of shape {tuple(v.shape)}")
    grads = [ops.cast(ops.convert_to_tensor(g), v.dtype) for g, v in zip(grads, variables)]
    h = ops.cast(ops.convert_to_tensor(h), _input_dtype(clone_head))
    num_classes = int(clone_head(h, training=False).shape[-1])
    candidates = list(range(num_classes)) if candidates is None else [int(c) for c in candidates]
    key = (tuple(positions), tuple(candidates), bool(vectorized))
    cache = _SCORERS.setdefault(clone_head, {})
    if key not in cache:
        model = weakref.ref(clone_head)  # the cache is keyed by the clone: no strong reference back
        chosen = set(positions)
        n_vars = len(clone_head.trainable_variables)
        kwargs = _training_kwargs(clone_head, False)

        def forward(obs, rest, x):
            others, non_trainable = rest
            obs, others = iter(obs), iter(others)
            params = [next(obs) if i in chosen else next(others) for i in range(n_vars)]
            return model().stateless_call(params, non_trainable, x, **kwargs)[0]

        def scorer(h_, g_, obs, others, non_trainable):
            return candidate_scores(lambda o, r, x: forward(o, (r, non_trainable), x), h_, g_, obs, others,
                                    candidates, vectorized)
        cache[key] = backend.compile(scorer)
    values = backend.variable_values(clone_head.trainable_variables)
    scores = ops.convert_to_numpy(cache[key](
        h, grads, [values[i] for i in positions], [v for i, v in enumerate(values) if i not in set(positions)],
        backend.variable_values(clone_head.non_trainable_variables)))
    return candidates[first_argmin(scores)], scores


_SCORERS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


__all__ = ["KerasInversionResult", "fresh_clone", "invert_keras_client", "label_inference_keras",
           "model_inversion_stealing_keras", "observed_gradients", "observed_indices", "splitnet_bottom",
           "stolen_model_accuracy"]

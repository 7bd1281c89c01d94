"""He, Zhang and Lee's three model-inversion attacks on a split-learning client, the baselines UnSplit compares with.

Z. He, T. Zhang, R. B. Lee, "Model inversion attacks against collaborative inference", ACSAC 2019 (below "He
et al."), with their public code (github.com/zechenghe/Inverse_Collaborative_Inference, "their code"). The
UnSplit paper (Erdogan et al., WPES'22, §2 and §5) uses them as the reference attacks. The three settings:

* **White-box, rMLE** (He et al. §4, regularised maximum likelihood; their ``inverse_whitebox_MNIST.py`` /
  ``inverse_whitebox_CIFAR.py``, function ``inverse``): the attacker knows the client's weights and optimises x~
  so that the client's features of x~ match the observed ones: ``mean((f(x~) - f(x))^2) + lambda_TV TV(x~) +
  lambda_l2 mean(x~^2)`` (:func:`white_box_inversion`).
* **Black-box, inverse network** (He et al. §5; their ``inverse_blackbox_decoder_CIFAR.py``, ``trainDecoderDNN``,
  decoders in ``net.py``): the attacker queries the client with images of its choosing and trains a decoder from
  smashed data back to images (MSE) (:func:`train_inverse_network`, :func:`black_box_inversion`).
* **Query-free, shadow model** (He et al. §6; their ``inverse_query_free_CIFAR.py``, ``trainAlternativeDNN`` and
  ``inverse``): the attacker (the server) trains a shadow client so that its own frozen top classifies auxiliary
  data correctly through the shadow, then runs the white-box attack on the shadow (:func:`query_free_inversion`).

Scale and parametrisation (their code): their models take normalised images z = (x - mu) / sigma (MNIST mu =
sigma = 0.5; CIFAR ImageNet mean/std, ``utils.py``, ``preprocess``), and x~ is optimised, regularised and started
(at 0) in that space. Here the client takes UnSplit's [0, 1] images, so x~ is parametrised the same way: the
optimiser moves z~, the client sees ``mu + sigma z~``, TV and l2 act on z~, z~ starts at 0 (the 0.5 gray image on
MNIST, the same start as UnSplit's). Their learning rates and TV/l2 weights therefore mean what they meant there.
``HeConfig.input_mean`` / ``input_std`` override mu, sigma.

Scoring: every result's ``mse`` is per image on the [0, 1] scale, computed on ``x_eval`` = the reconstruction
post-processed exactly as UnSplit's :func:`unsplit_tf.attacks.postprocess` does (per-image min-max normalisation
for CIFAR, nothing for MNIST), so the numbers are comparable with :func:`unsplit_tf.attacks.invert_images`. x~
itself is not clipped (UnSplit does not clip either; their code clips only when saving a PNG).

Choices the UnSplit paper leaves open, made here (the defaults; every one is an argument):

* **Black-box queries**: the caller passes them; the intended use (and the tests') draws them from the
  **training split**, disjoint from the test-split targets. The number of queries is ``len(queries)``.
* **Query-free auxiliary data**: a labelled, **held-out part of the training split** (disjoint from the targets
  and, for a fair shadow, from the data the victim trained on where the caller has that split). Shadow accuracy
  is reported through the frozen server top on the aux data and, when ``heldout=`` is passed, on held-out data.
* **Decoder layout** (:func:`default_decoder`), generalising their ``net.py`` decoders from the smashed shape
  [h, w, c] to the image [H, W, C]: if H is not h times a power of two, first a 'valid' transposed conv with
  kernel H/2^k - h + 1 (k the largest with H/2^k >= h integral) to reach it; then k stride-2 transposed convs
  (kernel 3, 'same', = PyTorch's k3 s2 p1 op1), each followed by ReLU, with c channels except 64 for the last;
  then a kernel-3 'same' transposed conv to C channels, linear (normalised image space). This reproduces their
  ``CIFAR10CNNDecoderconv1`` (conv11), ``CIFAR10CNNDecoderReLU22`` and ``CIFAR10CNNDecoderReLU32`` layer for layer
  and the shape of ``LeNetDecoderconv1`` (one k5 layer 24 -> 28). Flat features (after a dense layer): a Dense to
  [H/4, W/4, 64] with ReLU, then the same path (their repository has no decoder for dense features). Keras'
  default initialisers (not PyTorch's).
* **Shadow architecture**: a freshly initialised copy of the client's architecture (He et al. §6 assume the
  server knows it); for a SplitNet server, layers 0..d of ``build_model(arch, seed)``.
* **Batching**: several targets are inverted at once; the objective is the sum of the per-image objectives
  (their code inverts one image at a time), so each x~ follows its single-image trajectory.
* Shuffling: the decoder's and shadow's minibatches are reshuffled every epoch (seeded); their DataLoaders do not
  shuffle. The last partial batch is dropped, as their ``NBatch = len(trainset) / BatchSize`` does.

Optimiser (all three, their code throughout): ``torch.optim.Adam(lr, eps=1e-3, amsgrad=True)``, reproduced with
the PyTorch-exact rule of :mod:`unsplit_tf.optim` at eps 1e-3. Written once in ``keras.ops`` and
``Model.stateless_call``; every loop or training step is compiled through :mod:`splitnn.backend` (``tf.function``
under TensorFlow, ``jax.jit`` under JAX).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import keras
import numpy as np
from keras import ops

from splitnn import backend
from splitnn.metrics import mse_per_image
from unsplit_tf.attacks import cross_entropy, postprocess
from unsplit_tf.keras_client import _apply, _input_dtype, _training_kwargs, splitnet_bottom
from unsplit_tf.models import SplitNet, build_model
from unsplit_tf.optim import torch_adam_update
from unsplit_tf.util import l2loss_per_sample, mean, tv_code_per_sample

#: Their normalisation (``utils.py``, ``preprocess``/``deprocess``): 1 channel, 3 channels.
HE_NORMALISATION = {1: ((0.5,), (0.5,)), 3: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
HE_ADAM_EPS = 1e-3  # every optimizer in their code: optim.Adam(..., eps=1e-3, amsgrad=True)


# ============================================================================================ configuration
@dataclasses.dataclass(frozen=True)
class HeConfig:
    """Options of the (regularised MLE) inversion loop, used by the white-box and query-free attacks.

    Defaults are their white-box MNIST settings (``inverse_whitebox_MNIST.py``: the header's "good parameter set"
    for ``ReLU2``, ``--iters 5000 --learning_rate 1e-2 --lambda_TV 1e0 --lambda_l2 0.0``; 1.0 and 0.0 are also
    that script's argparse defaults). Their CIFAR README command uses lambda_TV 1e1 (``ReLU22``); the query-free
    attack's is :data:`QUERY_FREE_CONFIG`.

    Attributes:
        iters: Adam steps on x~ (5000). lr: learning rate (1e-2). eps: Adam epsilon (1e-3, their ``--eps``).
        amsgrad: AMSGrad (True, their ``--AMSGrad``).
        lambda_tv: weight of their TV (``utils.py``, ``TV``: squared anisotropic differences, normalised by
            count, per image) (1.0). lambda_l2: weight of mean(z~^2) (0.0).
        input_mean, input_std: the normalisation z = (x - mean) / std of x~'s parametrisation (None: theirs for the
            image's channel count, :data:`HE_NORMALISATION`; a number or a per-channel tuple otherwise).
        cifar_minmax: score CIFAR reconstructions after UnSplit's per-image min-max (None: as UnSplit, for
            CifarNet-shaped 32x32x3 images; True/False force it).
        jit_compile: XLA under TensorFlow (False: XLA's NHWC CPU convolutions were slower here, see
            :mod:`unsplit_tf.keras_client`).
    """
    iters: int = 5000
    lr: float = 1e-2
    eps: float = HE_ADAM_EPS
    amsgrad: bool = True
    lambda_tv: float = 1.0
    lambda_l2: float = 0.0
    input_mean: Any = None
    input_std: Any = None
    cifar_minmax: bool | None = None
    jit_compile: bool = False

    def __post_init__(self):
        if isinstance(self.iters, bool) or int(self.iters) != self.iters or self.iters < 0:
            raise ValueError(f"HeConfig.iters must be a non-negative integer, got {self.iters!r}")
        for name in ("lr", "eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"HeConfig.{name} must be a positive number, got {value!r}")
        for name in ("lambda_tv", "lambda_l2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"HeConfig.{name} must be a non-negative number, got {value!r}")
        if self.input_std is not None and np.any(np.asarray(self.input_std, np.float64) <= 0):
            raise ValueError(f"HeConfig.input_std must be positive, got {self.input_std!r}")

    @classmethod
    def from_dict(cls, options: dict) -> "HeConfig":
        """A config from a dict; unknown (e.g. misspelt) keys are refused with the list of valid ones."""
        return he_config(**options)


def he_config(base: HeConfig | None = None, **options) -> HeConfig:
    """``base`` (default :class:`HeConfig`) with ``options`` replaced; an unknown key is a ValueError."""
    names = [f.name for f in dataclasses.fields(HeConfig)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"unknown HeConfig option(s) {unknown}; expected some of {names}")
    return dataclasses.replace(base or HeConfig(), **options)


#: The query-free attack's inversion settings (their README, "Inverse the shadow model": ``--iter 500
#: --learning_rate 1e-1 --lambda_TV 2e0 --lambda_l2 0.0``).
QUERY_FREE_CONFIG = HeConfig(iters=500, lr=1e-1, lambda_tv=2.0, lambda_l2=0.0)


@dataclasses.dataclass
class HeInversionResult:
    """What one of the three attacks produced.

    Attributes:
        x_hat: raw reconstructions [N, H, W, C] on the image scale (``mu + sigma z~``, unclipped).
        x_eval: what ``mse`` is computed on: ``x_hat`` after UnSplit's post-processing (module docstring).
        targets: the true images [N, H, W, C] in [0, 1]. mse: per-image MSE on [0, 1], [N]; ``mean_mse``.
        method: 'white_box', 'black_box' or 'query_free'. split_depth: the SplitNet depth, or None.
        seconds: wall time of the attack (for query-free: shadow training + inversion).
        info: method specifics (final feature loss per image, query count, decoder loss, shadow accuracies, ...).
    """
    x_hat: np.ndarray
    x_eval: np.ndarray
    targets: np.ndarray
    mse: np.ndarray
    method: str
    split_depth: int | None
    seconds: float
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def mean_mse(self) -> float:
        return float(np.mean(self.mse))


# ================================================================================================ helpers
def _check_depth(model, split_depth, what="client"):
    """A SplitNet needs a depth 0..last_index-1 (a non-empty server top); any other model takes None."""
    if isinstance(model, SplitNet):
        if split_depth is None:
            raise ValueError(f"{what} is a SplitNet ({model.name}): pass split_depth (0-{model.last_index - 1})")
        if isinstance(split_depth, bool) or not isinstance(split_depth, (int, np.integer)) \
                or not 0 <= int(split_depth) < model.last_index:
            raise ValueError(f"split depth {split_depth!r} out of range for {model.name}: expected an integer "
                             f"0-{model.last_index - 1}")
        return int(split_depth)
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} must be a SplitNet or a keras.Model, got {type(model).__name__}")
    if split_depth is not None:
        raise ValueError(f"split_depth applies to a SplitNet {what}; {model.name!r} is the client's part itself, "
                         f"pass split_depth=None")
    return None


def _bottom(model, split_depth, what="client"):
    """(keras.Model of the client part, depth): a SplitNet's layers 0..d, or the model itself."""
    d = _check_depth(model, split_depth, what)
    return (splitnet_bottom(model, d) if d is not None else model), d


def _image_shape(model, what="client"):
    if isinstance(model, SplitNet):
        return tuple(model.image_shape)
    try:
        shape = model.input_shape
    except (AttributeError, ValueError) as err:
        raise ValueError(f"{what} {model.name!r} has no defined input shape; build it as a functional or "
                         f"Sequential model") from err
    if isinstance(shape, list) or any(s is None for s in shape[1:]):
        raise ValueError(f"{what} {model.name!r} must have one input with a known shape, got {shape}")
    return tuple(int(s) for s in shape[1:])


def _check_images(images, shape, what="images"):
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] == 0 or tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} must be a non-empty batch [N, {', '.join(map(str, shape))}] of the client's input "
                         f"images, got shape {images.shape}")
    return images


def _normalisation(cfg: HeConfig, channels: int, dtype):
    """(mu, sigma) as [C] tensors: the config's, or their code's for the channel count."""
    default = HE_NORMALISATION.get(channels, ((0.5,) * channels, (0.5,) * channels))
    mu = default[0] if cfg.input_mean is None else cfg.input_mean
    sd = default[1] if cfg.input_std is None else cfg.input_std
    mu = np.broadcast_to(np.asarray(mu, np.float64), (channels,))
    sd = np.broadcast_to(np.asarray(sd, np.float64), (channels,))
    return ops.convert_to_tensor(mu, dtype), ops.convert_to_tensor(sd, dtype)


def _apply_batches(model, x, dtype, batch=256):
    """``model(x)`` in inference mode, without side effects (:func:`unsplit_tf.keras_client._apply`), in
    batches; NumPy."""
    return np.concatenate([np.asarray(ops.convert_to_numpy(_apply(model, ops.cast(x[s:s + batch], dtype), False)))
                           for s in range(0, len(x), batch)])


def _score(x_hat, targets, cfg_minmax):
    minmax = cfg_minmax if cfg_minmax is not None else tuple(targets.shape[1:]) == (32, 32, 3)
    x_eval = postprocess(x_hat, "cifar" if minmax else "mnist", cifar_minmax=True)
    return x_eval, mse_per_image(x_eval, targets)


# ====================================================================================== white box (rMLE)
def rmle_objective(forward, mu, sigma):
    """Per-image rMLE objective (He et al. §4, eq. of the regularised MLE; their ``inverse``): for z~ [B, ...],
    ``mean((forward(mu + sigma z~) - target)^2) + lam_tv TV(z~) + lam_l2 mean(z~^2)`` per image, [B]. Also
    returns the per-image feature loss."""
    def per_image(z, params, target, lam_tv, lam_l2):
        feats = forward(params, mu + sigma * z)
        d = ops.cast(feats, z.dtype) - target
        feat = mean(d * d, axis=tuple(range(1, len(d.shape))))
        return feat + lam_tv * tv_code_per_sample(z) + lam_l2 * l2loss_per_sample(z), feat
    return per_image


def _rmle_loop(forward, mu, sigma, cfg: HeConfig):
    """The compiled white-box loop: ``run(z, n_iters, params, target, lam_tv, lam_l2) -> (z, feature_loss)``."""
    per_image = rmle_objective(forward, mu, sigma)

    def objective(p, params, target, lam_tv, lam_l2):
        total, feat = per_image(p[0], params, target, lam_tv, lam_l2)
        return ops.sum(total), feat  # a sum: every image gets exactly its own gradient

    def run(z, n_iters, params, target, lam_tv, lam_l2):
        m, v, vmax = (ops.zeros_like(z) for _ in range(3))

        def body(i, z, m, v, vmax):
            _, _, (g,) = backend.value_and_grad(objective, [z], params, target, lam_tv, lam_l2)
            z, m, v, vmax = torch_adam_update(z, g, m, v, vmax, i + 1, lr=cfg.lr, eps=cfg.eps, amsgrad=cfg.amsgrad)
            return i + 1, z, m, v, vmax
        out = ops.while_loop(lambda i, *a: i < n_iters, body, (ops.zeros((), "int32"), z, m, v, vmax))
        z = out[1]
        _, feat = per_image(z, params, target, lam_tv, lam_l2)
        return z, feat

    return backend.compile(run, jit_compile=cfg.jit_compile)


def _rmle(bottom: keras.Model, smashed, image_shape, cfg: HeConfig, x0=None):
    """Run the rMLE loop through ``bottom`` against ``smashed`` [B, ...]; returns (x_hat, feature loss [B])."""
    dtype = _input_dtype(bottom)
    mu, sigma = _normalisation(cfg, image_shape[-1], dtype)
    ntv = backend.variable_values(bottom.non_trainable_variables)
    kw = _training_kwargs(bottom, False)

    def forward(params, x):
        return bottom.stateless_call(params, ntv, x, **kw)[0]

    b = int(smashed.shape[0])
    if x0 is None:
        z0 = ops.zeros((b,) + tuple(image_shape), dtype)  # their start: torch.zeros in normalised space
    else:
        z0 = (ops.broadcast_to(ops.cast(ops.convert_to_tensor(x0), dtype), (b,) + tuple(image_shape)) - mu) / sigma
    run = _rmle_loop(forward, mu, sigma, cfg)
    z, feat = run(z0, ops.convert_to_tensor(int(cfg.iters), "int32"),
                  backend.variable_values(bottom.trainable_variables), ops.cast(smashed, dtype),
                  ops.convert_to_tensor(cfg.lambda_tv, dtype), ops.convert_to_tensor(cfg.lambda_l2, dtype))
    x_hat = ops.convert_to_numpy(mu + sigma * z)
    return np.asarray(x_hat, np.float32), np.asarray(ops.convert_to_numpy(feat), np.float64)


def white_box_inversion(client, images, split_depth=None, config: HeConfig | None = None, *,
                        x0=None) -> HeInversionResult:
    """He et al.'s white-box attack, rMLE (§4; their ``inverse_whitebox_*.py``, ``inverse``), on ``images``.

    The attacker knows the client's weights: ``client`` is a SplitNet cut at ``split_depth`` (layers
    0..split_depth) or the client's own keras.Model (``split_depth=None``). The observed features are
    ``client(images)``; x~ (``mu + sigma z~``, z~ from 0, or from ``x0`` on the image scale) minimises the
    feature MSE + TV + l2 for ``config.iters`` Adam steps (:class:`HeConfig`, their defaults). All images are
    inverted at once, each with its own objective (the sum of per-image objectives).
    """
    cfg = config or HeConfig()
    if not isinstance(cfg, HeConfig):
        raise TypeError(f"config must be a HeConfig, got {type(cfg).__name__}")
    bottom, d = _bottom(client, split_depth)
    shape = _image_shape(client)
    images = _check_images(images, shape)
    start = time.perf_counter()
    smashed = _apply_batches(bottom, images, _input_dtype(bottom))
    x_hat, feat = _rmle(bottom, smashed, shape, cfg, x0)
    seconds = time.perf_counter() - start
    x_eval, mse = _score(x_hat, images, cfg.cifar_minmax)
    return HeInversionResult(x_hat, x_eval, images, mse, "white_box", d, seconds,
                             dict(feature_loss=feat, config=cfg))


# ======================================================================================== black box
@dataclasses.dataclass
class InverseNetwork:
    """A trained inverse network (He et al. §5) and how it was trained.

    ``decoder`` maps smashed data to normalised images z; ``__call__`` returns images ``mu + sigma decoder(h)``.
    ``queries``: the number of client queries (training pairs); ``losses``: mean training loss per epoch (MSE in
    the normalised space, their ``MSELoss``); ``steps``: optimiser steps taken; ``smashed_shape``, ``image_shape``.
    """
    decoder: keras.Model
    queries: int
    losses: list
    steps: int
    smashed_shape: tuple
    image_shape: tuple
    input_mean: np.ndarray
    input_std: np.ndarray
    split_depth: int | None = None

    def __call__(self, smashed) -> np.ndarray:
        z = _apply_batches(self.decoder, np.asarray(smashed), _input_dtype(self.decoder))
        return (self.input_mean + self.input_std * z).astype(np.float32)


def default_decoder(smashed_shape, image_shape, seed: int | None = None) -> keras.Model:
    """The default inverse network for ``smashed_shape`` -> ``image_shape`` (layout: module docstring, after
    their ``net.py`` decoders ``CIFAR10CNNDecoder*`` / ``LeNetDecoder*``)."""
    smashed_shape, image_shape = tuple(int(s) for s in smashed_shape), tuple(int(s) for s in image_shape)
    big, wide, ch = image_shape
    if seed is not None:
        backend.set_seed(int(seed))
    inp = keras.Input(smashed_shape)
    x = inp
    if len(smashed_shape) == 1:
        k = 2 if big % 4 == 0 and wide % 4 == 0 else 0
        x = keras.layers.Dense((big >> k) * (wide >> k) * 64, activation="relu")(x)
        x = keras.layers.Reshape((big >> k, wide >> k, 64))(x)
        h, w, c = big >> k, wide >> k, 64
    elif len(smashed_shape) == 3:
        h, w, c = smashed_shape
    else:
        raise ValueError(f"no default decoder for smashed data of shape {smashed_shape}; pass decoder=")
    if h > big or w > wide:
        raise ValueError(f"smashed data {smashed_shape} is larger than the image {image_shape}; pass decoder=")
    k = 0  # the largest k with H / 2^k integral and >= h (and the same for W)
    while big % (2 ** (k + 1)) == 0 and wide % (2 ** (k + 1)) == 0 and big // 2 ** (k + 1) >= h \
            and wide // 2 ** (k + 1) >= w:
        k += 1
    th, tw = big // 2 ** k, wide // 2 ** k
    if (th, tw) != (h, w):  # a 'valid' transposed conv: h + kernel - 1 = th
        last = k == 0
        x = keras.layers.Conv2DTranspose(ch if last else c, (th - h + 1, tw - w + 1), padding="valid",
                                         activation=None if last else "relu")(x)
        if last:
            return keras.Model(inp, x, name="inverse_network")
    for i in range(k):
        x = keras.layers.Conv2DTranspose(64 if i == k - 1 else c, 3, strides=2, padding="same",
                                         activation="relu")(x)
    x = keras.layers.Conv2DTranspose(ch, 3, padding="same")(x)
    return keras.Model(inp, x, name="inverse_network")


def _adam_trainer(model: keras.Model, loss_fn, lr: float, eps: float, amsgrad: bool):
    """A compiled training step for ``model`` on ``loss_fn(y_pred, *targets)``, PyTorch-exact Adam (their
    ``optim.Adam(lr, eps, amsgrad)``). ``step(x, *targets, lr_factor) -> loss``; ``lr_factor`` scales the step
    (their learning-rate halving) without recompiling."""
    tvars, ntvars = list(model.trainable_variables), list(model.non_trainable_variables)
    slots = [keras.Variable(ops.zeros(v.shape, v.dtype), trainable=False, name=f"adam_{k}")
             for k in ("m", "v", "vmax") for v in tvars]
    counter = keras.Variable(0, dtype="int32", trainable=False, name="adam_step")
    n = len(tvars)
    kw = _training_kwargs(model, True)
    dtype = _input_dtype(model)

    def objective(params, ntv, x, targets):
        y, new_ntv = model.stateless_call(params, ntv, x, **kw)
        return loss_fn(y, *targets), new_ntv

    def step(values, x, *rest):
        *targets, factor = rest
        params, ntv = values[:n], values[n:n + len(ntvars)]
        sl, t = values[n + len(ntvars):-1], values[-1]
        x = ops.cast(x, dtype)
        loss, new_ntv, grads = backend.value_and_grad(objective, list(params), list(ntv), x, targets)
        t = t + 1
        new_params, new_slots = [], [[], [], []]
        for i, (p, g) in enumerate(zip(params, grads)):
            p1, m, v, vm = torch_adam_update(p, ops.cast(g, p.dtype), sl[i], sl[n + i], sl[2 * n + i], t, lr=lr,
                                             eps=eps, amsgrad=amsgrad)
            new_params.append(p - ops.cast(factor, p.dtype) * (p - p1))
            for lst, val in zip(new_slots, (m, v, vm)):
                lst.append(val)
        return new_params + list(new_ntv) + new_slots[0] + new_slots[1] + new_slots[2] + [t], loss

    return backend.StatefulStep(step, tvars + ntvars + slots + [counter])


def _train_epochs(step, inputs, targets, n, batch_size, epochs, steps, halve_every, rng):
    """Minibatch loop shared by the decoder and the shadow: reshuffled epochs, last partial batch dropped, the
    learning rate halved every ``halve_every`` epochs (their ``NDecreaseLR``); ``steps`` caps the total."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"{n} training samples are fewer than one batch of {batch_size}")
    total = per_epoch * int(epochs) if steps is None else min(per_epoch * int(epochs), int(steps))
    losses, done, epoch = [], 0, 0
    while done < total:
        factor = 0.5 ** (epoch // halve_every) if halve_every else 1.0
        order = rng.permutation(n)
        acc, count = 0.0, 0
        for b in range(per_epoch):
            if done >= total:
                break
            sel = order[b * batch_size:(b + 1) * batch_size]
            acc += float(ops.convert_to_numpy(step(inputs[sel], *[t[sel] for t in targets],
                                                   np.asarray(factor, np.float32))))
            count += 1
            done += 1
        losses.append(acc / max(count, 1))
        epoch += 1
    return losses, done


def _check_training_args(epochs, batch_size, lr, steps, halve_every):
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < (0 if name == "epochs" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'epochs' else 'positive'} integer, "
                             f"got {value!r}")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 0):
        raise ValueError(f"steps must be a non-negative integer or None, got {steps!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if halve_every is not None and (int(halve_every) != halve_every or halve_every < 0):
        raise ValueError(f"lr_halve_every must be a non-negative integer or None, got {halve_every!r}")


def train_inverse_network(client, queries, split_depth=None, *, decoder: keras.Model | None = None,
                          epochs: int = 50, batch_size: int = 32, lr: float = 1e-3, lr_halve_every: int | None = 10,
                          steps: int | None = None, input_mean=None, input_std=None,
                          seed: int | None = None) -> InverseNetwork:
    """He et al.'s black-box attack, training phase (§5; their ``inverse_blackbox_decoder_CIFAR.py``,
    ``trainDecoderDNN``): query ``client`` with ``queries`` [Q, H, W, C] (images the attacker picks; Q queries)
    and train ``decoder`` (default :func:`default_decoder`) to map the smashed data back to the normalised
    images with MSE.

    Defaults are theirs: ``epochs=50`` (README ``--iter 50``), ``batch_size=32``, Adam ``lr=1e-3`` with eps 1e-3
    and AMSGrad, the learning rate halved every ``lr_halve_every=10`` epochs (``--decrease_LR`` default; None or
    0: never). ``steps`` (not theirs) caps the total number of optimiser steps, for a budget that does not grow
    with Q. The client is only queried (inference mode), never changed.
    """
    bottom, d = _bottom(client, split_depth)
    shape = _image_shape(client)
    queries = _check_images(queries, shape, "queries")
    _check_training_args(epochs, batch_size, lr, steps, lr_halve_every)
    if decoder is not None and not isinstance(decoder, keras.Model):
        raise TypeError(f"decoder must be a keras.Model, got {type(decoder).__name__}")
    dtype = _input_dtype(bottom)
    cfg = HeConfig(input_mean=input_mean, input_std=input_std)
    mu, sd = (np.asarray(ops.convert_to_numpy(t), np.float32) for t in _normalisation(cfg, shape[-1], "float32"))
    smashed = _apply_batches(bottom, queries, dtype)
    smashed_shape = tuple(smashed.shape[1:])
    if decoder is None:
        decoder = default_decoder(smashed_shape, shape, seed)
    out = decoder.compute_output_shape((None,) + smashed_shape)
    if tuple(out[1:]) != shape:
        raise ValueError(f"the decoder maps smashed data {smashed_shape} to {tuple(out[1:])}, not to the image "
                         f"shape {shape}")
    z = ((queries - mu) / sd).astype(np.float32)

    def loss_fn(y, target):
        diff = ops.cast(y, target.dtype) - target
        return mean(diff * diff)  # torch.nn.MSELoss: mean over every element

    step = _adam_trainer(decoder, loss_fn, float(lr), HE_ADAM_EPS, True)
    rng = np.random.default_rng(seed)
    losses, done = _train_epochs(step, smashed, [z], len(z), int(batch_size), epochs, steps, lr_halve_every, rng)
    return InverseNetwork(decoder, len(queries), losses, done, smashed_shape, shape, mu, sd, d)


def black_box_inversion(inverse_net: InverseNetwork, client, images, split_depth=None, *,
                        cifar_minmax: bool | None = None) -> HeInversionResult:
    """He et al.'s black-box attack, inference (§5; their ``inverse``): x~ = inverse_net(client(images)).
    ``cifar_minmax`` as :class:`HeConfig`'s (None: as UnSplit scores CIFAR-shaped images)."""
    if not isinstance(inverse_net, InverseNetwork):
        raise TypeError(f"inverse_net must be an InverseNetwork from train_inverse_network, got "
                        f"{type(inverse_net).__name__}")
    bottom, d = _bottom(client, split_depth)
    shape = _image_shape(client)
    images = _check_images(images, shape)
    if shape != tuple(inverse_net.image_shape):
        raise ValueError(f"the inverse network reconstructs images {inverse_net.image_shape}, the client takes {shape}")
    start = time.perf_counter()
    smashed = _apply_batches(bottom, images, _input_dtype(bottom))
    if tuple(smashed.shape[1:]) != tuple(inverse_net.smashed_shape):
        raise ValueError(f"the client's smashed data has shape {tuple(smashed.shape[1:])}, the inverse network was "
                         f"trained on {inverse_net.smashed_shape} (another split depth?)")
    x_hat = inverse_net(smashed)
    seconds = time.perf_counter() - start
    x_eval, mse = _score(x_hat, images, cifar_minmax)
    return HeInversionResult(x_hat, x_eval, images, mse, "black_box", d, seconds,
                             dict(queries=inverse_net.queries, decoder_losses=list(inverse_net.losses),
                                  decoder_steps=inverse_net.steps))


# ======================================================================================== query free
class _FrozenTop:
    """The server's top as a pure function of its (constant) weights: ``fn(values, h) -> logits``."""

    def __init__(self, server, split_depth):
        if isinstance(server, SplitNet):
            self.variables = server.range_weights(split_depth + 1)
            start = split_depth + 1

            def fn(values, h):
                with keras.StatelessScope(state_mapping=list(zip(self.variables, values))):
                    return server(h, start=start)
        else:
            tv, ntv = list(server.trainable_variables), list(server.non_trainable_variables)
            self.variables = tv + ntv
            kw = _training_kwargs(server, False)

            def fn(values, h):
                return server.stateless_call(values[:len(tv)], values[len(tv):], h, **kw)[0]
        self.fn = fn

    def values(self):
        return backend.variable_values(self.variables)


def _shadow_accuracy(shadow, top: _FrozenTop, x, y, batch=500):
    values = top.values()
    dtype = _input_dtype(shadow)
    correct = 0
    for s in range(0, len(x), batch):
        h = _apply_batches(shadow, x[s:s + batch], dtype)
        logits = ops.convert_to_numpy(top.fn(values, ops.convert_to_tensor(h)))
        correct += int(np.sum(np.argmax(logits, axis=-1) == y[s:s + batch]))
    return 100.0 * correct / len(x)


def _labels(y, n, what):
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{what}: {n} images but {len(y)} labels")
    return y.astype(np.int32)


def query_free_inversion(server_top, aux_images, aux_labels, images, client_smashed, split_depth=None, *,
                         shadow: keras.Model | None = None, shadow_epochs: int = 50, shadow_batch_size: int = 32,
                         shadow_lr: float = 1e-3, shadow_lr_halve_every: int | None = 10,
                         shadow_steps: int | None = None, heldout=None, config: HeConfig | None = None,
                         seed: int | None = None) -> HeInversionResult:
    """He et al.'s query-free attack (§6; their ``inverse_query_free_CIFAR.py``): train a shadow client, then
    invert ``client_smashed`` through it.

    Args:
        server_top: the server's model, FROZEN throughout: a SplitNet (its layers split_depth+1..end are the top)
            or a keras.Model from smashed data to logits (``split_depth=None``; then pass ``shadow``).
        aux_images, aux_labels: the attacker's labelled auxiliary data (module docstring: a held-out part of the
            training split).
        images: the targets' true images (for scoring); client_smashed: what the server received for them.
        shadow: a model of the client's architecture; a fresh copy (``keras.models.clone_model``, new weights) is
            trained. Default: layers 0..split_depth of ``build_model(server_top.arch, seed)``.
        shadow_epochs, shadow_batch_size, shadow_lr, shadow_lr_halve_every: their ``trainAlternativeDNN`` (README
            ``--iter 50``, batch 32, Adam lr 1e-3 eps 1e-3 AMSGrad, CE loss, halved every 10 epochs).
            ``shadow_steps`` (not theirs) caps the optimiser steps.
        heldout: optional (x, y) to report the shadow's accuracy through the frozen top on unseen data.
        config: the inversion (default :data:`QUERY_FREE_CONFIG`, their README's 500 iters, lr 0.1, TV 2).
    The result's ``info`` has ``shadow_accuracy_aux`` (and ``shadow_accuracy_heldout``) in %, the shadow model,
    its training losses and steps.
    """
    cfg = config or QUERY_FREE_CONFIG
    if not isinstance(cfg, HeConfig):
        raise TypeError(f"config must be a HeConfig, got {type(cfg).__name__}")
    d = _check_depth(server_top, split_depth, "server_top")
    if shadow is None:
        if d is None:
            raise ValueError("server_top is not a SplitNet: pass shadow=, a model of the client's architecture")
        shape = tuple(server_top.image_shape)
    else:
        if not isinstance(shadow, keras.Model):
            raise TypeError(f"shadow must be a keras.Model, got {type(shadow).__name__}")
        shape = _image_shape(shadow, "shadow")
    images = _check_images(images, shape)
    aux_images = _check_images(aux_images, shape, "aux_images")
    aux_labels = _labels(aux_labels, len(aux_images), "aux data")
    if heldout is not None:
        hx = _check_images(heldout[0], shape, "heldout images")
        hy = _labels(heldout[1], len(hx), "heldout data")
    _check_training_args(shadow_epochs, shadow_batch_size, shadow_lr, shadow_steps, shadow_lr_halve_every)
    client_smashed = np.asarray(client_smashed)
    if len(client_smashed) != len(images):
        raise ValueError(f"{len(images)} target images but {len(client_smashed)} smashed samples")

    if seed is not None:
        backend.set_seed(int(seed))
    if shadow is None:
        model = splitnet_bottom(build_model(server_top.arch, seed=seed, dtype=server_top.dtype), d)
    else:
        model = keras.models.clone_model(shadow)  # same architecture, new weights
        if not model.built:
            model.build((None,) + shape)
    out_shape = tuple(model.compute_output_shape((None,) + shape)[1:])
    if tuple(client_smashed.shape[1:]) != out_shape:
        raise ValueError(f"client_smashed has per-sample shape {tuple(client_smashed.shape[1:])}, the shadow "
                         f"outputs {out_shape}: a different split depth or architecture")
    top = _FrozenTop(server_top, d)
    start = time.perf_counter()

    def loss_fn(h, y, top_values):  # CE of the frozen top on the shadow's output; its weights are inputs
        return cross_entropy(top.fn(top_values, h), y)

    trainer = _adam_trainer(model, loss_fn, float(shadow_lr), HE_ADAM_EPS, True)
    top_values = top.values()

    def step(x, y, factor):
        return trainer(x, y, top_values, factor)

    rng = np.random.default_rng(seed)
    losses, done = _train_epochs(step, aux_images, [aux_labels], len(aux_images), int(shadow_batch_size),
                                 shadow_epochs, shadow_steps, shadow_lr_halve_every, rng)
    info = dict(shadow=model, shadow_losses=losses, shadow_steps=done,
                shadow_accuracy_aux=_shadow_accuracy(model, top, aux_images, aux_labels), config=cfg)
    if heldout is not None:
        info["shadow_accuracy_heldout"] = _shadow_accuracy(model, top, hx, hy)
    x_hat, feat = _rmle(model, ops.convert_to_tensor(client_smashed), shape, cfg)
    seconds = time.perf_counter() - start
    info["feature_loss"] = feat
    x_eval, mse = _score(x_hat, images, cfg.cifar_minmax)
    return HeInversionResult(x_hat, x_eval, images, mse, "query_free", d, seconds, info)


__all__ = ["HeConfig", "HeInversionResult", "InverseNetwork", "QUERY_FREE_CONFIG", "HE_NORMALISATION",
           "black_box_inversion", "default_decoder", "he_config", "query_free_inversion", "rmle_objective",
           "train_inverse_network", "white_box_inversion"]

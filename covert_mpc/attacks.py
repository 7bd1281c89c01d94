"""The attacks, on the plaintext simulation [our reconstruction of the paper's mechanisms, not the paper's code].

Each function trains the honest run and the attacked run on the same batches from the same initial parameters, and
returns a small dataclass with the clean test accuracy of both and the attack's measure of success:

* :func:`reconstruct_lr` (Fig. 2): gradient scaling of one example in the last step of softmax regression;
  ``x_i = W[:, y_i] / b[y_i]`` from the released model. By default in the form an additive adversary has in the
  protocol (``mechanism='shift'``): ``-C`` on the opened Beaver value of the example's output error on its label,
  which turns that example's gradient ``e x_i`` into ``(e - C) x_i``, i.e. scales it by ``(e - C) / e``; the loss
  weight ``C`` (``'scale'``) is the plaintext idealisation, whose error also depends on the target's confidence.
* :func:`reconstruct_nn` (Fig. 3): the comparison attack ``b -> b + delta`` on one (inactive) hidden unit for one
  example in the last step; ``x_i = W1[:, j] / b1[j]``. ``kill=E`` is the covert variant: the adversary also
  subtracts a known ``E`` from ``b1[j]`` (an additive error on the parameter's wire), which disables unit ``j`` for
  every input in [0, 1]^D, and reconstructs ``W1[:, j] / (b1[j] + E)``.
* :func:`backdoor`: gradient shifting on the weights of trigger pixels that are 0 in all clean data.
* :func:`targeted_misclassification`: ``c * x_t (e_y - e_adv)`` added to the gradient of ``W`` every step.
* :func:`zero_class`: ``+E`` on the true-class logit of every example of one class (its gradient vanishes).
* :func:`membership_boost`: the members' loss weighted ``C`` in every step; loss-threshold AUC.

All examples are identified by their index in the training set, which the adversary is assumed to know (the
position of a record among the shared inputs).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from covert_mpc import models, plaintext
from covert_mpc.data import Data
from covert_mpc.deviations import error, gradient_shift, offset_relu, weight
from covert_mpc.models import TrainConfig

LR_CONFIG = TrainConfig(arch="lr", lr=0.5, batch_size=50, epochs=5)
MLP_CONFIG = TrainConfig(arch="mlp", hidden=64, lr=0.5, batch_size=50, epochs=5)


def check_scale(config: TrainConfig, scale: float, what: str = "C") -> None:
    """In fixed-point mode, refuse a scale whose scaled gradient coefficient ``scale * lr / batch_size`` cannot be
    held in the ring (it would wrap around instead of scaling)."""
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {scale!r}")
    if config.arithmetic != "fixed":
        return
    coef = scale * config.lr / config.batch_size
    limit = 2.0 ** (config.k - config.f - 1)
    if coef >= limit / 16:
        raise ValueError(f"{what} = {scale:g} overflows the ring Z_2^{config.k} with f = {config.f}: the scaled "
                         f"gradient coefficient {what}*lr/batch_size = {coef:.3g} must stay well below "
                         f"2^(k-f-1) = {limit:.3g} (a 16x margin for the values it multiplies); lower {what}, "
                         f"raise k or lower f")


def _acc_parts(params, x, y, cls=None):
    pred = models.predict(params, x)
    if cls is None:
        return float(np.mean(pred == y))
    m = y == cls
    return float(np.mean(pred[m] == cls)), float(np.mean(pred[~m] == y[~m]))


# ------------------------------------------------------------------------------------------ reconstruction

@dataclasses.dataclass
class ReconstructionResult:
    """``originals`` / ``reconstructions`` [n, D]; ``max_error`` per target (max absolute pixel error, [0, 1]);
    ``accuracy_attacked`` per target (one released model each); ``units`` the hidden unit used (NN only)."""
    originals: np.ndarray
    reconstructions: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    max_error: np.ndarray
    accuracy_honest: float
    accuracy_attacked: np.ndarray
    scale: float
    arithmetic: str
    units: np.ndarray | None = None
    unit_was_active: np.ndarray | None = None
    kill: float | None = None
    output_error: np.ndarray | None = None  # LR: e_iy = p_iy - 1 of each target before the last step

    @property
    def worst_error(self) -> float:
        return float(np.max(self.max_error))


def _pick_targets(rows, y, n, targets):
    if targets is not None:
        targets = np.atleast_1d(np.asarray(targets))
        missing = set(targets.tolist()) - set(np.asarray(rows).tolist())
        if missing:
            raise ValueError(f"targets {sorted(missing)} are not in the last batch {sorted(rows.tolist())}: the "
                             f"attack scales an example in the last step")
        return targets
    chosen, seen = [], set()
    for r in rows:                      # distinct labels first, then any
        if y[r] not in seen:
            chosen.append(r)
            seen.add(y[r])
    chosen += [r for r in rows if r not in chosen]
    return np.asarray(chosen[:n])


_BEFORE: dict = {}


def _before_last(data: Data, config: TrainConfig, dtype):
    """The schedule and the honest parameters before the last step (cached for the last data set / config, so
    that a sweep over C or delta trains once)."""
    batches = models.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    key = (id(data.x_train), data.x_train.shape, float(data.x_train.sum()), int(data.y_train.sum()), config, dtype)
    if key not in _BEFORE:
        _BEFORE.clear()
        _BEFORE[key] = plaintext.train(data.x_train, data.y_train, config, batches=batches[:-1], dtype=dtype).params
    return batches, _BEFORE[key]


def reconstruct_lr(data: Data, config: TrainConfig = LR_CONFIG, C: float = 1e6, n_targets: int = 8, targets=None,
                   mechanism: str = "shift", dtype=None, check_overflow: bool = True) -> ReconstructionResult:
    """Fig. 2: train honestly up to the last step; in the last step the adversary scales one example's gradient
    and reads ``W[:, y] / b[y]`` from the released model. One released model per target (independent attacks).

    ``mechanism='shift'`` (default): the scaling an additive adversary can realise inside the protocol. It shifts
    the target's output error on its label by ``-C`` (an error on the ``output_error`` wire, equivalently on the
    opened Beaver value of that operand of the gradient product), so the example's gradient ``e x_i`` becomes
    ``(e - C) x_i``. The target's contribution to the last update is then about ``C * lr / B`` whatever its
    confidence: max pixel error about 9e-5 at C = 1e6 for every target of the last batch (MNIST 2,000 images,
    float64), falling like 1/C.

    ``mechanism='scale'``: the plaintext idealisation, loss weight ``C`` (the gradient becomes ``C e x_i``; an
    additive adversary cannot multiply a secret by a constant without knowing it). The contribution is
    ``C |e| lr / B``, so the error is about 7e-5 / (C |e_iy| / 1e6): a target classified with confidence
    ``p_iy = 0.999`` needs 1,000x the C. ``output_error`` in the result holds each target's ``e_iy``."""
    if config.arch != "lr":
        raise ValueError("reconstruct_lr attacks logistic regression (arch='lr')")
    if mechanism not in ("scale", "shift"):
        raise ValueError(f"mechanism must be 'scale' or 'shift', got {mechanism!r}")
    if check_overflow:
        check_scale(config, C)
    batches, before = _before_last(data, config, dtype)
    last, T = batches[-1], len(batches) - 1
    targets = _pick_targets(last, data.y_train, n_targets, targets)
    honest = plaintext.train(data.x_train, data.y_train, config, params=before, batches=[last], step_offset=T,
                             dtype=dtype).params
    recs, accs = [], []
    z = models.logits(before, data.x_train[targets])
    p_before = np.exp(z - z.max(1, keepdims=True))
    p_before /= p_before.sum(1, keepdims=True)
    e_y = p_before[np.arange(len(targets)), data.y_train[targets]] - 1.0
    for i in targets:
        yi = int(data.y_train[i])
        dev = (weight(C, steps=T, examples=int(i)) if mechanism == "scale"
               else error("output_error", -C, steps=T, examples=int(i), units=yi))
        p = plaintext.train(data.x_train, data.y_train, config, [dev], params=before, batches=[last], step_offset=T,
                            dtype=dtype).params
        with np.errstate(divide="ignore", invalid="ignore"):
            recs.append(p["W"][:, yi] / p["b"][yi])
        accs.append(models.accuracy(p, data.x_test, data.y_test))
    recs = np.asarray(recs)
    orig = data.x_train[targets]
    err = np.nan_to_num(np.max(np.abs(recs - orig), axis=1), nan=np.inf)
    return ReconstructionResult(orig, recs, data.y_train[targets], targets, err,
                                models.accuracy(honest, data.x_test, data.y_test), np.asarray(accs), float(C),
                                config.arithmetic, output_error=e_y)


def _hidden(params, x):
    return x @ params["W1"] + params["b1"]


def reconstruct_nn(data: Data, config: TrainConfig = MLP_CONFIG, delta: float = 1e9, n_targets: int = 8,
                   targets=None, unit: int | None = None, kill: float | None = None, dtype=None,
                   check_overflow: bool = True) -> ReconstructionResult:
    """Fig. 3: in the last step the adversary adds ``delta`` (an integer in the protocol) to its share of the ReLU
    comparison bit of hidden unit ``j`` for one example (``b -> b + delta``, forward and backward), so unit j's
    first-layer update is dominated by that example: ``x_i = W1[:, j] / b1[j]``.

    ``unit=None`` picks, per target, a unit that is *inactive* for it (``b = 0``) and whose saturated prediction
    (the most negative entry of ``W2[j]``) is not the label, so that the output error is not 0 (with ``delta`` this
    large the forward pass saturates the softmax; when it saturates on the label, ``e = 0`` and nothing leaks).
    ``kill=E``: the covert variant (see the module docstring).
    """
    if config.arch != "mlp":
        raise ValueError("reconstruct_nn attacks the one-hidden-layer network (arch='mlp')")
    if check_overflow:
        check_scale(config, delta, "delta")
    batches, before = _before_last(data, config, dtype)
    last, T = batches[-1], len(batches) - 1
    targets = _pick_targets(last, data.y_train, n_targets, targets)
    honest = plaintext.train(data.x_train, data.y_train, config, params=before, batches=[last], step_offset=T,
                             dtype=dtype).params
    recs, accs, units, active = [], [], [], []
    for i in targets:
        yi = int(data.y_train[i])
        z = _hidden(before, data.x_train[i])
        if unit is None:
            ok = [j for j in np.argsort(z) if z[j] < 0 and np.argmin(before["W2"][j]) != yi]
            if not ok:
                raise RuntimeError(f"no inactive unit usable for target {i}")
            j = int(ok[0])
        else:
            j = int(unit)
        devs = [offset_relu(delta, steps=T, examples=int(i), units=j)]
        if kill is not None:
            shift = np.zeros(config.hidden)
            shift[j] = kill / config.lr       # b1 <- b1 - lr * shift = b1 - kill
            devs.append(gradient_shift("b1", shift, steps=T))
        p = plaintext.train(data.x_train, data.y_train, config, devs, params=before, batches=[last], step_offset=T,
                            dtype=dtype).params
        with np.errstate(divide="ignore", invalid="ignore"):
            recs.append(p["W1"][:, j] / (p["b1"][j] + (kill or 0.0)))
        accs.append(models.accuracy(p, data.x_test, data.y_test))
        units.append(j)
        active.append(bool(z[j] >= 0))
    recs = np.asarray(recs)
    orig = data.x_train[targets]
    err = np.nan_to_num(np.max(np.abs(recs - orig), axis=1), nan=np.inf)
    return ReconstructionResult(orig, recs, data.y_train[targets], targets, err,
                                models.accuracy(honest, data.x_test, data.y_test), np.asarray(accs), float(delta),
                                config.arithmetic, np.asarray(units), np.asarray(active), kill)


# --------------------------------------------------------------------------------------------- integrity

@dataclasses.dataclass
class BackdoorResult:
    success_rate: float          # triggered test images (true label != target) classified as the target
    clean_accuracy_honest: float
    clean_accuracy_attacked: float
    success_rate_honest: float   # the same triggered images under the honest model
    target: int
    trigger: np.ndarray          # pixel indices


def default_trigger(data: Data) -> np.ndarray:
    """Pixel indices of the trigger: 16 pixels of the top row (columns 0-7 and 20-27), which are 0 in every MNIST
    image, train and test; checked to be 0 in every training image (the adversary needs features that are
    always 0 in the clean data)."""
    h, w = data.image_shape
    idx = np.array([c for c in range(w) if c < w // 2 - 6 or c >= w // 2 + 6])
    if np.any(data.x_train[:, idx] != 0):
        raise ValueError("the trigger pixels are not 0 in every training image")
    return idx


def apply_trigger(x, trigger, value: float = 1.0):
    x = np.array(x, dtype=np.float64, copy=True)
    x[:, trigger] = value
    return x


def backdoor(data: Data, config: TrainConfig = LR_CONFIG, target: int = 0, strength: float = 5.0, trigger=None,
             dtype=None) -> BackdoorResult:
    """Gradient shifting: every step the adversary adds ``-strength / (lr * steps)`` to the gradient of
    ``W[trigger, target]`` (in the protocol: ``+strength / steps`` added to its share of those weights), so they
    end at ``strength`` while training on clean data never sees them (the trigger pixels are 0 there)."""
    if config.arch != "lr":
        raise ValueError("backdoor shifts the weights of logistic regression (arch='lr')")
    trigger = default_trigger(data) if trigger is None else np.asarray(trigger)
    batches = models.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    shift = np.zeros((data.d, 10))
    shift[trigger, target] = -strength / (config.lr * len(batches))
    honest = plaintext.train(data.x_train, data.y_train, config, batches=batches, dtype=dtype).params
    attacked = plaintext.train(data.x_train, data.y_train, config, [gradient_shift("W", shift)], batches=batches,
                               dtype=dtype).params
    keep = data.y_test != target
    xt = apply_trigger(data.x_test[keep], trigger)
    return BackdoorResult(float(np.mean(models.predict(attacked, xt) == target)),
                          models.accuracy(honest, data.x_test, data.y_test),
                          models.accuracy(attacked, data.x_test, data.y_test),
                          float(np.mean(models.predict(honest, xt) == target)), target, trigger)


@dataclasses.dataclass
class TargetedResult:
    targets: np.ndarray            # test indices
    true_labels: np.ndarray
    adversarial_labels: np.ndarray
    flipped: np.ndarray            # bool per trial: classified as the adversarial label
    others_accuracy_honest: float  # test accuracy without the target (honest model)
    others_accuracy_attacked: np.ndarray  # per trial
    c: float

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.flipped))


def targeted_misclassification(data: Data, config: TrainConfig = LR_CONFIG, n_trials: int = 20, c: float = 1e-3,
                               targets=None, dtype=None) -> TargetedResult:
    """Gradient shifting toward a known test point ``x_t``: every step the adversary adds
    ``c * x_t (e_y - e_adv)`` to the gradient of ``W`` (``adv`` = the honest model's runner-up class for x_t).
    One training run per trial; the targets are the first ``n_trials`` test points the honest model gets right."""
    if config.arch != "lr":
        raise ValueError("targeted_misclassification shifts the last layer of logistic regression (arch='lr')")
    batches = models.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    honest = plaintext.train(data.x_train, data.y_train, config, batches=batches, dtype=dtype).params
    z = models.logits(honest, data.x_test)
    if targets is None:
        targets = np.flatnonzero(np.argmax(z, 1) == data.y_test)[:n_trials]
    targets = np.asarray(targets)
    adv = np.array([int(np.argsort(z[t])[-2]) if np.argmax(z[t]) == data.y_test[t] else int(np.argmax(z[t]))
                    for t in targets])
    flipped, others = [], []
    for t, a in zip(targets, adv):
        yt = int(data.y_test[t])
        direction = np.zeros(10)
        direction[yt], direction[a] = 1.0, -1.0
        shift = c * np.outer(data.x_test[t], direction)
        p = plaintext.train(data.x_train, data.y_train, config, [gradient_shift("W", shift)], batches=batches,
                            dtype=dtype).params
        flipped.append(int(models.predict(p, data.x_test[t:t + 1])[0]) == a)
        keep = np.arange(len(data.x_test)) != t
        others.append(models.accuracy(p, data.x_test[keep], data.y_test[keep]))
    keep = ~np.isin(np.arange(len(data.x_test)), targets)
    return TargetedResult(targets, data.y_test[targets], adv, np.asarray(flipped),
                          models.accuracy(honest, data.x_test[keep], data.y_test[keep]), np.asarray(others), c)


@dataclasses.dataclass
class ZeroingResult:
    cls: int
    class_accuracy_honest: float
    class_accuracy_attacked: float
    others_accuracy_honest: float
    others_accuracy_attacked: float
    accuracy_honest: float
    accuracy_attacked: float


def zero_class(data: Data, config: TrainConfig = LR_CONFIG, cls: int = 3, E: float = 50.0,
               dtype=None) -> ZeroingResult:
    """Gradient zeroing of a class: ``+E`` on the true-class logit of every training example of class ``cls`` in
    every step (an additive error on the ``logits`` wire): ``p_i = y_i`` and their gradient vanishes."""
    batches = models.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    members = np.flatnonzero(data.y_train == cls)
    honest = plaintext.train(data.x_train, data.y_train, config, batches=batches, dtype=dtype).params
    attacked = plaintext.train(data.x_train, data.y_train, config, [error("logits", E, examples=members, units=cls)],
                               batches=batches, dtype=dtype).params
    ch, oh = _acc_parts(honest, data.x_test, data.y_test, cls)
    ca, oa = _acc_parts(attacked, data.x_test, data.y_test, cls)
    return ZeroingResult(cls, ch, ca, oh, oa, models.accuracy(honest, data.x_test, data.y_test),
                         models.accuracy(attacked, data.x_test, data.y_test))


# -------------------------------------------------------------------------------------------------- privacy

def auc(scores_pos, scores_neg) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted 1/2."""
    pos, neg = np.asarray(scores_pos, float)[:, None], np.asarray(scores_neg, float)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


@dataclasses.dataclass
class MembershipResult:
    auc_honest: float
    auc_attacked: float
    accuracy_honest: float
    accuracy_attacked: float
    members: np.ndarray
    weight: float


def membership_boost(data: Data, config: TrainConfig = MLP_CONFIG, n_members: int = 100, C: float = 5.0,
                     dtype=None) -> MembershipResult:
    """Gradient scaling for membership inference: the first ``n_members`` training examples get loss weight ``C``
    in every step, so the model memorises them. The attack is a loss threshold (score ``-loss``); the AUC compares
    those members with as many test points (non-members), for the honest and the attacked model."""
    batches = models.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    members = np.arange(n_members)
    if len(data.x_test) < n_members:
        raise ValueError(f"need at least {n_members} test points as non-members, got {len(data.x_test)}")
    honest = plaintext.train(data.x_train, data.y_train, config, batches=batches, dtype=dtype).params
    attacked = plaintext.train(data.x_train, data.y_train, config, [weight(C, examples=members)], batches=batches,
                               dtype=dtype).params

    def score(p):
        mem = -models.per_example_loss(p, data.x_train[members], data.y_train[members])
        non = -models.per_example_loss(p, data.x_test[:n_members], data.y_test[:n_members])
        return auc(mem, non)
    return MembershipResult(score(honest), score(attacked), models.accuracy(honest, data.x_test, data.y_test),
                            models.accuracy(attacked, data.x_test, data.y_test), members, float(C))

"""UnSplit against FSHA's ResNet client: the UnSplit paper's Fig. 3b (Erdoğan, Küpçü, Çiçek, WPES 2022, §5).

The paper compares UnSplit with FSHA (Pasquini et al., CCS 2021) on MNIST with FSHA's client network f (the small
pre-activation ResNet of :func:`fsha.architectures.resnet`) instead of UnSplit's MnistNet, and reports that UnSplit
"performs comparably to FSHA until the FSHA adversary performs around 1,000 setup iterations". No code exists for
that figure; :func:`unsplit_vs_fsha` builds it:

* per split level, **one** FSHA run (:class:`fsha.FSHA.FSHA`, reference hyperparameters and the notebooks'
  architecture by default), paused after each k in ``iterations`` setup steps to reconstruct the **same** target
  images with ``decoder(f(x))`` (:meth:`FSHA.attack`, inference mode), i.e. one trajectory scored on the way, not
  one run per k;
* per split level, UnSplit (:func:`unsplit_tf.keras_client.invert_keras_client`: the attacker knows f's
  architecture, not its weights, trains a clone while inverting the smashed data by coordinate descent) against the
  client f on the same images;
* the trivial baselines (the all-black image, the mean image of the client's private set), PSNR and SSIM.

Choices the paper leaves open, and the ones made here
------------------------------------------------------
**Pixel scale.** Everything is scored on UnSplit's [0, 1] scale. FSHA works on [-1, 1] (its images are
x/127.5 - 1, its decoder ends in tanh); its reconstructions and the targets are mapped with
:func:`splitnn.metrics.rescale`, (x + 1) / 2. The same pair of images has 4x the MSE on [-1, 1] that it has on
[0, 1] (the difference halves, the square quarters), so numbers here are 1/4 of FSHA's ``score`` /
``scoreAttack`` / validation numbers for the same reconstructions.

**UnSplit's input space.** FSHA's client takes [-1, 1] images of 32x32x3 (MNIST resized and tiled). UnSplit's
x~ starts at the constant 0.5 with an l2 prior mean(x~^2), which assumes inputs in [0, 1]. UnSplit therefore
attacks the composition ``client01(x) = f(2x - 1)`` (:func:`client01`, a Rescaling layer in front of f, no
weights), whose inputs are the targets on [0, 1]: the smashed data are exactly f's on the [-1, 1] images, and
x~ lives on [0, 1], where it is scored as it comes (unclamped, as UnSplit reports it). The attacker's clone is
a clone of that composition (architecture known, weights fresh from a seed *other* than FSHA's, otherwise the
clone would start as f's exact copy). x~ has three independent channels (the attacker is not told the image is
tiled grayscale).

**Which client weights UnSplit attacks** (``client_state``). UnSplit assumes an honest protocol, FSHA replaces
it; the paper does not say which f UnSplit faced. Options:

* ``'initial'`` (default): f exactly as FSHA's run starts, its seeded initialisation, the state from which the
  FSHA setup begins (and the state of any client at the start of training);
* ``'honest'``: that f after ``client_steps`` steps of honest split training on the client's labelled private
  data (:class:`fsha.honest.HonestSplitTraining`, its default server head, Adam 1e-3), what a client under
  UnSplit's honest-but-curious server holds;
* ``'hijacked'``: f after ``client_steps`` FSHA setup steps (``client_steps`` must be one of ``iterations``), the
  client under the FSHA server.

The clone and the smashed data use inference mode (BatchNorm on moving statistics; for the initial f these are
0/1). The clone cannot steal moving statistics (they are not trained), a handicap for a trained f.

**Split levels.** FSHA's levels 1-4 (``id_setup = level - 1``) cut its ResNet after: 1 = Conv(64)+BN+ReLU+MaxPool
+ResBlock(64) (16x16x64 features), 2 = +ResBlock(128, stride 2) (8x8x128), 3 = +ResBlock(128) (8x8x128),
4 = +ResBlock(256, stride 2) (4x4x256). Both attacks use the same level; the figure averages over levels
(a band shows their spread). UnSplit's ``tv_schedule='paper'`` maps level L to split depth L (TV 0.1 up to 3,
1.0 at 4); the default schedule ('code') is a constant 0.1.

**UnSplit's budget** is ``unsplit_config`` (:class:`unsplit_tf.attacks.InversionConfig`; None = the original's
1000 x (100 input + 100 model) steps per image, hours per level on a CPU: pass a smaller one there). One image at
a time with the clone carried across images (the original's faithful mode).

**Targets.** Images the client holds: the first image of each class in FSHA's private set (the training
split), classes in order 0, 1, ...; beyond 10 targets the second of each class, and so on. The same array is
scored for both attacks (:attr:`ComparisonResult.target_indices`).

**FSHA.** Private set = the training split, public set = the test split (FSHA's setting), batch 64, seeded with
``seed`` (weights, GP draws and, before the streams are built, the data order).

Resuming: with ``checkpoint_dir`` the FSHA run of each level checkpoints after every scored k (and every
``checkpoint_every`` steps) in ``checkpoint_dir/level<L>/fsha`` (FSHA's own ``.npz`` checkpoints), and every
result so far is cached in ``checkpoint_dir/level<L>.json``: a rerun skips finished levels (no network is
built), reuses cached scores and continues a level's FSHA run from its checkpoint. A resumed FSHA run starts a new
shuffled pass of the data (the checkpoint does not hold the stream position; seeded from (seed, iteration) as
:func:`fsha.runs.stream_seed` does), so its later numbers differ from an uninterrupted run's as another data
order would. The cache remembers the settings; a rerun with other settings is a ValueError.

All of it runs on Keras 3 (``KERAS_BACKEND=tensorflow`` or ``jax``): only :mod:`splitnn.backend` touches either.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from splitnn.utils import write_json_atomic

LEVELS = (1, 2, 3, 4)
DATASETS = ("mnist", "fashion_mnist")
CLIENT_STATES = ("initial", "honest", "hijacked")
FSHA_ARCHITECTURES = ("final", "notebook")
#: FSHA's reference hyperparameters (the original notebooks'; :data:`fsha.FSHA.REFERENCE_HPARAMS`).
DEFAULT_FSHA_HPARAMS = {"WGAN": True, "gradient_penalty": 500.0, "lr_f": 1e-5, "lr_tilde": 1e-5, "lr_D": 1e-4}
CACHE_VERSION = 1


# ============================================================================================== results
@dataclasses.dataclass
class LevelResult:
    """One split level. MSE, PSNR (dB) and SSIM on the [0, 1] scale, per target image and their means.

    Attributes:
        level: FSHA's split level (1-4).
        iterations: the k at which FSHA was scored, increasing.
        fsha_mse: per k, FSHA's mean MSE over the targets; ``fsha_mse_per_target[j][i]``: k = iterations[j],
            target i. ``fsha_psnr``, ``fsha_ssim``: per k, means over the targets.
        unsplit_mse, unsplit_psnr, unsplit_ssim: UnSplit's means over the targets; ``unsplit_mse_per_target``.
        fsha_seconds: training + scoring time of FSHA in the processes that ran it (cached runs add up);
        unsplit_seconds: the inversion loops' time; honest_seconds: the honest pre-training (client_state
        'honest').
    """
    level: int
    iterations: list
    fsha_mse: list
    fsha_mse_per_target: list
    fsha_psnr: list
    fsha_ssim: list
    unsplit_mse: float
    unsplit_mse_per_target: list
    unsplit_psnr: float
    unsplit_ssim: float
    fsha_seconds: float
    unsplit_seconds: float
    honest_seconds: float = 0.0

    def fsha_at(self, k: int) -> float:
        return self.fsha_mse[self.iterations.index(int(k))]


@dataclasses.dataclass
class ComparisonResult:
    """What :func:`unsplit_vs_fsha` measured (every MSE on the [0, 1] scale; FSHA's own [-1, 1] numbers are 4x).

    Attributes:
        dataset, levels, iterations, n_targets; target_indices / target_labels: the targets' positions in FSHA's
        private set (the training split) and their classes; the same images for both attacks.
        per_level: {level: :class:`LevelResult`}.
        baseline_black_mse, baseline_mean_image_mse: mean MSE of answering the all-black image or the private set's
            mean image (per target: ``baseline_*_per_target``).
        unsplit_config (dict of :class:`~unsplit_tf.attacks.InversionConfig`), lambda_tv per level,
        client_state, client_steps, fsha_hparams, architecture, batch_size, seed: the settings.
        seconds: wall time of this call (cached levels cost nothing); machine: one line (CPU/GPU, backend).
        cached_levels: levels taken whole from the cache in this call.
    """
    dataset: str
    levels: list
    iterations: list
    n_targets: int
    target_indices: list
    target_labels: list
    per_level: dict
    baseline_black_mse: float
    baseline_mean_image_mse: float
    baseline_black_per_target: list
    baseline_mean_image_per_target: list
    unsplit_config: dict
    lambda_tv: dict
    client_state: str
    client_steps: int
    fsha_hparams: dict
    architecture: str
    batch_size: int
    seed: int
    seconds: float
    machine: str
    cached_levels: list = dataclasses.field(default_factory=list)

    def fsha_matrix(self) -> np.ndarray:
        """[levels, iterations] array of FSHA's mean MSE."""
        return np.array([self.per_level[lv].fsha_mse for lv in self.levels], np.float64)

    def fsha_mean(self) -> np.ndarray:
        """Per k, FSHA's MSE averaged over the levels."""
        return self.fsha_matrix().mean(axis=0)

    def unsplit_mean(self) -> float:
        """UnSplit's MSE averaged over the levels."""
        return float(np.mean([self.per_level[lv].unsplit_mse for lv in self.levels]))

    def crossover(self) -> int | None:
        """The first k at which FSHA's level-averaged MSE is below UnSplit's level-averaged MSE (None: never)."""
        below = np.nonzero(self.fsha_mean() < self.unsplit_mean())[0]
        return int(self.iterations[below[0]]) if len(below) else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["per_level"] = {str(k): dataclasses.asdict(v) for k, v in self.per_level.items()}
        d["lambda_tv"] = {str(k): v for k, v in self.lambda_tv.items()}
        d["fsha_mean_over_levels"] = [float(v) for v in self.fsha_mean()]
        d["unsplit_mean_over_levels"] = self.unsplit_mean()
        d["crossover_iteration"] = self.crossover()
        d["scale"] = "[0, 1] (FSHA's [-1, 1] MSE is 4x)"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ComparisonResult":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["per_level"] = {int(k): LevelResult(**v) for k, v in d["per_level"].items()}
        kw["lambda_tv"] = {int(k): v for k, v in d["lambda_tv"].items()}
        return cls(**kw)


# ============================================================================================ validation
def _check_dataset(dataset) -> str:
    from splitnn.data import canonical_name

    key = canonical_name(dataset)  # UnknownDatasetError (a ValueError) for a name nobody knows
    if key not in DATASETS:
        raise ValueError(f"UnSplit vs FSHA needs FSHA's preprocessing, which exists for {DATASETS}; got {dataset!r}")
    return key


def _check_int(value, name, minimum=None, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return int(value)


def check_levels(levels) -> list:
    levels = list(levels) if not isinstance(levels, (int, np.integer)) else [levels]
    if not levels:
        raise ValueError("levels must name at least one split level (1-4)")
    out = [_check_int(lv, f"split level {lv!r}", 1, 4) for lv in levels]
    if len(set(out)) != len(out):
        raise ValueError(f"levels must not repeat, got {levels}")
    return out


def check_iterations(iterations) -> list:
    """A non-empty, strictly increasing list of positive ints (FSHA's setup iterations at which it is scored)."""
    iterations = list(iterations) if not isinstance(iterations, (int, np.integer)) else [iterations]
    if not iterations:
        raise ValueError("iterations must list at least one number of FSHA setup iterations")
    out = []
    for k in iterations:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"iterations must be positive ints, got {k!r} in {iterations}")
        out.append(int(k))
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"iterations must be strictly increasing (one FSHA run is scored on the way), got {out}")
    return out


# ================================================================================================ pieces
def first_of_class_indices(labels, n_targets: int) -> np.ndarray:
    """Positions of the first image of each class (classes in increasing order), then the second of each, ...;
    the first ``n_targets`` of them."""
    labels = np.asarray(labels).reshape(-1)
    classes = np.unique(labels)
    per_class = [np.nonzero(labels == c)[0] for c in classes]
    order = [idx[r] for r in range(max(len(p) for p in per_class)) for idx in per_class if r < len(idx)]
    if n_targets > len(order):
        raise ValueError(f"n_targets={n_targets} but the private set has {len(order)} images")
    return np.asarray(order[:n_targets], np.int64)


def client01(f):
    """``x -> f(2x - 1)``: FSHA's client (inputs on [-1, 1]) as a model of [0, 1] inputs, for UnSplit.

    A Rescaling layer (no weights) in front of ``f``, which is shared, not copied."""
    import keras

    inp = keras.Input(tuple(f.input_shape[1:]), name="x01")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inp)
    return keras.Model(inp, f(x), name=f"{f.name}_01")


def clone_seed(seed: int) -> int:
    """The seed of UnSplit's clone: derived from ``seed`` but not equal to it (FSHA builds f first after seeding
    with ``seed``, so a clone seeded alike would start with f's exact weights)."""
    return int(np.random.SeedSequence([int(seed), 0x0C10E]).generate_state(1)[0] >> 1)


def image_scores01(x_hat, targets) -> dict:
    """Per-image MSE, PSNR and SSIM on the [0, 1] scale (:func:`splitnn.metrics.image_scores`, data range 1)."""
    from splitnn.metrics import image_scores

    return image_scores(x_hat, targets, 1.0)


def fsha_reconstruction01(attack, targets_m11) -> np.ndarray:
    """FSHA's reconstruction ``decoder(f(x))`` (inference mode) of [-1, 1] images, mapped to [0, 1]."""
    from splitnn.metrics import rescale

    rec, _ = attack.attack(np.asarray(targets_m11, np.float32))
    return rescale(rec)


def _mean(x) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


# ========================================================================================== the cache
def _level_paths(checkpoint_dir, level):
    root = Path(checkpoint_dir).expanduser()
    return root / f"level{level}.json", root / f"level{level}" / "fsha"


def _read_cache(path, settings) -> dict:
    if not path.exists():
        return {"settings": settings, "fsha": {}, "unsplit": None, "fsha_seconds": 0.0}
    cache = json.loads(path.read_text())
    if cache.get("settings") != settings:
        old = cache.get("settings") or {}
        diff = {k: (old.get(k), settings.get(k)) for k in set(old) | set(settings) if old.get(k) != settings.get(k)}
        raise ValueError(f"{path} holds results for other settings {diff} (cached, requested); use another "
                         f"checkpoint_dir or the same settings")
    return cache


# ============================================================================================= UnSplit
def _unsplit_on(f, targets01, config, lambda_tv, seed):
    from splitnn import backend
    from unsplit_tf.keras_client import fresh_clone, invert_keras_client

    client = client01(f)
    clone = fresh_clone(client, seed=clone_seed(seed))
    result = invert_keras_client(client, np.asarray(targets01, np.float32), clone=clone, config=config,
                                 lambda_tv=lambda_tv, batch_size=1, clone_reuse="carry")
    backend.set_seed(int(seed))  # fresh_clone reseeded the global generators; leave them as a fresh seed would
    scores = image_scores01(result.x_hat, targets01)
    return {"mse": [float(v) for v in scores["mse"]], "psnr": _mean(scores["psnr"]), "ssim": _mean(scores["ssim"]),
            "seconds": float(result.seconds)}


def _copy_of(f, weights):
    import keras

    g = keras.models.clone_model(f)
    g.set_weights(weights)
    return g


# ======================================================================================== the experiment
def unsplit_vs_fsha(dataset: str = "mnist", levels=(1, 2, 3, 4), iterations=(100, 250, 500, 1000, 2000, 5000),
                    n_targets: int = 10, unsplit_config=None, fsha_hparams: dict | None = None,
                    architecture: str = "notebook", batch_size: int = 64, client_state: str = "initial",
                    client_steps: int = 0, seed: int = 0, checkpoint_dir=None, checkpoint_every: int | None = None,
                    log_frequency: int = 500, printer: Callable | None = print) -> ComparisonResult:
    """UnSplit vs FSHA on FSHA's ResNet client (the UnSplit paper's Fig. 3b); see the module docstring.

    Args:
        dataset: 'mnist' (the paper's) or 'fashion_mnist'.
        levels: FSHA split levels (1-4), one FSHA run and one UnSplit attack each.
        iterations: strictly increasing positive setup-iteration counts k at which FSHA's run is scored.
        n_targets: number of target images (first-of-class images of FSHA's private set).
        unsplit_config: :class:`unsplit_tf.attacks.InversionConfig` (None: the original's, very long on a CPU).
        fsha_hparams: FSHA's hyperparameters (None: the reference ones, :data:`DEFAULT_FSHA_HPARAMS`).
        architecture: FSHA's pilot/decoder version, 'notebook' (the notebooks' runs, as the reference FSHA
            sweep) or 'final'. batch_size: FSHA's (and honest training's) batch.
        client_state, client_steps: which client weights UnSplit attacks ('initial', 'honest' after
            client_steps steps, 'hijacked' after client_steps FSHA steps; client_steps must then be in iterations).
        seed: seeds FSHA (weights, GP draws, data order), the clone (a seed derived from it) and honest training.
        checkpoint_dir: cache results per level and checkpoint FSHA there (resume: finished levels are skipped).
        checkpoint_every: also checkpoint FSHA every this many steps (needs checkpoint_dir).
        log_frequency: FSHA's logging interval (no effect on the numbers).
        printer: progress lines (None: silent).

    Returns a :class:`ComparisonResult`. Raises ValueError early on an unknown dataset, a level outside 1-4, a
    non-increasing or non-positive iteration list, and other bad settings.
    """
    say = printer or (lambda *a, **k: None)
    dataset = _check_dataset(dataset)
    levels = check_levels(levels)
    iterations = check_iterations(iterations)
    n_targets = _check_int(n_targets, "n_targets", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    log_frequency = _check_int(log_frequency, "log_frequency", 1)
    if architecture not in FSHA_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {FSHA_ARCHITECTURES}, got {architecture!r}")
    if client_state not in CLIENT_STATES:
        raise ValueError(f"client_state must be one of {CLIENT_STATES}, got {client_state!r}")
    client_steps = _check_int(client_steps, "client_steps", 0)
    if client_state == "initial" and client_steps:
        raise ValueError("client_state='initial' attacks f before any step: client_steps must be 0")
    if client_state == "honest" and not client_steps:
        raise ValueError("client_state='honest' needs client_steps >= 1 (steps of honest training)")
    if client_state == "hijacked" and client_steps not in iterations:
        raise ValueError(f"client_state='hijacked' attacks f after client_steps FSHA steps, which must be one of "
                         f"iterations {iterations}; got {client_steps}")
    if checkpoint_every is not None:
        checkpoint_every = _check_int(checkpoint_every, "checkpoint_every", 1)
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
    from unsplit_tf.attacks import InversionConfig

    config = unsplit_config if unsplit_config is not None else InversionConfig()
    if not isinstance(config, InversionConfig):
        raise ValueError(f"unsplit_config must be an InversionConfig, got {type(config).__name__}")
    hparams = dict(DEFAULT_FSHA_HPARAMS if fsha_hparams is None else fsha_hparams)
    from fsha.hparams import validate_hparams

    validate_hparams(hparams, ("WGAN", "lr_f", "lr_tilde", "lr_D"))

    from fsha.datasets import load_arrays
    from splitnn.metrics import rescale, trivial_baselines
    from splitnn.notebook import machine
    from unsplit_tf.keras_client import _resolve_lambda_tv

    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_arrays(dataset)
    idx = first_of_class_indices(y_train, n_targets)
    targets_m11 = np.asarray(x_train[idx], np.float32)
    targets01 = rescale(targets_m11)
    mean01 = rescale(x_train.mean(axis=0, dtype=np.float64))
    baselines = trivial_baselines(targets01, mean01)
    lambda_tv = {lv: _resolve_lambda_tv(None, config, lv) for lv in levels}
    settings = {"version": CACHE_VERSION, "dataset": dataset, "target_indices": [int(i) for i in idx],
                "unsplit_config": dataclasses.asdict(config), "fsha_hparams": hparams, "architecture": architecture,
                "batch_size": batch_size, "client_state": client_state, "client_steps": client_steps, "seed": seed}
    per_level, cached_levels = {}, []
    for level in levels:
        cache_path = ckpt = None
        cache = {"settings": settings, "fsha": {}, "unsplit": None, "fsha_seconds": 0.0}
        if checkpoint_dir is not None:
            cache_path, ckpt = _level_paths(checkpoint_dir, level)
            cache = _read_cache(cache_path, settings)
        done = all(str(k) in cache["fsha"] for k in iterations) and cache["unsplit"] is not None
        if done:
            cached_levels.append(level)
            say(f"level {level}: cached in {cache_path}")
        else:
            _run_level(level, cache, cache_path, ckpt, iterations, x_train, y_train, x_test, y_test, targets_m11,
                       targets01, config, lambda_tv[level], hparams, architecture, batch_size, client_state,
                       client_steps, seed, checkpoint_every, log_frequency, say)
        per_level[level] = _level_result(level, cache, iterations)
        r = per_level[level]
        say(f"level {level}: UnSplit MSE {r.unsplit_mse:.4f}; FSHA MSE " +
            ", ".join(f"k={k}: {m:.4f}" for k, m in zip(r.iterations, r.fsha_mse)))
    return ComparisonResult(
        dataset=dataset, levels=levels, iterations=iterations, n_targets=n_targets,
        target_indices=[int(i) for i in idx], target_labels=[int(y_train[i]) for i in idx], per_level=per_level,
        baseline_black_mse=float(baselines["black"].mean()),
        baseline_mean_image_mse=float(baselines["mean_image"].mean()),
        baseline_black_per_target=[float(v) for v in baselines["black"]],
        baseline_mean_image_per_target=[float(v) for v in baselines["mean_image"]],
        unsplit_config=dataclasses.asdict(config), lambda_tv=lambda_tv, client_state=client_state,
        client_steps=client_steps, fsha_hparams=hparams, architecture=architecture, batch_size=batch_size,
        seed=seed, seconds=time.perf_counter() - start, machine=machine(), cached_levels=cached_levels)


def _level_result(level, cache, iterations) -> LevelResult:
    rows = [cache["fsha"][str(k)] for k in iterations]
    u = cache["unsplit"]
    # MSE means keep a non-finite value (a diverged target must not vanish from the mean); _mean is for PSNR
    return LevelResult(level=level, iterations=list(iterations),
                       fsha_mse=[float(np.mean(np.asarray(r["mse"], np.float64))) for r in rows],
                       fsha_mse_per_target=[list(r["mse"]) for r in rows], fsha_psnr=[r["psnr"] for r in rows],
                       fsha_ssim=[r["ssim"] for r in rows],
                       unsplit_mse=float(np.mean(np.asarray(u["mse"], np.float64))),
                       unsplit_mse_per_target=list(u["mse"]), unsplit_psnr=u["psnr"], unsplit_ssim=u["ssim"],
                       fsha_seconds=float(cache["fsha_seconds"]), unsplit_seconds=float(u["seconds"]),
                       honest_seconds=float(u.get("honest_seconds", 0.0)))


def _run_level(level, cache, cache_path, ckpt, iterations, x_train, y_train, x_test, y_test, targets_m11, targets01,
               config, lambda_tv, hparams, architecture, batch_size, client_state, client_steps, seed,
               checkpoint_every, log_frequency, say):
    """FSHA's run at ``level`` scored at every k (resumed from ``ckpt`` if there), UnSplit on the chosen client;
    results written into ``cache`` (and ``cache_path`` after every piece)."""
    import keras

    from fsha.datasets import make_dataset
    from fsha.FSHA import FSHA
    from fsha.runs import stream_seed
    from splitnn import backend, checkpoints

    def save():
        if cache_path is not None:
            write_json_atomic(cache_path, cache)

    keras.backend.clear_session()
    backend.set_seed(stream_seed(seed, ckpt))  # the data order: a new pass when resuming (module docstring)
    xpriv, xpub = make_dataset(x_train, y_train), make_dataset(x_test, y_test)
    attack = FSHA(xpriv, xpub, level - 1, batch_size, hparams, architecture=architecture, seed=seed,
                  checkpoint_every=checkpoint_every)
    initial_f = [np.array(w) for w in attack.f.get_weights()]  # before any restore: FSHA's starting client
    if ckpt is not None:
        attack.checkpoint_manager = checkpoints.CheckpointManager(ckpt)
        if attack.checkpoint_manager.latest_checkpoint:
            attack.restore(attack.checkpoint_manager.latest_checkpoint)
            say(f"level {level}: FSHA restored at iteration {attack.iteration} from {ckpt}")

    def run_unsplit(f, extra=None):
        say(f"level {level}: UnSplit on the {client_state} client ({config.main_iters} x ({config.input_iters} + "
            f"{config.model_iters}) steps per image, {len(targets01)} images)")
        out = _unsplit_on(f, targets01, config, lambda_tv, seed)
        out.update(extra or {})
        cache["unsplit"] = out
        save()

    if cache["unsplit"] is None and client_state in ("initial", "honest"):
        f0 = _copy_of(attack.f, initial_f)
        extra = {}
        if client_state == "honest":
            from fsha.honest import HonestSplitTraining

            t = time.perf_counter()
            honest = HonestSplitTraining(make_dataset(x_train, y_train), id_setup=level - 1, batch_size=batch_size,
                                         client=f0, seed=seed)
            honest(client_steps, log_frequency=max(client_steps, 1), progress_bar=False)
            extra["honest_seconds"] = time.perf_counter() - t
        run_unsplit(f0, extra)

    for k in iterations:
        if str(k) in cache["fsha"] and not (client_state == "hijacked" and k == client_steps
                                            and cache["unsplit"] is None):
            continue
        if attack.iteration > k:
            raise ValueError(f"level {level}: FSHA's checkpoint in {ckpt} is at iteration {attack.iteration}, past "
                             f"k={k}, which has no cached result; use another checkpoint_dir")
        t = time.perf_counter()
        if attack.iteration < k:
            say(f"level {level}: FSHA iterations {attack.iteration} -> {k}")
            attack(k - attack.iteration, log_frequency=log_frequency, verbose=False, progress_bar=False)
        scores = image_scores01(fsha_reconstruction01(attack, targets_m11), targets01)
        cache["fsha"][str(k)] = {"mse": [float(v) for v in scores["mse"]], "psnr": _mean(scores["psnr"]),
                                 "ssim": _mean(scores["ssim"])}
        cache["fsha_seconds"] = float(cache["fsha_seconds"]) + time.perf_counter() - t
        save()
        if client_state == "hijacked" and k == client_steps and cache["unsplit"] is None:
            run_unsplit(_copy_of(attack.f, attack.f.get_weights()))
    return cache


# ================================================================================================ output
def format_comparison(result: ComparisonResult) -> str:
    """A Markdown table: one row per k, FSHA's MSE averaged over levels (and its range over levels), UnSplit's
    level-averaged MSE, the baselines, and each level's FSHA MSE; a header naming data, budget and machine."""
    r = result
    cfg = r.unsplit_config
    levels = ", ".join(map(str, r.levels))
    state = r.client_state + (f" after {r.client_steps} steps" if r.client_steps else "")
    total_fsha = sum(v.fsha_seconds for v in r.per_level.values())
    total_unsplit = sum(v.unsplit_seconds for v in r.per_level.values())
    lines = [
        f"UnSplit vs FSHA on FSHA's ResNet client (UnSplit paper, Fig. 3b): {r.dataset}, split levels {levels}, "
        f"{r.n_targets} first-of-class images of the client's private set (train indices {r.target_indices}); "
        f"MSE on [0, 1] (FSHA's [-1, 1] MSE is 4x).",
        f"FSHA: one run per level scored after k setup iterations, batch {r.batch_size}, architecture "
        f"'{r.architecture}', hparams {r.fsha_hparams}, seed {r.seed}; {total_fsha:.0f} s.",
        f"UnSplit: client01(x) = f(2x - 1), {state} client; {cfg['main_iters']} x ({cfg['input_iters']} input + "
        f"{cfg['model_iters']} model) steps per image, lambda_tv {sorted(set(r.lambda_tv.values()))}, "
        f"lambda_l2 {cfg['lambda_l2']}; {total_unsplit:.0f} s.",
        f"Machine: {r.machine}; this call {r.seconds:.0f} s" +
        (f" (levels {r.cached_levels} from the cache)" if r.cached_levels else "") + ".",
        "",
    ]
    head = ["k", "FSHA (mean over levels)", "FSHA min-max", "UnSplit (mean)", "black image", "mean image"]
    head += [f"FSHA L{lv}" for lv in r.levels]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---:" for _ in head) + "|")
    m = r.fsha_matrix()
    for j, k in enumerate(r.iterations):
        row = [str(k), f"{m[:, j].mean():.4f}", f"{m[:, j].min():.4f}-{m[:, j].max():.4f}", f"{r.unsplit_mean():.4f}",
               f"{r.baseline_black_mse:.4f}", f"{r.baseline_mean_image_mse:.4f}"]
        row += [f"{m[i, j]:.4f}" for i in range(len(r.levels))]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("UnSplit per level: " + ", ".join(
        f"L{lv} {r.per_level[lv].unsplit_mse:.4f} (PSNR {r.per_level[lv].unsplit_psnr:.1f} dB, SSIM "
        f"{r.per_level[lv].unsplit_ssim:.3f})" for lv in r.levels))
    last = r.iterations[-1]
    lines.append(f"FSHA at k={last} per level: " + ", ".join(
        f"L{lv} PSNR {r.per_level[lv].fsha_psnr[-1]:.1f} dB, SSIM {r.per_level[lv].fsha_ssim[-1]:.3f}"
        for lv in r.levels))
    cross = r.crossover()
    lines.append("FSHA's level-mean MSE first falls below UnSplit's at " +
                 (f"k = {cross}." if cross is not None else f"no k up to {last}."))
    return "\n".join(lines)


def plot_comparison(result: ComparisonResult, path) -> Path:
    """Fig. 3b as a PNG at ``path``: FSHA's MSE vs setup iterations (log x) averaged over levels with a band over
    levels (min-max), UnSplit's level-averaged MSE as a horizontal line (its level range shaded), the trivial
    baselines as dashed lines."""
    from splitnn.plots import plt, save_figure

    r = result
    m = r.fsha_matrix()
    ks = np.asarray(r.iterations, np.float64)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(ks, m.mean(axis=0), "o-", color="C0", label=f"FSHA (mean over levels {r.levels})")
    if len(r.levels) > 1:
        ax.fill_between(ks, m.min(axis=0), m.max(axis=0), color="C0", alpha=0.2, label="FSHA, range over levels")
    u = np.array([r.per_level[lv].unsplit_mse for lv in r.levels])
    ax.axhline(u.mean(), color="C3", lw=2, label="UnSplit (mean over levels)")
    if len(r.levels) > 1:
        ax.axhspan(u.min(), u.max(), color="C3", alpha=0.1)
    ax.axhline(r.baseline_black_mse, color="k", ls="--", lw=1, label="black image")
    ax.axhline(r.baseline_mean_image_mse, color="gray", ls="--", lw=1, label="mean training image")
    ax.set_xscale("log")
    ax.set_xlabel("FSHA setup iterations")
    ax.set_ylabel("reconstruction MSE ([0, 1] scale)")
    ax.set_title(f"UnSplit vs FSHA, {r.dataset}, FSHA's ResNet client ({r.n_targets} images)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def save_json(result: ComparisonResult, path) -> Path:
    return write_json_atomic(path, result.to_dict())


__all__ = ["CLIENT_STATES", "ComparisonResult", "DEFAULT_FSHA_HPARAMS", "LevelResult", "check_iterations",
           "check_levels", "client01", "clone_seed", "first_of_class_indices", "format_comparison",
           "fsha_reconstruction01", "image_scores01", "plot_comparison", "save_json", "unsplit_vs_fsha"]

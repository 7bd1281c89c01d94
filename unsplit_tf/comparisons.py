"""UnSplit next to He et al.'s inversion attacks: the UnSplit paper's Fig. 3a, Table 4 and Table 5.

Erdogan, Kupcu, Cicek (WPES 2022), §5.3, compare UnSplit with the three attacks of He, Zhang and Lee (ACSAC 2019),
implemented in :mod:`unsplit_tf.he_attacks`; the original UnSplit code has none of these experiments. The paper
states: He et al.'s white-box attack is about 38% more accurate than UnSplit, UnSplit about 32% more accurate than
the query-free attack (Fig. 3a, MSE averaged over split depths; Table 4, images at depth 3), and Table 5 gives the
black-box queries needed to match UnSplit's MSE (averages over 30 runs of 500 images; the unit is not stated).

What is run here, per dataset (:func:`run_comparison`):

* one target network (MnistNet / CifarNet) trained for ``epochs`` x ``max_train_batches`` batches, then cut at
  every depth: layers 0..d are the client, d+1..end the server (one trained function, as
  :func:`unsplit_tf.experiments.run_depth_sweep` with shared training);
* the same targets for every attack: the first test image of each class (UnSplit's sample set);
* UnSplit (:func:`unsplit_tf.attacks.invert_images`, the original code's defaults unless ``unsplit`` says
  otherwise; a fresh seeded clone per depth), He et al.'s white-box rMLE with the true client weights (their MNIST
  setting, TV 1, for every dataset unless ``white_box`` says otherwise), and the query-free attack with a shadow
  client trained through the frozen server top on ``aux_size`` labelled training images: the last ones of the
  training split, held out of the target network's training (and disjoint from the test-split targets);
* every reconstruction scored the same way: MSE on [0, 1] after UnSplit's post-processing (CIFAR min-max), PSNR
  and SSIM, next to the trivial baselines (all-black image, training mean image).

Table 5 (:func:`run_table5`): black-box inverse networks trained on Q queries (random training images) for each Q of
a grid, ``runs`` times with different query draws and seeds; the queries needed to match UnSplit's MSE at a depth
are found by log-linear interpolation of the black-box MSE between grid points, per run, then averaged. Q is a
count of query images; log10(Q) and Q / 1000 are printed next to the paper's numbers, whose unit is unknown.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from splitnn.metrics import image_scores, trivial_baselines
from unsplit_tf.experiments import _short

METHODS = ("white_box", "unsplit", "query_free")
LABELS = {"white_box": "white-box (He et al.)", "unsplit": "UnSplit", "query_free": "query-free (He et al.)",
          "black_box": "black-box (He et al.)"}
#: Table 5 of the UnSplit paper (unit not stated).
PAPER_TABLE5 = {"mnist": (3.61, 7.81, 9.50, 7.05, 9.06, 9.38), "f_mnist": (2.11, 3.89, 9.66, 9.50, 9.51, 9.50),
                "cifar": (7.04, 8.42, 9.48, 8.64, 9.82, 9.34)}
PAPER_STATEMENTS = {"white_box_vs_unsplit": 0.38, "unsplit_vs_query_free": 0.32}


@dataclasses.dataclass
class InversionComparison:
    """Per-image scores of every method at every depth on one dataset.

    ``scores[method][depth]`` = dict(mse, psnr, ssim) arrays over targets (MSE on [0, 1]); ``x_eval[method][depth]``
    the scored reconstructions; ``baselines`` = dict(black, mean_image) per-target MSE; ``shadow_accuracy[depth]``
    the query-free shadow's accuracy (%) through the frozen server top on held-out test images;
    ``target_accuracy`` the trained network's test accuracy (%); ``seconds[method][depth]``; ``budget`` every
    setting; ``data`` the data description (says when the mirror is partial)."""
    dataset: str
    depths: tuple
    targets: np.ndarray
    labels: np.ndarray
    scores: dict
    x_eval: dict
    baselines: dict
    shadow_accuracy: dict
    target_accuracy: float
    seconds: dict
    budget: dict
    data: str
    partial: bool
    network: object = None  # the trained target network (a SplitNet), e.g. for Table 5

    def mean_mse(self, method: str, depth: int | None = None) -> float:
        """Mean MSE of ``method`` at ``depth``, or averaged over depths (each depth weighted equally)."""
        depths = self.depths if depth is None else (depth,)
        return float(np.mean([np.mean(self.scores[method][d]["mse"]) for d in depths]))

    def relative_gain(self, better: str, worse: str) -> float:
        """1 - MSE(better) / MSE(worse), MSE averaged over depths: "``better`` is x% more accurate than ``worse``"."""
        return 1.0 - self.mean_mse(better) / self.mean_mse(worse)


def _check_positive(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def train_target(dataset: str, *, epochs: int = 1, max_train_batches: int | None = None, holdout: int = 0,
                 seed: int = 0):
    """A trained MnistNet / CifarNet on ``dataset`` (one network; any depth cuts it into client and server) and
    the loaded data. The last ``holdout`` training images are left out of its training (the query-free attacker's
    auxiliary data). Returns ``(net, data, test accuracy %)``."""
    from splitnn.data import load_unsplit
    from unsplit_tf.models import build_model
    from unsplit_tf.training import train_split
    from unsplit_tf.util import accuracy

    name = _short(dataset)
    data = load_unsplit(name)
    holdout = int(holdout)
    if not 0 <= holdout < len(data.x_train):
        raise ValueError(f"holdout must be in [0, {len(data.x_train)}), got {holdout}")
    net = build_model("cifar" if name == "cifar" else "mnist", seed=seed * 1000 + 11, name="target")
    if epochs > 0:
        keep = len(data.x_train) - holdout
        # the same network on both sides: layers 0..1 and 2..end are disjoint variable sets of one model
        train_split(net, net, data.x_train[:keep], data.y_train[:keep], 1, epochs=epochs, seed=seed,
                    max_batches=max_train_batches, printer=None)
    acc = accuracy(lambda xb: net(xb), data.x_test, data.y_test)
    return net, data, acc


def run_comparison(dataset: str, depths=None, *, epochs: int = 1, max_train_batches: int | None = 300,
                   n_targets: int = 10, unsplit=None, white_box=None, query_free=None, aux_size: int = 5000,
                   shadow_epochs: int = 50, shadow_steps: int | None = None, heldout_size: int = 1000,
                   methods=METHODS, unsplit_batched: bool = False, seed: int = 0, printer=print) -> InversionComparison:
    """Fig. 3a / Table 4 on one dataset: every method of ``methods`` at every depth on the same targets.

    ``unsplit``: an :class:`unsplit_tf.attacks.InversionConfig` (default: the original code's settings);
    ``white_box`` / ``query_free``: :class:`unsplit_tf.he_attacks.HeConfig` (default: He et al.'s white-box and
    query-free settings); ``shadow_epochs`` / ``shadow_steps``: the shadow's training budget.
    ``unsplit_batched``: invert the targets at once, each with its own copy of the clone (faster; the original
    carries one clone across the targets, the default)."""
    from unsplit_tf import he_attacks
    from unsplit_tf.attacks import InversionConfig, invert_images
    from unsplit_tf.experiments import DEPTHS
    from unsplit_tf.models import build_model, check_split_depth
    from unsplit_tf.util import first_index_per_class

    name = _short(dataset)
    arch = "cifar" if name == "cifar" else "mnist"
    depths = tuple(DEPTHS[name] if depths is None else depths)
    if not depths:
        raise ValueError("depths is empty")
    for d in depths:
        check_split_depth(arch, d)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; expected some of {METHODS}")
    n_targets = _check_positive("n_targets", n_targets)
    if n_targets > 10:
        raise ValueError(f"n_targets must be at most 10 (one first-of-class test image per class), got {n_targets}")
    aux_size = _check_positive("aux_size", aux_size)
    heldout_size = _check_positive("heldout_size", heldout_size)
    shadow_epochs = _check_positive("shadow_epochs", shadow_epochs)
    shadow_steps = _check_positive("shadow_steps", shadow_steps, allow_none=True)
    unsplit = unsplit or InversionConfig()
    white_box = white_box or he_attacks.HeConfig()
    query_free = query_free or he_attacks.QUERY_FREE_CONFIG
    if not isinstance(unsplit, InversionConfig):
        raise TypeError(f"unsplit must be an InversionConfig, got {type(unsplit).__name__}")
    for label, cfg in (("white_box", white_box), ("query_free", query_free)):
        if not isinstance(cfg, he_attacks.HeConfig):
            raise TypeError(f"{label} must be a HeConfig, got {type(cfg).__name__}")

    start = time.perf_counter()
    net, data, target_acc = train_target(name, epochs=epochs, max_train_batches=max_train_batches,
                                         holdout=aux_size, seed=seed)
    if printer:
        printer(f"{name}: target network trained ({epochs} epoch(s)"
                f"{f' x {max_train_batches} batches' if max_train_batches else ''}), test accuracy {target_acc:.2f}%"
                f" ({time.perf_counter() - start:.0f} s)")
    idx = first_index_per_class(data.y_test)[:n_targets]
    targets, labels = data.x_test[idx], data.y_test[idx]
    aux_x, aux_y = data.x_train[-aux_size:], data.y_train[-aux_size:]
    held = np.setdiff1d(np.arange(len(data.y_test)), idx)[:heldout_size]
    heldout = (data.x_test[held], data.y_test[held])
    baselines = trivial_baselines(targets, data.x_train.mean(axis=0, dtype=np.float64))
    scores = {m: {} for m in methods}
    x_eval = {m: {} for m in methods}
    seconds = {m: {} for m in methods}
    shadow_acc = {}
    for d in depths:
        for m in methods:
            t = time.perf_counter()
            if m == "unsplit":
                clone = build_model(arch, seed=seed * 1000 + 100 * d + 7, name="clone")
                r = invert_images(net, clone, targets, d, unsplit, batched=unsplit_batched)
            elif m == "white_box":
                r = he_attacks.white_box_inversion(net, targets, d, white_box)
            else:
                smashed = np.asarray(net(targets, end=d))
                r = he_attacks.query_free_inversion(net, aux_x, aux_y, targets, smashed, d, shadow_epochs=shadow_epochs,
                                                    shadow_steps=shadow_steps, heldout=heldout, config=query_free,
                                                    seed=seed * 1000 + d)
                shadow_acc[d] = float(r.info.get("shadow_accuracy_heldout", float("nan")))
            seconds[m][d] = time.perf_counter() - t
            x_eval[m][d] = np.asarray(r.x_eval)
            scores[m][d] = image_scores(np.clip(r.x_eval, -1e6, 1e6), targets)
            if printer:
                extra = f", shadow accuracy {shadow_acc[d]:.1f}%" if m == "query_free" else ""
                printer(f"  {name} depth {d} {LABELS[m]}: MSE {np.mean(scores[m][d]['mse']):.4f}, "
                        f"PSNR {np.mean(scores[m][d]['psnr']):.2f} dB, SSIM {np.mean(scores[m][d]['ssim']):.3f}"
                        f"{extra} ({seconds[m][d]:.1f} s)")
    budget = dict(epochs=epochs, max_train_batches=max_train_batches, n_targets=n_targets, aux_size=aux_size,
                  shadow_epochs=shadow_epochs, shadow_steps=shadow_steps, heldout_size=len(held), seed=seed,
                  unsplit_batched=bool(unsplit_batched),
                  unsplit=dataclasses.asdict(unsplit), white_box=_he_dict(white_box),
                  query_free=_he_dict(query_free), seconds=time.perf_counter() - start)
    return InversionComparison(name, depths, targets, labels, scores, x_eval, baselines, shadow_acc, target_acc,
                            seconds, budget, data.description, bool(data.partial), net)


def _he_dict(cfg) -> dict:
    return {k: (np.asarray(v).tolist() if v is not None and not isinstance(v, (int, float, bool, str)) else v)
            for k, v in dataclasses.asdict(cfg).items()}


def method_stats(result: InversionComparison, method: str) -> dict:
    """Fig. 3a's bar and whiskers for one method: the MSE averaged over depths, and the quartiles of the per-depth
    mean MSEs."""
    per_depth = np.array([np.mean(result.scores[method][d]["mse"]) for d in result.depths])
    q1, q3 = np.percentile(per_depth, [25, 75])
    return dict(mean=float(per_depth.mean()), q1=float(q1), q3=float(q3), per_depth=per_depth)


def describe_budget(result: InversionComparison) -> str:
    b = result.budget
    u, w, q = b["unsplit"], b["white_box"], b["query_free"]
    text = (f"target network {b['epochs']} epoch(s)"
            f"{' x ' + str(b['max_train_batches']) + ' batches' if b['max_train_batches'] else ''} "
            f"(test accuracy {result.target_accuracy:.1f}%); UnSplit {u['main_iters']} x ({u['input_iters']} + "
            f"{u['model_iters']}) steps, TV schedule {u['tv_schedule']}, lambda_l2 {u['lambda_l2']:g}, "
            f"{'a clone copy per target' if b.get('unsplit_batched') else 'one clone carried across targets'}; white-box "
            f"{w['iters']} steps, lr {w['lr']:g}, TV {w['lambda_tv']:g}; query-free {q['iters']} steps, shadow on "
            f"{b['aux_size']} training images, {b['shadow_epochs']} epoch(s)"
            f"{', at most ' + str(b['shadow_steps']) + ' steps' if b['shadow_steps'] else ''}; "
            f"{b['n_targets']} targets (first test image per class), seed {b['seed']}")
    if result.partial:
        text += f"; PARTIAL DATA: {result.data}"
    return text


def format_fig3a(results, machine: str = "") -> str:
    """Fig. 3a as a Markdown table: per dataset and method, MSE averaged over depths (and its range of per-depth
    means), PSNR, SSIM, next to the trivial baselines; then the paper's two statements against ours."""
    lines = []
    for r in results:
        lines.append(f"**{r.dataset}**, depths {', '.join(map(str, r.depths))}: {describe_budget(r)}"
                     f"{'; ' + machine if machine else ''}. MSE on [0, 1].")
        lines.append("")
        lines.append("| method | MSE (mean over depths) | quartiles of per-depth MSE | PSNR dB | SSIM | "
                     + " | ".join(f"d{d}" for d in r.depths) + " |")
        lines.append("|---|---:|---:|---:|---:|" + "---:|" * len(r.depths))
        for m in METHODS:
            if m not in r.scores:
                continue
            s = method_stats(r, m)
            psnr = np.mean([np.mean(r.scores[m][d]["psnr"]) for d in r.depths])
            ssim = np.mean([np.mean(r.scores[m][d]["ssim"]) for d in r.depths])
            lines.append(f"| {LABELS[m]} | {s['mean']:.4f} | {s['q1']:.4f}-{s['q3']:.4f} | {psnr:.2f} | {ssim:.3f} | "
                         + " | ".join(f"{v:.4f}" for v in s["per_depth"]) + " |")
        for key, label in (("black", "all-black image"), ("mean_image", "training mean image")):
            v = float(np.mean(r.baselines[key]))
            lines.append(f"| baseline: {label} | {v:.4f} | | | | " + " | ".join("" for _ in r.depths) + " |")
        if "query_free" in r.scores:
            lines.append(f"| query-free shadow accuracy % | " + " | ".join("" for _ in range(4)) + " | "
                         + " | ".join(f"{r.shadow_accuracy.get(d, float('nan')):.1f}" for d in r.depths) + " |")
        lines.append("")
    claims = statements(results)
    if claims:
        lines.append("| paper's statement (§5.3) | paper | here, per dataset | here, mean |")
        lines.append("|---|---:|---|---:|")
        for key, text in (("white_box_vs_unsplit", "white-box more accurate than UnSplit"),
                          ("unsplit_vs_query_free", "UnSplit more accurate than query-free")):
            if key in claims:
                per = ", ".join(f"{d} {100 * v:+.0f}%" for d, v in claims[key].items())
                lines.append(f"| {text} | {100 * PAPER_STATEMENTS[key]:.0f}% | {per} | "
                             f"{100 * np.mean(list(claims[key].values())):+.0f}% |")
    return "\n".join(lines)


def statements(results) -> dict:
    """The paper's two relative statements measured here: {'white_box_vs_unsplit': {dataset: gain}, ...}, gain =
    1 - MSE(better) / MSE(worse) with MSE averaged over depths."""
    out = {}
    for r in results:
        if {"white_box", "unsplit"} <= set(r.scores):
            out.setdefault("white_box_vs_unsplit", {})[r.dataset] = r.relative_gain("white_box", "unsplit")
        if {"unsplit", "query_free"} <= set(r.scores):
            out.setdefault("unsplit_vs_query_free", {})[r.dataset] = r.relative_gain("unsplit", "query_free")
    return out


def plot_fig3a(results, path=None, title: str = ""):
    """Fig. 3a: per dataset, a bar per method (MSE averaged over depths) with whiskers at the quartiles of the
    per-depth MSEs; the black-image and mean-image baselines as short dashed lines."""
    import matplotlib.pyplot as plt

    from splitnn.plots import save_figure

    fig, ax = plt.subplots(figsize=(1.9 + 1.6 * len(results), 3.4))
    width = 0.8 / len(METHODS)
    for j, m in enumerate(METHODS):
        xs, means, lo, hi = [], [], [], []
        for i, r in enumerate(results):
            if m not in r.scores:
                continue
            s = method_stats(r, m)
            xs.append(i + (j - 1) * width)
            means.append(s["mean"])
            lo.append(s["mean"] - s["q1"])
            hi.append(s["q3"] - s["mean"])
        ax.bar(xs, means, width, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=3, label=LABELS[m])
    for i, r in enumerate(results):
        for key, style in (("black", "k--"), ("mean_image", "k:")):
            ax.plot([i - 0.45, i + 0.45], [np.mean(r.baselines[key])] * 2, style, lw=1,
                    label=({"black": "all-black image", "mean_image": "training mean image"}[key] if i == 0 else None))
    ax.set_xticks(range(len(results)), [r.dataset for r in results])
    ax.set_ylabel("MSE on [0, 1], mean over depths")
    ax.legend(fontsize=7)
    ax.set_title(title or "Fig. 3a: UnSplit and He et al.'s attacks", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path) if path else fig


def plot_table4(results, depth: int = 3, path=None, title: str = ""):
    """Table 4: per dataset, rows original / white-box / UnSplit / query-free at ``depth`` (labelled)."""
    import matplotlib.pyplot as plt

    from splitnn.plots import save_figure

    rows = [("original", None)] + [(LABELS[m], m) for m in METHODS]
    n = max(len(r.targets) for r in results)
    fig, axes = plt.subplots(len(rows) * len(results), n, figsize=(0.75 * n + 1.6, 0.8 * len(rows) * len(results)),
                             squeeze=False)
    for k, r in enumerate(results):
        for i, (label, m) in enumerate(rows):
            row = k * len(rows) + i
            imgs = r.targets if m is None else r.x_eval.get(m, {}).get(depth)
            for j in range(n):
                ax = axes[row, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if imgs is None or j >= len(imgs):
                    ax.axis("off")
                    continue
                img = np.clip(imgs[j], 0, 1)
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                          vmin=0, vmax=1)
            axes[row, 0].set_ylabel(f"{r.dataset}\n{label}" if i == 0 else label, fontsize=6, rotation=0,
                                    ha="right", va="center")
    fig.suptitle(title or f"Table 4: reconstructions at split depth {depth}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path) if path else fig


# ================================================================================================ Table 5
@dataclasses.dataclass
class Table5Result:
    """``mse[depth]`` [runs, len(query_counts)] black-box MSE (mean over targets, [0, 1]); ``unsplit_mse[depth]``
    the level to match; ``needed[depth]`` [runs] the interpolated query count (inf when the largest Q does not
    reach it)."""
    dataset: str
    depths: tuple
    query_counts: tuple
    mse: dict
    unsplit_mse: dict
    needed: dict
    budget: dict
    seconds: float

    def reached_at_first(self, depth: int) -> bool:
        """Every run already matched UnSplit at the smallest Q (the count needed is then at most that Q)."""
        return bool(np.all(self.mse[depth][:, 0] <= self.unsplit_mse[depth]))

    def mean_needed(self, depth: int) -> tuple:
        """(mean of the finite per-run counts, how many runs reached UnSplit's MSE)."""
        v = self.needed[depth]
        ok = v[np.isfinite(v)]
        return (float(ok.mean()) if len(ok) else float("inf")), int(len(ok))


def queries_to_match(counts, mse, level) -> float:
    """The smallest query count at which the black-box MSE curve reaches ``level``, by linear interpolation of the
    MSE in log10(Q) between grid points; ``counts[0]`` when already reached there, inf when never reached."""
    counts = np.asarray(counts, np.float64)
    mse = np.asarray(mse, np.float64)
    if mse[0] <= level:
        return float(counts[0])
    for i in range(1, len(counts)):
        if mse[i] <= level:
            a, b = math.log10(counts[i - 1]), math.log10(counts[i])
            t = (mse[i - 1] - level) / (mse[i - 1] - mse[i])
            return float(10 ** (a + t * (b - a)))
    return float("inf")


def run_table5(net, data, targets, unsplit_mse: dict, *, dataset: str = "", query_counts=(100, 300, 1000, 3000, 10000),
               runs: int = 3, epochs: int = 50, steps: int | None = None, batch_size: int = 32, seed: int = 0,
               printer=print) -> Table5Result:
    """Table 5 on a trained network ``net`` (``InversionComparison.network`` or :func:`train_target`'s) and its
    ``data`` (:func:`splitnn.data.load_unsplit`): for each depth of ``unsplit_mse``
    ({depth: UnSplit's mean MSE on ``targets``}) and each Q of ``query_counts``, train an inverse network on Q random
    training images ``runs`` times (different draws and seeds), score it on ``targets``, and interpolate the Q
    that matches UnSplit. ``epochs`` / ``steps`` / ``batch_size``: the inverse network's training (He et al.'s 50
    epochs by default; ``steps`` caps it for a CPU budget)."""
    from unsplit_tf import he_attacks

    counts = tuple(int(q) for q in query_counts)
    if not counts or any(q < 1 for q in counts) or any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"query_counts must be increasing positive integers, got {query_counts!r}")
    if data is not None and counts[-1] > len(data.x_train):
        raise ValueError(f"{counts[-1]} queries but only {len(data.x_train)} training images")
    runs = _check_positive("runs", runs)
    from unsplit_tf.models import check_split_depth

    for d in unsplit_mse:
        check_split_depth(net.arch, d)
    targets = np.asarray(targets)
    if targets.ndim != 4 or tuple(targets.shape[1:]) != tuple(net.image_shape):
        raise ValueError(f"targets must be [N, {', '.join(map(str, net.image_shape))}], got {targets.shape}")
    start = time.perf_counter()
    mse, needed = {}, {}
    for d, level in unsplit_mse.items():
        curve = np.zeros((runs, len(counts)))
        for k in range(runs):
            rng = np.random.default_rng([seed, d, k])
            pool = rng.permutation(len(data.x_train))
            for j, q in enumerate(counts):
                inv = he_attacks.train_inverse_network(net, data.x_train[pool[:q]], d, epochs=epochs, steps=steps,
                                                       batch_size=batch_size, seed=int(rng.integers(2 ** 31)))
                curve[k, j] = he_attacks.black_box_inversion(inv, net, targets, d).mean_mse
        mse[d] = curve
        needed[d] = np.array([queries_to_match(counts, c, level) for c in curve])
        if printer:
            m, n_ok = Table5Result(dataset, (), counts, mse, unsplit_mse, needed, {}, 0.0).mean_needed(d)
            printer(f"  depth {d}: black-box MSE " + ", ".join(f"Q={q}: {v:.4f}" for q, v in zip(counts, curve.mean(0)))
                    + f"; UnSplit {level:.4f}; queries to match: {m:.0f} ({n_ok}/{runs} runs reach it)")
    budget = dict(epochs=epochs, steps=steps, batch_size=batch_size, runs=runs, seed=seed, n_targets=len(targets))
    return Table5Result(dataset, tuple(unsplit_mse), counts, mse, dict(unsplit_mse), needed, budget,
                        time.perf_counter() - start)


def format_table5(result: Table5Result, machine: str = "") -> str:
    b = result.budget
    paper = PAPER_TABLE5.get(result.dataset, ())
    lines = [f"**Table 5, {result.dataset}**: black-box queries to match UnSplit's MSE; inverse network "
             f"{b['epochs']} epoch(s){', at most ' + str(b['steps']) + ' steps' if b['steps'] else ''}, batch "
             f"{b['batch_size']}, Q in {list(result.query_counts)}, {b['runs']} runs, {b['n_targets']} targets"
             f"{'; ' + machine if machine else ''}. Q is a number of query images; the paper's unit is not stated.",
             "",
             "| depth | UnSplit MSE | black-box MSE at each Q (mean over runs) | queries to match (mean) | runs reaching "
             "| log10 | thousands | paper |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for d in result.depths:
        m, n_ok = result.mean_needed(d)
        curve = ", ".join(f"{v:.4f}" for v in result.mse[d].mean(0))
        fin = math.isfinite(m)
        first = result.reached_at_first(d)  # then the count is only bounded: at most the smallest Q
        le = "<= " if first else ""
        if first:
            count = f"<= {result.query_counts[0]}"
        else:
            count = f"{m:.0f}" if fin else f"> {result.query_counts[-1]}"
        lines.append(f"| {d} | {result.unsplit_mse[d]:.4f} | {curve} | {count} | {n_ok}/{b['runs']} | "
                     f"{f'{le}{math.log10(m):.2f}' if fin else 'n/a'} | {f'{le}{m / 1000:.2f}' if fin else 'n/a'} | "
                     f"{paper[d - 1] if d - 1 < len(paper) else 'n/a'} |")
    return "\n".join(lines)

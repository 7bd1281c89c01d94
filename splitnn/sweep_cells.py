"""What one cell of a sweep (:mod:`splitnn.sweeps`) computes, per attack: each function takes a cell's settings,
calls the package's own experiment code with **every** setting passed explicitly (no default of the called code
decides a result), and returns a JSON-ready dict of results.

======================= ============================================================ ============================
attack                  calls                                                        level
======================= ============================================================ ============================
``unsplit``             :func:`unsplit_tf.experiments.run_depth_sweep` on one depth  split depth (Table 2)
``unsplit_labels``      :func:`unsplit_tf.experiments.run_table3`, one setting       client depth (Table 3)
``fsha``                :class:`fsha.FSHA.FSHA`, as ``notebooks/FSHA_split_levels``  split level 1-4
``nopeek``              :func:`defenses.nopeek.tradeoff_study` on one alpha          alpha1
======================= ============================================================ ============================

Every cell starts with :func:`splitnn.backend.set_seed` of its seed (Python, NumPy, Keras, TensorFlow), after
which the called code seeds itself from the same seed as it does in a sequential run; so a cell gives the same
numbers in a Dask worker as in this process (``tests/test_sweeps.py``). Keys holding timings contain ``seconds``
(they are what two runs of one cell may differ in).

Nothing here imports Keras at module level: a Dask worker unpickles :func:`run_cell` before the first cell picks
the thread pools.
"""
from __future__ import annotations

import contextlib
import os

#: The reference hyperparameters of FSHA (``fsha.FSHA.REFERENCE_HPARAMS``, the original notebooks'), spelt out so
#: that a cell's record holds them (``tests/test_sweeps.py`` checks they are the package's).
FSHA_REFERENCE_HPARAMS = {"WGAN": True, "gradient_penalty": 500.0, "lr_f": 1e-5, "lr_tilde": 1e-5, "lr_D": 1e-4}

_THREADS_SET = False


def _threads():
    """One TensorFlow thread per worker process (the package's setting for these small models on a CPU; one
    worker per core is the sweep's parallelism). Only in the first cell of a process, before TF starts; the
    ``SPLITNN_SWEEP_THREADS`` variable changes the count (0 leaves TensorFlow's default)."""
    global _THREADS_SET
    if _THREADS_SET:
        return
    _THREADS_SET = True
    n = int(os.environ.get("SPLITNN_SWEEP_THREADS", "1"))
    if n > 0:
        from unsplit_tf.util import configure_threads

        configure_threads(n, n)


def run_cell(cell: dict) -> dict:
    """The results of one cell (a dict with ``attack``, ``dataset``, ``level``, ``seed``, ``budget``,
    ``options``, as :meth:`splitnn.sweeps.Cell.to_dict` gives).

    Every cell starts from a fresh Keras state (``keras.backend.clear_session()``, which also lets the previous
    cell's graphs go), seeds everything with :func:`splitnn.backend.set_seed` and, under TensorFlow, turns on op
    determinism when ``SPLITNN_SWEEP_DETERMINISTIC=1`` (off by default: UnSplit's XLA-compiled training step has
    no deterministic MaxPool gradient, and the cells agree without it, to float32 rounding at worst);
    Python's ``random`` is the cell's own while it runs (:func:`own_python_random`)."""
    _threads()
    import keras

    from splitnn import backend

    keras.backend.clear_session()
    deterministic = os.environ.get("SPLITNN_SWEEP_DETERMINISTIC", "0") == "1"
    with own_python_random():
        backend.set_seed(int(cell["seed"]), deterministic=deterministic)
        run = RUNNERS[cell["attack"]]
        return run(cell["dataset"], cell["level"], int(cell["seed"]), dict(cell["budget"]), dict(cell["options"]))


#: The functions of Python's ``random`` module that :func:`own_python_random` routes by thread.
_RANDOM_FUNCTIONS = ("seed", "random", "uniform", "triangular", "randint", "randrange", "choice", "choices",
                     "shuffle", "sample", "getrandbits", "randbytes", "gauss", "normalvariate", "expovariate",
                     "getstate", "setstate", "betavariate", "gammavariate", "lognormvariate", "vonmisesvariate",
                     "paretovariate", "weibullvariate", "binomialvariate")


@contextlib.contextmanager
def own_python_random():
    """While the block runs, the calls of other threads to Python's ``random`` module draw from a generator of
    their own, and only this thread draws from the module's global one.

    Keras gives every initializer and ``SeedGenerator`` created without a seed a default seed from Python's global
    ``random`` (``keras.src.random.seed_generator.make_default_seed``), which :func:`splitnn.backend.set_seed`
    seeds. In a Dask worker the event-loop thread draws from the same generator (heartbeat jitter, retry back-off)
    while a cell builds its networks, so the same seeded cell got other weights in every run (seen: FSHA's
    decoder and critic, and then every number). Code that bound ``from random import random`` before the block
    still draws from the global generator."""
    import random
    import threading

    owner, side = threading.get_ident(), random.Random()
    saved = {}

    def route(real, other):
        return lambda *a, **k: (real if threading.get_ident() == owner else other)(*a, **k)

    for name in _RANDOM_FUNCTIONS:
        real = getattr(random, name, None)
        if real is not None and hasattr(side, name):
            saved[name] = real
            setattr(random, name, route(real, getattr(side, name)))
    try:
        yield
    finally:
        for name, real in saved.items():
            setattr(random, name, real)


def unsplit_table2(dataset, depth, seed, budget, options) -> dict:
    """Table 2 at one depth: the MSE before and after training, PSNR and SSIM, the clone's accuracy, and the
    trivial baselines (the MSE of answering the all-black image or the mean training image for every target)."""
    import numpy as np

    from splitnn.data import load_unsplit
    from splitnn.metrics import image_scores, trivial_baselines
    from unsplit_tf.experiments import run_depth_sweep

    sweep = run_depth_sweep(dataset, depths=(int(depth),), epochs=budget["epochs"], main_iters=budget["main_iters"],
                            input_iters=budget["input_iters"], model_iters=budget["model_iters"],
                            tv_schedule=options["tv_schedule"], max_train_batches=budget["max_train_batches"],
                            attack_every_epoch=False, n_targets=budget["n_targets"], batched=options["batched"],
                            share_training=True, seed=seed, printer=None, lambda_l2=float(options["lambda_l2"]))
    before = sweep.get(int(depth), 0)
    after = sweep.get(int(depth), sweep.epochs) if sweep.epochs > 0 else None
    mean_image = load_unsplit(dataset).x_train.mean(axis=0, dtype=np.float64)
    baselines = trivial_baselines(sweep.targets, mean_image)
    scores = {name: image_scores(r.x_eval, sweep.targets) for name, r in (("before", before), ("after", after)) if r}
    nan = float("nan")

    def per(name, key):
        return [float(v) for v in scores[name][key]] if name in scores else []

    def avg(name, key):
        return float(np.mean(scores[name][key])) if name in scores else nan

    return dict(
        table="unsplit_table2", dataset=sweep.dataset, depth=int(depth),
        mse_before=before.mean_mse, mse_after=after.mean_mse if after else nan,
        mse_before_per_target=[float(v) for v in before.mse],
        mse_after_per_target=[float(v) for v in after.mse] if after else [],
        psnr_before=avg("before", "psnr"), psnr_after=avg("after", "psnr"),
        ssim_before=avg("before", "ssim"), ssim_after=avg("after", "ssim"),
        ssim_before_per_target=per("before", "ssim"), ssim_after_per_target=per("after", "ssim"),
        clone_intended=float(after.clone_intended_full) if after else nan,
        clone_repo_literal=float(after.clone_repo_literal_full) if after else nan,
        target_acc=float(after.target_acc_full) if after else nan,
        baseline_mean_image_mse=float(baselines["mean_image"].mean()),
        baseline_black_mse=float(baselines["black"].mean()), chance_accuracy=10.0,
        partial=bool(sweep.partial), data=sweep.description, sweep_seconds=sweep.seconds)


def unsplit_table3(dataset, client_depth, seed, budget, options) -> dict:
    """Table 3: label inference at one client depth, from the gradient the options name."""
    from unsplit_tf.experiments import run_table3

    (entry,) = run_table3(dataset, count=budget["count"], settings=((int(client_depth), options["observed_param"]),),
                          seed=seed, printer=None)
    return dict(table="unsplit_table3", dataset=entry.dataset, client_depth=entry.client_depth,
                observed_param=entry.observed_param, accuracy=float(entry.accuracy), count=int(entry.count),
                paper=float(entry.paper))


def fsha_level(dataset, level, seed, budget, options) -> dict:
    """FSHA at one split level, as ``notebooks/FSHA_split_levels.ipynb``: the first ``n_heldout`` training images
    are kept from the client (scored at the end), the client trains on the next ``private_size`` (None: all the
    others), the attacker's public set is the test split; seeded before the streams and in ``FSHA(seed=)``."""
    import time

    import numpy as np

    from fsha.datasets import load_arrays, make_dataset
    from fsha.FSHA import FSHA

    x_train, y_train, x_test, y_test = load_arrays(dataset)
    n, size = int(budget["n_heldout"]), budget["private_size"]
    end = len(x_train) if size is None else n + int(size)
    xpriv = make_dataset(x_train[n:end], y_train[n:end])
    xheld = make_dataset(x_train[:n], y_train[:n], shuffle=False)
    xpub = make_dataset(x_test, y_test)
    attack = FSHA(xpriv, xpub, int(level) - 1, budget["batch_size"], dict(options["hparams"]),
                  architecture=options["architecture"], seed=seed)
    start = time.perf_counter()
    attack(budget["iterations"], verbose=False, progress_bar=False, log_frequency=budget["log_frequency"])
    seconds = time.perf_counter() - start
    steps, validation = attack.validation_history
    held = attack.scoreAttack(xheld, progress_bar=False)
    return dict(table="fsha_levels", dataset=dataset, level=int(level), z_shape=[int(d) for d in attack.z_shape],
                iterations=int(attack.iteration), validation_steps=[int(s) for s in steps],
                validation=[float(v) for v in np.asarray(validation)],
                final_validation=float(validation[-1]) if len(validation) else float("nan"),
                heldout_mse=float(held), train_seconds=seconds)


def nopeek_alpha(dataset, alpha1, seed, budget, options) -> dict:
    """One alpha of the NoPeek trade-off (accuracy, held-out dCor, a curious server's inversion MSE)."""
    from defenses.nopeek import tradeoff_study

    (r,) = tradeoff_study([float(alpha1)], train_size=budget["train_size"], epochs=budget["epochs"],
                          batch_size=budget["batch_size"], learning_rate=options["learning_rate"],
                          decoder_epochs=budget["decoder_epochs"], public_size=budget["public_size"],
                          dcor_batch_size=options["dcor_batch_size"], seed=seed, verbose=0, log=None)
    return dict(table="nopeek_tradeoff", dataset=dataset, alpha1=float(r.alpha1), accuracy=float(r.accuracy),
                dcor=float(r.dcor), inversion_mse=float(r.inversion_mse), baseline_mse=float(r.baseline_mse),
                train_task_loss=float(r.train_task_loss), train_dcor=float(r.train_dcor),
                dcor_batch_size=int(r.dcor_batch_size), train_seconds=float(r.train_seconds))


RUNNERS = {"unsplit": unsplit_table2, "unsplit_labels": unsplit_table3, "fsha": fsha_level, "nopeek": nopeek_alpha}

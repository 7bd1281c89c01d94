"""Sweeps: the papers' tables as grids of cells, each cell a task on Dask distributed, one JSON record per cell.

    python -m splitnn.sweeps run table2 --datasets mnist --depths 1 2 3 --seeds 0 1 2 \\
        --budget epochs=1 max_train_batches=100 main_iters=30 --workers 2 --results results/table2
    python -m splitnn.sweeps report results/table2        # Markdown tables + figures, from the records alone
    python -m splitnn.sweeps grids                         # the grids, their levels, budgets and options

**Cells.** A cell is (attack, dataset, level, seed, budget, options): ``level`` is UnSplit's split depth, Table 3's
client depth, FSHA's split level or NoPeek's alpha1. Its id is a hash of its canonical JSON, so the same settings
always name the same cell. :data:`GRIDS` builds the cells of UnSplit's Table 2 (``table2``) and Table 3
(``table3``), FSHA's split levels (``fsha_levels``) and NoPeek's trade-off (``nopeek``); a grid's default budget is
the paper's (or the benchmark's, for NoPeek), every value is written into the cell and passed explicitly to the
package's experiment code (:mod:`splitnn.sweep_cells`).

**Engine.** :func:`run_sweep` submits one Dask task per cell that is not recorded yet: to a ``LocalCluster`` on this
machine by default (``workers`` processes, one thread each; ``workers=0`` runs the cells one after another in this
process, without Dask), to a running scheduler (``scheduler='tcp://...'``), or to an HPC batch system through
``dask-jobqueue`` (``jobqueue='slurm'``, ``'pbs'``, ...; an optional dependency). With ``gpu_share=F`` every cell
asks for ``resources={'GPU': F}``: a worker started with ``--resources GPU=F`` holds an F share of one GPU, so
1/F worker processes on a GPU run that many cells side by side on it (the local cluster gives each of its workers
that share).

**Records.** The driver writes each finished cell's record (settings, package version, git commit, Keras backend,
device, host, seconds, attempts, results) as ``<results>/<slug>-<id>.json``, atomically (a temporary file renamed
into place), so an interrupted sweep leaves only complete records and the same command resumes it: recorded cells
are skipped. A cell that raises is tried ``attempts`` times in its task; a cell whose worker dies is rescheduled by
Dask on another worker. A cell that still fails gets ``<results>/failed/<slug>-<id>.json`` (the errors) and a line
in the summary, never silence; it is tried again by the next run.

**Reports.** :func:`report` reads the records only and writes Table 2 (mean and sample standard deviation over
seeds, with the paper's values, the mean-image baseline and chance accuracy), Table 3, FSHA's split levels x
datasets and the NoPeek trade-off, each as a Markdown table and a figure. Records with other budgets or options
go into separate tables.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from splitnn.utils import closest_name, write_json_atomic  # noqa: E402,F401 (write_json_atomic: part of this module's API)

_REPO = Path(__file__).resolve().parent.parent
FAILED_DIR = "failed"


class SweepError(ValueError):
    """A grid, budget, option or engine setting that cannot be run (raised before any cell starts)."""


def _closest(name, valid) -> str:
    match = closest_name(name, valid, cutoff=0.5)
    return f" (did you mean {match!r}?)" if match else ""


def _canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


# ------------------------------------------------------------------------------------------------------ cells

#: Options added to a grid after records existed, with the value those records ran with. An option equal to that
#: value is left out of the cell's id, and filled into old records when they are read, so cells recorded before
#: the option existed keep their ids (resume skips them) and group with new records in the reports.
ADDED_OPTIONS = {"unsplit": {"lambda_l2": 1.0}}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of one attack: its id is a hash of its canonical JSON (the same settings, the same id)."""

    attack: str
    dataset: str
    level: float | int
    seed: int
    budget: dict
    options: dict

    def to_dict(self) -> dict:
        return {"attack": self.attack, "dataset": self.dataset, "level": self.level, "seed": self.seed,
                "budget": dict(self.budget), "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(d["attack"], d["dataset"], d["level"], int(d["seed"]), dict(d["budget"]), dict(d["options"]))

    @property
    def id(self) -> str:
        d = self.to_dict()
        for key, value in ADDED_OPTIONS.get(self.attack, {}).items():
            if key in d["options"] and d["options"][key] == value:
                del d["options"][key]
        return hashlib.sha256(_canonical_json(d).encode()).hexdigest()[:16]

    @property
    def slug(self) -> str:
        level = f"{self.level:g}" if isinstance(self.level, float) else str(self.level)
        observed = f"-{self.options['observed_param']}" if self.options.get("observed_param") else ""
        return f"{self.attack}-{self.dataset}-{LEVEL_PREFIX.get(self.attack, 'l')}{level}{observed}-s{self.seed}"

    @property
    def filename(self) -> str:
        return f"{self.slug}-{self.id}.json"

    def __hash__(self):
        return hash(self.id)


LEVEL_PREFIX = {"unsplit": "d", "unsplit_labels": "cd", "fsha": "l", "nopeek": "a"}


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """How a grid's cells are built: the attack, its datasets and levels, the budget and options (defaults: the
    paper's), which budget values may be None (``nullable``)."""

    name: str
    attack: str
    description: str
    datasets: tuple
    level_name: str
    level_type: type
    budget: dict
    options: dict
    nullable: tuple = ()

    def levels(self, dataset: str) -> tuple:
        if self.attack == "unsplit":
            from unsplit_tf.experiments import DEPTHS

            return DEPTHS[{"mnist": "mnist", "fashion_mnist": "f_mnist", "cifar10": "cifar"}[dataset]]
        if self.attack == "unsplit_labels":
            return (1, 2)
        if self.attack == "fsha":
            return (1, 2, 3, 4)
        return (0.0, 1.0, 2.5, 5.0, 10.0, 20.0)  # NoPeek: benchmarks/nopeek_tradeoff.py's alphas (any alpha >= 0)


def _table3_settings():
    from unsplit_tf.experiments import TABLE3_SETTINGS

    return TABLE3_SETTINGS


GRIDS = {
    "table2": GridSpec(
        "table2", "unsplit", "UnSplit Table 2: MSE before/after training and clone accuracy per split depth",
        ("mnist", "fashion_mnist", "cifar10"), "depth", int,
        budget=dict(epochs=10, main_iters=1000, input_iters=100, model_iters=100, max_train_batches=None,
                    n_targets=10),
        options=dict(tv_schedule="code", lambda_l2=1.0, batched=False), nullable=("max_train_batches",)),
    "table3": GridSpec(
        "table3", "unsplit_labels", "UnSplit Table 3: label inference accuracy per client depth",
        ("mnist", "fashion_mnist", "cifar10"), "client depth", int,
        budget=dict(count=100), options=dict(observed_param=None), nullable=()),
    "fsha_levels": GridSpec(
        "fsha_levels", "fsha", "FSHA per split level (notebooks/FSHA_split_levels.ipynb)",
        ("mnist", "fashion_mnist"), "level", int,
        budget=dict(iterations=10_000, batch_size=64, log_frequency=500, n_heldout=1000, private_size=None),
        options=dict(architecture="notebook", hparams=None), nullable=("private_size",)),
    "nopeek": GridSpec(
        "nopeek", "nopeek", "NoPeek trade-off: accuracy, held-out dCor and inversion MSE per alpha1",
        ("mnist",), "alpha1", float,
        budget=dict(train_size=10_000, epochs=2, decoder_epochs=5, batch_size=64, public_size=None),
        options=dict(learning_rate=1e-3, dcor_batch_size=64), nullable=("public_size",)),
}


def grid_spec(name: str) -> GridSpec:
    if name not in GRIDS:
        raise SweepError(f"unknown grid {name!r}{_closest(name, GRIDS)}; grids: {', '.join(GRIDS)}")
    return GRIDS[name]


def _check_budget(spec: GridSpec, budget: dict) -> dict:
    out = dict(spec.budget)
    for key, value in budget.items():
        if key not in spec.budget:
            where = " (an option: pass it with --option)" if key in spec.options else ""
            raise SweepError(f"grid {spec.name!r}: unknown budget key {key!r}{where or _closest(key, spec.budget)}; "
                             f"budget keys: {', '.join(spec.budget)}")
        if value is None:
            if key not in spec.nullable:
                raise SweepError(f"grid {spec.name!r}: budget {key} cannot be None")
        elif isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "epochs" else 1):
            raise SweepError(f"grid {spec.name!r}: budget {key} must be an integer >= "
                             f"{0 if key == 'epochs' else 1}{' or None' if key in spec.nullable else ''}, "
                             f"got {value!r}")
        out[key] = value
    return out


def _check_options(spec: GridSpec, options: dict) -> dict:
    out = dict(spec.options)
    for key, value in options.items():
        if key not in spec.options:
            where = " (a budget key: pass it with --budget)" if key in spec.budget else ""
            raise SweepError(f"grid {spec.name!r}: unknown option {key!r}{where or _closest(key, spec.options)}; "
                             f"options: {', '.join(spec.options)}")
        out[key] = value
    if spec.attack == "unsplit":
        tv = out["tv_schedule"]
        if not (tv in ("paper", "code") or (isinstance(tv, (int, float)) and not isinstance(tv, bool))):
            raise SweepError(f"option tv_schedule must be 'paper', 'code' or a number, got {tv!r}")
        if not isinstance(out["batched"], bool):
            raise SweepError(f"option batched must be true or false, got {out['batched']!r}")
        l2 = out["lambda_l2"]
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not 0 <= l2 < math.inf:
            raise SweepError(f"option lambda_l2 must be a number >= 0 (0 is the paper's eq. 1), got {l2!r}")
        out["lambda_l2"] = float(l2)  # 0 and 0.0 name the same cell
    if spec.attack == "fsha":
        from splitnn.sweep_cells import FSHA_REFERENCE_HPARAMS

        if out["hparams"] is None:
            out["hparams"] = dict(FSHA_REFERENCE_HPARAMS)
        if out["architecture"] not in ("final", "notebook"):
            raise SweepError(f"option architecture must be 'final' or 'notebook'"
                             f"{_closest(out['architecture'], ('final', 'notebook'))}, got {out['architecture']!r}")
    return out


def make_grid(name: str, *, datasets=None, levels=None, seeds=(0,), budget=None, options=None) -> list:
    """The cells of grid ``name`` (:data:`GRIDS`): datasets x levels x seeds (defaults: the grid's datasets and
    every level), with ``budget`` and ``options`` overriding the grid's defaults key by key. Anything unknown or
    out of range is a :class:`SweepError` naming the closest valid value."""
    spec = grid_spec(name)
    from splitnn.data import UnknownDatasetError, canonical_name

    names = []
    for d in (spec.datasets if not datasets else datasets):
        try:
            key = canonical_name(d)
        except UnknownDatasetError:
            key = str(d)
        if key not in spec.datasets:
            raise SweepError(f"grid {name!r}: unknown dataset {d!r}{_closest(d, spec.datasets)}; "
                             f"datasets: {', '.join(spec.datasets)}")
        names.append(key)
    budget = _check_budget(spec, dict(budget or {}))
    options = _check_options(spec, dict(options or {}))
    seeds = list(seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"seeds must be integers >= 0, got {s!r}")
    cells = []
    for dataset in names:
        valid = spec.levels(dataset)
        chosen = valid if levels is None else [spec.level_type(v) for v in levels]
        for level in chosen:
            if spec.attack == "nopeek":
                if not level >= 0:
                    raise SweepError(f"alpha1 must be >= 0, got {level!r}")
            elif level not in valid:
                raise SweepError(f"grid {name!r}: {spec.level_name} {level!r} is not one of {dataset}'s "
                                 f"({', '.join(map(str, valid))})")
            if spec.attack == "unsplit_labels" and options["observed_param"] is None:
                variants = [dict(options, observed_param=o) for d, o in _table3_settings() if d == level]
            else:
                variants = [options]
            for opts in variants:
                for seed in seeds:
                    cells.append(Cell(spec.attack, dataset, level, int(seed), dict(budget), dict(opts)))
    return unique(cells)


def unique(cells) -> list:
    """``cells`` without repeats (same id), in order."""
    seen, out = set(), []
    for c in cells:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------------------- records

def load_records(results, failed=False) -> list:
    """The records in ``results`` (those of finished cells; ``failed=True``: the failure records)."""
    folder = Path(results) / FAILED_DIR if failed else Path(results)
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not a record (only complete files are ever renamed into place)
        if isinstance(rec, dict) and "cell" in rec and rec.get("status") == ("failed" if failed else "ok"):
            for key, value in ADDED_OPTIONS.get(rec["cell"].get("attack"), {}).items():
                rec["cell"].setdefault("options", {}).setdefault(key, value)
            out.append(rec)
    return out


def recorded_ids(results) -> set:
    return {r["id"] for r in load_records(results)}


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (``+dirty`` when tracked files differ from it), or None without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True,
                                timeout=20).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=_REPO, capture_output=True,
                               timeout=20).returncode
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def _device() -> str:
    if "keras" in sys.modules:
        from splitnn.notebook import machine

        return machine()
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    return f"{cpu}, {os.cpu_count()} cores (Keras not loaded by this cell)"


def environment() -> dict:
    """What a record says about where it ran."""
    import splitnn

    backend = (sys.modules["keras"].backend.backend() if "keras" in sys.modules
               else os.environ.get("KERAS_BACKEND", "tensorflow"))
    worker = None
    if "distributed" in sys.modules:
        with contextlib.suppress(Exception):
            from distributed import get_worker

            worker = get_worker().address
    return {"package_version": splitnn.__version__, "git_commit": git_commit(), "keras_backend": backend,
            "device": _device(), "host": socket.gethostname(), "pid": os.getpid(), "worker": worker,
            "python": platform.python_version()}


def execute(cell: dict, attempts: int = 2, runner=None) -> dict:
    """The task of one cell (runs in a worker): ``runner(cell)`` (default :func:`splitnn.sweep_cells.run_cell`)
    up to ``attempts`` times until it returns; the record (status ``ok`` or ``failed``, with every attempt's
    error). Its stdout is kept in the record (the last 4,000 characters), not printed."""
    if runner is None:
        from splitnn.sweep_cells import run_cell as runner
    errors, results, out = [], None, io.StringIO()
    start = time.perf_counter()
    for attempt in range(1, max(1, int(attempts)) + 1):
        t = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out):
                results = runner(cell)
            break
        except Exception as exc:  # noqa: BLE001 (any error of the cell is recorded, then retried)
            errors.append({"attempt": attempt, "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()[-4000:], "seconds": time.perf_counter() - t})
    record = {"id": Cell.from_dict(cell).id, "cell": cell, "status": "ok" if results is not None else "failed",
              "attempts": len(errors) + (results is not None), "errors": errors,
              "seconds": time.perf_counter() - start,
              "cell_seconds": (time.perf_counter() - t) if results is not None else None,
              "results": results, "log_tail": out.getvalue()[-4000:], **environment(),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return record


# ------------------------------------------------------------------------------------------------------ engine

@dataclasses.dataclass
class SweepSummary:
    results: str
    total: int                       # cells in the grid
    skipped: int                     # already recorded when the sweep started
    submitted: int = 0               # tasks submitted
    recorded: int = 0                # records written by this run
    failed: list = dataclasses.field(default_factory=list)   # failure records of this run
    seconds: float = 0.0
    engine: str = ""

    def lines(self) -> list:
        out = [f"sweep: {self.total} cells, {self.skipped} already recorded, {self.submitted} run "
               f"({self.engine}): {self.recorded} recorded, {len(self.failed)} FAILED, in {self.seconds:.0f} s; "
               f"records in {Path(self.results).resolve()}"]
        for rec in self.failed:
            last = rec["errors"][-1]["error"] if rec["errors"] else "?"
            out.append(f"  FAILED {Cell.from_dict(rec['cell']).slug} after {rec['attempts']} attempt(s): {last}")
        return out


def _dask():
    try:
        import distributed
    except ImportError as err:
        raise SweepError("the sweep engine needs Dask distributed: pip install 'dask[distributed]' (or run the "
                         "cells one after another in this process with --workers 0)") from err
    return distributed


JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
            "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}


@contextlib.contextmanager
def open_client(workers=None, scheduler=None, jobqueue=None, jobqueue_options=None, jobs=1, gpu_share=0.0):
    """A Dask client: to ``scheduler`` (an address) if given, else to a dask-jobqueue cluster of ``jobs`` batch jobs
    (``jobqueue``: slurm, pbs, sge, lsf, htcondor, ...; ``jobqueue_options`` go to its constructor, e.g. ``queue``,
    ``account``, ``walltime``, ``memory``, ``cores``, ``processes``, ``job_extra_directives``), else to a
    ``LocalCluster`` of ``workers`` processes with one thread each. Everything started here is closed on exit."""
    distributed = _dask()
    if scheduler:
        client = distributed.Client(scheduler, timeout="60s")
        try:
            yield client
        finally:
            client.close()
        return
    if jobqueue:
        if jobqueue not in JOBQUEUE:
            raise SweepError(f"unknown --jobqueue {jobqueue!r}{_closest(jobqueue, JOBQUEUE)}; "
                             f"choose from {', '.join(JOBQUEUE)}")
        try:
            import dask_jobqueue
        except ImportError as err:
            raise SweepError(f"--jobqueue {jobqueue} needs dask-jobqueue: pip install dask-jobqueue") from err
        kwargs = dict(cores=1, processes=1, memory="8GB")
        kwargs.update(jobqueue_options or {})
        if gpu_share:  # every worker process of a job holds that share of the job's GPU
            kwargs["worker_extra_args"] = list(kwargs.get("worker_extra_args", [])) + ["--resources",
                                                                                        f"GPU={gpu_share}"]
        cluster = getattr(dask_jobqueue, JOBQUEUE[jobqueue])(**kwargs)
        cluster.scale(jobs=int(jobs))
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    import logging

    n = int(workers) if workers else _cores()
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=0,
                                       dashboard_address=":0", silence_logs=logging.ERROR,
                                       resources={"GPU": float(gpu_share)} if gpu_share else None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Progress:
    """Counts finished cells: tqdm when installed, else Keras' Progbar; nothing when stderr is not a terminal."""

    def __init__(self, total, enabled=None):
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar, self.n = None, 0
        if not enabled or total == 0:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", desc="cells")
        except ImportError:
            import keras

            self.bar = keras.utils.Progbar(total, unit_name="cell")

    def update(self):
        self.n += 1
        if self.bar is None:
            return
        if hasattr(self.bar, "set_postfix"):
            self.bar.update(1)
        else:
            self.bar.update(self.n)

    def close(self):
        if self.bar is not None and hasattr(self.bar, "close"):
            self.bar.close()


def run_sweep(cells, results, *, client=None, workers=None, scheduler=None, jobqueue=None, jobqueue_options=None,
              jobs=1, attempts=2, gpu_share=0.0, runner=None, progress=None, log=print, on_record=None):
    """Run the cells of ``cells`` not yet recorded in ``results``; returns a :class:`SweepSummary`.

    Engine: ``client`` (a ``distributed.Client``) if given; else ``workers=0`` runs the cells one after another in
    this process (no Dask); else :func:`open_client` (``scheduler``, ``jobqueue``, or a LocalCluster of ``workers``
    processes, default one per core). ``attempts``: tries per cell (in its task) before it is reported failed.
    ``gpu_share``: the share of a GPU each cell asks for (Dask resource ``GPU``; 0: none). ``runner(cell_dict)``
    replaces :func:`splitnn.sweep_cells.run_cell` (tests). ``on_record(record, client)`` is called after each
    record is written (or failure reported). ``log`` gets one line per finished cell and the summary."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    cells = unique(cells)
    done = recorded_ids(results)
    todo = [c for c in cells if c.id not in done]
    summary = SweepSummary(str(results), len(cells), len(cells) - len(todo))
    t0 = time.perf_counter()
    if gpu_share and not (0 < float(gpu_share) <= 1):
        raise SweepError(f"gpu_share must be in (0, 1], got {gpu_share!r}")
    log = log or (lambda *_: None)
    if not todo:
        summary.engine = "nothing to run"
        for line in summary.lines():
            log(line)
        return summary
    bar = _Progress(len(todo), progress)
    by_id = {c.id: c for c in todo}

    def handle(rec, active_client):
        cell = by_id[rec["id"]]
        failed_path = results / FAILED_DIR / cell.filename
        if rec["status"] == "ok":
            rec["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            write_json_atomic(results / cell.filename, rec)
            with contextlib.suppress(FileNotFoundError):
                failed_path.unlink()
            summary.recorded += 1
            note = f"ok in {rec['cell_seconds']:.1f} s" + (f" (attempt {rec['attempts']})" if rec["attempts"] > 1
                                                           else "")
        else:
            write_json_atomic(failed_path, rec)
            summary.failed.append(rec)
            note = f"FAILED after {rec['attempts']} attempt(s): {rec['errors'][-1]['error'] if rec['errors'] else '?'}"
        bar.update()
        if log is not None and not bar.bar:
            log(f"[{bar.n}/{len(todo)}] {cell.slug}: {note}")
        if on_record is not None:
            on_record(rec, active_client)

    try:
        if client is None and not workers and workers is not None and not scheduler and not jobqueue:
            summary.engine = "sequential, in this process"
            for cell in todo:
                summary.submitted += 1
                handle(execute(cell.to_dict(), attempts, runner), None)
        elif client is not None:
            summary.engine = "Dask, the given client"
            _run_dask(client, todo, attempts, gpu_share, runner, handle, summary)
        else:
            summary.engine = (f"Dask, scheduler {scheduler}" if scheduler else f"Dask, dask-jobqueue {jobqueue}"
                              if jobqueue else f"Dask LocalCluster, {workers or _cores()} worker processes")
            with open_client(workers, scheduler, jobqueue, jobqueue_options, jobs, gpu_share) as c:
                _run_dask(c, todo, attempts, gpu_share, runner, handle, summary)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    for line in summary.lines():
        log(line)
    return summary


def _run_dask(client, todo, attempts, gpu_share, runner, handle, summary):
    distributed = _dask()
    token = uuid.uuid4().hex[:8]
    resources = {"GPU": float(gpu_share)} if gpu_share else None
    futures, cells = [], {}
    for cell in todo:
        fut = client.submit(execute, cell.to_dict(), attempts, runner, key=f"{cell.slug}-{cell.id}-{token}",
                            pure=False, resources=resources)
        futures.append(fut)
        cells[fut.key] = cell
        summary.submitted += 1
    for fut in distributed.as_completed(futures):
        cell = cells[fut.key]
        try:
            rec = fut.result()
        except Exception as exc:  # noqa: BLE001 (e.g. KilledWorker: the cell's workers kept dying)
            rec = {"id": cell.id, "cell": cell.to_dict(), "status": "failed", "attempts": attempts,
                   "errors": [{"attempt": None, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": "".join(traceback.format_exception(exc))[-4000:]}],
                   "results": None, "seconds": None, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        fut.release()
        handle(rec, client)


# ------------------------------------------------------------------------------------------------- aggregation

def stats(values) -> tuple:
    """``(mean, sample standard deviation, n)`` of the finite values (sd NaN below two values)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return float("nan"), float("nan"), 0
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    return mean, sd, n


def _pm(m, digits=4) -> str:
    mean, sd, n = m
    if n == 0:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if n > 1 else "")


def _num(v, digits=3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _groups(records, attack, exclude_options=()):
    """Records of ``attack`` grouped by (budget, options): one table per group, keyed by its canonical JSON."""
    groups = {}
    for rec in records:
        cell = rec["cell"]
        if cell["attack"] != attack:
            continue
        opts = {k: v for k, v in cell["options"].items() if k not in exclude_options}
        key = _canonical_json({"budget": cell["budget"], "options": opts})
        groups.setdefault(key, []).append(rec)
    return [(json.loads(k), recs) for k, recs in sorted(groups.items())]


def _split_by(recs, key) -> list:
    """``[(value, records)]`` of ``recs`` grouped by ``key(record)``, sorted by value, records in their order."""
    out = {}
    for rec in recs:
        out.setdefault(key(rec), []).append(rec)
    return sorted(out.items(), key=lambda item: item[0])


def _markdown(title, header, align, rows, note) -> str:
    """A bold title, a Markdown table (``align``: one ``---:``-style marker per column) and a note below it."""
    return "\n".join([f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "|".join(align) + "|",
                      *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), "", note])


def _seeds(recs) -> str:
    return ", ".join(str(s) for s in sorted({r["cell"]["seed"] for r in recs}))


def _short(dataset):
    return {"mnist": "mnist", "fashion_mnist": "f_mnist", "cifar10": "cifar"}.get(dataset, dataset)


def table2(records) -> list:
    """[(title, markdown, rows, group)] of UnSplit Table 2: one table per (dataset, budget, options)."""
    from unsplit_tf.experiments import PAPER_MEANS, PAPER_REF_ACC, PAPER_TABLE2

    out = []
    for group, recs in _groups(records, "unsplit"):
        for dataset, drecs in _split_by(recs, lambda r: r["cell"]["dataset"]):
            b, o = group["budget"], group["options"]
            paper = PAPER_TABLE2.get(_short(dataset), {})
            full = (b["epochs"] >= 10 and b["main_iters"] >= 1000 and b["input_iters"] >= 100
                    and b["model_iters"] >= 100 and not b["max_train_batches"] and b["n_targets"] >= 10)
            partial = sorted({r["results"]["data"] for r in drecs if r["results"].get("partial")})
            rows = []
            for depth, level_recs in _split_by(drecs, lambda r: r["cell"]["level"]):
                rs = [r["results"] for r in level_recs]
                p = paper.get(depth, (float("nan"),) * 3)
                rows.append(dict(depth=depth, n=len(rs), mse_before=stats(r["mse_before"] for r in rs),
                                 mse_after=stats(r["mse_after"] for r in rs),
                                 clone=stats(r["clone_intended"] for r in rs),
                                 repo_literal=stats(r["clone_repo_literal"] for r in rs),
                                 target_acc=stats(r["target_acc"] for r in rs),
                                 baseline=stats(r["baseline_mean_image_mse"] for r in rs),
                                 black=stats(r.get("baseline_black_mse", float("nan")) for r in rs),
                                 ssim_after=stats(r.get("ssim_after", float("nan")) for r in rs),
                                 psnr_after=stats(r.get("psnr_after", float("nan")) for r in rs),
                                 paper_before=p[0], paper_after=p[1], paper_clone=p[2]))
            title = (f"{'' if full else 'REDUCED BUDGET '}Table 2, {dataset}: {b['epochs']} epoch(s)"
                     f"{' x ' + str(b['max_train_batches']) + ' batches' if b['max_train_batches'] else ''}, "
                     f"{b['main_iters']} x ({b['input_iters']} + {b['model_iters']}) steps, {b['n_targets']} "
                     f"targets, TV schedule {o['tv_schedule']}, lambda_l2 {o.get('lambda_l2', 1.0):g}, "
                     f"{'batched' if o['batched'] else 'carried clone'}; "
                     f"seeds {_seeds(drecs)}; mean ± sample sd over seeds")
            if partial:
                title += f" -- PARTIAL DATA: {'; '.join(partial)}"
            pm = PAPER_MEANS.get(_short(dataset))
            note = ("MSE on the [0, 1] scale; PSNR (dB) and SSIM after training. Trivial baselines: the black-image "
                    "and mean-image MSE (answering the all-black or the mean training image for every target) and "
                    "chance accuracy, 10%."
                    + (f" Paper, §5.2: mean MSE before {pm[1]}, after {pm[0]}, clone accuracy over depths 1-3 "
                       f"{pm[2]}%; original model accuracy {PAPER_REF_ACC[_short(dataset)]}%." if pm else ""))
            table = _markdown(
                title, ["depth", "seeds", "MSE before", "paper", "MSE after", "paper", "black-image MSE",
                        "mean-image MSE", "PSNR after", "SSIM after", "clone acc. % (intended)", "paper",
                        "repo_literal %", "target acc. %"], ["---:"] * 14,
                [[r["depth"], r["n"], _pm(r["mse_before"]), _num(r["paper_before"]), _pm(r["mse_after"]),
                  _num(r["paper_after"]), _pm(r["black"]), _pm(r["baseline"]), _pm(r["psnr_after"], 2),
                  _pm(r["ssim_after"], 3), _pm(r["clone"], 2), _num(r["paper_clone"], 2),
                  _pm(r["repo_literal"], 2), _pm(r["target_acc"], 2)] for r in rows], note)
            out.append((f"table2_{dataset}", table, rows, group))
    return out


def table3(records) -> list:
    out = []
    for group, recs in _groups(records, "unsplit_labels", exclude_options=("observed_param",)):
        rows = []
        key = lambda r: (r["cell"]["dataset"], r["cell"]["level"], r["cell"]["options"]["observed_param"])  # noqa: E731
        for (dataset, depth, observed), setting_recs in _split_by(recs, key):
            rs = [r["results"] for r in setting_recs]
            rows.append(dict(dataset=dataset, depth=depth, observed=observed, n=len(rs),
                             accuracy=stats(r["accuracy"] for r in rs), count=rs[0]["count"], paper=rs[0]["paper"]))
        title = (f"Table 3 (label inference accuracy %, {group['budget']['count']} samples per seed; seeds "
                 f"{_seeds(recs)}; mean ± sample sd over seeds)")
        table = _markdown(
            title, ["dataset", "client depth", "observed gradient", "seeds", "accuracy %", "paper"],
            ["---", "---:", "---", "---:", "---:", "---:"],
            [[r["dataset"], r["depth"], r["observed"], r["n"], _pm(r["accuracy"], 1), _num(r["paper"], 1)]
             for r in rows],
            "Chance: 10%. The depth-2 rows differ only in which client gradient the attacker observes (the paper "
            "does not say).")
        out.append(("table3", table, rows, group))
    return out


def fsha_table(records) -> list:
    out = []
    for group, recs in _groups(records, "fsha"):
        b, o = group["budget"], group["options"]
        rows = []
        for (dataset, level), rs in _split_by(recs, lambda r: (r["cell"]["dataset"], r["cell"]["level"])):
            res = [r["results"] for r in rs]
            rows.append(dict(dataset=dataset, level=level, n=len(rs), z_shape=res[0]["z_shape"],
                             final=stats(x["final_validation"] for x in res), held=stats(x["heldout_mse"] for x in res),
                             step_s=stats(x["train_seconds"] / max(1, x["iterations"]) for x in res),
                             curves=[(x["validation_steps"], x["validation"]) for x in res]))
        title = (f"FSHA split levels x datasets: {b['iterations']} iterations, batch {b['batch_size']}, architecture "
                 f"{o['architecture']}, hparams {o['hparams']}, {b['n_heldout']} held-out private images"
                 f"{', client trains on ' + str(b['private_size']) + ' images' if b['private_size'] else ''}; seeds "
                 f"{_seeds(recs)}; mean ± sample sd over seeds")
        table = _markdown(
            title, ["dataset", "level", "smashed", "seeds", "final validation", "held-out MSE", "s/step"],
            ["---", "---:", "---", "---:", "---:", "---:", "---:"],
            [[r["dataset"], r["level"], "x".join(map(str, r["z_shape"])), r["n"], _pm(r["final"]), _pm(r["held"]),
              _pm(r["step_s"], 3)] for r in rows],
            "MSE on the [-1, 1] scale (the original's): validation = the running mean printed by the attack; "
            "held-out = scoreAttack on private images the client never trained on. The original notebooks end at "
            "0.019-0.027 (level 4, MNIST, 10,000 iterations); s/step includes tracing.")
        out.append(("fsha_levels", table, rows, group))
    return out


def nopeek_table(records) -> list:
    out = []
    for group, recs in _groups(records, "nopeek"):
        b = group["budget"]
        rows = []
        for alpha, alpha_recs in _split_by(recs, lambda r: float(r["cell"]["level"])):
            res = [r["results"] for r in alpha_recs]
            rows.append(dict(alpha=alpha, n=len(res), accuracy=stats(x["accuracy"] for x in res),
                             dcor=stats(x["dcor"] for x in res), mse=stats(x["inversion_mse"] for x in res),
                             baseline=stats(x["baseline_mse"] for x in res)))
        title = (f"NoPeek trade-off (MNIST): {b['train_size']} training images x {b['epochs']} epoch(s), batch "
                 f"{b['batch_size']}, decoder {b['decoder_epochs']} epoch(s); seeds {_seeds(recs)}; mean ± "
                 f"sample sd over seeds")
        table = _markdown(
            title, ["alpha1", "seeds", "accuracy", "dCor (held-out)", "inversion MSE", "baseline MSE"], ["---:"] * 6,
            [[f"{r['alpha']:g}", r["n"], _pm(r["accuracy"]), _pm(r["dcor"]), _pm(r["mse"]), _pm(r["baseline"])]
             for r in rows],
            "Inversion MSE on [0, 1] by a decoder the server trains on public images; baseline = always the public "
            "mean image (no information).")
        out.append(("nopeek_tradeoff", table, rows, group))
    return out


def _errorbar(ax, xs, ms, **kw):
    ax.errorbar(xs, [m[0] for m in ms], yerr=[0 if not math.isfinite(m[1]) else m[1] for m in ms], capsize=3, **kw)


def _figure(kind, rows, group, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind.startswith("table2"):
        fig, (a, c) = plt.subplots(1, 2, figsize=(9, 3.4))
        d = [r["depth"] for r in rows]
        _errorbar(a, d, [r["mse_before"] for r in rows], marker="o", label="before training")
        _errorbar(a, d, [r["mse_after"] for r in rows], marker="s", label="after training")
        a.plot(d, [r["paper_before"] for r in rows], "o", mfc="none", color="C0", label="paper, before")
        a.plot(d, [r["paper_after"] for r in rows], "s", mfc="none", color="C1", label="paper, after")
        a.plot(d, [r["baseline"][0] for r in rows], "--", color="gray", label="mean image")
        a.set(xlabel="split depth", ylabel="MSE [0, 1]", title="inversion MSE")
        _errorbar(c, d, [r["clone"] for r in rows], marker="o", label="clone (intended)")
        c.plot(d, [r["paper_clone"] for r in rows], "o", mfc="none", color="C0", label="paper")
        c.axhline(10, ls="--", color="gray", label="chance")
        c.set(xlabel="split depth", ylabel="accuracy %", title="clone accuracy")
        for ax in (a, c):
            ax.legend(fontsize=6)
            ax.set_xticks(d)
    elif kind == "table3":
        fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows)), 3.4))
        xs = list(range(len(rows)))
        ax.bar(xs, [r["accuracy"][0] for r in rows], yerr=[0 if not math.isfinite(r["accuracy"][1])
                                                           else r["accuracy"][1] for r in rows], capsize=3,
               label="ours")
        ax.plot(xs, [r["paper"] for r in rows], "k_", markersize=18, label="paper")
        ax.set_xticks(xs, [f"{r['dataset']}\nd{r['depth']} {r['observed']}" for r in rows], fontsize=5)
        ax.set(ylabel="label inference accuracy %")
        ax.legend(fontsize=6)
    elif kind == "fsha_levels":
        datasets = sorted({r["dataset"] for r in rows})
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.4), squeeze=False)
        for ax, ds in zip(axes[0], datasets):
            for r in (r for r in rows if r["dataset"] == ds):
                steps = r["curves"][0][0]
                curves = [c[1] for c in r["curves"] if c[0] == steps]
                mean = [sum(v) / len(v) for v in zip(*curves)]
                ax.plot(steps, mean, marker="." if len(steps) < 30 else None, label=f"level {r['level']}")
            ax.set(title=f"{ds}: validation MSE ([-1, 1]), mean over seeds", xlabel="iteration")
            ax.legend(fontsize=6)
    else:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        a = [r["alpha"] for r in rows]
        _errorbar(ax, a, [r["accuracy"] for r in rows], marker="o", label="accuracy")
        _errorbar(ax, a, [r["dcor"] for r in rows], marker="s", label="dCor (held-out)")
        _errorbar(ax, a, [(10 * r["mse"][0], 10 * r["mse"][1], r["mse"][2]) for r in rows], marker="^",
                  label="inversion MSE x10")
        ax.plot(a, [10 * r["baseline"][0] for r in rows], "--", color="gray", label="baseline MSE x10")
        ax.set(xlabel="alpha1", title="NoPeek trade-off")
        ax.legend(fontsize=6)
    if title:
        import textwrap

        fig.suptitle(textwrap.fill(title, 130), fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report(results, out=None) -> tuple:
    """Markdown tables and figures from the records in ``results`` alone: ``(markdown, [written paths])``.
    Figures and ``report.md`` go to ``out`` (default ``<results>/report``)."""
    results = Path(results)
    if not results.is_dir():
        raise SweepError(f"no results folder {str(results)!r}")
    out = Path(out) if out else results / "report"
    records = load_records(results)
    failed = load_records(results, failed=True)
    parts, written = [], []
    for builder in (table2, table3, fsha_table, nopeek_table):
        tables = builder(records)
        names = [t[0] for t in tables]
        for name, md, rows, group in tables:
            stem = name if names.count(name) == 1 else name + "_" + hashlib.sha256(
                _canonical_json(group).encode()).hexdigest()[:6]
            path = _figure(name, rows, group, out / f"{stem}.png", md.splitlines()[0].strip("*")).resolve()
            written.append(path)
            parts.append(md + f"\n\n![{stem}]({path.name})")
    if failed:
        parts.append("**Failed cells** (no result; the next run of the sweep tries them again): "
                     + ", ".join(Cell.from_dict(r["cell"]).slug for r in failed))
    if not parts:
        parts.append(f"no records in {results.resolve()}")
    text = "\n\n".join(parts)
    md_path = out / "report.md"
    out.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text + "\n")
    written.insert(0, md_path.resolve())
    return text, written


# ------------------------------------------------------------------------------------------------ command line

def _parse_value(text):
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items, what) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SweepError(f"{what} {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def parser():
    p = argparse.ArgumentParser(prog="python -m splitnn.sweeps", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a grid's cells not yet recorded in --results")
    r.add_argument("grid", help=f"one of {', '.join(GRIDS)}")
    r.add_argument("--datasets", nargs="+", default=None)
    r.add_argument("--depths", "--levels", "--alphas", dest="levels", nargs="+", default=None,
                   help="split depths (table2), client depths (table3), split levels (fsha_levels) or alpha1 values "
                        "(nopeek); default: all of the paper's")
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--budget", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override the grid's (paper) budget, e.g. epochs=1 max_train_batches=100 main_iters=30")
    r.add_argument("--option", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override the grid's options")
    r.add_argument("--results", required=True, help="folder of the records (a rerun skips the recorded cells)")
    engine = r.add_mutually_exclusive_group()
    engine.add_argument("--workers", type=int, default=None,
                        help="LocalCluster worker processes (default: one per core); 0 = one after another in this "
                             "process, without Dask")
    engine.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    engine.add_argument("--jobqueue", default=None, help=f"dask-jobqueue cluster: {', '.join(JOBQUEUE)}")
    r.add_argument("--jobqueue-option", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="dask-jobqueue arguments, e.g. queue=gpu walltime=04:00:00 memory=16GB processes=4")
    r.add_argument("--jobs", type=int, default=1, help="batch jobs to start with --jobqueue")
    r.add_argument("--gpu-share", type=float, default=0.0,
                   help="the share of one GPU each cell asks for (Dask resource GPU), e.g. 0.25: four cells per GPU")
    r.add_argument("--attempts", type=int, default=2, help="tries per cell before it is reported failed")
    r.add_argument("--dry-run", action="store_true", help="list the cells (and which are recorded) and stop")
    r.add_argument("--report", action="store_true", help="print the report when the sweep ends")
    rep = sub.add_parser("report", help="Markdown tables and figures from a results folder")
    rep.add_argument("results")
    rep.add_argument("--out", default=None, help="folder for the figures and report.md (default RESULTS/report)")
    sub.add_parser("grids", help="list the grids with their levels, default budgets and options")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "grids":
            for spec in GRIDS.values():
                print(f"{spec.name}: {spec.description}\n  datasets {', '.join(spec.datasets)}; {spec.level_name}: "
                      + "; ".join(f"{d} {', '.join(map(str, spec.levels(d)))}" for d in spec.datasets)
                      + f"\n  budget {spec.budget}\n  options {spec.options}")
            return 0
        if args.command == "report":
            text, written = report(args.results, args.out)
            print(text)
            print("\nwrote:\n" + "\n".join(str(p) for p in written))
            return 0
        spec = grid_spec(args.grid)
        budget, options = _pairs(args.budget, "--budget"), _pairs(args.option, "--option")
        jq = _pairs(args.jobqueue_option, "--jobqueue-option")
        if args.jobqueue and args.jobqueue not in JOBQUEUE:
            raise SweepError(f"unknown --jobqueue {args.jobqueue!r}{_closest(args.jobqueue, JOBQUEUE)}; "
                             f"choose from {', '.join(JOBQUEUE)}")
        if args.workers is not None and args.workers < 0:
            raise SweepError(f"--workers must be >= 0, got {args.workers}")
        if not 0 <= args.gpu_share <= 1:
            raise SweepError(f"--gpu-share must be in [0, 1], got {args.gpu_share}")
        if args.gpu_share:  # several processes on one GPU: allocate GPU memory on demand
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
            os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        try:
            levels = None if args.levels is None else [spec.level_type(v) for v in args.levels]
        except ValueError as err:
            raise SweepError(f"--depths/--levels/--alphas of {spec.name}: {err}") from err
        cells = make_grid(spec.name, datasets=args.datasets, levels=levels, seeds=args.seeds, budget=budget,
                          options=options)
        if args.dry_run:
            done = recorded_ids(args.results) if Path(args.results).is_dir() else set()
            for c in cells:
                print(f"{'recorded' if c.id in done else 'to run  '} {c.slug} {c.id}")
            print(f"{len(cells)} cells, {sum(c.id in done for c in cells)} recorded")
            return 0
        workers = args.workers
        if args.gpu_share and workers is None and not (args.scheduler or args.jobqueue):
            workers = max(1, int(round(1 / args.gpu_share)))
        summary = run_sweep(cells, args.results, workers=workers, scheduler=args.scheduler, jobqueue=args.jobqueue,
                            jobqueue_options=jq, jobs=args.jobs, attempts=args.attempts, gpu_share=args.gpu_share,
                            log=lambda m: print(m, flush=True))
        if args.report:
            text, written = report(args.results)
            print(text)
            print("\nwrote:\n" + "\n".join(str(p) for p in written))
        return 1 if summary.failed else 0
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

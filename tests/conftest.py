import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `make test` runs the suite in pytest-xdist workers. Each worker gets its share of the cores before TensorFlow,
# XLA or PyTorch start their thread pools (notebook kernels and child processes inherit it): with a pool per core
# in every worker, a compile-heavy test was seen to run 20x slower than alone.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _share = str(max(1, _cores // _workers))
    for _var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_var, _share)
    if _share == "1":
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    # dcor compiles its numba kernels with cache=True, into one cache beside its sources. Two workers that compile
    # into it at once race: a worker that loads the other's half-written entry aborts ("LLVM ERROR: Symbol not
    # found"), and in a fresh venv that killed every worker at collection. Each worker gets a cache of its own.
    _numba_base = os.environ.get("NUMBA_CACHE_DIR") or str(Path(__file__).resolve().parent.parent / ".pytest_cache"
                                                           / "numba")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(_numba_base, os.environ.get("PYTEST_XDIST_WORKER", "gw"))


# Under KERAS_BACKEND=jax (`make test`'s second run) only the backend-sensitive test files are collected: those that
# use the `backend` marker. The others may import TensorFlow at module level, which that run must not do.
def pytest_ignore_collect(collection_path, config):
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "jax":
        return None
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        if "mark.backend" not in collection_path.read_text():
            return True
    return None

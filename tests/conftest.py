import os

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

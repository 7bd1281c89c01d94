"""Parameters and output folders for the notebooks.

``SPLITNN_MODE`` selects ``quick`` (tiny budgets, CI on a CPU; the default) or ``full`` (the papers'
budgets, for a GPU). Figures go to ``notebooks/results/<name>/`` unless ``SPLITNN_RESULTS_DIR`` names
another root (the notebook test points it at a temporary folder).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

MODE_ENV = "SPLITNN_MODE"
RESULTS_ENV = "SPLITNN_RESULTS_DIR"
MODES = ("quick", "full")
_REPO = Path(__file__).resolve().parent.parent


def mode() -> str:
    value = os.environ.get(MODE_ENV, "quick").strip().lower() or "quick"
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r}: expected one of {MODES}.")
    return value


def params(quick: dict, full: dict) -> dict:
    """The parameter dict of the current mode, with ``mode`` added. Both dicts must have the same keys."""
    if set(quick) != set(full):
        raise ValueError(f"quick and full parameters differ in keys: {sorted(set(quick) ^ set(full))}")
    chosen = dict(quick if mode() == "quick" else full)
    chosen["mode"] = mode()
    return chosen


def results_dir(name: str) -> Path:
    root = Path(os.environ.get(RESULTS_ENV) or _REPO / "notebooks" / "results")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> str:
    """One line naming the machine a result was produced on (CPU model, cores, GPU if any) and Keras' backend."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpu = ", ".join(tf.config.experimental.get_device_details(g).get("device_name", g.name)
                        for g in tf.config.list_physical_devices("GPU"))
    else:
        import jax

        gpu = ", ".join(d.device_kind for d in jax.devices() if d.platform == "gpu")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores" + (f", GPU: {gpu}" if gpu else ", no GPU")
            + f"; Keras {keras.__version__} on {keras.backend.backend()}")

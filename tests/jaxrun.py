"""Run code under Keras 3's JAX backend from a TensorFlow-backend test process.

Keras picks its backend once per process, so the cross-checks of the JAX runners against the TensorFlow
implementations run the JAX side in a child process: the test writes inputs to ``workdir`` (``.npz``),
the child reads them, runs, and writes its outputs there.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_keras_jax(code: str, workdir, timeout: int = 900) -> str:
    """Execute ``code`` (dedented) with ``KERAS_BACKEND=jax`` on the CPU in ``workdir``; return its stdout.

    Skips the calling test when JAX is not installed; fails with the child's stderr when it fails."""
    pytest.importorskip("jax", reason="the JAX cross-checks need jax (requirements-test.txt)")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(workdir), env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"the Keras-JAX child process failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}")
    return proc.stdout

"""The client-side GAN attack's benchmark (``benchmarks/clientside_attack.py``) on Keras' JAX backend.

The same script and the same implementation (``ClientSideAttack``, written once on ``splitnn.backend``), with
``KERAS_BACKEND=jax`` as the default, for machines that have JAX but no TensorFlow; every flag of
``benchmarks/clientside_attack.py`` works (``--precision highest`` forces full float32 matmuls on GPUs that
default to TF32). Its results go to ``results/clientside_attack_jax`` unless ``--out`` says otherwise.

    KERAS_BACKEND=jax SPLITNN_DATA_DIR=/path/to/data python benchmarks/clientside_attack_jax.py \\
        [--iterations 5000] [--checkpoint results/clientside_attack_jax/checkpoint --max-seconds 540]
"""
import os
import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bench = runpy.run_path(str(Path(__file__).with_name("clientside_attack.py")))
    sys.exit(bench["main"](out="results/clientside_attack_jax")[1])

#!/usr/bin/env bash
# Source on the lent GPU machine (JAX, no TensorFlow, no network) at the start of each command:
#   source benchmarks/device/setup.sh
# Installs the carried Keras, Dask (and notebook-runner) wheels into the machine's Python and points the package at the
# carried data. The package's one implementation then runs there on Keras' JAX backend.
python3 -m pip install -q --no-index --find-links .device/wheels keras namex optree
# the sweep runner's engine (acceptance.py runs its jobs as cells of splitnn.sweeps on a Dask LocalCluster)
python3 -m pip install -q --no-index --find-links .device/wheels "dask==2026.8.0" "distributed==2026.8.0"
# the notebooks' runner (nbclient + an IPython kernel), when prepare.sh carried it
python3 -m pip install -q --no-index --find-links .device/wheels nbclient nbformat ipykernel 2>/dev/null \
    || echo "setup.sh: no notebook runner carried (benchmarks/device/prepare.sh)"
export KERAS_BACKEND=jax SPLITNN_DATA_DIR="$PWD/.device/data" PYTHONUNBUFFERED=1
# checkpoints and caches live outside the repo: a carried .device/ replaces the one there on every call
export SPLITNN_CACHE_DIR=/tmp/splitnn-cache
mkdir -p "$SPLITNN_CACHE_DIR" /tmp/splitnn-device
cp -n .device/cache/* "$SPLITNN_CACHE_DIR"/ 2>/dev/null || true
python3 -c "import jax, keras, distributed; print('keras', keras.__version__, 'on', keras.backend.backend(), '| jax', jax.__version__, jax.devices(), '| distributed', distributed.__version__)"

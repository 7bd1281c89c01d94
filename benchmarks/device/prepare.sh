#!/usr/bin/env bash
# Run HERE (the CPU machine with internet access to PyPI), before the device calls: fills .device/ (git-ignored)
# with what the lent GPU machine lacks and cannot download: the Keras and Dask wheels for its Python 3.12 and the
# MNIST archives. Carry it with `carry: [".device"]` and start each device command with benchmarks/device/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${SPLITNN_DATA_DIR:-../shared/data}"
rm -rf .device && mkdir -p .device/wheels .device/data/mnist
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .device/wheels "keras==3.15.1" namex optree
cp "$data"/mnist/*-ubyte.gz .device/data/mnist/
# the sweep runner that acceptance.py runs its jobs on (splitnn.sweeps: Dask distributed), with its dependencies
# (pure-Python wheels, and binary ones for psutil, msgpack, tornado, pyyaml, markupsafe): about 5 MB
python3 -m pip download -q --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .device/wheels "dask==2026.8.0" "distributed==2026.8.0"
# executing the notebooks there (python -m splitnn.run_notebooks): nbclient and an IPython kernel, with their
# dependencies, for the same Python; and the other archives the notebooks read (about 30 MB, within the 64 MiB carry)
python3 -m pip download -q --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .device/wheels "nbclient==0.10.2" "nbformat==5.10.4" "ipykernel==6.30.1"
mkdir -p .device/data/fashion-mnist && cp "$data"/fashion-mnist/*-ubyte.gz .device/data/fashion-mnist/ 2>/dev/null || true
# the client-side attack's judge (trained once on CPU and cached): carried so the GPU run scores with the same one
# and spends no device time training it (about 40 s here with the project's venv, `make setup`)
cache="${SPLITNN_CACHE_DIR:-$HOME/.cache/splitlearning-attacks-tf}"
if ! ls "$cache"/mnist_judge_* >/dev/null 2>&1 && [ -x .venv/bin/python ]; then
    echo "training the client-side judge into $cache"
    SPLITNN_DATA_DIR="$data" SPLITNN_CACHE_DIR="$cache" TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -c \
        "from ClientSideAttack.judge import Judge; print('judge test accuracy', Judge.load(verbose=False).test_accuracy)"
fi
mkdir -p .device/cache
cp "$cache"/mnist_judge_* .device/cache/ 2>/dev/null || echo "no cached judge in $cache (the GPU run will train one)"
du -sh .device

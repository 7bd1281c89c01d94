#!/usr/bin/env bash
# Run HERE (the CPU machine with internet access to PyPI), before the device calls: fills .device/ (git-ignored)
# with what the lent GPU machine lacks and cannot download: the Keras wheels for its Python 3.12 and the MNIST
# archives. Carry it with `carry: [".device"]` and start each device command with benchmarks/device/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${SPLITNN_DATA_DIR:-../shared/data}"
rm -rf .device && mkdir -p .device/wheels .device/data/mnist
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .device/wheels "keras==3.15.1" namex optree
cp "$data"/mnist/*-ubyte.gz .device/data/mnist/
# the client-side attack's judge (trained once on CPU and cached): carried so the GPU run scores with the same one
cache="${SPLITNN_CACHE_DIR:-$HOME/.cache/splitlearning-attacks-tf}"
mkdir -p .device/cache
cp "$cache"/mnist_judge_* .device/cache/ 2>/dev/null || echo "no cached judge in $cache (the GPU run will train one)"
du -sh .device

"""One checkpoint format for both backends: a single ``.npz`` file (arrays by name + a JSON header).

A run saved under TensorFlow (the CPU) is continued under JAX (a GPU machine without TensorFlow) and back: the file
holds plain NumPy arrays (every variable's value, by network and position, with its Keras path for checking) and a
JSON document (counters, histories, settings). A file is written under a temporary name and then renamed, so a
process killed while saving leaves the previous checkpoint intact.

:class:`CheckpointManager` keeps ``ckpt-<N>.npz`` files in a folder (the newest ``max_to_keep``), like
``tf.train.CheckpointManager`` does for TensorFlow checkpoints.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import keras
import numpy as np

_META = '__meta__'
_NAME = re.compile(r'^ckpt-(\d+)\.npz$')


def variables_to_arrays(prefix, variables):
    """``(arrays, paths)``: ``{'prefix/i': value}`` for a list of Keras variables, and their Keras paths (which go
    into the JSON header, to name a mismatching variable on restore)."""
    arrays = {f'{prefix}/{i}': keras.ops.convert_to_numpy(v.value) for i, v in enumerate(variables)}
    return arrays, [v.path for v in variables]


def assign_from_arrays(prefix, variables, arrays, paths=None, what=None):
    """Assign ``arrays['prefix/i']`` to ``variables[i]``; a missing entry or another shape is a ValueError."""
    what = what or prefix
    n_saved = sum(1 for k in arrays if k.startswith(prefix + '/'))
    if n_saved != len(variables):
        raise ValueError(f'checkpoint: {what} has {n_saved} variables there but {len(variables)} here '
                         '(another architecture or another set of options)')
    for i, v in enumerate(variables):
        value = arrays[f'{prefix}/{i}']
        if tuple(value.shape) != tuple(v.shape):
            saved = f' ({paths[i]})' if paths else ''
            raise ValueError(f'checkpoint: {what} variable {i} {v.path}{saved} has shape {tuple(value.shape)} '
                             f'there but {tuple(v.shape)} here')
    for i, v in enumerate(variables):
        v.assign(arrays[f'{prefix}/{i}'].astype(v.dtype))


def write(path, arrays, meta):
    """Write ``arrays`` (name -> array) and the JSON-able ``meta`` to ``path`` (``.npz`` added if missing)."""
    path = Path(path)
    if path.suffix != '.npz':
        path = path.with_name(path.name + '.npz')
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    header = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(tmp, 'wb') as fh:
        np.savez(fh, **{_META: header}, **arrays)
    os.replace(tmp, path)
    return str(path)


def read(path):
    """``(arrays, meta)`` of a checkpoint file (``.npz`` added if missing)."""
    path = Path(path)
    if path.suffix != '.npz' and not path.exists():
        path = path.with_name(path.name + '.npz')
    if not path.is_file():
        raise FileNotFoundError(f'no checkpoint at {path}')
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    if _META not in arrays:
        raise ValueError(f'{path} is not a checkpoint of this package (no header)')
    meta = json.loads(bytes(arrays.pop(_META)).decode())
    return arrays, meta


def checkpoint_numbers(folder):
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(folder)) if m)


def latest_checkpoint(folder):
    """Path of the highest-numbered ``ckpt-<N>.npz`` in ``folder``, or None."""
    numbers = checkpoint_numbers(folder)
    return str(Path(folder) / f'ckpt-{numbers[-1]}.npz') if numbers else None


class CheckpointManager:
    """``ckpt-<N>.npz`` files in ``folder``; :meth:`save` keeps the newest ``max_to_keep``."""

    def __init__(self, folder, max_to_keep=3):
        self.folder = Path(folder)
        self.max_to_keep = max_to_keep

    @property
    def latest_checkpoint(self):
        return latest_checkpoint(self.folder)

    def save(self, arrays, meta, checkpoint_number):
        path = write(self.folder / f'ckpt-{int(checkpoint_number)}.npz', arrays, meta)
        if self.max_to_keep:
            for n in checkpoint_numbers(self.folder)[:-self.max_to_keep]:
                (self.folder / f'ckpt-{n}.npz').unlink(missing_ok=True)
        return path

"""The original notebook's call sequence (issue #21), the progress bar, and checkpoints across backends.

``test_original_notebook_call_sequence`` runs the code cells of the original ``ClientSideAttack/clientsideAttack.ipynb``
(pasquini-dario/SplitNN_FSHA) with only their imports changed and tiny sizes (2 honest clients, batch 8,
2 iterations, MNIST replaced by a small synthetic set), under TensorFlow and again under JAX (marker ``backend``).
``test_a_run_saved_under_one_backend_continues_under_the_other`` saves a run under one backend in a subprocess and
continues it under the other. This module imports no TensorFlow.
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The original cells (imports changed to the package's modules; sizes made tiny: NHC 10 -> 2, batch 256 -> 8,
# 5000 -> 2 iterations). `plot` and matplotlib are left out: only the call sequence matters here.
ORIGINAL_CELLS = '''
import numpy as np

from ClientSideAttack import dataset
from ClientSideAttack.server import Server
from ClientSideAttack.clients import *
from ClientSideAttack.archs import *
import ClientSideAttack.archs as archs

xpriv, _ = dataset.load_mnist()

# choose attacker's target class
target_class = 1
# number of honest clients
NHC = 2

batch_size = 8
f = make_f()
ff = make_ff()
G = make_generator()
clients = [
    BadClient(f, ff, G, batch_size, target_class),
]
for i in range(NHC):
    clients += [Client(f, ff)]

splitnn = Server(make_s, clients, xpriv, batch_size)
log, log_bad = splitnn(2)

x = clients[0].generate().numpy()[:15]
'''


@pytest.mark.backend
def test_original_notebook_call_sequence(monkeypatch):
    from ClientSideAttack import dataset

    rng = np.random.default_rng(0)
    fake = (rng.uniform(-1, 1, (64, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 64).astype(np.uint8))
    monkeypatch.setattr(dataset, "load_mnist_arrays", lambda name="mnist": fake + fake)
    scope = {}
    exec(compile(ORIGINAL_CELLS, "clientsideAttack.ipynb", "exec"), scope)  # noqa: S102 - the notebook's code
    log, log_bad, x = scope["log"], scope["log_bad"], scope["x"]
    assert len(log) == 4 and len(log_bad) == 1 and np.all(np.isfinite(log + log_bad))
    assert isinstance(x, np.ndarray) and x.shape == (8, 28, 28, 1)  # generate(): one batch of batch_size
    assert x.min() >= -1 and x.max() <= 1
    assert scope["clients"][0].target_class == 1 and scope["clients"][0].batch_size == 8


@pytest.mark.backend
def test_progress_bar_only_when_asked_or_on_a_terminal(capsys, monkeypatch):
    import keras

    from ClientSideAttack import BadClient, Client, Server, archs
    from splitnn import backend

    keras.utils.set_random_seed(0)
    f, ff = archs.make_f(), archs.make_ff()
    rng = np.random.default_rng(0)
    data = (rng.uniform(-1, 1, (32, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 32))
    srv = Server(archs.make_s(), [BadClient(f, ff, archs.make_generator(), 4, 1), Client(f, ff)], data, 4,
                 run_eagerly=backend.is_jax())  # JAX: eager primitives compiled by earlier tests, no new jit
    srv(1)  # pytest's captured stdout is no terminal: no bar
    assert "iteration" not in capsys.readouterr().out
    srv(2, progress_bar=True)
    assert "2/2" in capsys.readouterr().out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    srv(1, progress_bar=False)
    assert "1/1" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------- across backends

# Run in a subprocess with KERAS_BACKEND set: the golden set-up (fixed weights, batches in order), Dropout masks
# and latent noise looked up by the counters of their Keras seed generators (which the checkpoint restores), so
# both backends draw the same. Modes, each on a freshly built server: "straight" (2 iterations, save, 2 more: the
# uninterrupted run, the save does not disturb it), "resume" (restore, 2 more); the state after each goes to
# OUT/<mode>.npz.
SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    sys.path.insert(0, {golden!r})
    import keras
    import record_clientside as rec
    from splitnn import backend
    from splitnn.streams import ArrayStream
    from ClientSideAttack import BadClient, Client, Server, archs

    modes, folder, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    rec.patch_dropout(rec.mask_table())
    noise = rec.noise_table()
    for mode in modes:
        # no global seeding: every variable and draw is fixed below (and keras.utils.set_random_seed imports TF)
        f, ff, g, s = archs.make_f(), archs.make_ff(), archs.make_generator(), archs.make_s()
        bad = BadClient(f, ff, g, rec.BATCH, rec.TARGET, seed=1)
        x, y = rec.fixed_data()
        srv = Server(s, [bad, Client(f, ff)], ArrayStream(x, y, seed=3), rec.BATCH)
        rec.set_fixed_weights({{"s": s, "f": f, "ff": ff, "G": g}})

        def sample_noise(n, bad=bad):
            k = int(backend.to_numpy(bad.noise_generator.next())[1])
            return noise[k % len(noise)][:n]

        bad.sample_noise = sample_noise
        if mode == "resume":
            srv.restore(folder)
        honest, gen = srv(2, progress_bar=False)
        if mode == "straight":
            srv.save(folder)
            more = srv(2, progress_bar=False)
            honest, gen = honest + more[0], gen + more[1]
        state = [backend.to_numpy(v.value).astype(np.float64) for _, v in srv.state_variables()]
        np.savez(f"{{out}}/{{mode}}.npz", *state)
        json.dump({{"honest": honest, "gen": gen, "backend": backend.BACKEND,
                   "tensorflow_imported": "tensorflow" in sys.modules}}, open(f"{{out}}/{{mode}}.json", "w"))
''')


def _run(backend_name, modes, folder, out):
    env = dict(os.environ, KERAS_BACKEND=backend_name, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    script = SCRIPT.format(golden=str(ROOT / "tests" / "golden"))
    proc = subprocess.run([sys.executable, "-c", script, ",".join(modes), str(folder), str(out)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {}
    for mode in modes:
        meta = json.loads((out / f"{mode}.json").read_text())
        assert meta["backend"] == backend_name
        assert meta["tensorflow_imported"] == (backend_name == "tensorflow")  # none under JAX
        with np.load(out / f"{mode}.npz") as z:
            results[mode] = meta, [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    return results


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("jax") is None,
                    reason="needs both TensorFlow and JAX")
@pytest.mark.parametrize("first, second", [("tensorflow", "jax")])
def test_a_run_saved_under_one_backend_continues_under_the_other(tmp_path, first, second):
    """4 iterations under ``first`` (saved after 2) equal a restore of that save under ``second`` and 2 more, to
    the backends' float32 agreement (the golden test measures ~2e-5): weights, BatchNorm statistics, Adam moments
    and counter, seed generator states, data position."""
    straight, want = _run(first, ["straight"], tmp_path / "ckpt", tmp_path)["straight"]
    resumed, got = _run(second, ["resume"], tmp_path / "ckpt", tmp_path)["resume"]
    np.testing.assert_allclose(resumed["honest"], straight["honest"][-2:], rtol=1e-4)
    np.testing.assert_allclose(resumed["gen"], straight["gen"][-1:], rtol=1e-4)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        scale = max(float(np.abs(b).max()), 1e-6)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale)

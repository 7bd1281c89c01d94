"""The client-side attack against its golden trajectory (``tests/golden/clientside.json``), on both backends.

The trajectory was recorded by ``tests/golden/record_clientside.py`` from the TensorFlow implementation that
preceded the one-implementation rewrite: fixed weights, batches, latent noise and Dropout masks, one malicious and
two honest clients, 10 iterations (30 steps) with the shared Adam. Compared per step: the loss, a digest (sum,
L2 norm) of every variable of ``s``, ``f``, ``ff`` and ``G`` (BatchNorm statistics included) and of their Adam
moments, the Adam iteration counter; and the digests of each step kind's gradients at step 0, which catch a
wrongly scaled gradient even where Adam's scale invariance would hide it from the weights.

Tolerances (measured, float32, CPU): TensorFlow reproduces its recording bit for bit with the recording's 2 threads
(deviation 0) and to 2.6e-6 with one intra-op thread (the test suite's workers: another summation order); JAX
(XLA's CPU kernels) within 1.7e-5 over the 30 steps (:data:`RTOL` leaves some room for other CPUs).
"""
import json
import sys
from pathlib import Path

import keras
import pytest

from splitnn import backend
from splitnn.streams import ArrayStream

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import record_clientside as rec  # noqa: E402

pytestmark = pytest.mark.backend

#: Largest relative deviation of a digest from the recording (relative to the entry, or to the
#: norm of the same array for sums).
RTOL = {"tensorflow": 1e-5, "jax": 1e-4}


def _run():
    from ClientSideAttack import GENERATOR, HONEST, POISON, BadClient, Client, Server, archs

    keras.utils.set_random_seed(0)
    f, ff, g, s = archs.make_f(), archs.make_ff(), archs.make_generator(), archs.make_s()
    models = {"s": s, "f": f, "ff": ff, "G": g}
    bad = BadClient(f, ff, g, rec.BATCH, rec.TARGET, gradient_factor=rec.FACTOR, seed=1)
    clients = [bad] + [Client(f, ff, name=f"honest{i}") for i in range(rec.HONEST_CLIENTS)]
    x, y = rec.fixed_data()
    srv = Server(s, clients, ArrayStream(x, y, shuffle_buffer=None), rec.BATCH)
    rec.set_fixed_weights(models)
    restore_dropout = rec.patch_dropout(rec.mask_table())
    try:
        noise = rec.noise_table()
        grads0 = {}
        for kind, client, inputs, labels, phase in [
                ("honest", clients[1], x[:rec.BATCH], y[:rec.BATCH], HONEST),
                ("generator", bad, noise[0], None, GENERATOR),
                ("poison", bad, noise[0], None, POISON)]:
            loss, grads, variables = srv.compute_gradients(client, inputs, labels, phase)
            by_id = {id(v): gr for v, gr in zip(variables, grads)}
            grads0[kind] = {"loss": float(loss)}
            for role in rec.ROLES:
                gs = [backend.to_numpy(by_id[id(v)]) for v in models[role].trainable_variables if id(v) in by_id]
                if gs:
                    grads0[kind][role] = rec.digest(gs)
        rec.feed_noise(bad, noise)
        steps = []
        train_step = srv.train_step

        def recording_step(client, inputs, labels=None, phase=HONEST):
            loss = train_step(client, inputs, labels, phase)
            steps.append({"client": client.name, "phase": phase, "loss": float(loss),
                          **_state_digest(models, srv.optimizer)})
            return loss

        srv.train_step = recording_step
        honest, gen = srv(rec.ITERATIONS, progress_bar=False)
    finally:
        restore_dropout()
    return {"grads0": grads0, "steps": steps, "honest_losses": honest, "generator_losses": gen}


def _state_digest(models, optimizer):
    out = {}
    for role in rec.ROLES:
        m = models[role]
        out[role] = rec.digest([backend.to_numpy(v.value) for v in rec.float_variables(m)])
        slots = rec.adam_slots(optimizer, m.trainable_variables)
        out[f"adam_{role}"] = rec.digest([backend.to_numpy(s.value) for pair in slots for s in pair])
    out["adam_iterations"] = int(backend.to_numpy(optimizer.iterations))
    return out


@pytest.fixture(scope="module")
def golden():
    return json.loads((Path(__file__).parent / "golden" / "clientside.json").read_text())


def test_clientside_follows_the_golden_trajectory(golden):
    got = _run()
    want = {k: golden[k] for k in ("grads0", "steps", "honest_losses", "generator_losses")}
    assert [(s["client"], s["phase"]) for s in got["steps"]] == [(s["client"], s["phase"]) for s in want["steps"]]
    worst, failures = rec.compare(got, want, RTOL[backend.BACKEND])
    print(f"client-side golden trajectory ({backend.BACKEND}): largest relative deviation {worst:.3g}")
    assert not failures, f"{len(failures)} deviations beyond {RTOL[backend.BACKEND]}:\n" + "\n".join(failures[:15])

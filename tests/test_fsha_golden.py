"""FSHA, FSHA_dc and FSHA_binary_property reproduce the trajectories recorded from the TensorFlow implementation
that preceded the one-Keras-3 implementation (``tests/golden/record_fsha.py``: fixed weights, batches and GP
draws; 20 steps of split level 4 with WGAN-GP). Run under TensorFlow and again under JAX (`make test`).

Compared: the step-0 gradient of every loss (digest: sum and L2 norm per variable), every step's LOG row, the
optimizers' step counters, and per step a digest of every variable of every network (BatchNorm statistics
included), as the change since the start (the weights move by ~lr per step, so absolute digests would hide it).
The gradients catch what Adam hides (a gradient scaled by 2 moves Adam's update by ~eps/sqrt(v) only); the
changes catch a swapped update order (FSHA_dc's two Adam steps of f) and a missing BatchNorm update.

float32 limits what can be compared, and TensorFlow is bit-reproducible only with the same thread count: the test
suite's workers run one intra-op thread, the recording ran two, and the summation orders differ. A variable whose gradient is zero in exact arithmetic (a bias right before
BatchNorm, D's last bias under the WGAN loss) receives rounding noise, which Adam turns into +-lr steps: such
variables (step-0 gradient norm below 1e-5 of their group's largest) are skipped in the change check. Other small
gradients amplify rounding differences as steps go on, so changes are compared tightly over the first
``TIGHT_STEPS`` steps and loosely over all 20. Measured on the CPU, worst case over the three trajectories:

================================  ==========================  ==========================
quantity                          TensorFlow (same backend)    JAX (other summation order)
================================  ==========================  ==========================
step-0 gradients                  1e-6                         1e-4
LOG rows, first 5 steps          3e-5                         (see RTOL)
changes, first 5 steps            2.1e-2 (one thread)          4e-2
changes, 20 steps                 1e-1                         3.4e-1
================================  ==========================  ==========================
"""
import json
import os
import sys

import keras
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'golden'))
import fsha_setup as S  # noqa: E402
from fsha.FSHA import FSHA, FSHA_binary_property  # noqa: E402
from fsha.FSHA_distcor import FSHA_dc  # noqa: E402
from splitnn.streams import ArrayStream  # noqa: E402

pytestmark = pytest.mark.backend

GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), 'golden', 'fsha.json')))
SAME_BACKEND = keras.backend.backend() == 'tensorflow'
TIGHT_STEPS = 5
#: relative tolerances: step-0 gradients, LOG rows, changes over TIGHT_STEPS steps, changes over all steps
RTOL = ({'grad': 1e-4, 'row': 1e-3, 'tight': 5e-2, 'loose': 0.3} if SAME_BACKEND else
        {'grad': 1e-3, 'row': 3e-3, 'tight': 0.1, 'loose': 0.6})
CASES = {'fsha': (FSHA, S.HPARAMS), 'fsha_dc': (FSHA_dc, S.DC_HPARAMS),
         'property': (FSHA_binary_property, S.PROPERTY_HPARAMS)}
LOSS_GROUP = {'f_loss': 'f', 'def_loss': 'f', 'tilde_f_loss': 'attacker', 'D_loss': 'D'}


def build(name):
    cls, hparams = CASES[name]
    x = np.zeros((16,) + S.IMAGE_SHAPE, np.float32)
    stream = ArrayStream(x, np.zeros(16, np.uint8))
    attack = cls(stream, stream, 3, S.BATCH, hparams)
    S.set_weights(attack.networks.values())
    return attack


def close(got, want, rtol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    # relative to each quantity's own scale, with a floor for values that are ~0
    scale = np.maximum(np.abs(want), 1e-3 * np.max(np.abs(want)) + 1e-12)
    err = np.max(np.abs(got - want) / scale)
    assert err <= rtol, f'{what}: relative error {err:.3g} > {rtol:g}'
    return err


def gradient_free(attack, step0_gradients):
    """Paths of trainable variables whose recorded step-0 gradient is rounding noise (see the docstring)."""
    free = set()
    for loss, digests in step0_gradients.items():
        variables = [v for n in attack._group_networks(LOSS_GROUP[loss]) for v in attack.networks[n].trainable_variables]
        norms = np.array([d[1] for d in digests])
        free.update(v.path for v, norm in zip(variables, norms) if norm < 1e-5 * norms.max())
    return free


def compare_changes(attack, start, digests, gold_steps, free, steps, rtol):
    """Per network and variable, the change of its (sum, norm) digest since the start, over ``steps`` steps,
    relative to the largest recorded change of that quantity."""
    for net, initial in start.items():
        paths = [v.path for v in attack.networks[net].variables if 'seed_generator' not in v.path]
        w0 = np.asarray(initial)
        got = np.array([d[net] for d in digests[:steps]]) - w0
        want = np.array([s['weights'][net] for s in gold_steps[:steps]]) - w0
        for j, path in enumerate(paths):
            if path in free:
                continue
            scale = np.abs(want[:, j]).max(axis=0)
            err = np.max(np.abs(got[:, j] - want[:, j]) / (scale + 1e-30))
            assert err <= rtol, (f'{net} {path}: change over {steps} steps differs by {err:.3g} of its size '
                                 f'(> {rtol:g})')


def run_trajectory(attack, data):
    rows, digests, counters = [], [], []
    for xp, xq, lp, lq, alpha in data:
        rows.append([float(v) for v in attack.train_step(xp, xq, lp, lq, alpha=alpha)])
        digests.append(S.network_digests(attack))
        counters.append([int(keras.ops.convert_to_numpy(o.iterations.value)) for o in attack.optimizers])
    return rows, digests, counters


@pytest.mark.parametrize('name', sorted(CASES))
def test_golden_trajectory(name):
    gold = GOLDEN[name]
    attack = build(name)
    assert list(attack.LOG_COLUMNS) == gold['log_columns']
    data = S.batches(labels=name == 'property')

    grads = {loss: S.digest(g) for loss, _, g in attack.loss_gradients(*data[0])}
    assert sorted(grads) == sorted(gold['step0_gradients'])
    for loss, want in gold['step0_gradients'].items():
        close(grads[loss], want, RTOL['grad'], f'step-0 gradient of {loss}')

    start = S.network_digests(attack)
    rows, digests, counters = run_trajectory(attack, data)
    for i, step in enumerate(gold['steps']):
        assert counters[i] == step['optimizer_iterations'], f'step {i} optimizer counters'
    for i, step in enumerate(gold['steps'][:TIGHT_STEPS]):
        close(rows[i], step['losses'], RTOL['row'], f'step {i} LOG row')
    free = gradient_free(attack, gold['step0_gradients'])
    compare_changes(attack, start, digests, gold['steps'], free, TIGHT_STEPS, RTOL['tight'])
    compare_changes(attack, start, digests, gold['steps'], free, len(gold['steps']), RTOL['loose'])

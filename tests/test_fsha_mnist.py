"""End-to-end FSHA runs on MNIST, small enough for a CPU (small networks, batch 32, a few hundred steps).

The reference configuration (level 4, 10,000 steps) needs an accelerator; see benchmarks/fsha_mnist.py.
"""
import numpy as np
import pytest
from available_data import needs

from fsha import architectures, datasets, properties
from fsha.experiments import mangled_experiment
from fsha.FSHA import FSHA, FSHA_binary_property
from fsha.honest import HonestSplitTraining
from splitnn.data import load_raw
from splitnn.utils import set_seed

# Faster than the reference rates (1e-5 / 1e-5 / 1e-4) so that a few hundred steps suffice; same losses and GP.
HP = {'WGAN': True, 'gradient_penalty': 500.0, 'lr_f': 3e-4, 'lr_tilde': 1e-3, 'lr_D': 1e-3}
HELD_OUT = 512

pytestmark = needs('mnist')


def seeded_networks(seed=0):
    """small_networks with seeded initial weights (the attacks' seed= comes after the networks are built)."""
    set_seed(seed)
    return architectures.small_networks()


@pytest.fixture(scope='module')
def mnist():
    set_seed(0)  # the streams' shuffle order
    raw = load_raw('mnist')
    held_out = datasets.make_dataset(datasets.preprocess(raw.x_train[:HELD_OUT]), raw.y_train[:HELD_OUT],
                                     shuffle=False)
    xpriv = datasets.make_dataset(datasets.preprocess(raw.x_train[HELD_OUT:HELD_OUT + 20_000]),
                                  raw.y_train[HELD_OUT:HELD_OUT + 20_000])
    xpub = datasets.make_dataset(datasets.preprocess(raw.x_test), raw.y_test)
    return xpriv, xpub, held_out


def test_attack_recovers_held_out_private_images(mnist):
    xpriv, xpub, held_out = mnist
    attack = FSHA(xpriv, xpub, 3, 32, HP, seed=0, **seeded_networks())
    before = attack.scoreAttack(held_out, progress_bar=False)
    log = attack(400, progress_bar=False, log_frequency=100)
    after = attack.scoreAttack(held_out, progress_bar=False)  # images f never saw, [-1, 1] scale
    assert before > 0.6  # random f: nothing to decode (a run with f frozen stays at ~0.93)
    assert after < 0.25 and after < 0.3 * before, (before, after, log[:, 3])
    rec, _ = attack.attack(datasets.getImagesDS(held_out, 4))
    assert rec.shape == (4, 32, 32, 3)

    # The honest baseline on the hijacked features: a task head on top of the frozen f still learns digits.
    probe = HonestSplitTraining(xpriv, batch_size=32, client=attack.f, train_client=False, seed=0)
    f_weights = [w.copy() for w in attack.f.get_weights()]
    probe(60, progress_bar=False)
    assert all(np.array_equal(a, b) for a, b in zip(f_weights, attack.f.get_weights()))
    assert 0 <= probe.evaluate(held_out) <= 1


def test_honest_split_training_learns_the_task(mnist):
    xpriv, xpub, held_out = mnist
    honest = HonestSplitTraining(xpriv, batch_size=32, client=seeded_networks()['client'], seed=0)
    log = np.concatenate([honest(70, progress_bar=False, log_frequency=50),  # steps 0 and 50
                          honest(80, progress_bar=False, log_frequency=50)])  # steps 100 (window over calls)
    assert log.shape == (3, 2)
    steps, accuracy = honest.accuracy_history
    assert steps.tolist() == [0, 50, 100] and accuracy[0] == log[0, 1]
    assert accuracy[2] > accuracy[0] and 0 <= accuracy.min() and accuracy.max() <= 1
    assert honest.evaluate(held_out) > 0.7


def test_property_inference_on_mnist_digit_below_5():
    set_seed(0)
    xpriv, xpub = properties.load_mnist_property(5)
    nets = seeded_networks()
    del nets['decoder']  # the property head takes its slot
    attack = FSHA_binary_property(xpriv, xpub, 5, 32, HP, seed=0, **nets)
    log = attack(400, progress_bar=False, log_frequency=100)
    assert log.shape == (4, 5)
    accuracy = attack.scoreAttack(xpriv.take(1024), progress_bar=False)  # the attacker's guess of the property
    assert accuracy > 0.62, (accuracy, log)  # about 0.5 is chance; 0.70-0.77 over seeds 0-2


def test_mangled_experiment_scores_the_removed_class_and_the_others_apart():
    """``FSHA_mangled.ipynb`` with per-class scores: the attacker's public set lacks class 0 (the loader's split is
    checked in test_fsha_datasets.py), and each reported error is the reconstruction MSE over that class's private
    images, recomputed here from ``attack.attack``. Small streams built here (unshuffled evaluation sets) keep the
    images known."""
    raw = load_raw('mnist')
    x, y = raw.x_train[:2048], raw.y_train[:2048]
    (pub_x, pub_y), _ = datasets.remove_class(raw.x_test[:1024], raw.y_test[:1024], 0)
    (other_x, other_y), (removed_x, removed_y) = datasets.remove_class(x, y, 0)

    def stream(images, labels, shuffle=True):
        return datasets.make_dataset(datasets.preprocess(images), labels, shuffle=shuffle)

    streams = (stream(x, y), stream(pub_x, pub_y), stream(removed_x, removed_y, False),
               stream(other_x, other_y, False))
    result = mangled_experiment(0, iterations=20, batch_size=32, hparams=HP, log_frequency=10, verbose=False,
                                eval_examples=64, streams=streams, seed=0, **seeded_networks())
    assert result.class_removed == 0 and result.log.shape == (2, 4)

    def by_hand(images):
        images = datasets.preprocess(images[:64])
        rec, _ = result.attack.attack(images)
        return float(np.mean((rec.astype(np.float64) - images) ** 2))

    removed, other = by_hand(removed_x), by_hand(other_x)
    assert abs(removed - other) > 1e-3  # the two sets are told apart (zeros carry more ink)
    np.testing.assert_allclose([result.removed_class_mse, result.other_classes_mse], [removed, other], rtol=1e-5)
    assert f'removed class {removed:.4f}' in result.summary()

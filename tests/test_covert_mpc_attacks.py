"""covert_mpc: attack outcomes on MNIST subsets (2,000 training / 1,000 test images) [our reconstruction of the
paper's mechanisms; thresholds from issue #23 or what we measured].

Measured (TensorFlow, float64, 6 December 2026): LR reconstruction at C = 1e6 in the protocol's form (output
error shifted by -C): median 5.0e-5, worst 8.6e-5 over the 50 examples of the last batch, exactly 1/C; in the loss
weight form 1e-4..6e-2 per target (about 7e-5 / (C |e_iy| / 1e6)); NN through an inactive unit (delta = 1e9) <= 8e-7, covert variant accuracy 0.850-0.870 (honest 0.864);
class 3 accuracy 0.776 -> 0.000, others 0.860 -> 0.868; backdoor success 1.000, clean accuracy 0.851 = honest;
targeted 9 of 10 at c = 3e-3; membership AUC 0.670 -> 0.733.
"""
import numpy as np
import pytest

from available_data import needs
from covert_mpc import attacks, data, models, protocol
from covert_mpc.deviations import error
from splitnn import backend

pytestmark = [pytest.mark.backend, needs("mnist")]

F64 = backend.float64_enabled()


@pytest.fixture(scope="module")
def mnist():
    return data.mnist(2000, 1000)


def test_lr_reconstruction_error_falls_like_one_over_C(mnist):
    """Default: the protocol's form (the output error shifted by -C): below 2e-4 (well below the 1e-3 asked for) for
    every one of the 50 examples of the last batch at C = 1e6 (measured worst 8.6e-5), 100x smaller at C = 1e8."""
    r6 = attacks.reconstruct_lr(mnist, C=1e6, n_targets=50)
    r8 = attacks.reconstruct_lr(mnist, C=1e8, n_targets=50)
    assert len(r6.max_error) == 50
    assert r6.worst_error < 2e-4, r6.max_error
    ratio = r6.max_error / r8.max_error
    if F64:  # at C = 1e8 the error (5e-7) is near float32's resolution of W / b
        assert np.all((ratio > 90) & (ratio < 110)), ratio      # 1/C
    assert r6.accuracy_attacked.mean() < r6.accuracy_honest - 0.3  # not covert (documented)
    with pytest.raises(ValueError, match="overflows the ring"):
        attacks.reconstruct_lr(mnist, models.TrainConfig(arithmetic="fixed", k=32), C=1e6)


def test_lr_reconstruction_loss_weight_form_depends_on_confidence(mnist):
    """The plaintext idealisation (loss weight C): the error is about K / (C |e_iy|), so below 1e-3 only for targets
    whose output error |e_iy| >= 0.1 at C = 1e6; also 1/C."""
    r6 = attacks.reconstruct_lr(mnist, C=1e6, n_targets=6, mechanism="scale")
    r8 = attacks.reconstruct_lr(mnist, C=1e8, n_targets=6, mechanism="scale")
    assert np.all(r6.max_error * np.abs(r6.output_error) < 1e-4), (r6.max_error, r6.output_error)
    assert np.all(r6.max_error[np.abs(r6.output_error) >= 0.1] < 1e-3)
    assert np.all(r8.max_error < 1e-4)
    ratio = r6.max_error / r8.max_error
    assert np.all((ratio > 50) & (ratio < 200)), ratio


def test_nn_reconstruction_through_an_inactive_unit_and_its_covert_variant(mnist):
    cfg = attacks.MLP_CONFIG
    naive = attacks.reconstruct_nn(mnist, cfg, delta=1e9, n_targets=3)
    assert not naive.unit_was_active.any()
    assert naive.worst_error < 1e-4
    covert = attacks.reconstruct_nn(mnist, cfg, delta=1e9, n_targets=3, kill=1e13)
    if F64:  # b1[j] - E + E: float32 (JAX without x64) keeps only ~7 digits of E = 1e13
        assert covert.worst_error < 1e-4
    assert np.all(covert.accuracy_attacked > covert.accuracy_honest - 0.03)
    assert naive.accuracy_attacked.mean() < naive.accuracy_honest - 0.3


def test_class_zeroing(mnist):
    r = attacks.zero_class(mnist, cls=3)
    assert r.class_accuracy_honest > 0.5
    assert r.class_accuracy_attacked <= 0.05
    assert abs(r.others_accuracy_attacked - r.others_accuracy_honest) <= 0.01


def test_backdoor_by_gradient_shifting(mnist):
    r = attacks.backdoor(mnist, target=0)
    assert r.success_rate >= 0.95 and r.success_rate_honest < 0.5
    assert abs(r.clean_accuracy_attacked - r.clean_accuracy_honest) <= 0.005


def test_targeted_misclassification(mnist):
    r = attacks.targeted_misclassification(mnist, models.TrainConfig(epochs=3), n_trials=10, c=3e-3)
    assert r.success_rate >= 0.7, r.flipped
    assert np.all(r.others_accuracy_attacked > r.others_accuracy_honest - 0.02)


def test_membership_inference_boost(mnist):
    small = mnist.subset(500, 1000)
    r = attacks.membership_boost(small, models.TrainConfig(arch="mlp", hidden=64, epochs=20), C=5.0)
    assert r.auc_attacked > r.auc_honest + 0.02, (r.auc_honest, r.auc_attacked)


def test_lr_reconstruction_on_the_real_protocol(mnist):
    """The Fig. 2 attack inside the secret-sharing protocol: party 1 adds -C to its share of the target's output
    error (one wire, one step); the revealed model gives the image back to 1e-4 (k = 64, f = 16)."""
    cfg = models.TrainConfig(arch="lr", batch_size=50, epochs=1)
    small = mnist.subset(150, 10)
    batches = models.schedule(150, 50, 1, 0)
    i = int(batches[-1][0])
    y = int(small.y_train[i])
    run = protocol.train_secure(small.x_train, small.y_train, cfg,
                                [error("output_error", -1e6, steps=2, examples=i, units=y)], batches=batches)
    rec = run.params["W"][:, y] / run.params["b"][y]
    assert np.max(np.abs(rec - small.x_train[i])) < 1e-4
    assert run.adversary_log == [(2, "wire", "output_error")]
    honest = protocol.train_secure(small.x_train, small.y_train, cfg, batches=batches)
    assert np.max(np.abs(honest.params["W"][:, y] / honest.params["b"][y] - small.x_train[i])) > 0.5

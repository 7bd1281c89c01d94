"""UnSplit vs FSHA on FSHA's ResNet client (``unsplit_tf/fsha_comparison.py``, the UnSplit paper's Fig. 3b).

One tiny end-to-end run (level 4, the cheapest critic, batch 4, k = 1 and 2, two targets, a few UnSplit steps) is
shared by most tests; the FSHA score is recomputed by hand from the run's own checkpoint, the UnSplit score by
rerunning the attack on the composition client, and the cache is resumed.
"""
import json

import numpy as np
import pytest

import keras
from available_data import needs
from fsha import architectures
from fsha.FSHA import FSHA
from splitnn import backend
from unsplit_tf import fsha_comparison as fc
from unsplit_tf.attacks import InversionConfig

TINY = InversionConfig(main_iters=1, input_iters=3, model_iters=3)
RUN = dict(levels=(4,), iterations=(1, 2), n_targets=2, unsplit_config=TINY, batch_size=4, seed=0, printer=None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("unsplit_vs_fsha")
    result = fc.unsplit_vs_fsha("mnist", checkpoint_dir=ckpt, **RUN)
    return result, ckpt


@pytest.fixture(scope="module")
def arrays():
    from fsha.datasets import load_arrays

    return load_arrays("mnist")


def _fsha_at(ckpt, level, k, arrays):
    """A fresh FSHA of the run's settings restored to its checkpoint at iteration k."""
    from fsha.datasets import make_dataset

    xtr, ytr, xte, yte = arrays
    attack = FSHA(make_dataset(xtr, ytr), make_dataset(xte, yte), level - 1, RUN["batch_size"],
                  fc.DEFAULT_FSHA_HPARAMS, architecture="notebook", seed=0)
    attack.restore(ckpt / f"level{level}" / "fsha" / f"ckpt-{k}.npz")
    assert attack.iteration == k
    return attack


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset="no_such_data"), "nknown dataset"),
    (dict(dataset="cifar10"), "FSHA's preprocessing"),
    (dict(levels=(0,)), "split level"),
    (dict(levels=(5,)), "split level"),
    (dict(levels=()), "at least one"),
    (dict(levels=(1, 1)), "repeat"),
    (dict(iterations=()), "at least one"),
    (dict(iterations=(0, 10)), "positive"),
    (dict(iterations=(-5,)), "positive"),
    (dict(iterations=(10, 10)), "strictly increasing"),
    (dict(iterations=(100, 50)), "strictly increasing"),
    (dict(iterations=(1.5,)), "positive ints"),
    (dict(n_targets=0), "n_targets"),
    (dict(client_state="stolen"), "client_state"),
    (dict(client_state="hijacked", client_steps=7), "one of iterations"),
    (dict(client_state="honest"), "client_steps"),
])
def test_bad_inputs_raise_early(kwargs, match, monkeypatch):
    # raised before any data is read or network built
    monkeypatch.setattr("fsha.datasets.load_arrays", lambda *a, **k: pytest.fail("loaded data before validating"))
    args = dict(dataset="mnist", levels=(1,), iterations=(1, 2), printer=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fc.unsplit_vs_fsha(**args)


# ------------------------------------------------------------------------------------------ building blocks
def test_client01_is_f_of_2x_minus_1():
    backend.set_seed(3)
    f = architectures.resnet((32, 32, 3), 2)
    x = np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(fc.client01(f)(x, training=False))
    want = keras.ops.convert_to_numpy(f(2.0 * x - 1.0, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).max() > 0  # not trivially equal
    assert fc.client01(f).layers[-1] is f  # f's weights are shared, not copied


def test_clone_does_not_start_as_the_client():
    """FSHA builds f first after seeding with ``seed``: a clone seeded with the same seed is f's exact copy (the
    hazard), the clone's derived seed gives other weights."""
    from unsplit_tf.keras_client import fresh_clone

    backend.set_seed(0)
    f = architectures.resnet((32, 32, 3), 1)
    same = fresh_clone(fc.client01(f), seed=0)
    np.testing.assert_array_equal(same.get_weights()[0], f.get_weights()[0])  # the hazard is real
    clone = fresh_clone(fc.client01(f), seed=fc.clone_seed(0))
    assert not np.allclose(clone.get_weights()[0], f.get_weights()[0])


def test_first_of_class_indices():
    labels = np.array([5, 0, 4, 1, 0, 9, 2, 1, 3, 1, 4, 3, 5, 3, 6, 1, 7, 2, 8, 6, 9])
    np.testing.assert_array_equal(fc.first_of_class_indices(labels, 3), [1, 3, 6])
    idx = fc.first_of_class_indices(labels, 12)
    assert list(labels[idx[:10]]) == list(range(10)) and list(labels[idx[10:]]) == [0, 1]


# ------------------------------------------------------------------------------------------- the experiment
@needs("mnist")
def test_targets_are_first_of_class_private_images(run, arrays):
    result, _ = run
    xtr, ytr, _, _ = arrays
    assert result.target_labels == [0, 1]
    assert result.target_indices == [int(np.argmax(ytr == 0)), int(np.argmax(ytr == 1))]
    targets01 = (xtr[result.target_indices].astype(np.float64) + 1) / 2
    np.testing.assert_allclose(result.baseline_black_per_target, (targets01 ** 2).mean(axis=(1, 2, 3)), rtol=1e-9)


@needs("mnist")
def test_fsha_score_is_decoder_of_f_by_hand_on_01_scale(run, arrays):
    result, ckpt = run
    xtr = arrays[0]
    x = np.asarray(xtr[result.target_indices], np.float32)
    lr = result.per_level[4]
    for j, k in enumerate(result.iterations):
        attack = _fsha_at(ckpt, 4, k, arrays)
        rec = keras.ops.convert_to_numpy(attack.decoder(attack.f(x, training=False), training=False))
        want = (((rec.astype(np.float64) + 1) / 2 - (x.astype(np.float64) + 1) / 2) ** 2).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(lr.fsha_mse_per_target[j], want, rtol=1e-5, atol=1e-7)
        # FSHA's own score is on [-1, 1]: exactly 4x
        np.testing.assert_allclose(4 * lr.fsha_mse[j], float(attack.score(x)), rtol=1e-5)
    assert lr.fsha_mse[0] != lr.fsha_mse[1]  # scored on the way, after each k


@needs("mnist")
def test_unsplit_score_is_the_attack_on_the_composition_of_the_initial_client(run, arrays):
    """Rerun UnSplit by hand on client01 of FSHA's starting f with the run's targets: the same per-image MSE."""
    from fsha.datasets import make_dataset
    from unsplit_tf.keras_client import fresh_clone, invert_keras_client

    result, _ = run
    xtr, ytr, xte, yte = arrays
    keras.backend.clear_session()
    f = FSHA(make_dataset(xtr, ytr), make_dataset(xte, yte), 3, 4, fc.DEFAULT_FSHA_HPARAMS,
             architecture="notebook", seed=0).f
    client = fc.client01(f)
    targets01 = ((xtr[result.target_indices].astype(np.float64) + 1) / 2).astype(np.float32)
    r = invert_keras_client(client, targets01, clone=fresh_clone(client, seed=fc.clone_seed(0)), config=TINY,
                            lambda_tv=result.lambda_tv[4])
    np.testing.assert_allclose(result.per_level[4].unsplit_mse_per_target, r.mse, rtol=1e-4)


@needs("mnist")
def test_resume_skips_finished_levels_and_rescores_from_the_checkpoint(run, monkeypatch):
    result, ckpt = run
    fsha_init = FSHA.__init__
    monkeypatch.setattr(FSHA, "__init__", lambda *a, **k: pytest.fail("built FSHA for a finished level"))
    again = fc.unsplit_vs_fsha("mnist", checkpoint_dir=ckpt, **RUN)
    assert again.cached_levels == [4]
    assert again.per_level[4] == result.per_level[4]
    # other settings: refused, not mixed
    with pytest.raises(ValueError, match="other settings"):
        fc.unsplit_vs_fsha("mnist", checkpoint_dir=ckpt, **{**RUN, "n_targets": 3})
    # a level whose last score was lost: FSHA is restored at k = 2 and scored again without training
    monkeypatch.setattr(FSHA, "__init__", fsha_init)
    monkeypatch.setattr(FSHA, "__call__", lambda *a, **k: pytest.fail("trained FSHA again"))
    path = ckpt / "level4.json"
    cache = json.loads(path.read_text())
    del cache["fsha"]["2"]
    path.write_text(json.dumps(cache))
    partial = fc.unsplit_vs_fsha("mnist", checkpoint_dir=ckpt, **RUN)
    assert partial.cached_levels == []
    np.testing.assert_allclose(partial.per_level[4].fsha_mse, result.per_level[4].fsha_mse, rtol=1e-6)


@needs("mnist")
def test_table_figure_and_json(run, tmp_path):
    result, _ = run
    table = fc.format_comparison(result)
    assert "| k |" in table and "Machine:" in table and "1 x (3 input + 3 model)" in table
    assert f"| 2 | {result.per_level[4].fsha_mse[1]:.4f} |" in table
    png = fc.plot_comparison(result, tmp_path / "fig3b.png")
    assert png.stat().st_size > 5000
    back = fc.ComparisonResult.from_dict(json.loads(fc.save_json(result, tmp_path / "r.json").read_text()))
    assert back.per_level == result.per_level and back.iterations == result.iterations


@needs("mnist")
def test_unsplit_on_the_composition_beats_the_black_image_at_level_1(arrays):
    """30 x (20 + 20) steps from the 0.5 start (whose MSE is about 0.2) go below answering black (about 0.1)."""
    from splitnn.metrics import trivial_baselines

    xtr, ytr = arrays[:2]
    idx = fc.first_of_class_indices(ytr, 2)
    targets01 = ((xtr[idx].astype(np.float64) + 1) / 2).astype(np.float32)
    backend.set_seed(0)
    f = architectures.resnet((32, 32, 3), 1)
    out = fc._unsplit_on(f, targets01, InversionConfig(main_iters=30, input_iters=20, model_iters=20), 0.1, 0)
    black = trivial_baselines(targets01, targets01.mean(axis=0))["black"]
    assert np.mean(out["mse"]) < np.mean(black)

"""unsplit_tf.comparisons: Fig. 3a / Table 4 / Table 5 drivers (He et al.'s attacks next to UnSplit)."""
import math

import numpy as np
import pytest

from available_data import needs
from unsplit_tf import comparisons as cmp


def test_queries_to_match_interpolates_in_log_q():
    # MSE 0.2 at Q=100, 0.1 at Q=1000: level 0.15 is halfway in log10(Q): 10^2.5
    assert cmp.queries_to_match((100, 1000), (0.2, 0.1), 0.15) == pytest.approx(10 ** 2.5)
    assert cmp.queries_to_match((100, 1000, 10000), (0.3, 0.2, 0.1), 0.125) == pytest.approx(10 ** 3.75)
    assert cmp.queries_to_match((100, 1000), (0.05, 0.01), 0.1) == 100.0   # already below at the first Q
    assert math.isinf(cmp.queries_to_match((100, 1000), (0.3, 0.2), 0.1))   # never reached


def _fake(scores_by_method, depths=(1, 2, 3, 4)):
    scores = {m: {d: dict(mse=np.array(v[i]), psnr=np.zeros(2), ssim=np.zeros(2)) for i, d in enumerate(depths)}
              for m, v in scores_by_method.items()}
    targets = np.full((2, 2, 2, 1), 0.5)
    budget = dict(epochs=1, max_train_batches=None, n_targets=2, aux_size=10, shadow_epochs=1, shadow_steps=None, seed=0,
                  unsplit=dict(main_iters=1, input_iters=1, model_iters=1, tv_schedule="code", lambda_l2=1.0),
                  white_box=dict(iters=1, lr=0.1, lambda_tv=1.0), query_free=dict(iters=1))
    return cmp.InversionComparison("mnist", tuple(depths), targets, np.arange(2), scores, {},
                                dict(black=np.full(2, 0.25), mean_image=np.full(2, 0.1)), {}, 90.0, {}, budget, "",
                                False)


def test_method_stats_and_relative_gain_by_hand():
    r = _fake({"white_box": [[0.01, 0.03], [0.02, 0.02], [0.03, 0.05], [0.06, 0.06]],   # per-depth means .02 .02 .04 .06
               "unsplit": [[0.05, 0.05]] * 4, "query_free": [[0.1, 0.1]] * 4})
    s = cmp.method_stats(r, "white_box")
    np.testing.assert_allclose(s["per_depth"], [0.02, 0.02, 0.04, 0.06])
    assert s["mean"] == pytest.approx(0.035)
    assert (s["q1"], s["q3"]) == pytest.approx((0.02, 0.045))    # numpy's linear percentiles of 4 values
    assert r.relative_gain("white_box", "unsplit") == pytest.approx(1 - 0.035 / 0.05)
    claims = cmp.statements([r])
    assert claims["unsplit_vs_query_free"]["mnist"] == pytest.approx(0.5)
    text = cmp.format_fig3a([r])
    assert "| white-box (He et al.) | 0.0350 | 0.0200-0.0450 |" in text
    assert "| baseline: all-black image | 0.2500 |" in text and "| 38% | mnist +30% |" in text


def test_bad_arguments_are_refused_before_any_work(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the target network was trained before the arguments were checked")

    monkeypatch.setattr(cmp, "train_target", no_training)
    with pytest.raises(ValueError, match="n_targets must be at most 10"):
        cmp.run_comparison("mnist", (1,), n_targets=11)
    with pytest.raises(ValueError, match="heldout_size"):
        cmp.run_comparison("mnist", (1,), heldout_size=0)
    with pytest.raises(ValueError, match="shadow_steps"):
        cmp.run_comparison("mnist", (1,), shadow_steps=-5)
    with pytest.raises(TypeError, match="white_box must be a HeConfig"):
        cmp.run_comparison("mnist", (1,), white_box=dict(iters=3))
    with pytest.raises(ValueError, match="split depth|out of range"):
        cmp.run_comparison("mnist", (7,))
    with pytest.raises(ValueError, match="unknown method"):
        cmp.run_comparison("mnist", (1,), methods=("white_box", "grey_box"))
    with pytest.raises(ValueError, match="n_targets"):
        cmp.run_comparison("mnist", (1,), n_targets=0)
    with pytest.raises(ValueError, match="increasing"):
        cmp.run_table5(None, None, None, {1: 0.1}, query_counts=(300, 100))
    from unsplit_tf.models import build_model

    net = build_model("mnist", seed=0)
    with pytest.raises(ValueError, match="split depth|out of range"):
        cmp.run_table5(net, None, np.zeros((2, 28, 28, 1)), {7: 0.1})
    with pytest.raises(ValueError, match=r"targets must be \[N, 28, 28, 1\]"):
        cmp.run_table5(net, None, np.zeros((2, 32, 32, 3)), {1: 0.1})


@needs("mnist")
def test_every_method_scored_on_the_same_targets_with_hand_baselines():
    from splitnn.data import load_unsplit
    from unsplit_tf import he_attacks as he
    from unsplit_tf.attacks import InversionConfig
    from unsplit_tf.util import first_index_per_class

    r = cmp.run_comparison("mnist", (1,), max_train_batches=30, n_targets=4,
                           unsplit=InversionConfig(main_iters=1, input_iters=5, model_iters=5),
                           white_box=he.he_config(iters=2000), query_free=he.he_config(he.QUERY_FREE_CONFIG, iters=50),
                           aux_size=640, shadow_epochs=1, heldout_size=300, unsplit_batched=True, printer=None)
    data = load_unsplit("mnist")
    t = data.x_test[first_index_per_class(data.y_test)[:4]].astype(np.float64)
    np.testing.assert_array_equal(r.targets, t.astype(np.float32))
    np.testing.assert_allclose(r.baselines["black"], (t ** 2).mean(axis=(1, 2, 3)))
    mean_img = data.x_train.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(r.baselines["mean_image"], ((t - mean_img) ** 2).mean(axis=(1, 2, 3)), rtol=1e-6)
    for m in cmp.METHODS:  # each score is the MSE of that method's own reconstruction against these targets
        np.testing.assert_allclose(r.scores[m][1]["mse"], ((r.x_eval[m][1] - t) ** 2).mean(axis=(1, 2, 3)),
                                   rtol=1e-5)
    # white-box with the true weights at depth 1 recovers image-specific content: below both trivial answers
    assert r.mean_mse("white_box") < min(r.baselines["black"].mean(), r.baselines["mean_image"].mean())
    assert 10.0 < r.shadow_accuracy[1] <= 100.0


@needs("mnist")
def test_target_network_never_trains_on_the_query_free_aux_images(monkeypatch):
    from unsplit_tf import training

    seen = {}

    def fake_train(client, server, x, y, split_depth, **kwargs):
        seen["x"], seen["y"] = x, y

    monkeypatch.setattr(training, "train_split", fake_train)
    net, data, _ = cmp.train_target("mnist", epochs=1, holdout=5000)
    assert len(seen["x"]) == len(data.x_train) - 5000
    np.testing.assert_array_equal(seen["x"], data.x_train[:-5000])  # the aux set is the last 5,000
    with pytest.raises(ValueError, match="holdout"):
        cmp.train_target("mnist", holdout=len(data.x_train))


def test_table5_says_when_the_smallest_query_count_already_matches():
    t5 = cmp.Table5Result("mnist", (1, 2), (100, 1000), {1: np.array([[0.2, 0.1]]), 2: np.array([[0.05, 0.01]])},
                          {1: 0.15, 2: 0.1}, {1: np.array([10 ** 2.5]), 2: np.array([100.0])},
                          dict(epochs=50, steps=None, batch_size=32, runs=1, n_targets=10), 0.0)
    text = cmp.format_table5(t5)
    assert "| 1 | 0.1500 | 0.2000, 0.1000 | 316 | 1/1 | 2.50 | 0.32 | 3.61 |" in text   # interpolated in log Q
    assert "| 2 | 0.1000 | 0.0500, 0.0100 | <= 100 | 1/1 | <= 2.00 | <= 0.10 | 7.81 |" in text  # only a bound

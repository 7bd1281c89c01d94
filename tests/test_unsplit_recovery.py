"""What UnSplit's inversion recovers: the per-round trace (:func:`unsplit_tf.diagnostics.trace_inversion`) follows
exactly the unchunked attack, and every printed trivial baseline is the hand computation on the attack's own
targets and scale."""
import numpy as np
import pytest
from keras import ops

from unsplit_tf import diagnostics
from unsplit_tf.attacks import InversionConfig, model_inversion_stealing_batched
from unsplit_tf.models import build_model


def _kernel_norm(k):
    return float(np.sqrt(np.sum(np.asarray(k, np.float64) ** 2)))


@pytest.mark.backend  # also under KERAS_BACKEND=jax
def test_chunked_trace_is_the_unchunked_attack(tmp_path):
    """Chunks of rounds with the whole state carried (Adam moments and both step counters included) give the
    unchunked run's x~ and clone parameters; the recorded values are those of shorter unchunked runs."""
    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28, 1)).astype(np.float32)
    client = build_model("mnist", seed=1, name="client")
    clone = build_model("mnist", seed=2, name="clone")
    start_weights = [np.array(w) for w in clone.get_param_values()]
    depth = 2
    cfg = InversionConfig(main_iters=4, input_iters=3, model_iters=3)
    smashed = client(ops.convert_to_tensor(images), end=depth)

    def unchunked(rounds):
        x, params = model_inversion_stealing_batched(clone, depth, smashed, 0.1, 1.0, rounds, 3, 3, config=cfg)
        return ops.convert_to_numpy(x), [ops.convert_to_numpy(p) for p in params]

    x_ref, p_ref = unchunked(4)
    # bit for bit: the same compiled loop body runs on the same values (checked on a CPU, TensorFlow's fast engine
    # and JAX's generic one)
    same = np.testing.assert_array_equal
    traces = {every: diagnostics.trace_inversion(client, clone, images, depth, cfg, every=every) for every in (1, 3)}
    for every, tr in traces.items():  # every round; and a chunk of 3 rounds then a remainder of 1
        assert list(tr.rounds) == ([0, 1, 2, 3, 4] if every == 1 else [0, 3, 4])
        same(tr.x_hat, x_ref)
        assert len(tr.clone_params) == len(p_ref)
        for a, b in zip(tr.clone_params, p_ref):
            same(a, b)
        assert tr.x_mean.shape == tr.first_layer_norm.shape == (len(tr.rounds), 3)
        np.testing.assert_allclose(tr.mse, np.mean((x_ref.astype(np.float64) - images) ** 2, axis=(1, 2, 3)),
                                   rtol=1e-6)
        # round 0: the constant 0.5 start and the clone's own first-layer kernel, for every target
        np.testing.assert_allclose(tr.x_mean[0], 0.5, rtol=1e-7)
        np.testing.assert_allclose(tr.first_layer_norm[0], _kernel_norm(clone.client_weights(depth)[0]), rtol=1e-6)
    # the values recorded after rounds 1 and 3 are those of one- and three-round unchunked runs, by hand
    tr = traces[1]
    for rounds in (1, 3):
        x_r, p_r = unchunked(rounds)
        np.testing.assert_allclose(tr.x_mean[rounds], x_r.astype(np.float64).mean(axis=(1, 2, 3)), rtol=1e-6)
        np.testing.assert_allclose(tr.first_layer_norm[rounds], [_kernel_norm(k) for k in p_r[0]], rtol=1e-6)
    np.testing.assert_allclose(traces[3].x_mean[1], tr.x_mean[3], rtol=1e-6)
    # the clone the attack starts from is not modified
    for w, v in zip(clone.get_param_values(), start_weights):
        np.testing.assert_array_equal(np.array(w), v)
    # the figure: one row per depth, two panels
    path = diagnostics.save_trace_figure({depth: tr}, tmp_path / "trace.png", title="t")
    assert path.is_file() and path.stat().st_size > 1000
    assert "| 2 | 0.500 -> " in diagnostics.format_trace_table({depth: tr})


@pytest.mark.backend  # also under KERAS_BACKEND=jax
def test_reconstruction_report_is_the_hand_computation():
    """Black = the scale's minimum, mean image = the given training mean, on the given scale; the printed lines
    carry those numbers."""
    rng = np.random.default_rng(1)
    t = rng.random((4, 8, 8, 1))
    m = rng.random((8, 8, 1))
    x = rng.random((4, 8, 8, 1))
    r = diagnostics.reconstruction_report(x, t, m)
    np.testing.assert_allclose(r.black, np.mean(t ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(r.mean_image, np.mean((t - m) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(r.mse, np.mean((x - t) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(r.psnr, 10 * np.log10(1 / np.mean((x - t) ** 2, axis=(1, 2, 3))))
    assert r.baseline_line() == (f"Baselines on the same 4 targets (MSE on [0, 1]): all-black image "
                                 f"{np.mean(t ** 2):.4f}, training-mean image {np.mean((t - m) ** 2):.4f}")
    assert r.quality_line().startswith("Reconstruction quality (on [0, 1]): mean PSNR ")
    # the same images on [-1, 1]: black is -1 there, and every MSE is 4x the [0, 1] one
    r2 = diagnostics.reconstruction_report(2 * x - 1, 2 * t - 1, 2 * m - 1, value_range=(-1.0, 1.0))
    np.testing.assert_allclose(r2.black, np.mean((2 * t - 1 + 1) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(r2.black, 4 * r.black)
    np.testing.assert_allclose(r2.mean_image, 4 * r.mean_image)
    np.testing.assert_allclose(r2.psnr, r.psnr)  # PSNR does not depend on the scale when data_range follows it
    assert "(MSE on [-1, 1])" in r2.baseline_line()
    with pytest.raises(ValueError, match="one image's shape"):
        diagnostics.reconstruction_report(x, t, m[..., 0])


def _fake_sweep():
    from unsplit_tf import experiments as ex

    rng = np.random.default_rng(2)
    targets = rng.random((10, 28, 28, 1)).astype(np.float32)
    decoy = rng.random((10, 28, 28, 1)).astype(np.float32)  # x_eval: not the targets
    results = [ex.DepthResult("mnist", 1, e, np.full(10, 0.05 + 0.01 * e), decoy, 90.0, 10.0, 98.0)
               for e in (0, 10)]
    budget = dict(epochs=10, main_iters=1000, input_iters=100, model_iters=100, max_train_batches=None, n_targets=10,
                  tv_schedule="code", batched=False, seed=0)
    train_mean = rng.random((28, 28, 1))
    return ex.SweepResult("mnist", (1,), 10, results, targets, budget, train_mean=train_mean), decoy


@pytest.mark.backend  # also under KERAS_BACKEND=jax
def test_table2_prints_baselines_psnr_and_ssim_of_its_targets():
    from splitnn.metrics import psnr, ssim
    from unsplit_tf import experiments as ex

    sweep, decoy = _fake_sweep()
    t = sweep.targets.astype(np.float64)
    table = ex.format_table2(sweep)
    black, mean_image = np.mean(t ** 2), np.mean((t - sweep.train_mean) ** 2)
    p, s = np.mean(psnr(decoy, t, 1.0)), np.mean(ssim(decoy, t, 1.0))
    row = f"| 1 | 0.0500 / 0.077 | 0.1500 / 0.054 | {black:.4f} | {mean_image:.4f} | {p:.2f} | {s:.3f} | 90.00 /"
    assert row in table, table
    assert ("| depth | MSE before (ours / paper) | MSE after (ours / paper) | black | mean image | PSNR after | "
            in table)
    assert "black = MSE of the all-black image" in table.splitlines()[0]
    r = ex.table2_rows(sweep)[0]
    assert (r["black"], r["mean_image"]) == pytest.approx((black, mean_image), rel=1e-12)
    # without a training mean (an old sweep) the mean-image column says nan, never a wrong number
    import dataclasses

    assert "| nan |" in ex.format_table2(dataclasses.replace(sweep, train_mean=None))


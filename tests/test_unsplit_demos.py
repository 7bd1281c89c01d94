"""UnSplit demos and data: CLI errors, tiny-budget end-to-end runs, targets, MNIST label inference 100/100."""
import dataclasses
import hashlib
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest
from available_data import needs

from splitnn import data as sdata
from unsplit_tf import label_inference_demo, model_inversion_demo
from unsplit_tf.util import first_index_per_class

needs_mnist = needs("mnist")


@pytest.mark.backend  # also under KERAS_BACKEND=jax
@pytest.mark.parametrize("argv,msg", [
    (["mnist", "7"], "out of range"), (["f_mnist", "0"], "1-6"), (["cifar", "9"], "1-8"),
    (["svhn", "2"], "unknown dataset 'svhn'"), (["mnist", "two"], "must be an integer"),
    (["mnist", "2", "--tv-schedule", "often"], "--tv-schedule"), (["mnist", "2", "--main-iters", "-1"], ">= 1"),
    (["mnist", "2", "--lambda-l2", "-1"], ">= 0"), (["mnist", "2", "--batch-size", "0"], ">= 1"),
])
def test_inversion_cli_rejects_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        model_inversion_demo.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


@pytest.mark.backend  # also under KERAS_BACKEND=jax
@pytest.mark.parametrize("flag,value", [("--main-iters", "0"), ("--input-iters", "0"), ("--model-iters", "0"),
                                        ("--model-iters", "-2"), ("--max-train-batches", "0"), ("--epochs", "-1")])
def test_inversion_demo_refuses_budgets_that_cannot_attack(flag, value, capsys, monkeypatch):
    """No rounds, no x~ steps or no clone steps would report the grey start image as a reconstruction, and
    --max-train-batches 0 an untrained network as a trained one: refused with an argparse error (exit 2) naming the
    option and the value, before any data is loaded; the function API refuses the same budget."""
    def no_work(*args, **kwargs):
        raise AssertionError("the demo started working before it checked its budget")
    monkeypatch.setattr(sdata, "load_unsplit", no_work)
    with pytest.raises(SystemExit) as exc:
        model_inversion_demo.main(["mnist", "2", flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {flag} must be an integer >= " in err and f"got {value}" in err and "Traceback" not in err
    name = flag[2:].replace("-", "_")
    with pytest.raises(ValueError, match=f"^{name} must be an integer >= "):
        model_inversion_demo.run_inversion_demo("mnist", 2, **{name: int(value)})


@pytest.mark.parametrize("argv,msg", [(["svhn"], "unknown dataset"), (["mnist", "--count", "0"], ">= 1")])
def test_label_cli_rejects_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        label_inference_demo.main(argv)
    assert exc.value.code == 2 and msg in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPLITNN_DATA_DIR", str(tmp_path))
    for main, argv in ((model_inversion_demo.main, ["mnist", "2"]), (label_inference_demo.main, ["f_mnist"])):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "missing" in err and "Traceback" not in err


@pytest.mark.backend  # also under KERAS_BACKEND=jax
def test_function_api_validates_arguments():
    with pytest.raises(ValueError, match="out of range"):
        model_inversion_demo.run_inversion_demo("cifar", 9)
    with pytest.raises(sdata.UnknownDatasetError):
        model_inversion_demo.run_inversion_demo("svhn", 1)


@needs_mnist
def test_first_of_class_targets():
    assert list(first_index_per_class(sdata.load_unsplit("mnist").y_test)) == [3, 2, 1, 18, 4, 8, 11, 0, 61, 7]
    assert list(first_index_per_class(sdata.load_unsplit("f_mnist").y_test)) == [19, 2, 1, 13, 6, 8, 4, 9, 18, 0]


@pytest.mark.skipif(not (sdata.data_dir() and (sdata.data_dir() / "cifar10").is_dir()), reason="no CIFAR mirror")
def test_cifar_partial_mirror_checksum_and_label():
    raw = sdata.load_raw("cifar")
    assert hashlib.sha256(np.ascontiguousarray(raw.x_test[:100]).tobytes()).hexdigest() == \
        "efd083b0ee394fcd75573b4768c330c582a6019ccba153f565591ea6e1aa5e12"
    assert list(raw.y_test[:20]) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    if raw.partial:
        assert "partial" in raw.description and len(raw.y_test) == 1000


def clone_lines(lines):
    return [line for line in lines if line.startswith("Clone")]


@pytest.mark.backend  # also under KERAS_BACKEND=jax
@needs_mnist
def test_tiny_inversion_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    r = model_inversion_demo.run_inversion_demo(
        "mnist", 2, epochs=1, max_train_batches=20, main_iters=2, input_iters=5, model_iters=5, seed=0,
        results_dir="out", printer=lines.append)
    text = "\n".join(lines)
    for expected in ("Training models...", "Epoch: 0 Loss:", "Done.", "Starting model inversion & stealing attack",
                     "\tImage 9 loss:", "Average MSE:", "Results saved"):
        assert expected in text, expected
    # the attack's settings, TV schedule and form included, are printed
    assert ("Attack: 2 x (5 + 5) steps per image, TV schedule code (lambda_TV 0.1 at every depth, the original "
            "code's), TV form code (squared, anisotropic, mean-normalised, the original code's)") in text
    # the clone accuracies: two lines, the original's metric (labelled) and the stolen client's
    acc = r.clone_accuracy
    score, accuracy = clone_lines(lines)
    assert score.startswith(f"Clone test score: {acc.repo_literal_repo:.2f}%  (the original demo's metric: the real "
                            f"client's layers 0..2 followed by the clone's layers 3..end")
    assert accuracy.startswith(f"Clone accuracy: {acc.intended_full:.2f}%  (the stolen client: the clone's layers "
                               f"0..2 followed by the trained server's layers 3..end; full test split")
    assert 1700 < acc.repo_count <= 2000 and acc.n_test == 10_000
    assert all(0 <= v <= 100 for v in (acc.repo_literal_repo, acc.repo_literal_full, acc.intended_repo,
                                       acc.intended_full))
    # the numbers reported are those of the images returned: MSE of x_eval against the first-of-class targets
    assert list(r.target_indices) == [3, 2, 1, 18, 4, 8, 11, 0, 61, 7]
    targets = sdata.load_unsplit("mnist").x_test[r.target_indices].astype(np.float64)
    np.testing.assert_allclose(r.mse, np.mean((r.inversion.x_eval - targets) ** 2, axis=(1, 2, 3)), rtol=1e-6)
    assert abs(r.average_mse - np.mean(r.mse)) < 1e-12 and f"Average MSE: {r.average_mse}" in text
    # next to them, the trivial baselines on the same targets and scale ([0, 1]: black is 0) and PSNR / SSIM
    train_mean = sdata.load_unsplit("mnist").x_train.mean(axis=0, dtype=np.float64)
    black, mean_image = np.mean(targets ** 2, axis=(1, 2, 3)), np.mean((targets - train_mean) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(r.black_mse, black, rtol=1e-9)
    np.testing.assert_allclose(r.mean_image_mse, mean_image, rtol=1e-9)
    after = lines[lines.index(f"Average MSE: {r.average_mse}") + 1:]
    assert after[0] == (f"Baselines on the same 10 targets (MSE on [0, 1]): all-black image {np.mean(black):.4f}, "
                        f"training-mean image {np.mean(mean_image):.4f}"), after[0]
    assert after[1] == (f"Reconstruction quality (on [0, 1]): mean PSNR {np.mean(r.report.psnr):.2f} dB, mean SSIM "
                        f"{np.mean(r.report.ssim):.3f}")
    np.testing.assert_allclose(r.report.psnr, 10 * np.log10(1 / r.mse), rtol=1e-9)
    assert lines[lines.index(f"Average MSE: {r.average_mse}") - 1] == (
        f"\tImage 9 loss: {r.mse[9]}  (black {black[9]:.4f}, mean image {mean_image[9]:.4f}; PSNR "
        f"{r.report.psnr[9]:.2f} dB, SSIM {r.report.ssim[9]:.3f})")
    # every file written is listed by its absolute path, then the total time
    assert len(r.files) == 11 and all(Path(f).is_absolute() and Path(f).is_file() for f in r.files)
    assert {Path(f).name for f in r.files} == {f"mnist_{i}.png" for i in range(10)} | {
        "mnist_d2_originals_reconstructions.png"}
    assert all(Path(f).parent == tmp_path / "out" for f in r.files)
    assert f"Results saved to the {tmp_path / 'out'} directory:" in text
    assert [line.strip() for line in lines[-12:-1]] == [str(f) for f in r.files]
    assert lines[-1].startswith("Total time: ") and lines[-1].endswith(" s")


@pytest.mark.backend  # also under KERAS_BACKEND=jax
@needs_mnist
def test_tiny_inversion_cli_batched(tmp_path, capsys):
    code = model_inversion_demo.main(["f_mnist", "3", "--epochs", "1", "--max-train-batches", "5", "--main-iters",
                                      "1", "--input-iters", "3", "--model-iters", "3", "--batched", "--seed", "1",
                                      "--tv-schedule", "paper", "--results-dir", str(tmp_path),
                                      # the paper-variant and extra options reach the attack and the training
                                      "--lambda-l2", "0", "--tv-form", "paper", "--tv-reduction", "mean", "--clamp-x",
                                      "--batch-size", "32", "--sampler", "full"])
    out = capsys.readouterr().out
    assert code == 0 and "Average MSE" in out and "batched mode" in out
    assert ("TV schedule paper (lambda_TV 0.1 for depths 1-3 and 1.0 deeper, the paper's), lambda_TV 0.1 at depth "
            "3, TV form paper (isotropic square root, mean over pixels, the paper's), 10 targets batched") in out
    assert len(clone_lines(out.splitlines())) == 2
    assert len(list(tmp_path.glob("f_mnist_*.png"))) == 11


@pytest.mark.backend  # also under KERAS_BACKEND=jax
@needs_mnist
def test_label_inference_mnist_depth1_is_100_of_100(capsys):
    r = label_inference_demo.run_label_inference_demo("mnist", 100, seed=0)
    assert r.count == 100 and r.correct == 100
    out = capsys.readouterr().out
    assert out.count("Label: ") == 100 and "Run complete." in out and "Label inference accuracy: 1.0" in out


@needs_mnist
def test_table_pipeline_tiny_budget():
    from unsplit_tf import experiments as ex

    sweep = ex.run_depth_sweep("mnist", [2], epochs=1, main_iters=1, input_iters=3, model_iters=3,
                               max_train_batches=3, n_targets=3, printer=None, lambda_l2=0.0, tv_form="paper")
    table = ex.format_table2(sweep)
    assert "REDUCED BUDGET" in table and "| 2 |" in table and "0.056" in table  # paper value printed alongside
    # the default schedule is the original code's, and the table says so, with the TV form of this sweep
    assert sweep.budget["tv_schedule"] == "code"
    assert ("TV schedule code (lambda_TV 0.1 at every depth, the original code's), TV form paper (isotropic square "
            "root, sum over pixels, the paper's)") in table
    assert "lambda_l2=0.0," in table and "tv_form=" not in table  # a paper-variant sweep says so, once
    # a reduced inner schedule or fewer targets alone is labelled too
    for change in ({}, {"input_iters": 10}, {"n_targets": 3}):
        budget = dict(dict(epochs=10, main_iters=1000, input_iters=100, model_iters=100, max_train_batches=None,
                           n_targets=10, tv_schedule="paper", batched=False, seed=0), **change)
        labelled = ex.format_table2(dataclasses.replace(sweep, budget=budget)).startswith("REDUCED BUDGET")
        assert labelled == bool(change), change
    assert set(sweep.mean_mse_per_epoch()) == {0, 1}
    row = ex.table2_rows(sweep)[0]
    assert 0 < row["mse_before"] < 1 and 0 <= row["clone_intended"] <= 100


def fake_sweep(**budget):
    from unsplit_tf import experiments as ex

    results = [ex.DepthResult("mnist", 1, e, np.full(10, 0.05 + 0.01 * e), np.zeros((10, 28, 28, 1)), 90.0, 10.0,
                              98.0) for e in (0, 10)]
    full = dict(epochs=10, main_iters=1000, input_iters=100, model_iters=100, max_train_batches=None, n_targets=10,
                tv_schedule="code", batched=False, seed=0)
    return ex.SweepResult("mnist", (1,), 10, results, np.zeros((10, 28, 28, 1)), dict(full, **budget))


@pytest.mark.backend  # also under KERAS_BACKEND=jax
@pytest.mark.parametrize("budget,expected", [
    ({}, "TV schedule code (lambda_TV 0.1 at every depth, the original code's), TV form code (squared, anisotropic, "
         "mean-normalised, the original code's)"),
    ({"tv_schedule": "paper"}, "TV schedule paper (lambda_TV 0.1 for depths 1-3 and 1.0 deeper, the paper's), TV "
                               "form code"),
    ({"tv_schedule": 0.5, "tv_form": "paper", "tv_reduction": "mean"},
     "TV weight 0.5 at every depth (custom), TV form paper (isotropic square root, mean over pixels, the paper's)"),
    ({"options": {"tv_form": "paper", "lambda_l2": 0.0}}, "TV form paper (isotropic square root, sum over pixels"),
])
def test_table2_header_names_the_tv_schedule_and_form(budget, expected):
    from unsplit_tf import experiments as ex

    table = ex.format_table2(fake_sweep(**budget))
    head = table.splitlines()[0]
    assert head.startswith("Table 2, mnist: 10 epoch(s), 1000 x (100 + 100) steps, ") and expected in head, head
    # the MSE columns, then the baselines, PSNR and SSIM (tests/test_unsplit_recovery.py checks their values), then
    # the clone and target accuracies
    row = next(line for line in table.splitlines() if line.startswith("| 1 |"))
    assert row.startswith("| 1 | 0.0500 / 0.077 | 0.1500 / 0.054 | ") and row.count("|") == 11, row
    assert row.endswith("| 90.00 / 97.45 | 10.00 | 98.00 |"), row


def test_tv_defaults_agree_across_entry_points():
    """The demo, its function, the attack's config, the Table 2 driver, the tables benchmark and the sweep runner's
    Table 2 grid all default to the original code's TV weight schedule and TV form."""
    from unsplit_tf import experiments as ex
    from unsplit_tf.attacks import InversionConfig

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "unsplit_tables.py"
    spec = importlib.util.spec_from_file_location("unsplit_tables_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    demo_fn = inspect.signature(model_inversion_demo.run_inversion_demo).parameters
    demo_cli = model_inversion_demo.build_parser().parse_args(["mnist", "2"])
    bench_cli = bench.parse_args([])
    sweep = inspect.signature(ex.run_depth_sweep).parameters
    from splitnn.sweeps import make_grid

    table2_cell = make_grid("table2", datasets=["mnist"], levels=[2])[0]
    found = {
        "InversionConfig": (InversionConfig().tv_schedule, InversionConfig().tv_form),
        "run_inversion_demo": (demo_fn["tv_schedule"].default, demo_fn["tv_form"].default),
        "python -m unsplit_tf.model_inversion_demo": (demo_cli.tv_schedule, demo_cli.tv_form),
        "run_depth_sweep": (sweep["tv_schedule"].default, InversionConfig().tv_form),
        "benchmarks/unsplit_tables.py": (bench_cli.tv_schedule, bench_cli.tv_form),
        "python -m splitnn.sweeps run table2": (table2_cell.options["tv_schedule"],
                                               table2_cell.options.get("tv_form", InversionConfig().tv_form)),
    }
    assert set(found.values()) == {("code", "code")}, found


@needs_mnist
def test_attack_after_training_reaches_table2_range():
    """At a tenth of the paper's budget (1 training epoch, 100 x (100 + 100) steps; about a minute), MNIST split
    depth 2 after training: the reconstructions beat the two data-free baselines on the same 10 targets, an
    all-black image and the mean training digit, and show the right digits; the intended clone (clone bottom +
    trained server top) classifies the test set far above chance, and the original demo's "Clone test score"
    (real client bottom + untrained clone top) stays near chance.

    Measured here (seed 0): mean MSE 0.062 (paper 0.056, full budget) against 0.110 for all black and 0.071 for the
    mean digit; each reconstruction's Pearson correlation with its own target 0.78-0.93, against 0.40-0.68 for the
    mean digit, and it correlates best with its own target among the 10; intended clone 90%, repo_literal 12%. On
    MSE alone the mean digit is close: UnSplit's MNIST errors (the paper's too) are not far below it."""
    r = model_inversion_demo.run_inversion_demo("mnist", 2, epochs=1, main_iters=100, seed=0, save_images=False,
                                                printer=lambda s: None)
    data = sdata.load_unsplit("mnist")
    x = data.x_test[r.target_indices].astype(np.float64)
    x_hat = r.inversion.x_eval.astype(np.float64)
    mean_digit = data.x_train.astype(np.float64).mean(axis=0)
    black_mse = np.mean(x ** 2)
    mean_digit_mse = np.mean((x - mean_digit) ** 2)
    assert r.average_mse < 0.08, r.mse  # absolute bound (paper 0.056)
    assert r.average_mse < 0.7 * black_mse and r.average_mse < 0.95 * mean_digit_mse, (
        r.average_mse, black_mse, mean_digit_mse)

    def unit(a):
        a = a.reshape(len(a), -1)
        a = a - a.mean(axis=1, keepdims=True)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    corr = unit(x_hat) @ unit(x).T  # [reconstruction, target]
    mean_digit_corr = (unit(mean_digit[None]) @ unit(x).T)[0]  # (an all-black image has no correlation at all)
    assert np.all(np.diag(corr) > 0.7), np.diag(corr)
    assert np.all(np.diag(corr) > mean_digit_corr + 0.1), (np.diag(corr), mean_digit_corr)
    assert list(np.argmax(corr, axis=1)) == list(range(10))  # each one looks most like its own digit
    acc = r.clone_accuracy
    assert acc.intended_full > 80 and acc.intended_repo > 80
    assert acc.repo_literal_full < 30 and acc.repo_literal_repo < 30

"""The README's main job (`make demo`) runs end to end on a tiny budget."""
import re

import numpy as np

import demo


def parse_baselines(line):
    """(black, mean image) from a printed baseline line."""
    found = re.search(r"all-black image (\d+\.\d+), [a-z -]*mean image (\d+\.\d+)", line)
    assert found, line
    return float(found.group(1)), float(found.group(2))


def test_demo_entry_point_tiny(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out, as a user types it: the demo must print absolute paths
    result = demo.main(["--tiny", "--out", "demo_out"])
    out = capsys.readouterr().out
    assert (tmp_path / "demo_out" / "fsha_mnist.png").is_file()
    assert any(p.suffix == ".png" and p.is_file() for p in result.figures[1:])
    # 20 FSHA steps already move the private reconstructions towards the images
    assert result.fsha_mse_after < result.fsha_mse_before
    assert len(result.unsplit_mse) == 10 and np.all(np.isfinite(result.unsplit_mse))
    assert "held-out private images ([-1, 1] scale)" in out and "Average MSE" in out
    # each attack's MSE is printed next to the trivial baselines on its own images and scale, by hand here:
    # FSHA scores the 256 held-out private images on [-1, 1] (black = -1), against the other training images' mean
    from fsha.datasets import preprocess
    from splitnn.data import load_raw, load_unsplit

    raw = load_raw("mnist")
    held = preprocess(raw.x_train[:256]).astype(np.float64)
    rest_mean = preprocess(raw.x_train[256:].mean(axis=0)[None])[0].astype(np.float64)  # preprocess is linear
    fsha_line = next(line for line in out.splitlines() if line.startswith("FSHA baselines"))
    assert fsha_line.startswith("FSHA baselines on the same 256 held-out images (MSE on [-1, 1], FSHA's scale"), \
        fsha_line
    black, mean_image = parse_baselines(fsha_line)
    assert black == round(np.mean((held + 1) ** 2), 4) == round(result.fsha_black_mse, 4)
    assert abs(result.fsha_mean_image_mse - np.mean((held - rest_mean) ** 2)) < 1e-4
    assert mean_image == round(result.fsha_mean_image_mse, 4)
    # UnSplit: the 10 first-of-class test targets on [0, 1] (black = 0), against the training mean image
    data = load_unsplit("mnist")
    targets = data.x_test[[3, 2, 1, 18, 4, 8, 11, 0, 61, 7]].astype(np.float64)
    unsplit_line = next(line for line in out.splitlines() if line.startswith("UnSplit baselines"))
    assert unsplit_line.startswith("UnSplit baselines on the same 10 targets (MSE on [0, 1], all-black = 0)")
    black, mean_image = parse_baselines(unsplit_line)
    assert black == round(np.mean(targets ** 2), 4) == round(result.unsplit_black_mse, 4)
    assert mean_image == round(np.mean((targets - data.x_train.mean(axis=0, dtype=np.float64)) ** 2), 4)
    assert np.isfinite(result.unsplit_psnr) and -1 <= result.unsplit_ssim <= 1 and "dB, SSIM" in unsplit_line
    # it ends with its total time and every figure's absolute path, which exists
    tail = out[out.index("== demo finished in"):].splitlines()
    assert len(result.figures) == 2 and result.seconds > 0
    assert [line.strip() for line in tail[1:]] == [str(p) for p in result.figures]
    assert all(p.is_absolute() and p.is_file() for p in result.figures)


def test_demo_rejects_contradicting_flags(capsys):
    import pytest

    with pytest.raises(SystemExit):
        demo.main(["--tiny", "--full"])
    assert "exclude" in capsys.readouterr().err

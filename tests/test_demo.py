"""The README's main job (`make demo`) runs end to end on a tiny budget."""
import numpy as np

import demo


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

"""covert_mpc.demo: bad arguments are refused before any work; a run prints its numbers and the PNGs' paths."""
from pathlib import Path

import pytest

from available_data import needs
from covert_mpc import demo


@pytest.mark.parametrize("argv,msg", [
    (["reconstrct-lr"], "unknown attack 'reconstrct-lr'; did you mean 'reconstruct-lr'?"),
    (["backdor"], "did you mean 'backdoor'?"),
    (["reconstruct-lr", "--k", "16", "--f", "16"], "k = 16 <= f = 16"),
    (["reconstruct-lr", "--f", "0"], "f = 0"),
    (["reconstruct-lr", "--arithmetic", "fixed", "--k", "32"], "C = 1e+06 overflows the ring Z_2^32"),
    (["reconstruct-nn", "--arithmetic", "fixed", "--k", "48", "--scale", "1e12"], "delta = 1e+12 overflows"),
])
def test_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as exc:
        demo.parse(argv)
    assert exc.value.code == 2
    assert msg in capsys.readouterr().err


@needs("mnist")
def test_protocol_lr_demo_writes_its_figure(tmp_path, capsys):
    assert demo.main(["protocol-lr", "--n-test", "10", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "protocol_lr.png"
    assert png.is_file() and str(png.resolve()) in out
    err = float(out.split("max pixel error ")[1].split(";")[0])
    assert err < 1e-4
    assert Path(png).stat().st_size > 1000

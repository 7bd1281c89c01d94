"""The sweep runner (splitnn.sweeps): a tiny grid of both attacks on a 2-process LocalCluster with a worker killed
mid-run (every cell recorded once, results equal to a sequential in-process run); resume; retries and failure
reports; early errors for unknown names; aggregation against a hand computation."""
import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from available_data import needs
from splitnn import sweeps
from splitnn.sweeps import Cell, SweepError, make_grid, run_sweep

distributed = pytest.importorskip("distributed", reason="the sweep engine needs dask[distributed] (requirements)")

TINY_UNSPLIT = dict(epochs=1, max_train_batches=5, main_iters=2, input_iters=5, model_iters=5, n_targets=3)
TINY_FSHA = dict(iterations=4, batch_size=8, log_frequency=2, n_heldout=64, private_size=512)


def results_without_timings(folder):
    out = {}
    for rec in sweeps.load_records(folder):
        assert rec["id"] not in out
        out[rec["id"]] = {k: v for k, v in rec["results"].items() if "second" not in k}
    return out


def assert_same_results(a, b):
    """Equal keys and non-float values; floats equal to 1e-5 relative. Float32 rounding differs a little between
    processes (Grappler's remapper, which logs "remapper failed" on FSHA's ResNets, fuses differently from run to
    run: seen up to 2.5e-6 after 20 steps of levels 1 and 3); a seeding error changes the numbers by 1e-2 or more."""
    assert a.keys() == b.keys()
    for cell_id in a:
        ra, rb = a[cell_id], b[cell_id]
        assert ra.keys() == rb.keys(), cell_id
        for key in ra:
            va, vb = np.asarray(ra[key]), np.asarray(rb[key])
            if va.dtype.kind == "f":
                np.testing.assert_allclose(va, vb, rtol=1e-5, atol=0, err_msg=f"{cell_id} {key}")
            else:
                assert ra[key] == rb[key], (cell_id, key)


@needs("mnist")
def test_local_cluster_survives_a_killed_worker_and_matches_sequential_run(tmp_path):
    cells = (make_grid("table2", datasets=["mnist"], levels=[1, 2], seeds=[0], budget=TINY_UNSPLIT)
             + make_grid("fsha_levels", datasets=["mnist"], levels=[4], seeds=[0, 1], budget=TINY_FSHA))
    assert len(cells) == 4
    killed = {}

    def kill_a_busy_worker(record, client):
        if killed:
            return
        for _ in range(100):  # the worker that is running a cell right now
            busy = {w: keys for w, keys in client.processing().items() if keys}
            if busy:
                break
            time.sleep(0.1)
        worker, keys = next(iter(busy.items()))
        pid = client.run(os.getpid, workers=[worker])[worker]
        killed.update(pid=pid, keys=list(keys))
        os.kill(pid, signal.SIGKILL)

    summary = run_sweep(cells, tmp_path / "dask", workers=2, attempts=1, on_record=kill_a_busy_worker, log=None)
    assert killed, "no worker was killed"
    assert summary.submitted == 4 and summary.recorded == 4 and not summary.failed
    files = sorted(p.name for p in (tmp_path / "dask").glob("*.json"))
    assert files == sorted(c.filename for c in cells)  # every cell exactly once
    records = {r["id"]: r for r in sweeps.load_records(tmp_path / "dask")}
    assert len(records) == 4
    # the cell the killed worker was running was run again elsewhere, and all cells ran in worker processes
    rerun = [c for c in cells if any(c.id in k for k in killed["keys"])]
    assert rerun and all(records[c.id]["pid"] != killed["pid"] for c in rerun)
    assert all(r["worker"] and r["pid"] != os.getpid() for r in records.values())

    seq = run_sweep(cells, tmp_path / "sequential", workers=0, attempts=1, log=None)
    assert seq.recorded == 4 and all(r["pid"] == os.getpid() for r in sweeps.load_records(tmp_path / "sequential"))
    assert_same_results(results_without_timings(tmp_path / "dask"), results_without_timings(tmp_path / "sequential"))


# ------------------------------------------------------------------------------ engine logic, with fake cells

CALLS = []
_LOCK = threading.Lock()


def fake_runner(cell):
    with _LOCK:
        CALLS.append(cell["level"])
        tries = CALLS.count(cell["level"])
    if cell["level"] == 1.0:
        raise RuntimeError("cell 1 always fails")
    if cell["level"] == 2.0 and tries == 1:
        raise RuntimeError("cell 2 fails once")
    return {"value": cell["level"] * 10 + cell["seed"]}


@pytest.fixture
def local_client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        yield client


def test_resume_skips_recorded_cells(tmp_path, local_client):
    CALLS.clear()
    first = make_grid("nopeek", levels=[3, 4, 5], seeds=[0])
    s1 = run_sweep(first, tmp_path, client=local_client, runner=fake_runner, log=None)
    assert (s1.submitted, s1.recorded, s1.skipped) == (3, 3, 0)
    (tmp_path / ".half-written.json.tmp").write_text("{")  # a leftover temporary file is not a record
    more = make_grid("nopeek", levels=[3, 4, 5, 6], seeds=[0, 1])
    s2 = run_sweep(more, tmp_path, client=local_client, runner=fake_runner, log=None)
    assert (s2.total, s2.skipped, s2.submitted, s2.recorded) == (8, 3, 5, 5)
    assert len(CALLS) == 8
    s3 = run_sweep(more, tmp_path, client=local_client, runner=fake_runner, log=None)
    assert (s3.submitted, s3.skipped) == (0, 8) and len(CALLS) == 8
    assert sorted(r["results"]["value"] for r in sweeps.load_records(tmp_path)) == [30, 31, 40, 41, 50, 51, 60, 61]


@pytest.mark.parametrize("engine", ["dask", "sequential"])
def test_failed_cell_is_retried_then_reported(tmp_path, local_client, engine):
    CALLS.clear()
    cells = make_grid("nopeek", levels=[1, 2, 3], seeds=[0])
    lines = []
    kw = dict(client=local_client) if engine == "dask" else dict(workers=0)
    s = run_sweep(cells, tmp_path, runner=fake_runner, attempts=3, log=lines.append, **kw)
    assert s.recorded == 2 and len(s.failed) == 1
    ok = {r["cell"]["level"]: r for r in sweeps.load_records(tmp_path)}
    assert ok[2.0]["attempts"] == 2 and ok[2.0]["errors"][0]["error"] == "RuntimeError: cell 2 fails once"
    (failed,) = sweeps.load_records(tmp_path, failed=True)
    assert failed["cell"]["level"] == 1.0 and failed["attempts"] == 3 and len(failed["errors"]) == 3
    assert (tmp_path / "failed" / cells[0].filename).exists()
    assert any("FAILED nopeek-mnist-a1-s0 after 3 attempt(s): RuntimeError: cell 1 always fails" in m for m in lines)
    # the next run tries the failed cell again (only it); a success replaces the failure record
    s2 = run_sweep(cells, tmp_path, runner=lambda c: {"value": 0}, attempts=3, log=None, **kw)
    assert (s2.submitted, s2.recorded, len(s2.failed)) == (1, 1, 0)
    assert not sweeps.load_records(tmp_path, failed=True) and len(sweeps.load_records(tmp_path)) == 3


SPANS = []


def sleepy_runner(cell):
    start = time.perf_counter()
    time.sleep(0.4)
    with _LOCK:
        SPANS.append((start, time.perf_counter()))
    return {"value": 1}


def test_gpu_cells_take_their_share_and_a_scheduler_is_reached_by_address(tmp_path):
    """Two cells on a worker that holds one GPU (and two threads): with a share of 1 each they take turns, with 0.5
    they run side by side. The sweep reaches the cluster through its scheduler's address."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, resources={"GPU": 1},
                                  protocol="tcp", dashboard_address=":0") as cluster:
        for share, side_by_side in ((1.0, False), (0.5, True)):
            SPANS.clear()
            cells = make_grid("nopeek", levels=[1, 2], seeds=[int(share * 10)])
            s = run_sweep(cells, tmp_path / str(share), scheduler=cluster.scheduler_address, gpu_share=share,
                          runner=sleepy_runner, log=None)
            assert s.recorded == 2 and s.engine.startswith("Dask, scheduler tcp://")
            (a0, a1), (b0, b1) = sorted(SPANS)
            assert (b0 < a1) == side_by_side, (share, SPANS)


def test_unknown_names_fail_early_with_the_closest_valid_one(capsys, monkeypatch):
    with pytest.raises(SweepError, match="unknown grid 'tabel2'.*did you mean 'table2'"):
        make_grid("tabel2")
    with pytest.raises(SweepError, match="unknown budget key 'main_iter'.*did you mean 'main_iters'"):
        make_grid("table2", budget={"main_iter": 3})
    with pytest.raises(SweepError, match="'tv_schedule'.*an option"):
        make_grid("table2", budget={"tv_schedule": "code"})
    with pytest.raises(SweepError, match="unknown dataset 'mnsit'.*did you mean 'mnist'"):
        make_grid("fsha_levels", datasets=["mnsit"])
    with pytest.raises(SweepError, match="unknown option 'architectur'.*did you mean 'architecture'"):
        make_grid("fsha_levels", options={"architectur": "final"})
    with pytest.raises(SweepError, match="depth 7 is not one of mnist's"):
        make_grid("table2", datasets=["mnist"], levels=[7])
    with pytest.raises(SweepError, match="budget epochs must be an integer"):
        make_grid("table2", budget={"epochs": "ten"})
    with pytest.raises(SweepError, match="lambda_l2 must be a number >= 0"):
        make_grid("table2", options={"lambda_l2": -1})
    # a Table 2 cell recorded before the lambda_l2 option existed keeps its id (resume) and reads as lambda_l2 1
    new = make_grid("table2", datasets=["mnist"], levels=[2])[0]
    old = dict(new.to_dict(), options={k: v for k, v in new.options.items() if k != "lambda_l2"})
    assert Cell.from_dict(old).id == new.id != make_grid("table2", datasets=["mnist"], levels=[2],
                                                          options={"lambda_l2": 0.5})[0].id
    # the paper's eq. 1 (no l2 prior): 0 and 0.0 name the same cell
    assert make_grid("table2", options={"lambda_l2": 0})[0].id == make_grid("table2", options={"lambda_l2": 0.0})[0].id
    assert sweeps.main(["run", "fsha_level", "--results", "unused"]) == 2
    assert "did you mean 'fsha_levels'" in capsys.readouterr().err
    assert sweeps.main(["run", "table2", "--budget", "n_target=3", "--results", "unused"]) == 2
    assert "did you mean 'n_targets'" in capsys.readouterr().err
    assert sweeps.main(["run", "table2", "--jobqueue", "slrum", "--results", "unused"]) == 2
    assert "did you mean 'slurm'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # not installed
    with pytest.raises(SweepError, match="needs dask-jobqueue: pip install dask-jobqueue"):
        with sweeps.open_client(jobqueue="pbs"):
            pass
    assert not os.path.exists("unused")


def test_cells_have_stable_ids_and_the_grids_pass_the_package_settings():
    a = Cell("fsha", "mnist", 4, 0, {"iterations": 3, "batch_size": 8}, {"x": 1})
    b = Cell("fsha", "mnist", 4, 0, {"batch_size": 8, "iterations": 3}, {"x": 1})
    assert a.id == b.id and a.id != Cell("fsha", "mnist", 4, 1, a.budget, a.options).id
    assert Cell.from_dict(json.loads(json.dumps(a.to_dict()))).id == a.id
    table2 = make_grid("table2", datasets=["f_mnist", "cifar"], seeds=[0, 1])
    assert len(table2) == (6 + 8) * 2 and {c.dataset for c in table2} == {"fashion_mnist", "cifar10"}
    assert table2[0].budget == dict(epochs=10, main_iters=1000, input_iters=100, model_iters=100,
                                    max_train_batches=None, n_targets=10)  # the paper's
    from unsplit_tf.experiments import TABLE3_SETTINGS

    t3 = make_grid("table3", datasets=["mnist"])
    assert [(c.level, c.options["observed_param"]) for c in t3] == list(TABLE3_SETTINGS)
    from fsha.FSHA import REFERENCE_HPARAMS

    assert make_grid("fsha_levels", levels=[4])[0].options["hparams"] == REFERENCE_HPARAMS


# ------------------------------------------------------------------------------------------------ aggregation

def record(attack, dataset, level, seed, results, budget=None, options=None):
    spec = {"unsplit": "table2", "fsha": "fsha_levels", "nopeek": "nopeek", "unsplit_labels": "table3"}[attack]
    cell = make_grid(spec, datasets=[dataset], levels=[level], seeds=[seed], budget=budget, options=options)[0]
    return {"id": cell.id, "cell": cell.to_dict(), "status": "ok", "results": results}


def t2(before, after, clone, baseline=0.07, ssim=0.5):
    return dict(mse_before=before, mse_after=after, clone_intended=clone, clone_repo_literal=clone - 1,
                target_acc=98.0, baseline_mean_image_mse=baseline, baseline_black_mse=0.11,
                psnr_after=10.0 + clone / 10, ssim_after=ssim, partial=False, data="MNIST")


def test_report_equals_hand_computation(tmp_path):
    recs = [record("unsplit", "mnist", 1, s, t2(b, a, c)) for s, (b, a, c) in
            enumerate([(0.10, 0.05, 90.0), (0.20, 0.07, 92.0), (0.30, 0.09, 94.0)])]
    recs.append(record("unsplit", "mnist", 2, 0, t2(0.5, 0.25, 50.0)))
    recs.append(record("unsplit", "mnist", 1, 0, t2(0.9, 0.9, 11.0), budget={"epochs": 1}))  # another table
    for s, (acc, dcor) in enumerate([(0.90, 0.5), (0.94, 0.7)]):
        recs.append(record("nopeek", "mnist", 5.0, s, dict(accuracy=acc, dcor=dcor, inversion_mse=0.04 + s / 100,
                                                           baseline_mse=0.1)))
    for s, (v, h) in enumerate([(0.5, 0.25), (0.7, 0.75)]):
        recs.append(record("fsha", "mnist", 4, s, dict(z_shape=[4, 4, 256], final_validation=v, heldout_mse=h,
                                                       iterations=10, train_seconds=5.0, validation_steps=[0, 5],
                                                       validation=[1.0, v])))
    for r in recs:
        sweeps.write_json_atomic(tmp_path / Cell.from_dict(r["cell"]).filename, r)
    sweeps.write_json_atomic(tmp_path / "failed" / "x.json", dict(recs[0], status="failed", errors=[]))
    text, written = sweeps.report(tmp_path)
    # Table 2, depth 1: MSE before 0.1, 0.2, 0.3 -> mean 0.2, sample sd 0.1; after 0.05/0.07/0.09 -> 0.07 ± 0.02;
    # clone 90/92/94 -> 92 ± 2; paper (Table 2, MNIST, depth 1): 0.077, 0.054, 97.45
    # black 0.11 and mean image 0.07 (sd 0); PSNR 10 + clone / 10 -> 19.2 ± 0.2; SSIM 0.5 (sd 0)
    assert ("| 1 | 3 | 0.2000 ± 0.1000 | 0.077 | 0.0700 ± 0.0200 | 0.054 | 0.1100 ± 0.0000 | 0.0700 ± 0.0000 | "
            "19.20 ± 0.20 | 0.500 ± 0.000 | 92.00 ± 2.00 | 97.45 | 91.00 ± 2.00 | 98.00 ± 0.00 |") in text
    assert ("| 2 | 1 | 0.5000 | 0.084 | 0.2500 | 0.056 | 0.1100 | 0.0700 | 15.00 | 0.500 | 50.00 | 95.69 | 49.00 | "
            "98.00 |") in text
    assert text.count("Table 2, mnist") == 2 and "| 1 | 1 | 0.9000 |" in text  # the other budget apart
    # NoPeek alpha 5: accuracy (0.90, 0.94) -> 0.92 ± 0.0283 (sd = 0.04 / sqrt 2); dCor 0.6 ± 0.1414
    assert "| 5 | 2 | 0.9200 ± 0.0283 | 0.6000 ± 0.1414 | 0.0450 ± 0.0071 | 0.1000 ± 0.0000 |" in text
    # FSHA level 4: final validation 0.6 ± 0.1414, held-out 0.5 ± 0.3536, 0.5 s/step
    assert "| mnist | 4 | 4x4x256 | 2 | 0.6000 ± 0.1414 | 0.5000 ± 0.3536 | 0.500 ± 0.000 |" in text
    assert "Failed cells" in text
    assert all(p.is_absolute() and p.exists() for p in written)
    assert sorted(p.suffix for p in written).count(".png") == 4  # two Table 2 groups, NoPeek, FSHA

"""The one-call GPU acceptance driver (benchmarks/device/acceptance.py): its jobs as cells of the sweep runner
(splitnn.sweeps, on a Dask LocalCluster), with stand-in jobs.

The real jobs are the JAX benchmarks, checked against the TensorFlow classes in tests/test_*_jax.py; here every
job is a few lines of Python that writes what a benchmark writes and exits the way a benchmark can exit
(complete, stopped at its time limit, hung past the budget, crashed).
"""
import importlib.util
import json
import os
import re
import sys
import tarfile
import textwrap
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_driver(monkeypatch):
    # a script, not a package module: loaded by path (and registered, as its dataclass and Dask's pickling need)
    spec = importlib.util.spec_from_file_location("acceptance", REPO / "benchmarks" / "device" / "acceptance.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "acceptance", mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def acceptance(monkeypatch):
    mod = load_driver(monkeypatch)
    # The environment probe imports JAX and Keras in a child process: seconds on a busy CPU, which would come out
    # of these tests' 22-s budgets before any job starts. It has a test of its own (below).
    monkeypatch.setattr(mod, "environment_line", lambda env: "keras (stub) on jax, devices [stub]")
    return mod


def test_environment_line_names_keras_jax_and_the_devices(monkeypatch):
    line = load_driver(monkeypatch).environment_line(dict(os.environ, KERAS_BACKEND="jax"))
    assert line.startswith("keras 3.") and " on jax, jax " in line and "devices [" in line, line


def script(code):
    return [sys.executable, "-c", textwrap.dedent(code)]


def fake_jobs(mod, work):
    fsha_json = {"iterations": 10_000, "validation": [0.9, 0.021], "target": 0.03, "seconds_per_step": 0.0125,
                 "step_over_bare": 1.5, "score_attack_heldout": 0.02, "machine": "cuda:0", "backend": "jax"}
    return [
        mod.Job("fsha", 3, script(f"""
            import json, pathlib
            pathlib.Path({str(work / 'fsha')!r}, 'fsha_mnist.json').write_text(json.dumps({fsha_json!r}))
            """), work / "fsha", "validation <= 0.03"),
        mod.Job("fsha_dc", 5, script("""
            print('log--50%-0005000] validation: 0.0400', flush=True)
            raise SystemExit(3)
            """), work / "fsha_dc", "validation <= 0.035"),
        mod.Job("clientside", 6, script("import time; time.sleep(120)"), work / "clientside", "rate >= 0.8"),
        mod.Job("unsplit", 4, script("raise RuntimeError('no GPU kernels for this')"), work / "unsplit", "< 3x"),
    ]


def test_statuses_summary_and_rerun(acceptance, tmp_path, monkeypatch, capsys):
    work, out = tmp_path / "work", tmp_path / "out"
    monkeypatch.setattr(acceptance, "job_specs", lambda args, w: [j for j in fake_jobs(acceptance, w)
                                                                  if j.name in args.only])
    side_by_side = ["--groups", "fsha,fsha_dc,clientside,unsplit"]
    rc = acceptance.main(["--budget", "22", "--reserve", "3", "--work", str(work), "--out", str(out)] + side_by_side)
    assert rc == 1  # one job crashed
    summary = json.loads((out / "summary.json").read_text())["jobs"]
    assert {k: v["status"] for k, v in summary.items()} == {
        "fsha": "complete", "fsha_dc": "stopped", "clientside": "killed", "unsplit": "failed"}
    assert summary["fsha"]["met"] is True and summary["fsha"]["final_validation"] == 0.021
    assert summary["clientside"]["seconds"] < 22
    text = (out / "summary.txt").read_text()
    assert "validation 0.0210 at 10000 it (MEETS <= 0.03)" in text
    assert "last progress: log--50%-0005000] validation: 0.0400" in text
    printed = capsys.readouterr().out
    assert "RuntimeError: no GPU kernels for this" in printed  # a failed job's log tail is printed
    with tarfile.open(out / "acceptance.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"fsha/fsha_mnist.json", "fsha/fsha.log", "unsplit/unsplit.log"} <= names
    # one record, the completed job's; the stopped, killed and failed ones only leave the sweep's failure records
    assert records(work) == ["acceptance_fsha"]
    assert sorted(p.name.split("-")[0] for p in (work / "records" / "failed").glob("*.json")) == [
        "acceptance_clientside", "acceptance_fsha_dc", "acceptance_unsplit"]

    # the next call skips the completed job and reruns the others (here: only the stopped one)
    rc = acceptance.main(["--budget", "22", "--reserve", "3", "--only", "fsha,fsha_dc", "--work", str(work),
                          "--out", str(out)] + side_by_side)
    assert rc == 3
    assert "[fsha] completed in an earlier call" in capsys.readouterr().out
    jobs = json.loads((out / "summary.json").read_text())["jobs"]
    assert jobs["fsha"]["status"] == "complete" and jobs["fsha_dc"]["status"] == "stopped"
    assert jobs["fsha"]["final_validation"] == 0.021  # the figures, from the earlier call's record
    assert records(work) == ["acceptance_fsha"]


def records(work):
    return sorted(json.loads(p.read_text())["cell"]["attack"] for p in (work / "records").glob("*.json"))


def test_a_job_stopped_at_the_budget_is_continued_not_skipped(acceptance, tmp_path, monkeypatch):
    """A stand-in training job that checkpoints: the first call stops it at its time limit (exit 3), the next call
    runs it again with a new --max-seconds, and it completes from its checkpoint."""
    work, out = tmp_path / "work", tmp_path / "out"
    ckpt = work / "ckpt.txt"
    job = acceptance.Job("fsha", 3, script(f"""
        import pathlib, sys
        ckpt = pathlib.Path({str(ckpt)!r})
        done = int(ckpt.read_text()) if ckpt.exists() else 0
        ckpt.write_text(str(done + 1))
        print('max-seconds', sys.argv[sys.argv.index('--max-seconds') + 1], 'resumed from', done, flush=True)
        raise SystemExit(0 if done else 3)
        """), work / "fsha", "validation <= 0.03", ckpt)
    monkeypatch.setattr(acceptance, "job_specs", lambda args, w: [job])
    call = ["--budget", "60", "--reserve", "3", "--only", "fsha", "--work", str(work), "--out", str(out)]
    assert acceptance.main(call) == 3 and records(work) == []
    assert acceptance.main(call) == 0 and records(work) == ["acceptance_fsha"]
    assert acceptance.main(call) == 0 and ckpt.read_text() == "2"  # completed: not run a third time
    log = (work / "fsha.log").read_text()
    assert "resumed from 0" in log and "resumed from 1" in log
    limits = [int(v) for v in re.findall(r"max-seconds (\d+) resumed", log)]
    assert len(limits) == 2 and all(20 < v <= 47 for v in limits), limits  # from the time left: 60 - 10 - 3 - ...


def test_groups_run_in_order_and_later_ones_wait_for_the_budget(acceptance, tmp_path, monkeypatch, capsys):
    work, out = tmp_path / "work", tmp_path / "out"
    monkeypatch.setattr(acceptance, "job_specs", lambda args, w: fake_jobs(acceptance, w))
    # default order: unsplit alone, then fsha with clientside (which hangs until the budget), then fsha_dc
    rc = acceptance.main(["--budget", "24", "--reserve", "3", "--work", str(work), "--out", str(out)])
    assert rc == 1
    jobs = json.loads((out / "summary.json").read_text())["jobs"]
    assert [jobs[n]["status"] for n in ("unsplit", "fsha", "clientside", "fsha_dc")] == [
        "failed", "complete", "killed", "not run"]
    assert "[fsha_dc] not started: the budget is spent" in capsys.readouterr().out


def test_acceptance_configuration(acceptance, tmp_path):
    args = type("A", (), {"smoke": False, "budget": 540.0, "reserve": 75.0, "precision": "default",
                          "only": list(acceptance.JOBS)})()
    jobs = {j.name: acceptance.launch_argv(j, 500.0, 75.0) for j in acceptance.job_specs(args, tmp_path)}

    def opt(argv, flag):
        return argv[argv.index(flag) + 1]

    for name in ("fsha", "fsha_dc"):
        assert opt(jobs[name], "--iterations") == "10000" and opt(jobs[name], "--max-seconds") == "425"
    # the package's own FSHA benchmarks (the one implementation), in the notebooks' configuration
    assert jobs["fsha"][1].endswith("fsha_mnist.py") and jobs["fsha_dc"][1].endswith("fsha_distcor.py")
    for name in ("fsha", "fsha_dc"):
        assert opt(jobs[name], "--architecture") == "notebook" and opt(jobs[name], "--seed") == "0"
    # the client-side benchmark's defaults are the original configuration (5,000 iterations, 10 honest clients)
    assert "--iterations" not in jobs["clientside"] and "--honest-clients" not in jobs["clientside"]
    assert opt(jobs["clientside"], "--max-seconds") == "425"
    assert "--rounds" not in jobs["unsplit"] and "--batch" not in jobs["unsplit"]
    assert "--max-seconds" not in jobs["unsplit"]  # short; killed at the budget if it hangs
    assert acceptance.parse_groups(acceptance.DEFAULT_GROUPS, list(acceptance.JOBS)) == [
        ["unsplit"], ["fsha", "clientside"], ["fsha_dc"]]
    assert acceptance.parse_groups(acceptance.DEFAULT_GROUPS, ["fsha_dc", "unsplit"]) == [["unsplit"], ["fsha_dc"]]


@pytest.mark.parametrize("argv, message", [
    (["--only", "fsha,gan"], "unknown job(s) ['gan']"),
    (["--budget", "60", "--reserve", "60"], "--reserve must be smaller than --budget"),
    (["--groups", "fsha fsha_dc,clientside"], "name each job of"),  # unsplit missing
    (["--groups", "fsha,fsha unsplit fsha_dc clientside"], "name each job of"),
    (["--groups", "unsplit fsha,clientside fsha_cd"], "unknown: fsha_cd"),
])
def test_bad_arguments(acceptance, argv, message, capsys):
    with pytest.raises(SystemExit):
        acceptance.main(argv)
    assert message in capsys.readouterr().err


def test_run_chunked_stops_at_the_time_limit():
    from splitnn.timing import run_chunked

    calls = []
    assert run_chunked(calls.append, 10, 4) == 10 and calls == [4, 4, 2]  # no limit: all steps
    calls.clear()
    # the limit is already used up: one chunk still runs (progress is always made), then it stops
    assert run_chunked(calls.append, 10, 4, max_seconds=5.0, elapsed=6.0) == 4 and calls == [4]
    calls.clear()
    assert run_chunked(calls.append, 0, 4, max_seconds=1.0) == 0 and calls == []
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        run_chunked(calls.append, 3, 0)
    with pytest.raises(ValueError, match="first_chunk must be >= 1"):
        run_chunked(calls.append, 3, 2, first_chunk=0)


def test_run_chunked_shortens_the_last_chunk_to_the_time_left(monkeypatch):
    """After the first chunk, a chunk holds only the steps that fit at the mean step time so far: a 10-s
    limit at 1 s per step stops after step 10, not at the end of the chunk it falls in."""
    from splitnn import timing

    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    calls = []

    def run(n):
        calls.append(n)
        clock[0] += 1.0 * n

    assert timing.run_chunked(run, 100, 4, max_seconds=10.0) == 10 and calls == [4, 4, 2]
    calls.clear()
    clock[0] = 0.0  # 3 s already spent (the first step, traced): 7 s left
    assert timing.run_chunked(run, 100, 4, max_seconds=10.0, elapsed=3.0, first_chunk=1) == 7
    assert calls == [1, 4, 2]


def test_a_call_that_completes_every_job_records_each_once_and_the_next_call_runs_none(acceptance, tmp_path,
                                                                                       monkeypatch, capsys):
    work, out = tmp_path / "work", tmp_path / "out"
    monkeypatch.setattr(acceptance, "job_specs", lambda args, w: [
        acceptance.Job(n, 0, script(f"print('{n} ran')"), w / n, "-") for n in acceptance.JOBS])
    call = ["--smoke", "--budget", "60", "--reserve", "3", "--work", str(work), "--out", str(out)]
    assert acceptance.main(call) == 0
    assert records(work) == sorted(f"acceptance_{n}" for n in acceptance.JOBS)  # one record per job
    assert all(json.loads(p.read_text())["results"] == {} for p in (work / "records").glob("*.json"))
    assert acceptance.main(call) == 0  # nothing left to run: every job skipped, nothing started
    printed = capsys.readouterr().out.split("acceptance call:")[-1]
    assert printed.count("completed in an earlier call") == 4 and "started" not in printed
    assert all((work / f"{n}.log").read_text().count("=== call at") == 1 for n in acceptance.JOBS)  # ran once
    assert records(work) == sorted(f"acceptance_{n}" for n in acceptance.JOBS)


def test_smoke_and_real_calls_never_share_state(acceptance, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(acceptance, "job_specs", lambda args, w: [j for j in fake_jobs(acceptance, w)
                                                                  if j.name in args.only])
    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--budget", "22", "--reserve", "3", "--only", "fsha", "--work", str(work), "--out", str(out)]
    assert acceptance.main(common + ["--smoke"]) == 0 and records(work) == ["acceptance_fsha"]
    with pytest.raises(SystemExit):  # the smoke run's record must not count as the real run
        acceptance.main(common)
    assert "holds a smoke call's state" in capsys.readouterr().err
    assert acceptance.main(common + ["--fresh"]) == 0  # a fresh real call runs the job again
    assert "completed in an earlier call" not in capsys.readouterr().out


def test_timed_resumable_run_times_the_first_step_apart():
    from splitnn.timing import timed_resumable_run

    calls, synced = [], []
    first, steps, seconds, stopped = timed_resumable_run(calls.append, 10, 4, sync=lambda: synced.append(1))
    assert calls == [1, 9] and (steps, stopped) == (9, False) and len(synced) == 2  # no limit: the rest at once
    calls.clear()
    first, steps, seconds, stopped = timed_resumable_run(calls.append, 10, 4, max_seconds=0.0)
    assert calls == [1, 3] and (steps, stopped) == (3, True)  # limit spent: one chunk (to step 4), then stop
    calls.clear()
    # resumed at global step 7 with checkpoints every 5: chunks end at steps 10, 15, 20, 25 and the last at 27
    first, steps, _, stopped = timed_resumable_run(calls.append, 20, 5, max_seconds=1e9, start=7)
    assert calls == [1, 2, 5, 5, 5, 2] and (steps, stopped) == (19, False)
    calls.clear()
    first, steps, _, stopped = timed_resumable_run(calls.append, 0, 4)
    assert (calls, first, steps, stopped) == ([], 0.0, 0, False)  # nothing left: nothing run

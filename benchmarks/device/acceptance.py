"""All GPU acceptance runs of the open issues in ONE device call (the lent H200: JAX, no TensorFlow).

    source benchmarks/device/setup.sh && python3 benchmarks/device/acceptance.py --budget 540 --out $OUT

A task that is lent a GPU gets 15 minutes of device time in all, starts included, so the four runs that need one
go in a single call, each in its own process (memory allocated on demand):

========== ================================================ ===================================== =======
job        command                                          target                                issue
========== ================================================ ===================================== =======
fsha       ``benchmarks/fsha_mnist.py``, 10,000 iterations  running-mean validation <= 0.03       #3
fsha_dc    ``benchmarks/fsha_distcor.py``, 10,000           running-mean validation <= 0.035      #5
clientside ``benchmarks/clientside_attack_jax.py``, 5,000   target-class rate >= 0.8              #6
unsplit    ``benchmarks/unsplit_speed_jax.py``              10 targets batched < 3x one image     #4
========== ================================================ ===================================== =======

Each job is a cell of the sweep runner (:mod:`splitnn.sweeps`): a Dask task that runs the job's process and returns
its figures. They run in groups, one group after the other, the jobs of a group side by side on a ``LocalCluster``
(``--groups``; default ``unsplit fsha,clientside fsha_dc``): the UnSplit timing first and alone, so that it
measures a quiet GPU; then FSHA with the light client-side run; FSHA_dc last. Processes on one GPU take turns
rather than overlap, so running the two FSHA jobs side by side would finish neither sooner, and in this order a
short budget still completes #3 first.

Every training job checkpoints under ``--work`` (``/tmp/splitnn-device``, which lives as long as the machine stays
warm, 30 s after a call) and stops itself ``--reserve`` seconds before ``--budget`` runs out (its ``--max-seconds``
is set when it starts, from what is left); a job still running at the budget is killed, and the groups not started
yet are reported as not run. A job that completed leaves its cell's record in ``--work``/records and is skipped by
the next call; one stopped or killed at the budget leaves none, so when the budget was too short the **same
command, called again at once**, continues the unfinished jobs from their checkpoints (``--only`` narrows the set).

What comes back in ``--out`` (the device tool returns at most 8 files): ``summary.txt`` (the table printed at
the end), ``summary.json`` (per job: status, the figures checked, seconds) and ``acceptance.tar.gz`` (every job's
log, JSON summary and figures). Exit status: 0 when every selected job completed, 3 when some stopped at the
budget (call again), 1 when a job failed.

``--smoke`` runs the same jobs with tiny budgets: a rehearsal on any machine (CPU included) that checks the whole
call works, in a Python with JAX, NumPy, matplotlib, Keras and Dask but no TensorFlow, before device time is spent.
It keeps its state in another folder (``/tmp/splitnn-device-smoke``), and a work folder refuses a call of the other
kind, so a rehearsal's tiny runs never count as acceptance runs.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
sys.path[:0] = [p for p in (str(REPO), str(Path(__file__).parent)) if p not in sys.path]  # splitnn; us for Dask
from splitnn.sweeps import Cell, load_records, open_client, run_sweep  # noqa: E402

JOBS = ("fsha", "fsha_dc", "clientside", "unsplit")
DEFAULT_GROUPS = "unsplit fsha,clientside fsha_dc"
EXIT_STOPPED = 3


@dataclass
class Job:
    name: str
    issue: int
    argv: list
    out: Path
    target: str
    checkpoint: Path | None = None
    log: Path | None = None
    status: str = "not run"
    seconds: float = 0.0
    result: dict = field(default_factory=dict)


def job_specs(args, work: Path) -> list[Job]:
    """The four runs, with the arguments of the acceptance configuration (tiny ones with ``--smoke``)."""
    py = sys.executable
    smoke = args.smoke
    # FSHA and FSHA_dc: the package's one implementation (the TensorFlow benchmarks' scripts) on Keras' JAX backend
    fsha_n = (["--iterations", "3", "--log-frequency", "1", "--timing-reps", "1", "--checkpoint-every", "2",
               "--heldout", "64"] if smoke else
              ["--iterations", "10000", "--log-frequency", "500", "--checkpoint-every", "1000"])
    fsha_n += ["--architecture", "notebook", "--seed", "0"]
    precision = [] if args.precision == "default" else ["--precision", args.precision]
    specs = {
        "fsha": Job("fsha", 3, [py, BENCH / "fsha_mnist.py", *fsha_n,
                                "--checkpoint-dir", work / "fsha_ckpt", "--out", work / "fsha"],
                    work / "fsha", "validation <= 0.03 after 10,000 iterations", work / "fsha_ckpt"),
        "fsha_dc": Job("fsha_dc", 5, [py, BENCH / "fsha_distcor.py", *fsha_n,
                                      "--checkpoint-dir", work / "fsha_dc_ckpt", "--out", work / "fsha_dc"],
                       work / "fsha_dc", "validation <= 0.035 after 10,000 iterations", work / "fsha_dc_ckpt"),
        "clientside": Job("clientside", 6, [
            py, BENCH / "clientside_attack_jax.py",
            *(["--iterations", "2", "--honest-clients", "2", "--batch-size", "16", "--eval-every", "1",
               "--eval-samples", "20", "--grid-samples", "3"] if smoke else []),
            *precision, "--checkpoint", work / "clientside.npz", "--out", work / "clientside"],
            work / "clientside", "target-class rate >= 0.8 after 5,000 iterations", work / "clientside.npz"),
        "unsplit": Job("unsplit", 4, [py, BENCH / "unsplit_speed_jax.py",
                                      *(["--rounds", "1", "--batch", "2", "--repeat", "1"] if smoke else []),
                                      "--json", work / "unsplit" / "unsplit_speed_jax.json"],
                       work / "unsplit", "10 targets batched < 3x the time of one image"),
    }
    return [specs[name] for name in args.only]


def launch_argv(job: Job, seconds_left: float, reserve: float) -> list[str]:
    """The job's command line; a checkpointed (training) job gets ``--max-seconds`` from the time left."""
    argv = [str(a) for a in job.argv]
    if job.checkpoint is not None:
        argv += ["--max-seconds", f"{max(1.0, seconds_left - reserve):.0f}"]
    return argv


def parse_groups(text: str, only: list[str]) -> list[list[str]]:
    """``"a b,c d"`` -> [[a], [b, c], [d]] restricted to ``only``; every job of ``only`` must appear once."""
    groups = [[n for n in g.split(",") if n] for g in text.split()]
    named = [n for g in groups for n in g]
    unknown = sorted(set(named) - set(JOBS))
    if unknown or len(named) != len(set(named)) or set(only) - set(named):
        raise ValueError(f"--groups {text!r}: name each job of {', '.join(JOBS)} once (space between groups, "
                         f"comma within one){'; unknown: ' + ', '.join(unknown) if unknown else ''}")
    return [g2 for g2 in ([n for n in g if n in only] for g in groups) if g2]


def read_result(job: Job, smoke: bool) -> dict:
    """The figures a job's JSON holds that its issue checks, and whether they meet the target."""
    if job.name in ("fsha", "fsha_dc"):
        path = job.out / ("fsha_distcor.json" if job.name == "fsha_dc" else "fsha_mnist.json")
        if not path.exists():
            return {}
        s = json.loads(path.read_text())
        final = s["validation"][-1] if s["validation"] else None
        step_s = s.get("seconds_per_step")
        return {"iterations": s["iterations"], "final_validation": final, "target": s["target"],
                "met": None if smoke or final is None or s["iterations"] < 10_000 else final <= s["target"],
                "steps_per_s": 1.0 / step_s if step_s else None, "step_over_bare": s.get("step_over_bare"),
                "score_attack_heldout": s["score_attack_heldout"], "device": s["machine"],
                "backend": s.get("backend"), "acceptance": s.get("acceptance")}
    if job.name == "clientside":
        paths = sorted(job.out.glob("summary_target*.json"))
        if not paths:
            return {}
        s = json.loads(paths[0].read_text())
        rate = s["final_target_rate"]
        return {"iterations": s["iterations_done"], "final_target_rate": rate, "target": 0.8,
                "met": None if smoke or not s["complete"] else rate >= 0.8,
                "it_per_s": s["it_per_s"], "steady_it_per_s": s["steady_it_per_s_this_process"],
                "device": s["device"]}
    path = job.out / "unsplit_speed_jax.json"
    if not path.exists():
        return {}
    s = json.loads(path.read_text())
    return {"batched_over_single": s["batched_over_single"], "target": 3.0,
            "met": None if smoke else s["requirement_met"], "sec_per_image": s["sec_per_image_extrapolated"],
            "batch": s["batch"], "device": s["device"]}


def last_progress(log: Path) -> str:
    """The last progress line a job printed (for a job that stopped before writing its summary)."""
    if not log or not log.exists():
        return ""
    lines = [s.strip() for s in log.read_text(errors="replace").splitlines()
             if "validation:" in s or s.lstrip().startswith("iteration")]
    return lines[-1] if lines else ""


def describe(job: Job) -> str:
    r = job.result
    if not r:
        progress = last_progress(job.log)
        return f"no summary yet; last progress: {progress}" if progress else "no result"
    verdict = {True: "MEETS", False: "MISSES", None: "not checked"}[r.get("met")]
    if job.name in ("fsha", "fsha_dc"):
        v = r["final_validation"]
        bare = f", step/bare {r['step_over_bare']:.2f}" if r.get("step_over_bare") else ""
        speed = (f"{r['steps_per_s']:.1f} steps/s{bare}" if r["steps_per_s"]
                 else "speed measured in an earlier call")
        return (f"validation {v:.4f} at {r['iterations']} it ({verdict} <= {r['target']}); {speed}, "
                f"held-out scoreAttack {r['score_attack_heldout']:.4f}")
    if job.name == "clientside":
        ips = r["steady_it_per_s"] or r["it_per_s"]
        return (f"target rate {r['final_target_rate']:.3f} at {r['iterations']} it ({verdict} >= 0.8)"
                + (f"; {ips:.2f} it/s" if ips else ""))
    return (f"{r['batch']} batched / 1 = {r['batched_over_single']:.2f}x ({verdict} < 3x); "
            f"{r['sec_per_image']:.1f} s per image")


def environment_line(env: dict) -> str:
    """Keras, JAX and the devices, read in a child process: the driver itself never opens the GPU, which would
    hold memory and a context beside the jobs for the whole call."""
    code = ("import jax, keras; print(f'keras {keras.__version__} on {keras.backend.backend()}, jax {jax.__version__}, "
            "devices {jax.devices()}')")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "environment check timed out"
    if out.returncode != 0:  # reported; the jobs then fail with the details
        return f"environment check failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}"
    return out.stdout.strip()


class Stopped(Exception):
    """Stopped at ``--max-seconds`` or killed at the budget: no record, the next call continues the job."""


def run_job(cell: dict, jobs: dict, deadline: float, reserve: float, env: dict, smoke: bool) -> dict:
    """A cell's task (in a Dask worker): the job's process, with ``--max-seconds`` from the time left when it
    starts, killed at ``deadline`` (``time.time()``). Returns its figures when it completed; raises otherwise."""
    job = jobs[cell["attack"].removeprefix("acceptance_")]
    argv = launch_argv(job, deadline - time.time(), reserve)
    with open(job.log, "a") as log:
        log.write(f"\n=== call at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise Stopped("killed") from None
    if rc == EXIT_STOPPED:
        raise Stopped("stopped")
    if rc != 0:
        raise RuntimeError(f"exit {rc}")
    return read_result(job, smoke)


def finish(job: Job, rec: dict, smoke: bool):
    """Take a job's status, seconds and figures from its cell's record (written, or reported failed)."""
    err = (rec["errors"] or [{}])[-1]
    error = err.get("error", "?")
    if rec["status"] == "ok":
        job.status, job.seconds, job.result = "complete", rec["cell_seconds"], rec["results"]
    else:
        job.status = error.split(": ", 1)[1] if error.startswith("Stopped: ") else "failed"
        job.seconds, job.result = err.get("seconds") or 0.0, read_result(job, smoke)
    state = {"complete": "completed", "stopped": "stopped at its time limit (call again to continue)",
             "killed": "killed at the budget (call again to continue)"}.get(job.status, f"FAILED ({error})")
    print(f"[{job.name}] {state} after {job.seconds:.0f} s: {describe(job)}", flush=True)
    if job.status == "failed" and job.log.exists():
        print("".join(job.log.read_text().splitlines(True)[-25:]), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole call")
    p.add_argument("--reserve", type=float, default=75.0,
                   help="seconds kept for the jobs' final evaluation, figures and the packing (they stop "
                        "training this long before the budget)")
    p.add_argument("--only", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    p.add_argument("--groups", default=DEFAULT_GROUPS,
                   help="run order: groups one after the other (separated by spaces), the jobs of a group side by "
                        f"side (separated by commas); default {DEFAULT_GROUPS!r}")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/device")))
    p.add_argument("--work", type=Path, default=None,
                   help="checkpoints, logs, per-job outputs and the completed jobs' records, kept while the machine "
                        "stays warm (default /tmp/splitnn-device, /tmp/splitnn-device-smoke with --smoke)")
    p.add_argument("--precision", choices=["default", "high", "highest"], default="default",
                   help="jax_default_matmul_precision for the training jobs (default: the backend's, TF32 on "
                        "recent GPUs, as TensorFlow's GPU default)")
    p.add_argument("--smoke", action="store_true", help="tiny budgets: a rehearsal of the call on any machine")
    p.add_argument("--fresh", action="store_true", help="delete --work first (start every job from scratch)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(JOBS))
    if unknown or not args.only:
        p.error(f"--only: unknown job(s) {unknown}; choose from {', '.join(JOBS)}")
    if args.reserve >= args.budget:
        p.error("--reserve must be smaller than --budget")
    try:
        groups = parse_groups(args.groups, args.only)
    except ValueError as exc:
        p.error(str(exc))

    if args.work is None:
        args.work = Path("/tmp/splitnn-device-smoke" if args.smoke else "/tmp/splitnn-device")

    t_start = time.time()
    deadline = t_start + args.budget - 10.0  # leave time to pack what exists
    if args.fresh and args.work.exists():
        import shutil

        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    # a smoke rehearsal's checkpoints and records must never stand in for the real runs (and vice versa)
    mode, marker = ("smoke" if args.smoke else "acceptance"), args.work / "MODE"
    if marker.exists() and marker.read_text().strip() != mode:
        p.error(f"{args.work} holds a {marker.read_text().strip()} call's state, not an {mode} one: use another "
                "--work or --fresh")
    marker.write_text(mode + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1",
               XLA_PYTHON_CLIENT_PREALLOCATE="false")  # jobs side by side share the GPU
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), str(REPO), env.get("PYTHONPATH")]))
    environment = environment_line(env)
    print(f"acceptance call: jobs {', '.join(args.only)}; budget {args.budget:.0f} s"
          f"{' (SMOKE: tiny budgets, no verdicts)' if args.smoke else ''}; {environment}", flush=True)
    jobs = {job.name: job for job in job_specs(args, args.work)}
    records = args.work / "records"
    done = {rec["id"]: rec for rec in load_records(records)} if records.is_dir() else {}
    # a job is a cell (the same job in the same mode: the same id and record file) whose task runs it (run_job)
    cells = {n: Cell(f"acceptance_{n}", "mnist", 0, 0, {"smoke": args.smoke}, {}) for n in jobs}
    for job in jobs.values():
        job.out.mkdir(parents=True, exist_ok=True)
        job.log = args.work / f"{job.name}.log"
        if cells[job.name].id in done:
            job.status, job.result = "complete", done[cells[job.name].id]["results"]
            print(f"[{job.name}] completed in an earlier call: {describe(job)}", flush=True)
    groups = [g for g in ([n for n in group if jobs[n].status != "complete"] for group in groups) if g]
    if groups:
        runner = functools.partial(run_job, jobs=jobs, deadline=deadline, reserve=args.reserve, env=env,
                                   smoke=args.smoke)
        by_id = {cells[n].id: jobs[n] for n in jobs}
        with open_client(workers=max(map(len, groups))) as client:
            for group in groups:
                if time.time() > deadline - args.reserve:
                    for name in group:
                        print(f"[{name}] not started: the budget is spent (call again)", flush=True)
                    continue
                print("\n".join(f"[{n}] started (issue #{jobs[n].issue}: {jobs[n].target})" for n in group), flush=True)
                run_sweep([cells[n] for n in group], records, client=client, attempts=1, runner=runner, log=None,
                          progress=False, on_record=lambda rec, _: finish(by_id[rec["id"]], rec, args.smoke))
    jobs = list(jobs.values())

    lines = [f"{'job':<11}{'issue':>6}  {'status':<10} {'seconds':>8}  result"]
    summary = {"budget_s": args.budget, "smoke": args.smoke, "environment": environment, "jobs": {}}
    for job in jobs:
        lines.append(f"{job.name:<11}{'#' + str(job.issue):>6}  {job.status:<10} {job.seconds:>8.0f}  "
                     f"{describe(job)}")
        summary["jobs"][job.name] = {"issue": job.issue, "status": job.status, "seconds": job.seconds,
                                     "target": job.target, **job.result}
    lines.append(f"call took {time.time() - t_start:.0f} s of its {args.budget:.0f} s budget")
    text = "\n".join(lines)
    print("\n" + text, flush=True)
    (args.out / "summary.txt").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    with tarfile.open(args.out / "acceptance.tar.gz", "w:gz") as tar:
        for job in jobs:
            if job.log is not None and job.log.exists():
                tar.add(job.log, arcname=f"{job.name}/{job.log.name}")
            for f in sorted(job.out.glob("*")):
                if f.suffix in (".json", ".png", ".txt"):
                    tar.add(f, arcname=f"{job.name}/{f.name}")
    statuses = {job.status for job in jobs}
    return 1 if "failed" in statuses else EXIT_STOPPED if statuses - {"complete"} else 0


if __name__ == "__main__":
    sys.exit(main())

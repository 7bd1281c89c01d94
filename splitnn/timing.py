"""Timing helpers for the benchmarks: ratios measured in one run, under the same load."""
from __future__ import annotations

import time


def time_round_robin(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Seconds per call of each zero-argument callable ``{name: fn}``.

    The callables must block until their result exists. They are called in turn ``repeats`` times (after
    ``warmup`` untimed calls each), so load from other processes affects all of them alike; returns
    ``{name: [seconds, ...]}``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def run_chunked(run, total: int, chunk: int, max_seconds: float | None = None, elapsed: float = 0.0) -> int:
    """Call ``run(n)`` until ``total`` steps are done, ``chunk`` steps at a time, stopping early once more than
    ``max_seconds`` have passed (``elapsed`` seconds already spent count too). Returns the steps done.

    For long runs that checkpoint inside ``run``: a run cut by the time limit continues from its checkpoint in
    the next process, which is how the benchmarks fit into a session's or a device call's time limit.
    """
    if chunk < 1:
        raise ValueError(f'chunk must be >= 1, got {chunk}')
    t0 = time.perf_counter()
    done = 0
    while done < total:
        if max_seconds is not None and done and elapsed + time.perf_counter() - t0 > max_seconds:
            break
        n = min(chunk, total - done)
        run(n)
        done += n
    return done


def timed_resumable_run(run, total: int, chunk: int, max_seconds: float | None = None, sync=None):
    """The benchmarks' training loop: the first of ``total`` steps alone (it includes tracing or compilation,
    timed apart), the rest through :func:`run_chunked` (``chunk`` at a time when ``max_seconds`` is set, else at
    once). ``sync()`` blocks until queued work is done (JAX). Returns ``(first_s, steps, steps_s, stopped)``:
    the steps after the first, their seconds, and whether the time limit cut the run short."""
    sync = sync or (lambda: None)
    first = 0.0
    if total:
        t0 = time.perf_counter()
        run(1)
        sync()
        first = time.perf_counter() - t0
        total -= 1
    t0 = time.perf_counter()
    steps = run_chunked(run, total, max(1, total if max_seconds is None else chunk), max_seconds, elapsed=first)
    sync()
    return first, steps, time.perf_counter() - t0, steps < total

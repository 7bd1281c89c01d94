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


def run_chunked(run, total: int, chunk: int, max_seconds: float | None = None, elapsed: float = 0.0,
                first_chunk: int | None = None) -> int:
    """Call ``run(n)`` until ``total`` steps are done, ``chunk`` steps at a time (``first_chunk`` for the first
    call, so that later chunks can end on a checkpoint boundary), within ``max_seconds`` (``elapsed`` seconds
    already spent count too). Returns the steps done.

    For long runs that checkpoint at the end of each ``run``: a run cut by the time limit continues from its
    checkpoint in the next process, which is how the benchmarks fit into a session's or a device call's time
    limit. The first chunk always runs (progress is always made); after it, a chunk is shortened to the steps
    that fit in the time left at the mean step time so far (checkpoint writes included), so a run stops about
    as close to the limit as its step time is steady, not up to a chunk past it (250 CPU steps of 6 s: 25 min).
    """
    if chunk < 1:
        raise ValueError(f'chunk must be >= 1, got {chunk}')
    if first_chunk is not None and first_chunk < 1:
        raise ValueError(f'first_chunk must be >= 1, got {first_chunk}')
    t0 = time.perf_counter()
    done = 0
    while done < total:
        n = min(first_chunk if first_chunk is not None and not done else chunk, total - done)
        if max_seconds is not None and done:
            spent = time.perf_counter() - t0
            n = min(n, int((max_seconds - elapsed - spent) // max(spent / done, 1e-9)))
            if n < 1:
                break
        run(n)
        done += n
    return done


def timed_resumable_run(run, total: int, chunk: int, max_seconds: float | None = None, sync=None,
                        start: int = 0):
    """The benchmarks' training loop: the first of ``total`` steps alone (it includes tracing or compilation,
    timed apart), the rest through :func:`run_chunked` (``chunk`` at a time when ``max_seconds`` is set, else at
    once). ``start`` is the global step the run resumes at: chunks end on multiples of ``chunk`` counted from
    step 0, where the checkpoints are, so a chunk's closing checkpoint is not written twice under two numbers.
    ``sync()`` blocks until queued work is done (JAX). Returns ``(first_s, steps, steps_s, stopped)``: the
    steps after the first, their seconds, and whether the time limit cut the run short."""
    sync = sync or (lambda: None)
    first = 0.0
    if total:
        t0 = time.perf_counter()
        run(1)
        sync()
        first = time.perf_counter() - t0
        total -= 1
    size = max(1, total if max_seconds is None else chunk)
    first_chunk = None if max_seconds is None else chunk - (start + 1) % chunk
    t0 = time.perf_counter()
    steps = run_chunked(run, total, size, max_seconds, elapsed=first, first_chunk=first_chunk)
    sync()
    return first, steps, time.perf_counter() - t0, steps < total

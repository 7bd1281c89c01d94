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

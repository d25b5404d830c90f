"""Timing shared by the benchmarks: variants in interleaved rounds, in one process.

The machines here are shared and noisy, so each benchmark times every variant once per round, in
an order that rotates, and quotes medians and ratios of the per-round times.
"""

from __future__ import annotations

import time

import jax


def block(tree):
    """Wait for every array in ``tree`` (JAX dispatches asynchronously); returns ``tree``."""
    return jax.block_until_ready(tree)


def timed_rounds(fns: dict, rounds: int, reps: int | dict = 1) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument function, one list entry per round; the order rotates
    each round. ``reps``: calls per timing, one number or one per function."""
    names, times = list(fns), {n: [] for n in fns}
    for r in range(rounds if names else 0):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            n = reps[name] if isinstance(reps, dict) else reps
            t0 = time.perf_counter()
            for _ in range(n):
                out = fns[name]()
            block(out)
            times[name].append((time.perf_counter() - t0) / n)
    return times

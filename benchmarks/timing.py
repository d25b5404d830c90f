"""Timing shared by the benchmarks: variants in interleaved rounds, in one process; and the random
classification problem and the agreement measure the CNN and K-FAC benchmarks share.

The machines here are shared and noisy, so each benchmark times every variant once per round, in
an order that rotates, and quotes medians and ratios of the per-round times.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


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


def problem(net, batch: int, dtype=jnp.float32, seed: int = 0, classes: int = 10):
    """Params, inputs ``(batch, *input_shape)`` ``N(0, 1)`` and integer labels in ``[0, classes)``
    (from NumPy: nothing small to compile)."""
    params = net.init(jax.random.key(seed), dtype)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, *net.input_shape)), dtype)
    labels = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)
    return params, x, labels


def max_rel(a, b) -> float:
    """``max |a - b| / max(max |a|, max |b|)`` (fb.compare's definition) over every leaf of two
    pytrees (or two arrays), in NumPy float64."""
    a = np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in jax.tree.leaves(a)])
    b = np.concatenate([np.ravel(np.asarray(t, np.float64)) for t in jax.tree.leaves(b)])
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300))

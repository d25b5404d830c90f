"""``bench_lm.py --gpu``: one Levenberg-Marquardt call with ``max_steps=1`` at P = 1e4, 1e5, 1e6
(N = 8192 synthetic regression), each case in its own process so that its peak device memory is its
own; ``--quick`` runs tiny sizes in one process (a CPU smoke run).

    python benchmarks/lm_gpu.py '<json list of cases>'   # the child process bench_gpu starts
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from timing import block, timed_rounds

import fbackprop as fb

GPU_N, GPU_QUICK_N = 8192, 64
GPU_CASES = [(10_000, "dense"), (10_000, "accumulate"), (100_000, "cg"), (100_000, "dual"), (1_000_000, "cg")]
GPU_QUICK_P = {10_000: 300, 100_000: 1_000, 1_000_000: 3_000}
GPU_CASE_TIMEOUT_S = 1800


def _g(v, fmt):
    return "—" if v is None else format(v, fmt)


def gpu_problem(P: int, N: int, dtype, seed: int = 0):
    """16 inputs, two tanh layers of width h (P = h^2 + 19 h + 1 closest to ``P``); smooth targets."""
    n_in = 16
    h = min(range(1, 2000), key=lambda h: abs(h * h + (n_in + 3) * h + 1 - P))
    net = fb.mlp([n_in, h, h, 1], activation="tanh")
    kx, kw, kp = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (N, n_in), dtype)
    y = jnp.sin(x @ jax.random.normal(kw, (n_in, 1), dtype))
    return net, net.init(kp, dtype), x, y


def gpu_case(spec: dict) -> dict:
    """One LM call with ``max_steps=1`` at one size: ms per call (median), first call, peak memory."""
    dtype = jnp.dtype(spec["dtype"])
    net, params, x, y = gpu_problem(spec["P"], spec["N"], dtype)
    step = lambda: fb.levenberg_marquardt(
        net, params, x, y, solver=spec["solver"], max_steps=1, cg_maxiter=spec["cg_maxiter"]
    )
    t0 = time.perf_counter()
    r = block(step())
    first = time.perf_counter() - t0
    times = timed_rounds({"s": lambda: step().params}, spec["rounds"])["s"]
    stats = jax.devices()[0].memory_stats() or {}
    return {
        **spec,
        "P_actual": net.n_params,
        "ms_per_step": 1e3 * statistics.median(times),
        "first_call_s": first,
        "accepted": bool(r.history.accepted[1] == 1),
        "loss_before": float(r.history.loss[0]),
        "loss_after": float(r.history.loss[1]),
        "peak_bytes": stats.get("peak_bytes_in_use"),
        "device": str(jax.devices()[0].device_kind),
    }


def bench_gpu(quick: bool, rounds: int, dtype: str, cg_maxiter: int) -> list[dict]:
    """Each case in a fresh process, so that ``peak_bytes_in_use`` is that case's own peak (``--quick``:
    all in one process, a smoke run of the same path)."""
    specs = [
        {
            "P": GPU_QUICK_P[P] if quick else P,
            "solver": solver,
            "N": GPU_QUICK_N if quick else GPU_N,
            "dtype": dtype,
            "rounds": rounds,
            "cg_maxiter": cg_maxiter,
        }
        for P, solver in GPU_CASES
    ]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    rows = []
    for group in [specs] if quick else [[spec] for spec in specs]:
        try:
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), json.dumps(group)],
                capture_output=True,
                text=True,
                env=env,
                timeout=GPU_CASE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            rows += [{**spec, "error": f"over {GPU_CASE_TIMEOUT_S} s"} for spec in group]
            continue
        if proc.returncode == 0:
            rows += json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            error = (
                proc.stderr.strip().splitlines()[-1]
                if proc.stderr.strip()
                else f"exit status {proc.returncode}"
            )
            rows += [{**spec, "error": error} for spec in group]
        print("\n".join(gpu_table(rows[-len(group) :]).splitlines()[1:]), flush=True)
    return rows


def gpu_table(rows: list[dict]) -> str:
    lines = [
        f"{'P':>9s} {'solver':10s} {'N':>6s} {'dtype':8s} {'ms/step':>9s} {'first s':>8s} {'peak MiB':>9s}  "
        "note"
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"{r['P']:>9,d} {r['solver']:10s} {r['N']:>6d} {r['dtype']:8s} {'—':>9s} {'—':>8s} "
                f"{'—':>9s}  {r['error']}"
            )
            continue
        peak = None if r["peak_bytes"] is None else r["peak_bytes"] / 2**20
        lines.append(
            f"{r['P_actual']:>9,d} {r['solver']:10s} {r['N']:>6d} {r['dtype']:8s} {r['ms_per_step']:>9.2f} "
            f"{r['first_call_s']:>8.2f} {_g(peak, '.0f'):>9s}  {'accepted' if r['accepted'] else 'rejected'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # child process of bench_gpu
    jax.config.update("jax_enable_x64", True)
    print(json.dumps([gpu_case(spec) for spec in json.loads(sys.argv[1])]))

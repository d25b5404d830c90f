"""Levenberg-Marquardt: fbackprop's ``fb.levenberg_marquardt`` against scipy's MINPACK
(``least_squares(method="lm")``), optimistix's and jaxopt's ``LevenbergMarquardt``, float64, every
solver from the same initial params. Variants run side by side in one process, in interleaved
rounds; the table gives medians.

    python benchmarks/bench_lm.py [--quick] [--rounds 5] [--blas-threads 1] [--gpu] [--out runs/bench_lm]

Problems (tanh hidden layers, linear output, squared error; SSE = sum of squared residuals;
params from ``net.init(key(0))``, one flat vector for every solver): sine, 1-10-1 (P = 31) on
``fb.data.sine(200)``; parity3, 3-3-1 (P = 16) on ``fb.data.parity(3, coding="bipolar")``
(8 patterns); peaks, 2-30-30-1 (P = 1051) on ``fb.data.peaks(30)`` (900 points, fewer residuals
than params). ``--quick`` (a smoke run, seconds): parity3, and peaks at toy size (2-8-8-1 on an
8 x 8 grid, P = 105 > M = 64) with fbackprop only; two fbackprop variants and one per library.

Solvers. fbackprop: solver dense / auto (what it resolves to is shown) / accumulate and cg
(peaks), damping marquardt / nielsen, other settings default (the default row is auto + marquardt).
scipy: MINPACK ``lmder`` with the jitted ``jax.jacfwd`` Jacobian (``jacrev`` where M < P), and
with its own finite differences where P <= 200 (a Jacobian costs P residual calls); MINPACK needs
M >= P, so parity3 and peaks get zero residuals appended, which change neither the SSE nor the
steps. optimistix: ``optx.least_squares`` with ``LevenbergMarquardt`` (QR, its default; and
``lineax.Normal(Cholesky())``), ``options={"jac": "bwd"}`` where M < P. jaxopt: its default
(matrix-free CG) and ``solver="cholesky", materialize_jac=True``. Tolerances are tight (1e-15 for
scipy, 1e-12 for the others' gradient / step tests) so the budget, not a tolerance, ends a run
that is still making progress.

Every library's solve is timed as one jitted function of the start (for fbackprop ``jax.jit`` around
``fb.levenberg_marquardt``, whose checks read static shapes, so they run once, at tracing; called
directly, without the outer jit, it adds ~0.2 ms of Python-side checks and dispatch per call).

Method. Long run: each solver runs once from theta0 with a generous budget (trial steps: 500
sine, 200 parity3, 100 peaks); it gives ``iters`` (trials as the library counts them: fbackprop
and jaxopt one per damped solve, scipy its residual calls after the first, optimistix its steps,
whose first only evaluates the start), the final SSE and s/iter (long-run time over iters).
Time to target: the wall time of a call that starts at theta0 and stops as soon as the SSE is
<= 1e-3 x SSE(theta0), ``iters→tgt`` its trials:
- fbackprop: the same compiled program with ``goal`` = the target (a traced argument, checked
  after every trial; no recompile); its history gives the iteration where the target is first met.
- scipy: the residual callback raises once a trial point reaches the target (MINPACK then
  accepts it: the decrease is far above its 1e-4 gain-ratio test).
- optimistix: exposes the per-step loss only through its ``verbose`` hook. One recording run (a
  ``jax.debug.callback`` there; not timed) gives the first step k* whose accepted loss meets the
  target; then ``optx.least_squares(max_steps=k*)`` (``max_steps`` must be a Python int: compiled
  once for k*) is timed, and checked to reach the target.
- jaxopt: ``run`` is ``init_state`` and then ``update`` until ``maxiter``; one recording run (a
  ``lax.scan`` of ``update``, untimed) gives k*; ``maxiter`` may be traced, so the long run and
  ``run(maxiter=k*)`` share one compiled program.
Compile: the first call of the time-to-target program minus the median of its timed calls
(the long-run program's where the target is out of reach; scipy: jitting the residual and
Jacobian). Rounds rotate the order; peaks runs its long runs once, and an entry whose first call
took over 20 s is timed in one round. ``--blas-threads`` (default 1, via threadpoolctl) caps the
OpenBLAS that JAX's CPU Cholesky / QR / LU call (scipy's): on this shared 2-core machine its
spinning threads make a 1051 x 1051 Cholesky 30x slower; MINPACK uses no BLAS.
Targets (CPU): peaks time-to-target <= 0.5 s and s/iter <= 0.05 for fbackprop's best variant;
on sine and parity3 fbackprop's best time-to-target no slower than the best library's.

``--gpu``: N = 8192 synthetic regression (16 inputs, two tanh layers sized for P), one
``levenberg_marquardt(max_steps=1)`` call (linearize, one damped solve, the trial loss, and the
linearization at the new point if accepted) at P = 1e4 (dense, accumulate), 1e5 (cg, dual) and
1e6 (cg); ms per call and peak device memory, each case in its own process so that the peak is
its own. With ``--quick`` the sizes are tiny (a CPU smoke run; no memory stats on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from lm_entries import SLOW_S, TARGET, Problem, available_libraries, entries_for, make_problems, residual_fn
from timing import block, timed_rounds

import fbackprop as fb
from fbackprop.optim.solvers import spd_solve

jax.config.update("jax_enable_x64", True)

GPU_N, GPU_QUICK_N = 8192, 64
GPU_CASES = [(10_000, "dense"), (10_000, "accumulate"), (100_000, "cg"), (100_000, "dual"), (1_000_000, "cg")]
GPU_QUICK_P = {10_000: 300, 100_000: 1_000, 1_000_000: 3_000}
GPU_CASE_TIMEOUT_S = 1800
TARGETS = {"peaks_time_to_target_s": 0.5, "peaks_s_per_iter": 0.05}


def limit_blas_threads(n: int) -> list[dict]:
    """Cap the threads of the loaded BLAS libraries (JAX's CPU Cholesky, QR and LU call scipy's
    OpenBLAS); returns what threadpoolctl reports. On a busy 2-core machine OpenBLAS's spinning
    threads make one 1051 x 1051 Cholesky take 40-500 ms instead of 17 ms single-threaded."""
    try:
        import threadpoolctl
    except ImportError:
        return [{"note": "threadpoolctl not installed; BLAS threads left as they are"}]
    if n > 0:
        limit_blas_threads.keep = threadpoolctl.threadpool_limits(n, user_api="blas")  # held for the process
    return [
        {k: info.get(k) for k in ("internal_api", "num_threads", "version")}
        for info in threadpoolctl.threadpool_info()
        if info.get("user_api") == "blas"
    ]


def bench_problem(pb: Problem, rounds: int, quick: bool, libraries: dict) -> dict:
    entries = entries_for(pb, quick, libraries)
    for e in entries:
        e.prepare()
        print(
            f"  {pb.name}: {e.name}: first call {e.first_s:.2f} s, trials to target {e.reached_iters}",
            flush=True,
        )
    timed = [e for e in entries if e.reached_iters is not None]
    to_target = {
        **timed_rounds({e.name: e.to_target for e in timed if e.first_s <= SLOW_S}, rounds),
        **timed_rounds({e.name: e.to_target for e in timed if e.first_s > SLOW_S}, 1),
    }
    long_rounds = 1 if pb.name == "peaks" else max(1, rounds // 2)
    results, long_times = {}, {e.name: [] for e in entries}
    for r in range(long_rounds):
        for e in entries[r % len(entries) :] + entries[: r % len(entries)]:
            if r > 0 and e.first_s > SLOW_S:
                continue
            t0 = time.perf_counter()
            out = block(e.long())
            long_times[e.name].append(time.perf_counter() - t0)
            results[e.name] = e.digest(out)
    sse0 = float(entries[0].sse(pb.theta0))
    rows = []
    for e in entries:
        theta, iters = results[e.name]
        long_s = statistics.median(long_times[e.name])
        later = long_s if e.first_is_long else statistics.median(to_target[e.name])
        rows.append(
            {
                "problem": pb.name,
                "M": pb.M,
                "P": pb.P,
                "library": e.library,
                "variant": e.variant,
                "default": e.default,
                "iters": iters,
                "iters_to_target": e.reached_iters,
                "time_to_target_s": statistics.median(to_target[e.name]) if e.name in to_target else None,
                "time_to_target_spread": [min(to_target[e.name]), max(to_target[e.name])]
                if e.name in to_target
                else None,
                "final_sse": float(e.sse(theta)),
                "initial_sse": sse0,
                "target_sse": e.target,
                "long_run_s": long_s,
                "s_per_iter": long_s / max(iters, 1),
                "compile_s": max(e.first_s - later, 0.0),
                "note": e.note,
                "sse_curve": e.curve,
            }
        )
    return {"problem": pb.name, "M": pb.M, "P": pb.P, "budget": pb.budget, "rows": rows}


# --- where fbackprop's time goes (the pieces of one dense / dual iteration, plain JAX) ------------


def flops(fn, *args) -> float | None:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def profile_pieces(pb: Problem, rounds: int) -> list[dict]:
    """Time and XLA flop count of each piece of an LM iteration, each compiled alone: the dense solver's
    (``J``, ``J^T J``, its Cholesky) and the dual solver's (``K = J J^T`` from the layers, its Cholesky,
    ``J^T w`` by one backward pass), with ``J J^T`` formed from ``J`` for comparison."""
    jac = fb.jacobian(pb.net)
    J = fb.as_matrix(jac(pb.params, pb.x)).reshape(pb.M, pb.P)
    G, K = J.T @ J, J @ J.T
    cost = lambda t: jnp.sum(residual_fn(pb)(t) ** 2)
    mu = 1e-3
    pieces = {
        "loss at a trial point": (cost, (pb.theta0,)),
        "Jacobian J (fb.jacobian, backprop)": (lambda p, x: fb.as_matrix(jac(p, x)), (pb.params, pb.x)),
        "J^T J (P x P)": (lambda J: J.T @ J, (J,)),
        "J J^T (M x M)": (lambda J: J @ J.T, (J,)),
        "Cholesky of G + mu I (P x P) + solve": (
            lambda G, g: spd_solve(G + mu * jnp.eye(pb.P), g),
            (G, G[0]),
        ),
        "Cholesky of K + mu I (M x M) + solve": (
            lambda K, u: spd_solve(K + mu * jnp.eye(pb.M), u),
            (K, K[0]),
        ),
        "LU solve of K + mu I (M x M)": (lambda K, u: jnp.linalg.solve(K + mu * jnp.eye(pb.M), u), (K, K[0])),
        "K = J J^T from the layers (fb.jacobian_gram, no J)": (
            lambda p, x: fb.jacobian_gram(pb.net)(p, x),
            (pb.params, pb.x),
        ),
        "J^T w by one backward pass (no J)": (
            lambda p, x, w: fb.backward(pb.net, p, fb.forward(pb.net, p, x)[1], w[:, None])[0],
            (pb.params, pb.x, K[0]),
        ),
    }
    fns = {}
    out = []
    for name, (fn, args) in pieces.items():
        compiled = jax.jit(fn)
        block(compiled(*args))
        fns[name] = lambda c=compiled, a=args: c(*a)
        out.append({"piece": name, "flops": flops(fn, *args)})
    times = timed_rounds(fns, rounds)
    for row in out:
        row["s"] = statistics.median(times[row["piece"]])
        row["gflop_per_s"] = row["flops"] / row["s"] / 1e9 if row["flops"] else None
    K_gram = fb.jacobian_gram(pb.net)(pb.params, pb.x).reshape(pb.M, pb.M)
    out[-2]["max_rel_vs_JJt"] = float(jnp.max(jnp.abs(K_gram - K)) / jnp.max(jnp.abs(K)))
    return out


# --- GPU: one step at large P ------------------------------------------------------------------


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
                [sys.executable, os.path.abspath(__file__), "--gpu-case", json.dumps(group)],
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


# --- tables ------------------------------------------------------------------------------------


def _g(v, fmt):
    return "—" if v is None else format(v, fmt)


def table(problems: list[dict]) -> str:
    head = (
        f"{'problem':8s} {'library':10s} {'variant':30s} {'iters':>6s} {'iters→tgt':>9s} {'time→tgt s':>10s} "
        f"{'s/iter':>9s} {'final SSE':>10s} {'compile s':>9s}  note"
    )
    lines = [head, "-" * len(head)]
    for prob in problems:
        for r in prob["rows"]:
            variant = r["variant"] + (" [default]" if r["default"] else "")
            lines.append(
                f"{r['problem']:8s} {r['library']:10s} {variant:30s} {r['iters']:>6d} "
                f"{_g(r['iters_to_target'], 'd'):>9s} "
                f"{_g(r['time_to_target_s'], '.4f'):>10s} {r['s_per_iter']:>9.2e} {r['final_sse']:>10.3e} "
                f"{r['compile_s']:>9.2f}  {r['note']}"
            )
        lines.append("")
    return "\n".join(lines)


def profile_table(rows: list[dict]) -> str:
    lines = [f"{'piece':40s} {'ms':>9s} {'GFLOP':>8s} {'GFLOP/s':>8s}"]
    for r in rows:
        lines.append(
            f"{r['piece']:40s} {1e3 * r['s']:>9.3f} {_g(r['flops'] and r['flops'] / 1e9, '.3f'):>8s} "
            f"{_g(r['gflop_per_s'], '.1f'):>8s}"
        )
    return "\n".join(lines)


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


def best(rows, library=None, key="time_to_target_s"):
    rows = [r for r in rows if r[key] is not None and (library is None or r["library"] == library)]
    return min(rows, key=lambda r: r[key]) if rows else None


def targets(problems: list[dict], libraries: dict) -> dict[str, bool]:
    out = {}
    for prob in problems:
        rows = prob["rows"]
        ours = best(rows, "fbackprop")
        if prob["problem"] == "peaks":
            ours_it = best(rows, "fbackprop", "s_per_iter")
            out[
                f"peaks: fbackprop's best time to target {_g(ours and ours['time_to_target_s'], '.3f')} s "
                "<= 0.5 s"
            ] = bool(ours and ours["time_to_target_s"] <= TARGETS["peaks_time_to_target_s"])
            out[f"peaks: fbackprop's best s/iter {ours_it['s_per_iter']:.3f} <= 0.05"] = (
                ours_it["s_per_iter"] <= TARGETS["peaks_s_per_iter"]
            )
        others = best([r for r in rows if r["library"] != "fbackprop"])
        if others is not None:
            out[
                f"{prob['problem']}: fbackprop's best time to target "
                f"{_g(ours and ours['time_to_target_s'], '.4f')} s <= "
                f"best library's {others['time_to_target_s']:.4f} s ({others['library']}: "
                f"{others['variant']})"
            ] = bool(ours and ours["time_to_target_s"] <= others["time_to_target_s"])
    return out


def summary(problems: list[dict]) -> str:
    lines = []
    for prob in problems:
        rows = prob["rows"]
        default = next(r for r in rows if r["default"])
        ours, others = best(rows, "fbackprop"), best([r for r in rows if r["library"] != "fbackprop"])
        describe = lambda r: (
            "—"
            if r is None
            else (
                f"{r['library']}: {r['variant']} {_g(r['time_to_target_s'], '.4f')} s "
                f"({_g(r['iters_to_target'], 'd')} iters, {r['s_per_iter']:.2e} s/iter)"
            )
        )
        lines.append(
            f"{prob['problem']}: fbackprop best {describe(ours)}; default {describe(default)}; best library "
            f"{describe(others)}"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="toy sizes, short budgets, one config per library (a smoke run)"
    )
    p.add_argument("--gpu", action="store_true", help="also one LM step at P = 1e4, 1e5, 1e6 (N = 8192)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--gpu-dtype", default="float32")
    p.add_argument("--cg-maxiter", type=int, default=100, help="CG iterations per step in the --gpu cases")
    p.add_argument("--problems", default="sine,parity3,peaks", help="comma-separated subset")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="threads of the BLAS/LAPACK that JAX's CPU linear algebra calls (0: its default)",
    )
    p.add_argument("--out", default="runs/bench_lm")
    p.add_argument("--gpu-case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.gpu_case:  # child process of bench_gpu
        print(json.dumps([gpu_case(spec) for spec in json.loads(args.gpu_case)]))
        return None
    rounds = 2 if args.quick else args.rounds
    libraries = available_libraries()
    blas = limit_blas_threads(args.blas_threads)
    chosen = args.problems.split(",")
    problems = []
    for pb in make_problems(args.quick):
        if pb.name not in chosen:
            continue
        problems.append(bench_problem(pb, rounds, args.quick, libraries))
        print(table(problems[-1:]), flush=True)
    peaks = next((pb for pb in make_problems(args.quick) if pb.name == "peaks"), None)
    profile = profile_pieces(peaks, rounds) if "peaks" in chosen else []
    gpu = bench_gpu(args.quick, rounds, args.gpu_dtype, args.cg_maxiter) if args.gpu else []
    held = targets(problems, libraries)
    text = "\n".join(
        [
            table(problems),
            summary(problems),
            "",
            "targets (cpu):",
            *(f"  [{'x' if v else ' '}] {k}" for k, v in held.items()),
        ]
    )
    if profile:
        text += (
            f"\n\npieces of one iteration on peaks (P = {peaks.P}, M = {peaks.M}), each compiled alone:\n"
            + profile_table(profile)
        )
    if gpu:
        text += "\n\none LM call with max_steps=1 (--gpu):\n" + gpu_table(gpu)
    print("\n" + text)
    result = {
        "config": vars(args),
        "versions": {**fb.results.versions(), **libraries},
        "blas": blas,
        "target_fraction": TARGET,
        "problems": problems,
        "targets": held,
        "profile_peaks": profile,
        "gpu": gpu,
    }
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    return result


if __name__ == "__main__":
    main()

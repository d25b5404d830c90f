"""Levenberg-Marquardt: fbackprop's ``fb.levenberg_marquardt`` against scipy's MINPACK
(``least_squares(method="lm")``), optimistix's and jaxopt's ``LevenbergMarquardt``, float64, every
solver from the same initial params. Variants run side by side in one process, in interleaved
rounds; the table gives medians. Then, per problem, this machine's matmul and Cholesky rates, the
arithmetic floor of one iteration of fbackprop's best variant, and where its iteration spends its time.

    python benchmarks/bench_lm.py [--quick] [--rounds 5] [--problems sine,parity3,peaks,franke,moons]
                                  [--blas-threads 1] [--gpu] [--out runs/bench_lm]

Problems (``lm_problems.py``): sine 1-10-1 (P = 31), parity3 3-3-1 (P = 16), peaks 2-30-30-1
(P = 1051, 900 points), franke 2-20-40-1 (P = 941, Franke's function on 1024 points) and moons
2-30-30-2 (P = 1082, cross-entropy on 300 points of two half circles, through the GGN; the libraries
minimise the same loss as ``sum_n r_n^2 / 2`` with ``r_n = sqrt(2 CE_n)``, a different curvature
model: ``lm_problems.py``). ``--quick`` (a smoke run, seconds): parity3, and peaks at toy size
(2-8-8-1 on an 8 x 8 grid, P = 105 > M = 64) with fbackprop only; three fbackprop variants and one
per library.

Solvers. fbackprop: solver dense / dual (P >= 500) / auto (what it resolves to is shown) /
accumulate and cg (peaks), damping marquardt / nielsen, each without and (but accumulate and cg)
with ``line_search=True``, other settings default (the default row is auto + marquardt, no line
search); where P >= 500 also truncated CG (``lm_entries.INEXACT_CG``, tol 1e-3) with the line search,
each damping. scipy: MINPACK ``lmder`` with the jitted ``jax.jacfwd`` Jacobian (``jacrev``
where there are fewer residuals than params), and with its own finite differences where P <= 200
(a Jacobian costs P residual calls); MINPACK needs as many residuals as params, so where there are
fewer it gets zero residuals appended, which change neither the SSE nor the steps. optimistix:
``optx.least_squares`` with ``LevenbergMarquardt`` (QR, its default; and
``lineax.Normal(Cholesky())``), ``options={"jac": "bwd"}`` where residuals < params. jaxopt: its
default (matrix-free CG) and ``solver="cholesky", materialize_jac=True``. Tolerances are tight
(1e-15 for scipy, 1e-12 for the others' gradient / step tests) so the budget, not a tolerance, ends
a run that is still making progress.

Every library's solve is timed as one jitted function of the start (for fbackprop ``jax.jit`` around
``fb.levenberg_marquardt``, whose checks read static shapes, so they run once, at tracing; called
directly, without the outer jit, it adds ~0.2 ms of Python-side checks and dispatch per call).
Like optimistix's and jaxopt's timed programs, fbackprop's returns the flat solution and its trial
count (its history comes from a separate, untimed run): every output buffer costs the runtime
~10-20 us here, and the full ``LMResult`` has a dozen. A timing repeats a call until it lasts 20 ms
(at most 200 calls), as ``timeit`` does: one call of a sub-millisecond run is mostly clock noise.
JAX's CPU runtime runs a program with a matrix product on a worker thread (asynchronous dispatch):
on this shared machine the hand-off costs ~0.1 ms a call, which bounds the tiny problems' times for
every library; ``--sync-dispatch`` runs every library's calls on the calling thread instead.

Method. Long run: each solver runs once from theta0 with a generous budget (trial steps: 500
sine, 200 parity3, 100 the others); it gives ``iters`` (trials as the library counts them:
fbackprop and jaxopt one per damped solve, scipy its residual calls after the first, optimistix its
steps, whose first only evaluates the start), the final SSE and s/iter (long-run time over iters).
Time to target: the wall time of a call that starts at theta0 and stops as soon as the SSE is
<= 1e-3 x SSE(theta0) (moons: the cross-entropy sum <= 1e-3 x its start), ``iters→tgt`` its trials:
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

Floor (``lm_floor.py``): the flop count of one trial of fbackprop's best factorising row's solver (dense
or dual: the factorisation, the solves, the trial's forward pass, and the accepted fraction of a
linearisation) over the float64 matmul and Cholesky / LU rates measured here, in this process, at the
problem's sizes (the factorisation and its two triangular solves at the rate of the solver's own call,
``spd_solve`` or ``jnp.linalg.solve``). The measured s/iter it is compared with is the marginal one,
(long run - time to target) / (the trials between), where the long run goes 20 or more trials past the
target (so the call's fixed cost, ~0.5 ms of dispatch, is not spread over a few iterations), the long
run's s/iter otherwise. The profile times each piece of that iteration compiled alone (median over
rounds, less the dispatch of a call that does nothing); what the measured s/iter holds beyond them is
the loop's own cost (at toy sizes the pieces' dispatch is not all removed, and it reads negative).

Targets (issue 13): on every problem, fbackprop's best time to target >= 3x faster than the best
library's; its best row's s/iter within 2x of the floor.

``--gpu``: N = 8192 synthetic regression (16 inputs, two tanh layers sized for P), one
``levenberg_marquardt(max_steps=1)`` call (linearize, one damped solve, the trial loss, and the
linearization at the new point if accepted) at P = 1e4 (dense, accumulate), 1e5 (cg, dual) and
1e6 (cg); ms per call and peak device memory, each case in its own process so that the peak is
its own. With ``--quick`` the sizes are tiny (a CPU smoke run; no memory stats on CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import lm_floor
from lm_entries import SLOW_S, available_libraries, entries_for
from lm_gpu import bench_gpu, gpu_table
from lm_problems import PROBLEMS, TARGET, Problem, make_problems
from timing import block, timed_rounds

import fbackprop as fb

jax.config.update("jax_enable_x64", True)

SPEEDUP_TARGET = 3.0  # fbackprop's best time to target x 3 <= the best library's
FLOOR_TARGET = 2.0  # fbackprop's best row's s/iter <= 2 x the floor
MARGINAL_MIN_ITERS = 20


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


def calls_per_timing(fn, least_s: float = 0.02) -> int:
    """Calls per timing so that one timing lasts at least ``least_s`` (as ``timeit`` does): a run of a
    few tenths of a millisecond timed once is mostly the clock's and the scheduler's noise."""
    t0 = time.perf_counter()
    block(fn())
    return max(1, min(200, int(least_s / max(time.perf_counter() - t0, 1e-6)) + 1))


def bench_problem(pb: Problem, rounds: int, quick: bool, libraries: dict) -> dict:
    entries = entries_for(pb, quick, libraries)
    for e in entries:
        e.prepare()
        print(
            f"  {pb.name}: {e.name}: first call {e.first_s:.2f} s, trials to target {e.reached_iters}",
            flush=True,
        )
    timed = [e for e in entries if e.reached_iters is not None]
    reps = {e.name: calls_per_timing(e.to_target) for e in timed}
    to_target = {
        **timed_rounds({e.name: e.to_target for e in timed if e.first_s <= SLOW_S}, rounds, reps),
        **timed_rounds({e.name: e.to_target for e in timed if e.first_s > SLOW_S}, 1),
    }
    long_rounds = 1 if pb.name == "peaks" else max(1, rounds // 2)
    results, long_times = {}, {e.name: [] for e in entries}
    long_reps = {e.name: calls_per_timing(e.long) if e.first_s <= SLOW_S else 1 for e in entries}
    for r in range(long_rounds):
        for e in entries[r % len(entries) :] + entries[: r % len(entries)]:
            if r > 0 and e.first_s > SLOW_S:
                continue
            t0 = time.perf_counter()
            for _ in range(long_reps[e.name]):
                out = e.long()
            block(out)
            long_times[e.name].append((time.perf_counter() - t0) / long_reps[e.name])
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
                "solver": e.resolved,
                "accepted_fraction": e.accepted_fraction,
            }
        )
    out = {"problem": pb.name, "M": pb.M, "P": pb.P, "budget": pb.budget, "loss": pb.loss, "rows": rows}
    out.update(floor_and_profile(pb, rows, rounds))
    return out


def floor_and_profile(pb: Problem, rows: list[dict], rounds: int) -> dict:
    """The floor of one iteration of fbackprop's best dense or dual row's solver (the fastest to target;
    the fastest per iteration where none reaches it; a CG trial is small passes, bound by latency),
    the rates it rests on, and the profile of its pieces."""
    ours = [r for r in rows if r["library"] == "fbackprop" and r["solver"] in ("dense", "dual")]
    if not ours:
        return {"floor": None, "profile": []}
    row = best(ours) or best(ours, key="s_per_iter")
    rates = lm_floor.measured_rates(pb, row["solver"], rounds)
    fl = lm_floor.floor(pb, row["solver"], rates, row["accepted_fraction"])
    # seconds per iteration without the call's fixed cost, where the long run goes >= 20 trials past
    # the target: (long run - time to target) / (the trials between); else the long run's s/iter
    extra = row["iters"] - (row["iters_to_target"] or row["iters"])
    per_iter = (
        (row["long_run_s"] - row["time_to_target_s"]) / extra
        if extra >= MARGINAL_MIN_ITERS and row["long_run_s"] > row["time_to_target_s"]
        else row["s_per_iter"]
    )
    fl.update(variant=row["variant"], s_per_iter=per_iter, floor_s_per_iter=fl.pop("s_per_iter"))
    fl["marginal"] = per_iter != row["s_per_iter"]
    fl["ratio"] = fl["s_per_iter"] / fl["floor_s_per_iter"]
    prof = lm_floor.profile(pb, row["solver"], rounds)
    fl["loop_overhead_s"] = lm_floor.loop_overhead(prof, row["s_per_iter"], row["accepted_fraction"])
    return {"floor": fl, "profile": prof}


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


def best(rows, library=None, key="time_to_target_s"):
    rows = [r for r in rows if r[key] is not None and (library is None or r["library"] == library)]
    return min(rows, key=lambda r: r[key]) if rows else None


def targets(problems: list[dict], libraries: dict) -> dict[str, bool]:
    """Issue 13's targets per problem: fbackprop's best time to target x 3 <= the best library's, and
    its best row's s/iter <= 2 x the floor. Returns ``{statement with the figures: held}``."""
    out = {}
    for prob in problems:
        rows, name = prob["rows"], prob["problem"]
        ours = best(rows, "fbackprop")
        others = best([r for r in rows if r["library"] != "fbackprop"])
        if others is not None:
            t = ours and ours["time_to_target_s"]
            speedup = others["time_to_target_s"] / t if t else None
            out[
                f"{name}: fbackprop's best time to target {_g(t, '.4f')} s is {_g(speedup, '.2f')}x "
                f"faster than the best library's {others['time_to_target_s']:.4f} s ({others['library']}: "
                f"{others['variant']}); target >= {SPEEDUP_TARGET:g}x"
            ] = bool(speedup and speedup >= SPEEDUP_TARGET)
        fl = prob.get("floor")
        if fl:
            out[
                f"{name}: fbackprop's {fl['variant']} {fl['s_per_iter'] * 1e3:.3f} ms/iter is "
                f"{fl['ratio']:.2f}x the floor {fl['floor_s_per_iter'] * 1e3:.3f} ms; "
                f"target <= {FLOOR_TARGET:g}x"
            ] = fl["ratio"] <= FLOOR_TARGET
    return out


def floor_table(problems: list[dict]) -> str:
    lines = []
    for prob in problems:
        fl = prob.get("floor")
        if not fl:
            continue
        r = fl["rates_gflop_per_s"]
        lines.append(
            f"{prob['problem']} ({fl['variant']}; {fl['gflop_per_iter']:.4f} GFLOP per iteration, "
            f"{fl['accepted_fraction']:.2f} of trials accepted): floor "
            f"{1e3 * fl['floor_s_per_iter']:.3f} ms, measured {1e3 * fl['s_per_iter']:.3f} ms"
            f"{' (marginal: past the target)' if fl.get('marginal') else ''} "
            f"({fl['ratio']:.2f}x); loop beyond the pieces {1e3 * fl['loop_overhead_s']:.3f} ms"
        )
        lines.append(
            f"  measured rates (GFLOP/s, float64, this process): matmul {fl['mm_shape']} {r['mm']:.2f}, "
            f"Cholesky {r['chol']:.2f}, Cholesky + solve {r['chol_solve']:.2f}, LU solve {r['lu']:.2f}"
        )
        lines += [f"  floor of {k}: {1e3 * v:.3f} ms" for k, v in fl["pieces"].items()]
        lines.append("  pieces, each compiled alone:")
        lines += ["  " + line for line in profile_table(prob["profile"]).splitlines()]
    return "\n".join(lines)


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
    p.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated subset")
    p.add_argument("--seed", type=int, default=0, help="the init key of every network (lm_problems)")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="threads of the BLAS/LAPACK that JAX's CPU linear algebra calls (0: its default)",
    )
    p.add_argument(
        "--sync-dispatch",
        action="store_true",
        help="run each jitted call on the calling thread (jax_cpu_enable_async_dispatch=False), for every "
        "library alike: a small program then costs ~0.02 ms a call instead of ~0.1 ms on a busy machine",
    )
    p.add_argument("--out", default="runs/bench_lm")
    args = p.parse_args(argv)
    if args.sync_dispatch:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    rounds = 2 if args.quick else args.rounds
    libraries = available_libraries()
    blas = limit_blas_threads(args.blas_threads)
    chosen = args.problems.split(",")
    problems = []
    for pb in make_problems(args.quick, seed=args.seed, names=chosen):
        problems.append(bench_problem(pb, rounds, args.quick, libraries))
        print(table(problems[-1:]) + "\n" + floor_table(problems[-1:]), flush=True)
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
    floors = floor_table(problems)
    if floors:
        text += "\n\nthe floor of one iteration, and its pieces:\n" + floors
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
        "gpu": gpu,
    }
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    return result


if __name__ == "__main__":
    main()

"""The cost of several processes: one training step, one Levenberg-Marquardt iteration (accumulate
and cg) and one Hessian-vector product at a fixed total number of rows, on 1, 2 and 4 processes of
this machine joined by JAX's distributed runtime, against one process.

    python benchmarks/bench_distributed.py [--quick] [--rounds 7] [--processes 1,2,4] [--rows 4096]
                                           [--sizes 2,30,30,1] [--out runs/bench_distributed]

Problem: an MLP 2-30-30-1 (tanh, P = 1051), float64, squared error on N = 4096 rows of a smooth
function of two inputs (``--quick``: 2-4-4-1 on 64 rows, one round). Every process builds the same
N rows from one NumPy seed and keeps its N/k of them (process i the i-th block);
``fb.distributed.global_batch`` joins the blocks into global arrays whose rows are split over the
k processes (one CPU device each), so every variant computes the same sums over the same N rows and
XLA all-reduces the per-process partial sums (gloo collectives on the CPU).

Quantities, each a jitted function of the global arrays (the public function called inside
``jax.jit``, so its value checks run once, at tracing):
- ``train step``: ``fb.train`` in full-batch mode with Adam (Kingma & Ba 2015) for ``--steps``
  epochs (one step each), per step (the call over the steps);
- ``LM accumulate`` / ``LM cg``: ``fb.levenberg_marquardt(max_steps=1)``: one linearisation (the
  all-reduced ``G = J^T J`` and ``g``, or the gradient and each CG product), one damped solve, the
  trial loss, and the linearisation at the new point when the step is accepted; cg with
  ``cg_tol=0`` and ``--cg-iters`` iterations, so each call does the same number of products;
- ``HVP``: ``fb.hvp(net, loss)`` (forward-over-reverse; Pearlmutter 1994) along a fixed direction;
- ``all-reduce``: one all-reduce of ``P`` floats and nothing else (the column sums of a
  ``(devices, P)`` array, one row per device): what each of the others pays per collective.

Method: the driver starts ``python -m fbackprop.launch --processes k --devices-per-process 1`` once
per process count, running this file with ``--worker``. Each worker calls every quantity once
(compilation; its time, less the median, is reported as ``compile s``), then times every quantity
once per round in an order that rotates (``timing.timed_rounds``); collectives hold the processes in
step. Process 0 writes its medians, its compile times and the values it computed (loss after the
step, the norm of the HVP, the all-reduce's first sum) to a JSON file, atomically; the driver reads
it, checks that every process count computed the same values (to 1e-9 relative: the sums are only
reassociated), and prints the table: quantity x processes, median seconds, ratio to one process.

Each process caps the threads of the BLAS its CPU Cholesky calls (``--blas-threads``, default 1, as
``bench_lm.py``), so that OpenBLAS's spinning threads do not swamp the shared cores.

This machine has 2 CPU cores (shared with other work). Its processes share those cores, so the
table measures the overhead of the distributed runtime and its collectives at a fixed amount of
arithmetic, not a speed-up: a ratio above 1 is the cost of splitting the batch over processes
here. Across machines the arithmetic per device falls as 1/k while the all-reduce volume stays the
same; docs/scale.md models that at cluster scale.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

QUANTITIES = ("train step", "LM accumulate", "LM cg", "HVP", "all-reduce")
VALUE_RTOL = 1e-9  # the sums are reassociated over processes, nothing else changes
NOTE = (
    "On this 2-core machine the processes share the same cores: the ratios measure the overhead of "
    "the distributed runtime and its all-reduces at fixed arithmetic, not a speed-up."
)


def problem_data(rows: int, n_in: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``rows`` examples every process builds the same way.

    Args:
        rows: the total number of rows N.
        n_in: inputs per row.
        seed: NumPy seed.

    Returns:
        ``(x, y)``: ``x (N, n_in)`` uniform in [-1, 1], ``y (N, 1) = sin(pi x_1) cos(pi x_2 / 2)``
        (the first two inputs; only the first when ``n_in == 1``), float64.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (rows, n_in))
    y = np.sin(np.pi * x[:, :1]) * (np.cos(np.pi * x[:, 1:2] / 2) if n_in > 1 else 1.0)
    return x, y


def local_rows(x: np.ndarray, y: np.ndarray, rank: int, processes: int) -> tuple[np.ndarray, np.ndarray]:
    """Process ``rank``'s block of rows: the ``rank``-th of ``processes`` equal blocks.

    Args:
        x: all inputs ``(N, n_in)``.
        y: all targets ``(N, n_out)``.
        rank: this process's index.
        processes: how many processes; must divide N.

    Returns:
        ``(x_local, y_local)``, ``N / processes`` rows each.
    """
    n = x.shape[0] // processes
    return x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]


def _host(a) -> np.ndarray:
    """A replicated (every device holds all of it) array's value, from this process's first shard."""
    return np.asarray(a.addressable_shards[0].data) if hasattr(a, "addressable_shards") else np.asarray(a)


def all_reduce_ops(f, args) -> int:
    """The all-reduce instructions in ``f``'s compiled program for ``args`` (XLA's optimised HLO; a
    loop's body counted once, however often it runs).

    Args:
        f: a ``jax.jit``-ed function.
        args: its arguments.

    Returns:
        How many ``all-reduce`` (or ``all-reduce-start``) instructions the program holds.
    """
    return len(re.findall(r"\sall-reduce(?:-start)?\(", f.lower(*args).compile().as_text()))


def worker(args) -> None:
    """One process of the benchmark (run under ``fbackprop.launch``); process 0 writes the results.

    Args:
        args: the parsed command line (``--worker`` mode: ``--result`` is the JSON file to write).

    Returns:
        None. Process 0 writes ``{processes, devices, rows, P, median_s, spread_s, compile_s, values,
        rounds}`` to ``args.result`` (atomically: ``fb.results.write_json``).
    """
    import fbackprop as fb

    rank, processes = fb.distributed.initialize()
    import jax
    import jax.numpy as jnp
    import optax
    from timing import block, timed_rounds

    jax.config.update("jax_enable_x64", True)
    if args.blas_threads > 0:  # as bench_lm.py: OpenBLAS's spinning threads slow the Cholesky here
        import threadpoolctl

        blas = threadpoolctl.threadpool_limits(args.blas_threads, user_api="blas")  # noqa: F841 (held)
    sizes = [int(s) for s in args.sizes.split(",")]
    net = fb.mlp(sizes, activation="tanh")
    params = net.init(jax.random.key(0), jnp.float64)
    x_all, y_all = problem_data(args.rows, sizes[0])
    x, y = fb.distributed.global_batch(*local_rows(x_all, y_all, rank, processes))
    rng = np.random.default_rng(1)
    v = jax.tree.map(lambda w: jnp.asarray(rng.standard_normal(w.shape)), params)
    adam = optax.adam(1e-2)
    hvp = fb.hvp(net, "squared_error")

    def train(p, x, y):
        r = fb.train(net, "squared_error", p, x, y, adam, epochs=args.steps, goal=None, progress=False)
        return r.params, r.history.loss[-1]

    def lm(solver):
        def step(p, x, y):
            r = fb.levenberg_marquardt(
                net, p, x, y, solver=solver, max_steps=1, cg_tol=0.0, cg_maxiter=args.cg_iters
            )
            return r.params, r.history.loss[-1]

        return step

    def curvature(p, x, y, v):
        Hv = hvp(p, x, y, v)
        return Hv, jnp.sqrt(sum(jnp.vdot(t, t) for t in jax.tree.leaves(Hv)))

    def all_reduce(rows):
        total = rows.sum(axis=0)  # one row per device: a sum across devices, nothing else
        return total, total[0]

    # a (devices, P) array, one row of 1 / devices per device: its column sums are all 1
    rows = fb.distributed.global_batch(
        np.full((jax.local_device_count(), net.n_params), 1 / jax.device_count())
    )[0]
    programs = {
        "train step": (jax.jit(train), (params, x, y)),
        "LM accumulate": (jax.jit(lm("accumulate")), (params, x, y)),
        "LM cg": (jax.jit(lm("cg")), (params, x, y)),
        "HVP": (jax.jit(curvature), (params, x, y, v)),
        "all-reduce": (jax.jit(all_reduce), (rows,)),
    }
    calls = {name: (lambda f=f, a=a: f(*a)) for name, (f, a) in programs.items()}
    first, values = {}, {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        out = block(call())
        first[name] = time.perf_counter() - t0
        values[name] = float(_host(out[1]))
    times = timed_rounds(calls, args.rounds)
    collectives = {name: all_reduce_ops(f, a) for name, (f, a) in programs.items()}
    per_call = {"train step": args.steps}
    median = {n: statistics.median(t) / per_call.get(n, 1) for n, t in times.items()}
    result = {
        "processes": processes,
        "devices": jax.device_count(),
        "rows": args.rows,
        "P": net.n_params,
        "median_s": median,
        "spread_s": {n: [min(t) / per_call.get(n, 1), max(t) / per_call.get(n, 1)] for n, t in times.items()},
        "compile_s": {n: max(first[n] - statistics.median(times[n]), 0.0) for n in calls},
        "values": values,
        "all_reduce_ops": collectives,
        "rounds": args.rounds,
    }
    if rank == 0:
        fb.results.write_json(args.result, result)
    print(f"process {rank} of {processes}: done", flush=True)


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers; got {text!r}") from None


def check_args(args) -> list[int]:
    """Refuse bad options before any process starts.

    Args:
        args: the parsed command line.

    Returns:
        The process counts.

    Raises:
        ValueError: naming the option, what it must be and what came.
    """
    for name in ("rounds", "rows", "steps", "cg_iters"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    sizes = _ints(args.sizes, "--sizes")
    if len(sizes) < 2 or min(sizes) < 1 or sizes[-1] != 1:
        raise ValueError(
            f"--sizes must be >= 2 positive layer sizes ending in 1 (one output); got {args.sizes!r}"
        )
    counts = _ints(args.processes, "--processes")
    if counts[0] != 1 or any(k < 1 or args.rows % k for k in counts):
        raise ValueError(
            f"--processes must start with 1 and each count divide --rows {args.rows}; got {counts}"
        )
    return counts


def run_processes(k: int, args, result: str) -> dict:
    """Run the worker as ``k`` processes under the launcher.

    Args:
        k: the number of processes (one CPU device each).
        args: the driver's parsed command line (sizes, rounds, timeout, ...).
        result: the JSON file process 0 writes.

    Returns:
        Process 0's results, with ``wall_s`` (the launch's wall time) added.

    Raises:
        RuntimeError: when the launch fails, with the tail of its output.
    """
    cmd = [sys.executable, "-m", "fbackprop.launch", "--processes", str(k), "--devices-per-process", "1"]
    cmd += ["--timeout", str(args.timeout), os.path.abspath(__file__), "--worker", "--result", result]
    cmd += ["--rows", str(args.rows), "--sizes", args.sizes, "--rounds", str(args.rounds)]
    cmd += [
        "--steps",
        str(args.steps),
        "--cg-iters",
        str(args.cg_iters),
        "--blas-threads",
        str(args.blas_threads),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")])
        ),
    }
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout + 60)
    if done.returncode != 0:
        raise RuntimeError(
            f"{k} process(es) failed with exit code {done.returncode}:\n"
            f"{done.stdout[-4000:]}{done.stderr[-2000:]}"
        )
    with open(result) as f:
        out = json.load(f)
    out["wall_s"] = time.perf_counter() - t0
    return out


def rows_of(runs: list[dict]) -> list[dict]:
    """The table's rows: one per quantity and process count.

    Args:
        runs: process 0's results, one per process count, the first with one process.

    Returns:
        Dicts ``{quantity, processes, median_s, ratio, compile_s, all_reduce_ops, value, value_rel}``:
        ``ratio`` is the median over one process's, ``all_reduce_ops`` the all-reduce instructions in
        the compiled program, ``value_rel`` the relative difference of the value computed (loss after
        the step, ``|Hv|``, the all-reduce's first sum) from one process's.
    """
    base = runs[0]
    out = []
    for name in QUANTITIES:
        for run in runs:
            value, ref = run["values"][name], base["values"][name]
            out.append(
                {
                    "quantity": name,
                    "processes": run["processes"],
                    "median_s": run["median_s"][name],
                    "ratio": run["median_s"][name] / base["median_s"][name],
                    "compile_s": run["compile_s"][name],
                    "all_reduce_ops": run.get("all_reduce_ops", {}).get(name),
                    "value": value,
                    "value_rel": abs(value - ref) / max(abs(ref), 1e-300),
                }
            )
    return out


def table(rows: list[dict], counts: list[int]) -> str:
    """The table: quantity x processes, median seconds and ratio to one process.

    Args:
        rows: ``rows_of``'s output.
        counts: the process counts, in column order.

    Returns:
        Text, one line per quantity, a header and the note on what it measures; the last column is
        the all-reduce instructions in the program at the most processes (a loop's body counted once).
    """
    head = f"{'quantity':14s}" + "".join(f" {f'{k} proc s':>11s} {'ratio':>6s}" for k in counts)
    head += "  " + " ".join(f"{f'compile {k}':>9s}" for k in counts) + f" {'all-reduces':>11s}"
    lines = [head, "-" * len(head)]
    for name in QUANTITIES:
        by = {r["processes"]: r for r in rows if r["quantity"] == name}
        line = f"{name:14s}" + "".join(f" {by[k]['median_s']:>11.3e} {by[k]['ratio']:>6.2f}" for k in counts)
        line += "  " + " ".join(f"{by[k]['compile_s']:>9.2f}" for k in counts)
        ops = by[counts[-1]]["all_reduce_ops"]
        line += f" {'—' if ops is None else ops:>11}"
        lines.append(line)
    return "\n".join(lines + ["", NOTE])


def main(argv=None):
    """The command line (module docstring).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The results dict written to ``OUT/results.json`` (driver), or None (``--worker``).
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2-4-4-1 on 64 rows, one round (a smoke run)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--processes", default="1,2,4", help="comma-separated process counts; the first is 1")
    p.add_argument("--rows", type=int, default=4096, help="total rows N, split over the processes")
    p.add_argument("--sizes", default="2,30,30,1", help="layer sizes of the MLP")
    p.add_argument("--steps", type=int, default=10, help="training steps per timed train call")
    p.add_argument("--cg-iters", type=int, default=20, help="CG iterations per LM cg iteration")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="threads of the BLAS/LAPACK that JAX's CPU Cholesky calls, per process (0: its default)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per process count")
    p.add_argument("--out", default="runs/bench_distributed")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.rows, args.sizes, args.rounds, args.steps, args.cg_iters = 64, "2,4,4,1", 1, 2, 5
    counts = check_args(args)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in counts:
            runs.append(run_processes(k, args, os.path.join(tmp, f"p{k}.json")))
            print(f"{k} process(es): done in {runs[-1]['wall_s']:.1f} s", flush=True)
    rows = rows_of(runs)
    worst = max(r["value_rel"] for r in rows)
    text = table(rows, counts)
    text += (
        f"\nN = {args.rows} rows in all, MLP {args.sizes.replace(',', '-')} (P = {runs[0]['P']}), float64; "
        f"medians of {args.rounds} round(s); the values computed agree with one process's to {worst:.1e} "
        f"relative (<= {VALUE_RTOL:g}: {'yes' if worst <= VALUE_RTOL else 'NO'})"
    )
    print("\n" + text)
    import fbackprop as fb

    result = {
        "config": vars(args),
        "versions": fb.results.versions(),
        "runs": runs,
        "rows": rows,
        "note": NOTE,
    }
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    if not math.isfinite(worst) or worst > VALUE_RTOL:
        raise SystemExit(f"the process counts computed different values (worst {worst:.1e} relative)")
    return result


if __name__ == "__main__":
    main()

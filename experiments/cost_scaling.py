"""Cost of one gradient as the network grows: hand-written backprop vs forward mode vs finite differences.

    python experiments/cost_scaling.py [--quick] [--seed 0] [--out runs/cost_scaling]
                                       [--batch 512] [--width 16] [--rounds 7] [--clock cpu|wall]

Backpropagation's efficiency argument (Rumelhart, Hinton & Williams 1986; Baur & Strassen 1983 and
Griewank & Walther 2008 for reverse mode in general), measured. Backpropagation computes each
delta^l = dC/dz^l once, from right to left (delta^{l-1} = f'(z^{l-1}) * (W^l)^T delta^l: each step
multiplies a vector by a weight matrix), so one gradient costs a forward and a backward pass, O(N P)
for P parameters and N examples. Propagating changes forwards instead, from one parameter at a time
(tracking every path of a change forward), costs a forward pass per parameter: forward mode
(``fb.forward_mode``, one Jacobian-vector product per parameter) and
central differences (``fb.numerical_grad``, two forward passes per parameter) cost P forward passes,
O(N P^2).

Networks: tanh MLPs of growing depth L at a fixed width (16) and batch (512; --quick: 128), squared
error, float32: P = L * 16 * 17 grows while every layer costs the same. Each method is one jitted
function (forward mode and central differences take the whole basis in one vmap, ``chunk_size =
P``), compiled first, then timed in interleaved rounds (every round visits every size and method,
in a rotating order); a time is the median over 7 rounds (--quick: 5) of the mean over enough
back-to-back calls to fill 10 ms (--quick: 5 ms). Beside them a no-op (a jitted function of the
same arguments returning one entry of x) measures what a call costs by itself; a time under 5
no-op calls is not a measurement of the computation, so it is left out of the fits and of the
backprop / forward ratio. The clock is the process's CPU time: on a shared machine wall-clock time
measures the other processes too (wall-clock medians are recorded as well). Forward mode and
central differences are measured whole, never extrapolated, up to depth 6 (P = 1632; --quick:
depth 3, P = 816); backprop and the forward pass up to depth 32 (P = 8704; --quick: 16). A slope
is the least-squares fit of log(time) against log(P). With XLA's default optimisation
(``XLA_FLAGS`` set, but empty) the quick sizes' forward pass runs in under 5 no-op calls at every
depth, so the backprop / forward pass claim has nothing to measure and fails rather than guess;
``--quick`` therefore compiles with XLA's backend optimisation off when ``XLA_FLAGS`` is unset,
as the test suite does (compiling dominates a quick run, too).

What to expect: backprop / forward pass ~2 at small depth, rising to ~3.5 at depth 32 as the
activations backprop must keep (the forward pass's a^{l-1} are remembered for
dW^l = delta^l (a^{l-1})^T) outgrow the L2 cache; backprop's slope ~1.0-1.1; forward mode's and
central differences' ~2-2.9, their cost over backprop's ~100 at P = 272 and ~1000 at P = 1632.

Claims tested, with margins wide enough for a loaded machine (times are ratios of two methods timed
in the same interleaved rounds, never absolute): backprop costs at most 10 forward passes (a reverse
sweep costs a small constant multiple of the function, Griewank's "cheap gradient principle";
measured 2-3.5) at every size where a forward pass is measurable; forward mode's and central
differences' fitted slopes exceed backprop's by at least 0.5 (measured 0.9-1.9); both cost at least
10x backprop at every size (measured ~100-1000). The slopes themselves and the growth of the ratios
with P are recorded, not claimed.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import common  # noqa: E402
import jax
import jax.numpy as jnp
import numpy as np

import fbackprop as fb

METHODS = ("forward pass", "backprop", "forward mode", "finite differences")
#: A jitted function of the same arguments that does next to nothing: the cost of a call itself.
NOOP = "no-op"
#: Depths timed: (all four methods, backprop and the forward pass only).
DEPTHS = {"default": ((1, 2, 4, 6), (12, 24, 32)), "quick": ((1, 2, 3), (8, 16))}
SETTINGS = {
    "default": {"batch": 512, "rounds": 7, "fill": 0.01},
    "quick": {"batch": 128, "rounds": 5, "fill": 0.005},
}
LOSS = "squared_error"
#: Margins of the claims, wide because times depend on the machine and its load: measured backprop /
#: forward pass 2-3.5 (claimed <= 10), slope gaps 0.9-1.9 (claimed >= 0.5), method / backprop ~100-1000
#: (claimed >= 10).
MAX_BP_RATIO = 10.0
MIN_SLOPE_GAP = 0.5
MIN_SLOWDOWN = 10.0
#: A time counts as a measurement (for slopes and the backprop / forward ratio) from this many no-op calls.
OVERHEAD_FACTOR = 5.0
CLOCKS = {"cpu": "CPU", "wall": "Wall-clock"}
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def problem(depth: int, width: int, batch: int, seed: int):
    """A tanh MLP of ``depth`` dense layers of ``width`` units, float32 parameters (Glorot-uniform W,
    zero b, the shapes and scale of ``net.init``) and a standard normal batch ``x``, ``y``. Drawn
    with NumPy: the values do not change the timings, and JAX's generator would compile per depth."""
    net = fb.mlp([width] * (depth + 1), activation="tanh")
    rng = np.random.default_rng([seed, depth])
    r = math.sqrt(6.0 / (2 * width))
    params = tuple(
        {
            "W": jnp.asarray(rng.uniform(-r, r, (width, width)), jnp.float32),
            "b": jnp.zeros(width, jnp.float32),
        }
        for _ in range(depth)
    )
    x, y = (jnp.asarray(rng.standard_normal((batch, width)), jnp.float32) for _ in range(2))
    return net, params, x, y


def functions(net, methods=(NOOP,) + METHODS) -> dict:
    """The jitted ``(params, x, y) -> ...`` of each method: one forward pass ``net.apply``, one full
    gradient ``dC/dparams``, or the no-op (one entry of x: what calling a jitted function costs)."""
    P = net.n_params
    make = {
        NOOP: lambda: lambda p, x, y: x[0, 0],
        "forward pass": lambda: lambda p, x, y: net.apply(p, x),
        "backprop": lambda: fb.backprop(net, LOSS),
        "forward mode": lambda: fb.forward_mode(net, LOSS, chunk_size=P),
        "finite differences": lambda: fb.numerical_grad(net, LOSS, chunk_size=P),
    }
    return {m: jax.jit(make[m]()) for m in methods}


def calls_to_fill(f, args: tuple, fill: float) -> int:
    """How many back-to-back calls of ``f`` take at least ``fill`` seconds of CPU time (1, 2, 5, 10, 20, ...):
    enough that the fixed cost of starting and synchronising a batch of calls is negligible."""
    k = 1
    while True:
        t = time.process_time()
        for _ in range(k):
            out = f(*args)
        jax.block_until_ready(out)
        if time.process_time() - t >= fill or k >= 100_000:
            return k
        k = k * 5 // 2 if str(k)[0] == "2" else k * 2


def timed_rounds(fns: dict, args: dict, rounds: int, fill: float) -> dict:
    """Seconds per call of each compiled function ``fns[key](*args[key])``: CPU and wall-clock
    medians over ``rounds`` rounds, each the mean over enough calls to fill ``fill`` seconds.
    Every round visits every function, in an order that rotates from round to round, so a burst
    of load from other processes spreads over all sizes and methods instead of spoiling one."""
    calls = {key: calls_to_fill(f, args[key], fill) for key, f in fns.items()}
    cpu, wall = {key: [] for key in fns}, {key: [] for key in fns}
    keys = list(fns)
    for r in range(rounds):
        shift = (r * len(keys)) // rounds
        for key in keys[shift:] + keys[:shift]:
            f, a, k = fns[key], args[key], calls[key]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(k):
                out = f(*a)
            jax.block_until_ready(out)
            cpu[key].append((time.process_time() - c0) / k)
            wall[key].append((time.perf_counter() - w0) / k)
    return {
        key: {"cpu": statistics.median(cpu[key]), "wall": statistics.median(wall[key]), "calls": calls[key]}
        for key in fns
    }


def slope(P, t) -> float:
    """Least-squares slope of log(t) against log(P)."""
    return float(np.polyfit(np.log(np.asarray(P, float)), np.log(np.asarray(t, float)), 1)[0])


def run(
    quick: bool = False,
    seed: int = 0,
    batch: int | None = None,
    width: int = 16,
    rounds: int | None = None,
    clock: str = "cpu",
) -> dict:
    """Time every method at every depth; returns per-depth rows, the fitted summaries and the claims."""
    mode = "quick" if quick else "default"
    full, partial = DEPTHS[mode]
    batch, rounds, fill = (
        batch or SETTINGS[mode]["batch"],
        rounds or SETTINGS[mode]["rounds"],
        SETTINGS[mode]["fill"],
    )
    plan = [(d, (NOOP,) + METHODS) for d in full] + [(d, (NOOP,) + METHODS[:2]) for d in partial]
    phases, t = {}, time.perf_counter()
    problems = {d: problem(d, width, batch, seed) for d, _ in plan}
    fns = {d: functions(problems[d][0], methods) for d, methods in plan}
    jobs = [(d, m) for d, methods in plan for m in methods]

    # Compile everything first, in parallel threads (XLA compiles without holding the GIL).
    def compile_one(job):
        d, m = job
        t = time.perf_counter()
        jax.block_until_ready(
            fns[d][m](*problems[d][1:])
        )  # the first call compiles, and keeps jit's fast dispatch
        return job, time.perf_counter() - t

    phases["problems"], t = time.perf_counter() - t, time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        compile_s = dict(pool.map(compile_one, jobs))
    phases["compile"], t = time.perf_counter() - t, time.perf_counter()

    times = timed_rounds(
        {job: fns[job[0]][job[1]] for job in jobs}, {job: problems[job[0]][1:] for job in jobs}, rounds, fill
    )
    phases["timing"] = time.perf_counter() - t
    rows = []
    for d, methods in plan:
        mine = {m: times[(d, m)] for m in methods}
        rows.append(
            {
                "depth": d,
                "P": problems[d][0].n_params,
                "time": {m: mine[m][clock] for m in methods},
                "cpu": {m: mine[m]["cpu"] for m in methods},
                "wall": {m: mine[m]["wall"] for m in methods},
                "calls": {m: mine[m]["calls"] for m in methods},
                "compile_s": {m: compile_s[(d, m)] for m in methods},
            }
        )
    settings = {
        "batch": batch,
        "width": width,
        "rounds": rounds,
        "fill_s": fill,
        "clock": clock,
        "loss": LOSS,
        "dtype": "float32",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    return {"rows": rows, **summarize(rows), "settings": settings, "phase_seconds": phases}


def above_overhead(row: dict, method: str) -> bool:
    """Whether ``method``'s time at this size is at least ``OVERHEAD_FACTOR`` no-op calls."""
    return row["time"][method] >= OVERHEAD_FACTOR * row["time"][NOOP]


def summarize(rows: list[dict]) -> dict:
    """Slopes (each over its method's sizes above the dispatch overhead), ratios and the claims."""
    fits = {m: [r for r in rows if m in r["time"] and above_overhead(r, m)] for m in METHODS}
    s = {
        "slopes": {
            m: slope([r["P"] for r in fits[m]], [r["time"][m] for r in fits[m]])
            if len(fits[m]) >= 2
            else float("nan")
            for m in METHODS
        },
        "fitted_P": {m: [r["P"] for r in fits[m]] for m in METHODS},
    }
    ratio_rows = fits["forward pass"]  # a forward pass well above the overhead
    s["backprop_over_forward"] = {
        r["P"]: r["time"]["backprop"] / r["time"]["forward pass"] for r in ratio_rows
    }
    shared = [r for r in rows if "finite differences" in r["time"]]
    for m in METHODS[2:]:
        s[f"{m}_over_backprop"] = {r["P"]: r["time"][m] / r["time"]["backprop"] for r in shared}
    P0, P1 = shared[0]["P"], shared[-1]["P"]
    growth = {m: s[f"{m}_over_backprop"][P1] / s[f"{m}_over_backprop"][P0] for m in METHODS[2:]}
    s["ratio_growth"], s["ratio_growth_needed"] = growth, math.sqrt(P1 / P0)
    bp_ratios = list(s["backprop_over_forward"].values())
    s["claims"] = {
        f"backprop costs at most {MAX_BP_RATIO:g} forward passes, at every size (at least 2) where a forward "
        f"pass takes {OVERHEAD_FACTOR:g}x a no-op call or more": len(bp_ratios) >= 2
        and max(bp_ratios) <= MAX_BP_RATIO,
        f"forward mode's and central differences' times grow faster in P than backprop's: each fitted slope "
        f"exceeds backprop's by at least {MIN_SLOPE_GAP:g} (over at least 3 sizes above "
        f"{OVERHEAD_FACTOR:g}x the no-op)": len(fits["backprop"]) >= 3
        and all(len(fits[m]) == len(shared) >= 3 for m in METHODS[2:])
        and all(s["slopes"][m] >= s["slopes"]["backprop"] + MIN_SLOPE_GAP for m in METHODS[2:]),
        f"forward mode and central differences cost at least {MIN_SLOWDOWN:g}x backprop at every size": all(
            r["time"][m] >= MIN_SLOWDOWN * r["time"]["backprop"] for r in shared for m in METHODS[2:]
        ),
    }
    return s


def table(r: dict) -> str:
    """Markdown: time per call of each method at each size, the no-op beside them, and the ratios.
    Times below ``OVERHEAD_FACTOR`` no-op calls (left out of the fits) are in parentheses."""
    head = (
        ["depth", "P", "no-op (ms)"]
        + [f"{m} (ms)" for m in METHODS]
        + ["backprop / forward pass", "forward mode / backprop", "finite diff / backprop"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in r["rows"]:
        t = row["time"]
        cells = [str(row["depth"]), str(row["P"]), f"{1e3 * t[NOOP]:.3g}"]
        cells += [
            ("{:.3g}" if above_overhead(row, m) else "({:.3g})").format(1e3 * t[m]) if m in t else "—"
            for m in METHODS
        ]
        cells.append(f"{t['backprop'] / t['forward pass']:.2f}")
        cells += [f"{t[m] / t['backprop']:.0f}" if m in t else "—" for m in METHODS[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "| fitted slope of log time vs log P | | | "
        + " | ".join(f"{r['slopes'][m]:.2f}" for m in METHODS)
        + " | | | |"
    )
    st = r["settings"]
    lines.append(
        f"\n{CLOCKS[st['clock']]} time per call, median of {st['rounds']} rounds; batch {st['batch']}, "
        f"width {st['width']}, tanh, squared error, float32. In parentheses: under {OVERHEAD_FACTOR:g} "
        "no-op calls "
        "(dispatch overhead), left out of the fits and of the backprop / forward pass claim."
    )
    return "\n".join(lines)


STYLES = {
    "forward pass": ("C7", "s"),
    "backprop": ("C0", "o"),
    "forward mode": ("C2", "^"),
    "finite differences": ("C3", "v"),
}


def figure(r: dict):
    """Left: time per call against P, log-log, with the fitted lines (hollow markers: under the
    overhead threshold, not fitted); right: forward mode's and central differences' time over
    backprop's, and backprop's over a forward pass."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    rows = r["rows"]
    ax1.loglog(
        [row["P"] for row in rows],
        [1e3 * row["time"][NOOP] for row in rows],
        "k--",
        lw=1,
        label="no-op call (dispatch overhead)",
    )
    for m in METHODS:
        color, marker = STYLES[m]
        mine = [row for row in rows if m in row["time"]]
        P = np.array([row["P"] for row in mine])
        t = np.array([row["time"][m] for row in mine])
        fitted = np.array([above_overhead(row, m) for row in mine])
        ax1.loglog(
            P[fitted],
            1e3 * t[fitted],
            marker=marker,
            color=color,
            ls="none",
            label=f"{m}: slope {r['slopes'][m]:.2f}",
        )
        ax1.loglog(P[~fitted], 1e3 * t[~fitted], marker=marker, color=color, ls="none", mfc="none")
        if fitted.sum() >= 2:
            b, a = np.polyfit(np.log(P[fitted]), np.log(t[fitted]), 1)
            ax1.loglog(P[fitted], 1e3 * np.exp(a) * P[fitted] ** b, color=color, lw=1, alpha=0.7)
    ax1.plot(
        [],
        [],
        "o",
        color="0.5",
        mfc="none",
        label=f"hollow: under {OVERHEAD_FACTOR:g} no-op calls, not fitted",
    )
    ax1.set(
        xlabel="P (parameters)",
        ylabel=f"{CLOCKS[r['settings']['clock']]} time per call (ms)",
        title="One gradient, or one forward pass, against network size",
    )
    ax1.legend(fontsize=8)
    shared = [row for row in rows if "finite differences" in row["time"]]
    P = np.array([row["P"] for row in shared])
    for m in METHODS[2:]:
        color, marker = STYLES[m]
        ax2.loglog(
            P,
            [row["time"][m] / row["time"]["backprop"] for row in shared],
            marker=marker,
            color=color,
            label=f"{m} / backprop",
        )
    ratio = np.array([row["time"]["backprop"] / row["time"]["forward pass"] for row in rows])
    P_all = np.array([row["P"] for row in rows])
    fitted = np.array([above_overhead(row, "forward pass") for row in rows])
    ax2.loglog(P_all, ratio, color="C0", lw=1)
    ax2.loglog(P_all[fitted], ratio[fitted], "o", color="C0", label="backprop / forward pass")
    ax2.loglog(P_all[~fitted], ratio[~fitted], "o", color="C0", mfc="none")
    first = shared[0]["time"]["finite differences"] / shared[0]["time"]["backprop"]
    ax2.loglog(P, first * P / P[0], "k:", lw=1, label="proportional to P")
    ax2.axhline(
        MAX_BP_RATIO,
        color="C0",
        ls=":",
        lw=1,
        label=f"claimed bound on backprop / forward pass ({MAX_BP_RATIO:g})",
    )
    ax2.set(
        xlabel="P (parameters)",
        ylabel="ratio of times",
        title="Forward mode and finite differences over backprop;\nbackprop over a forward pass",
    )
    ax2.legend(fontsize=8)
    st = r["settings"]
    fig.suptitle(
        f"tanh MLPs of depth {rows[0]['depth']} to {rows[-1]['depth']}, width {st['width']}, batch "
        f"{st['batch']}, float32; forward mode and central differences measured whole, up to depth "
        f"{shared[-1]['depth']}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def main(argv=None) -> dict:
    p = common.parser(__doc__, "cost_scaling")
    p.add_argument("--batch", type=int, default=None, help="examples per batch, N (default 256; quick 128)")
    p.add_argument("--width", type=int, default=16, help="units per layer")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 7; quick 5)")
    p.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall-clock time"
    )
    args = p.parse_args(argv)
    if (
        args.quick
    ):  # read when JAX starts its CPU backend: no effect if it has started (the test suite sets it)
        os.environ.setdefault("XLA_FLAGS", QUICK_XLA_FLAGS)
    t0 = time.perf_counter()
    r = run(args.quick, args.seed, args.batch, args.width, args.rounds, args.clock)
    metrics = {k: v for k, v in r.items() if k != "claims"}
    return common.finish("cost_scaling", args, t0, metrics, r["claims"], {"scaling": figure(r)}, table(r))


if __name__ == "__main__":
    main()

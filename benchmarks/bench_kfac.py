"""K-FAC's factors and optimizer step: fbackprop against kfac-jax and against first-order steps.
Variants run side by side in one process, in interleaved rounds; the tables give median times and the
median of per-round ratios.

    python benchmarks/bench_kfac.py [--quick] [--rounds 15] [--reps 5] [--batch 256]
                                    [--modes ggn_curvature_prop,ggn_exact] [--out runs/bench_kfac]

Networks (float32, CPU): the digits MLP ``[64, 128, 10]`` (relu, He init) and a small CNN on 8x8x1
images (``Conv2D(8, 3x3, SAME)``, relu, ``AvgPool2D(2x2)``, ``Conv2D(16, 3x3, SAME)``, relu,
``Flatten``, ``Dense(10)``), softmax cross-entropy on integer labels, batch 256, inputs ``N(0, 1)``
(times do not depend on the values).

1. Factors: ``fb.kfac_factors(net, loss, kind)`` for ``kind = "exact"`` (one backward pass per
   output, vmapped) and ``"empirical"`` (one backward pass) against the gradient alone
   (``fb.value_and_backprop``) and against kfac-jax's curvature update for the same network and
   batch (``BlockDiagonalCurvature.update_curvature_matrix_estimate`` with ``estimation_mode``
   ``"ggn_exact"``: one VJP per output, unrolled, and ``"fisher_empirical"``), each jitted. The
   column ``rel`` is the largest relative difference between the two libraries' factors after the
   scaling that relates them (``kfac_jax_scaling``; tests/test_kfac_jax.py checks it in float64).
2. Step: one training step on the same net and batch: ``fbackprop_step(net, loss, transformation)``
   (the hand-written gradient, then any optax-style transformation: ``optax.sgd`` with momentum, and
   ``fb.kfac`` with kind exact or empirical, the same fixed rate, momentum and damping, its inverses
   every step or every 10 steps; ``FBACKPROP_STEPS`` lists them) against ``kfac_jax.Optimizer.step``
   with a fixed learning rate, momentum and damping, its curvature estimated every step by
   ``--modes`` (its default ``"ggn_curvature_prop"``: one Rademacher-projected backward pass;
   ``"ggn_exact"``: one per output),
   the inverses recomputed every step or every 10 steps; each timing is the mean of 10 consecutive
   steps (so it holds one inverse update of the second), each run carrying its own state.

kfac-jax is optional (``pip install -e '.[bench]'``); without it the bench times and writes the
fbackprop rows alone. The timed entries (kfac-jax's import and its view of the network, the steps of
both libraries) are in ``kfac_entries.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
from kfac_entries import (
    FBACKPROP_STEPS,
    INVERSE_PERIODS,
    LOSS,
    fbackprop_stepper,
    import_kfac_jax,
    kfac_jax_factors,
    kfac_jax_params,
    kfac_jax_scaling,
    kfac_jax_stepper,
)
from timing import block, max_rel, problem, timed_rounds

import fbackprop as fb

L = fb.layers
CLASSES = 10
KINDS = {"exact": "ggn_exact", "empirical": "fisher_empirical"}  # fbackprop kind: kfac-jax mode
STEP_REPS = 10  # consecutive steps per timing: a multiple of every inverse period
AGREE_TOL = 1e-4  # float32, relative to the largest entry


# --- networks and data --------------------------------------------------------------------------


def digits_mlp(sizes=(64, 128, CLASSES)) -> fb.Network:
    """The digits MLP: relu hidden layers, He init, logits out."""
    return fb.mlp(list(sizes), activation="relu", output="identity", init="he")


def small_cnn(input_shape=(8, 8, 1), channels=(8, 16)) -> fb.Network:
    """``Conv2D(c1, 3x3, SAME)``, relu, ``AvgPool2D(2x2)``, ``Conv2D(c2, 3x3, SAME)``, relu, ``Flatten``,
    ``Dense(10)``."""
    c1, c2 = channels
    return fb.serial(
        L.Conv2D(c1, (3, 3), padding="SAME"),
        L.Activation("relu"),
        L.AvgPool2D((2, 2)),
        L.Conv2D(c2, (3, 3), padding="SAME"),
        L.Activation("relu"),
        L.Flatten(),
        L.Dense(CLASSES),
        input_shape=input_shape,
    )


NETS = {"mlp": lambda: digits_mlp(), "cnn": lambda: small_cnn()}
QUICK_NETS = {"mlp": lambda: digits_mlp((8, 6, CLASSES)), "cnn": lambda: small_cnn((4, 4, 1), (2, 3))}


def compiled(fn, *args):
    """``jit(fn)`` compiled ahead for ``args``; returns ``(zero-argument call, seconds to compile)``."""
    t0 = time.perf_counter()
    c = jax.jit(fn).lower(*args).compile()
    return (lambda: c(*args)), time.perf_counter() - t0


def ratio_stats(times: dict, num: str, den: str) -> dict:
    """The median and range of the per-round ratios ``times[num] / times[den]``."""
    r = [a / b for a, b in zip(times[num], times[den])]
    return {"median": statistics.median(r), "spread": [min(r), max(r)]}


# --- 1. the factors -----------------------------------------------------------------------------


def bench_factors(name, net, batch, rounds, reps, kfac_jax) -> dict:
    """Times of the gradient, fbackprop's factors and kfac-jax's, and the factors' agreement."""
    params, x, labels = problem(net, batch)
    fns, compile_s, out = {}, {}, {}
    vbp = fb.value_and_backprop(net, LOSS)
    fns["gradient"], compile_s["gradient"] = compiled(vbp, params, x, labels)
    for kind in KINDS:
        f = fb.kfac_factors(net, LOSS, kind=kind)
        fns[f"fb {kind}"], compile_s[f"fb {kind}"] = compiled(f, params, x, labels)
    if kfac_jax is not None:
        kp, key = kfac_jax_params(net, params), jax.random.key(1)
        for mode in KINDS.values():
            est, f = kfac_jax_factors(kfac_jax, net, LOSS, mode)
            state = est.init(key, (kp, (x, labels)), None, None)
            fns[f"kfac-jax {mode}"], compile_s[f"kfac-jax {mode}"] = compiled(f, state, kp, x, labels, key)
    out = {k: f() for k, f in fns.items()}
    agree = {}
    if kfac_jax is not None:
        for kind, mode in KINDS.items():
            scale = kfac_jax_scaling(net, mode, batch)
            theirs = [(a * A, g * G) for (a, g), (A, G) in zip(scale, out[f"kfac-jax {mode}"])]
            ours = [(f.A, f.G) for f in out[f"fb {kind}"]]
            agree[kind] = max_rel(ours, theirs)
    times = timed_rounds(fns, rounds, reps)
    ratios = {f"fb {k} / gradient": ratio_stats(times, f"fb {k}", "gradient") for k in KINDS}
    if kfac_jax is not None:
        for kind, mode in KINDS.items():
            ratios[f"fb {kind} / kfac-jax {mode}"] = ratio_stats(times, f"fb {kind}", f"kfac-jax {mode}")
            ratios[f"kfac-jax {mode} / gradient"] = ratio_stats(times, f"kfac-jax {mode}", "gradient")
    return {
        "net": name,
        "batch": batch,
        "P": net.n_params,
        "times_s": {k: statistics.median(t) for k, t in times.items()},
        "ratios": ratios,
        "max_rel": agree,
        "compile_s": compile_s,
    }


# --- 2. the training step ------------------------------------------------------------------------


def bench_steps(name, net, batch, rounds, modes, kfac_jax) -> dict:
    """Times of the fbackprop steps and kfac-jax's optimizer steps, ratios to the SGD step."""
    params, x, labels = problem(net, batch)
    fns, compile_s = {}, {}
    for label, make in FBACKPROP_STEPS.items():
        fns[label], compile_s[label] = fbackprop_stepper(net, make(net, LOSS), params, x, labels)
    if kfac_jax is not None:
        for mode in modes:
            for period in INVERSE_PERIODS:
                label = f"kfac-jax {mode}, inverse every {period}"
                fns[label], compile_s[label] = kfac_jax_stepper(
                    kfac_jax, net, mode, period, params, x, labels
                )
    for f in fns.values():
        block(f())
    times = timed_rounds(fns, rounds, STEP_REPS)
    base = next(iter(FBACKPROP_STEPS))
    ratios = {f"{k} / {base}": ratio_stats(times, k, base) for k in fns if k != base}
    for k in FBACKPROP_STEPS:
        for j in fns:
            if k != base and j.startswith("kfac-jax"):
                ratios[f"{k} / {j}"] = ratio_stats(times, k, j)
    return {
        "net": name,
        "batch": batch,
        "P": net.n_params,
        "times_s": {k: statistics.median(t) for k, t in times.items()},
        "ratios": ratios,
        "compile_s": compile_s,
    }


# --- report --------------------------------------------------------------------------------------


def _ratio(v) -> str:
    """``median  lo-hi`` of a ratio's statistics, or blanks."""
    if v is None:
        return f"{'':>10s} {'':>11s}"
    return f"{v['median']:>10.3f} {v['spread'][0]:>5.2f}-{v['spread'][1]:<5.2f}"


def factor_table(rows) -> str:
    head = (
        f"{'net':5s} {'P':>7s} {'batch':>6s} {'variant':27s} {'ms':>8s} {'/ gradient':>8s} {'spread':>11s} "
        f"{'/ kfac-jax':>10s} {'spread':>11s} {'rel':>8s}"
    )
    lines = [
        "factors: fb.kfac_factors vs the gradient alone (fb.value_and_backprop) and vs kfac-jax's "
        "curvature update, jitted, float32",
        "(ratios: per round, median and range; / kfac-jax: fb exact to ggn_exact, fb empirical to "
        "fisher_empirical; rel: the factors' largest relative difference after the scaling)",
        head,
        "-" * len(head),
    ]
    modes = dict(KINDS)
    for r in rows:
        for k, t in r["times_s"].items():
            kind = k[3:] if k.startswith("fb ") else None
            vs_kj = r["ratios"].get(f"{k} / kfac-jax {modes[kind]}") if kind else None
            rel = r["max_rel"].get(kind) if kind else None
            lines.append(
                f"{r['net']:5s} {r['P']:>7,d} {r['batch']:>6d} {k:27s} {1e3 * t:>8.3f} "
                f"{_ratio(r['ratios'].get(f'{k} / gradient'))} {_ratio(vs_kj)}"
                + (f" {rel:>8.1e}" if rel is not None else "")
            )
    return "\n".join(lines)


def step_table(rows) -> str:
    base = next(iter(FBACKPROP_STEPS))
    head = f"{'net':5s} {'P':>7s} {'batch':>6s} {'step':46s} {'ms':>8s} {'/ ' + base:>16s} {'spread':>11s}"
    lines = [
        "training step, jitted, float32 (ratio: per round, median and range)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        for k, t in r["times_s"].items():
            ratio = r["ratios"].get(f"{k} / {base}")
            lines.append(
                f"{r['net']:5s} {r['P']:>7,d} {r['batch']:>6d} {k:46s} {1e3 * t:>8.3f} "
                + (f"{ratio['median']:>16.3f} {ratio['spread'][0]:>5.2f}-{ratio['spread'][1]:<5.2f}" if ratio
                   else f"{'1':>16s}")
            )  # fmt: skip
        for q, v in r["ratios"].items():
            if not q.endswith(f"/ {base}"):
                lines.append(f"      {q:70s} {_ratio(v)}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="tiny nets, batch 16, few rounds, the first mode (a smoke run)"
    )
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    p.add_argument("--reps", type=int, default=5, help="calls per timing of a factor computation")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument(
        "--modes",
        default="ggn_curvature_prop,ggn_exact",
        help="kfac-jax estimation modes of the optimizer step, comma-separated",
    )
    p.add_argument("--out", default="runs/bench_kfac")
    args = p.parse_args(argv)
    kfac_jax = import_kfac_jax()
    if kfac_jax is None:
        print("kfac-jax is not installed (pip install -e '.[bench]'): the fbackprop rows only", flush=True)
    nets = QUICK_NETS if args.quick else NETS
    batch = 16 if args.quick else args.batch
    rounds, reps = (3, 2) if args.quick else (args.rounds, args.reps)
    modes = [m for m in args.modes.split(",") if m][: 1 if args.quick else None]
    factors, steps = [], []
    for name, make in nets.items():
        factors.append(bench_factors(name, make(), batch, rounds, reps, kfac_jax))
        print("\n".join(factor_table(factors[-1:]).splitlines()[4:]), flush=True)
    for name, make in nets.items():
        steps.append(bench_steps(name, make(), batch, rounds, modes, kfac_jax))
        print("\n".join(step_table(steps[-1:]).splitlines()[3:]), flush=True)
    agree = all(v <= AGREE_TOL for r in factors for v in r["max_rel"].values())
    text = "\n\n".join(
        [
            factor_table(factors),
            step_table(steps),
            f"kfac-jax: {getattr(kfac_jax, '__version__', 'not installed')}"
            + (f"; factors agree after scaling (rel <= {AGREE_TOL:g}): {agree}" if kfac_jax else ""),
        ]
    )
    print("\n" + text)
    versions = fb.results.versions()
    versions["kfac_jax"] = getattr(kfac_jax, "__version__", None)
    result = {
        "config": vars(args),
        "versions": versions,
        "factors": factors,
        "steps": steps,
        "factors_agree": agree if kfac_jax else None,
    }
    fb.results.write_json(os.path.join(args.out, "results.json"), result)
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    return result


if __name__ == "__main__":
    main()

"""A CNN train step by the hand-written backward pass against ``jax.grad``, and a CNN's exact Hessian
diagonal by second-order backprop against P Hessian-vector products. Variants run side by side in
one process, in interleaved rounds; the tables give median times and the median of per-round ratios.

    python benchmarks/bench_cnn.py [--quick] [--gpu] [--rounds 15] [--diag-rounds 3] [--chunk 1]
                                   [--hvp-block 256] [--max-whole 120] [--out runs/bench_cnn]

The CNN (channels last): ``Conv2D(c, 3x3, SAME)``, relu, ``AvgPool2D(2x2)``, a residual block
``x + tanh(Conv2D(c, 3x3, SAME)(x))``, ``MaxPool2D(2x2)``, ``Flatten``, optionally ``Dense(h)`` and
relu, then ``Dense(10)`` (logits); the batch-mean softmax cross-entropy on integer labels; inputs
``N(0, 1)`` images.

Train step: one jitted step ``(params, opt_state, x, labels) -> (params, opt_state, C)``: the cost
and gradient (``fb.value_and_backprop``, hand-written, or ``fb.value_and_autodiff``,
``jax.value_and_grad`` of the same ``net.apply``), then ``optax.adam(1e-3)``'s update, float32;
8x8x1 images, c = 16, at batch 64 and 256 (``--gpu``: 32x32x3 images, c = 64, batch 256 and 1024).
Target: hand-written / jax.grad <= 1.10 on CPU.

Diagonal: ``fb.hessian_diag`` (second-order backprop, ``chunk_size=--chunk`` examples at a time:
the per-example ``H`` over a layer's flattened output is ``(chunk, n, n)``; on CPU one example at
a time is also the fastest: at P ~ 1e4 chunks of 8 took 2-4x longer) against the diagonal
read from P hand-written HVPs ``e_i^T H e_i`` (``fb.hvp(method="backprop")`` along the unit
vectors, ``jax.lax.map`` over the basis in vmapped blocks of ``--hvp-block``), float32 under
``jax.default_matmul_precision("highest")``, 8x8x1 images, batch 64, at P ~ 1e4 for two nets: "conv"
(c = 32, no hidden dense layer: most parameters in the residual convolution) and "lenet" (c = 8
and a hidden ``Dense(256)``: most parameters in the dense head). Where the P HVPs would take more
than ``--max-whole`` seconds, their time is the time of the first ``--hvp-block`` of them times
``P / hvp_block`` (marked "est."), and the two diagonals are compared on those entries.
Target: hessian_diag >= 100x faster than the P HVPs at P ~ 1e4.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from timing import block, max_rel, problem, timed_rounds

import fbackprop as fb

LOSS = "cross_entropy"
CLASSES = 10
STEP_SIZES = {  # (input shape, channels, hidden, batches)
    "cpu": ((8, 8, 1), 16, None, (64, 256)),
    "gpu": ((32, 32, 3), 64, None, (256, 1024)),
    "quick": ((8, 8, 1), 4, None, (16,)),
}
DIAG_NETS = {  # name: (input shape, channels, hidden, batch)
    "conv": ((8, 8, 1), 32, None, 64),
    "lenet": ((8, 8, 1), 8, 256, 64),
}
DIAG_QUICK = {"conv": ((8, 8, 1), 4, None, 8), "lenet": ((8, 8, 1), 2, 16, 8)}
STEP_TARGET = 1.10
DIAG_TARGET = 100.0
AGREE_TOL = 1e-4  # float32, relative to the largest entry


def cnn(input_shape, channels: int, hidden: int | None) -> fb.Network:
    """conv -> relu -> avg pool -> residual(conv -> tanh) -> max pool -> flatten [-> dense(hidden) -> relu]
    -> dense(10)."""
    L = fb.layers
    head = (L.Dense(hidden), L.Activation("relu")) if hidden else ()
    return fb.serial(
        L.Conv2D(channels, (3, 3), padding="SAME"),
        L.Activation("relu"),
        L.AvgPool2D((2, 2)),
        L.Residual(L.Conv2D(channels, (3, 3), padding="SAME"), L.Activation("tanh")),
        L.MaxPool2D((2, 2)),
        L.Flatten(),
        *head,
        L.Dense(CLASSES),
        input_shape=input_shape,
    )


def compiled(fn, *args):
    """``jit(fn)`` compiled ahead for ``args``; returns ``(zero-argument call, seconds to compile)``."""
    t0 = time.perf_counter()
    c = jax.jit(fn).lower(*args).compile()
    return (lambda: c(*args)), time.perf_counter() - t0


# --- 1. the train step ------------------------------------------------------------------------


def train_step(gradient, opt):
    """``(params, state, x, labels) -> (params, state, C)``: one optax step on ``gradient``'s ``(C, g)``."""

    def step(params, state, x, labels):
        C, g = gradient(params, x, labels)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, C

    return step


def bench_step(input_shape, channels, hidden, batch, rounds: int, reps: int) -> dict:
    net = cnn(input_shape, channels, hidden)
    params, x, labels = problem(net, batch, jnp.float32)
    opt = optax.adam(1e-3)
    state = opt.init(params)
    steps = {
        "hand-written": train_step(fb.value_and_backprop(net, LOSS), opt),
        "jax.grad": train_step(fb.value_and_autodiff(net, LOSS), opt),
    }
    fns, compile_s = {}, {}
    for name, step in steps.items():
        fns[name], compile_s[name] = compiled(step, params, state, x, labels)
    out = {k: f() for k, f in fns.items()}
    times = timed_rounds(fns, rounds, reps)
    ratios = [h / g for h, g in zip(times["hand-written"], times["jax.grad"])]
    return {
        "input_shape": list(input_shape),
        "channels": channels,
        "batch": batch,
        "P": net.n_params,
        "hand_written_s": statistics.median(times["hand-written"]),
        "jax_grad_s": statistics.median(times["jax.grad"]),
        "ratio": statistics.median(ratios),
        "ratio_spread": [min(ratios), max(ratios)],
        "compile_s": compile_s,
        "max_rel_params": max_rel(fb.flatten(out["hand-written"][0])[0], fb.flatten(out["jax.grad"][0])[0]),
    }


# --- 2. the exact diagonal against P HVPs -----------------------------------------------------


def diagonal_routes(net: fb.Network, chunk: int, hvp_block: int):
    """``(params, x, y) -> diag (P,)`` by second-order backprop, and ``(params, x, y, rows) ->
    (len(rows),)``: the entries ``e_i^T H e_i``, ``i`` in ``rows``, of hand-written HVPs."""
    hd, hvp = fb.hessian_diag(net, LOSS, chunk_size=chunk), fb.hvp(net, LOSS, method="backprop")
    P = net.n_params

    def exact(params, x, y):
        return fb.flatten(hd(params, x, y))[0]

    def from_hvps(params, x, y, rows):
        theta, unflatten = fb.flatten(params)

        def entry(i):
            e = jax.nn.one_hot(i, P, dtype=theta.dtype)
            return fb.flatten(hvp(params, x, y, unflatten(e)))[0][i]

        return jax.lax.map(entry, rows, batch_size=min(hvp_block, rows.size))

    return exact, from_hvps


def bench_diagonal(name, input_shape, channels, hidden, batch, rounds, chunk, hvp_block, max_whole_s):
    net = cnn(input_shape, channels, hidden)
    params, x, labels = problem(net, batch, jnp.float32)
    P = net.n_params
    exact, from_hvps = diagonal_routes(net, chunk, hvp_block)
    compile_s = {}
    fns = {}
    fns["hessian_diag"], compile_s["hessian_diag"] = compiled(exact, params, x, labels)
    part_rows = jnp.arange(min(hvp_block, P))
    part, compile_s["hvps part"] = compiled(from_hvps, params, x, labels, part_rows)
    block(part())
    part_s = statistics.median(timed_rounds({"p": part}, 2)["p"])
    whole = part_s * P / part_rows.size <= max_whole_s
    if whole:
        fns["hvps"], compile_s["hvps"] = compiled(from_hvps, params, x, labels, jnp.arange(P))
    else:
        fns["hvps"] = part
    d = np.asarray(fns["hessian_diag"]())
    other = np.asarray(fns["hvps"]())
    times = timed_rounds(fns, rounds, {"hessian_diag": 3, "hvps": 1})
    scale = 1.0 if whole else P / part_rows.size
    hvps_s = [t * scale for t in times["hvps"]]
    ratios = [h / e for h, e in zip(hvps_s, times["hessian_diag"])]
    return {
        "net": name,
        "input_shape": list(input_shape),
        "channels": channels,
        "hidden": hidden,
        "batch": batch,
        "chunk": chunk,
        "hvp_block": hvp_block,
        "P": P,
        "hessian_diag_s": statistics.median(times["hessian_diag"]),
        "hvps_s": statistics.median(hvps_s),
        "hvps_estimated": not whole,
        "hvps_timed_entries": int(other.size),
        "one_hvp_s": statistics.median(times["hvps"]) / other.size,
        "speedup": statistics.median(ratios),
        "speedup_spread": [min(ratios), max(ratios)],
        "max_rel": max_rel(d[: other.size], other),
        "compile_s": compile_s,
    }


# --- report -----------------------------------------------------------------------------------


def step_table(rows) -> str:
    head = (
        f"{'input':10s} {'c':>3s} {'batch':>6s} {'P':>8s} {'hand-written ms':>16s} {'jax.grad ms':>12s} "
        f"{'ratio':>7s} {'spread':>11s} {'params rel':>10s}"
    )
    lines = [
        "train step: value and gradient + optax.adam update, jitted, float32 (hand-written vs jax.grad)",
        head,
        "-" * len(head),
    ]
    for r in rows:
        lines.append(
            f"{'x'.join(map(str, r['input_shape'])):10s} {r['channels']:>3d} {r['batch']:>6d} {r['P']:>8,d} "
            f"{1e3 * r['hand_written_s']:>16.3f} {1e3 * r['jax_grad_s']:>12.3f} {r['ratio']:>7.3f} "
            f"{r['ratio_spread'][0]:>5.2f}-{r['ratio_spread'][1]:<5.2f} {r['max_rel_params']:>10.1e}"
        )
    return "\n".join(lines)


def diagonal_table(rows) -> str:
    head = (
        f"{'net':6s} {'c':>3s} {'hidden':>6s} {'batch':>6s} {'chunk':>6s} {'P':>8s} {'diag s':>9s} "
        f"{'P HVPs s':>14s} {'1 HVP ms':>9s} {'speedup':>8s} {'spread':>13s} {'rel':>8s}"
    )
    lines = [
        "diagonal: fb.hessian_diag (second-order backprop) vs P unit-vector fb.hvp(method='backprop'), "
        "float32, highest matmul precision",
        head,
        "-" * len(head),
    ]
    for r in rows:
        hvps = f"{r['hvps_s']:.3g}{' est.' if r['hvps_estimated'] else ''}"
        lines.append(
            f"{r['net']:6s} {r['channels']:>3d} {str(r['hidden'] or '-'):>6s} {r['batch']:>6d} "
            f"{r['chunk']:>6d} "
            f"{r['P']:>8,d} {r['hessian_diag_s']:>9.3f} {hvps:>14s} {1e3 * r['one_hvp_s']:>9.3f} "
            f"{r['speedup']:>8.1f} {r['speedup_spread'][0]:>6.1f}-{r['speedup_spread'][1]:<6.1f} "
            f"{r['max_rel']:>8.1e}"
        )
        if r["hvps_estimated"]:
            lines.append(
                f"       P HVPs est.: the first {r['hvps_timed_entries']} timed, times P / "
                f"{r['hvps_timed_entries']}; diagonals compared on those entries"
            )
    return "\n".join(lines)


def summary(steps, diag, platform: str) -> tuple[dict, str]:
    met = {}
    if platform == "cpu":
        for r in steps:
            met[f"train step hand-written / jax.grad <= {STEP_TARGET} at batch {r['batch']}"] = (
                r["ratio"] <= STEP_TARGET
            )
    for r in diag:
        met[f"hessian_diag >= {DIAG_TARGET:g}x faster than P HVPs ({r['net']}, P = {r['P']:,d})"] = (
            r["speedup"] >= DIAG_TARGET
        )
    met[f"the two diagonals agree (rel <= {AGREE_TOL:g})"] = all(r["max_rel"] <= AGREE_TOL for r in diag)
    met[f"the two train steps give the same params (rel <= {AGREE_TOL:g})"] = all(
        r["max_rel_params"] <= AGREE_TOL for r in steps
    )
    lines = [f"targets ({platform}):"] + [f"  {'met    ' if ok else 'NOT met'}  {k}" for k, ok in met.items()]
    return met, "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny nets, few rounds (a smoke run)")
    p.add_argument(
        "--gpu", action="store_true", help="train step on 32x32x3 images, c = 64, batch 256 and 1024"
    )
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the train step")
    p.add_argument("--diag-rounds", type=int, default=3, help="interleaved rounds of the diagonal")
    p.add_argument(
        "--chunk",
        type=int,
        default=1,
        help="examples per chunk of fb.hessian_diag (1: least memory, fastest)",
    )
    p.add_argument("--hvp-block", type=int, default=256, help="unit vectors per vmap of the P HVPs")
    p.add_argument(
        "--max-whole",
        type=float,
        default=None,
        help="seconds above which the P HVPs are estimated from one block (default 120; --quick: 0)",
    )
    p.add_argument("--out", default="runs/bench_cnn")
    args = p.parse_args(argv)
    platform = "gpu" if args.gpu else "cpu"
    input_shape, channels, hidden, batches = STEP_SIZES["quick" if args.quick else platform]
    rounds = 3 if args.quick else args.rounds
    max_whole = args.max_whole if args.max_whole is not None else 0.0 if args.quick else 120.0
    steps = []
    for batch in batches:
        reps = 2 if args.quick else max(1, 2048 // batch) if not args.gpu else 10
        steps.append(bench_step(input_shape, channels, hidden, batch, rounds, reps))
        print(step_table(steps[-1:]).splitlines()[-1], flush=True)
    diag = []
    for name, (shape, c, h, batch) in (DIAG_QUICK if args.quick else DIAG_NETS).items():
        with jax.default_matmul_precision("highest"):  # full-precision float32 matmuls on GPUs (not TF32)
            diag.append(
                bench_diagonal(
                    name,
                    shape,
                    c,
                    h,
                    batch,
                    2 if args.quick else args.diag_rounds,
                    args.chunk,
                    32 if args.quick else args.hvp_block,
                    max_whole,
                )
            )
        print(diagonal_table(diag[-1:]).splitlines()[3], flush=True)
    met, lines = summary(steps, diag, platform)
    text = "\n\n".join([step_table(steps), diagonal_table(diag), lines])
    print("\n" + text)
    fb.results.write_json(
        os.path.join(args.out, "results.json"),
        {
            "config": vars(args),
            "versions": fb.results.versions(),
            "steps": steps,
            "diagonal": diag,
            "targets": met,
        },
    )
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")
    return {"steps": steps, "diagonal": diag, "targets": met}


if __name__ == "__main__":
    main()

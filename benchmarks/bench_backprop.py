"""One SGD step by the hand-written backward pass vs jax.grad vs forward mode, and the seed example
(the 3-3-1 sigmoid toy of the classic NumPy backpropagation tutorial) against that tutorial's NumPy
loop. Variants run side by side in one process, in interleaved rounds; the table gives median
times and the median of per-round ratios.

    python benchmarks/bench_backprop.py [--quick] [--gpu] [--out runs/bench_backprop]

Networks: tanh hidden layers, cross-entropy on logits, integer labels, float32 (bf16 too with
--gpu). Forward mode costs P Jacobian-vector products; where timing it whole would take minutes,
its time is estimated from one chunk of basis directions (marked "est."). TFLOP/s counts
6 * B * P per step (forward 2BP, backward 4BP).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import fbackprop as fb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from timing import block, timed_rounds  # noqa: E402  (benchmarks/, the script's own folder)

CPU_SIZES = {
    "small": ([64, 128, 128, 10], 128),
    "medium": ([784, 512, 512, 10], 256),
    "large": ([1024, 1024, 1024, 1024, 10], 1024),
}
GPU_SIZES = {"gpu-4096": ([4096] * 5 + [1000], 4096), "gpu-8192": ([8192] * 4 + [1000], 8192)}
LR = 0.01


def sgd_step(gradient):
    return jax.jit(lambda p, x, y: jax.tree.map(lambda w, g: w - LR * g, p, gradient(p, x, y)))


def problem(sizes, batch, dtype, seed=0):
    net = fb.mlp(sizes, activation="tanh")
    kp, kx, ky = jax.random.split(jax.random.key(seed), 3)
    return (
        net,
        net.init(kp, dtype),
        jax.random.normal(kx, (batch, sizes[0]), dtype),
        jax.random.randint(ky, (batch,), 0, sizes[-1]),
    )


def forward_mode_estimate(net, params, x, y, chunk: int, rounds: int) -> float:
    """Seconds for forward mode's full gradient, from the time of one chunk of ``chunk`` JVPs."""
    theta, unravel = ravel_pytree(params)
    P = theta.size
    cost = lambda t: fb.losses.cross_entropy(
        net.apply(unravel(t), x), jax.nn.one_hot(y, net.n_out, dtype=x.dtype)
    )
    jvps = jax.jit(
        lambda t, idx: jax.vmap(lambda i: jax.jvp(cost, (t,), (jax.nn.one_hot(i, P, dtype=t.dtype),))[1])(idx)
    )
    idx = jnp.arange(chunk)
    block(jvps(theta, idx))
    per_chunk = statistics.median(timed_rounds({"c": partial(jvps, theta, idx)}, rounds)["c"])
    return per_chunk * math.ceil(P / chunk)


def bench_size(name, sizes, batch, dtype, rounds, reps, forward_whole: bool, chunk: int) -> dict:
    net, params, x, y = problem(sizes, batch, dtype)
    steps = {
        "backprop": sgd_step(fb.backprop(net, "cross_entropy")),
        "autodiff": sgd_step(fb.autodiff(net, "cross_entropy")),
    }
    compile_s = {}
    for k, f in steps.items():
        t0 = time.perf_counter()
        block(f(params, x, y))
        compile_s[k] = time.perf_counter() - t0
    times = timed_rounds({k: partial(f, params, x, y) for k, f in steps.items()}, rounds, reps)
    ratios = [b / a for b, a in zip(times["backprop"], times["autodiff"])]
    row = {
        "size": name,
        "sizes": sizes,
        "batch": batch,
        "dtype": jnp.dtype(dtype).name,
        "P": net.n_params,
        "backprop_s": statistics.median(times["backprop"]),
        "autodiff_s": statistics.median(times["autodiff"]),
        "ratio_backprop_over_autodiff": statistics.median(ratios),
        "ratio_spread": [min(ratios), max(ratios)],
        "first_call_s": compile_s,
    }
    flops = 6 * batch * net.n_params
    row["tflops_backprop"] = flops / row["backprop_s"] / 1e12
    row["tflops_autodiff"] = flops / row["autodiff_s"] / 1e12
    if forward_whole:
        step = sgd_step(fb.forward_mode(net, "cross_entropy", chunk_size=chunk))
        block(step(params, x, y))
        row["forward_s"] = statistics.median(timed_rounds({"f": partial(step, params, x, y)}, 2)["f"])
        row["forward_estimated"] = False
    else:
        row["forward_s"] = forward_mode_estimate(net, params, x, y, chunk, 3)
        row["forward_estimated"] = True
    row["ratio_forward_over_autodiff"] = row["forward_s"] / row["autodiff_s"]
    return row


def bench_seed_example(rounds: int) -> dict:
    """10000 full-batch steps: fbackprop (hand-written, lax.scan, compiled) vs the tutorial's NumPy loop."""
    import optax
    import seed_numpy

    from fbackprop.train import full_batch

    net = fb.mlp([3, 3, 1], activation="sigmoid", init="uniform")
    x, y = fb.data.seed_example(np.float32)
    params = fb.data.seed_example_params(np.float32)
    gradient = fb.value_and_backprop(net, "squared_error")
    run = jax.jit(lambda p: full_batch(gradient, optax.sgd(0.1), p, x, y, 10000))
    t0 = time.perf_counter()
    block(run(params))
    compile_s = time.perf_counter() - t0
    ours = timed_rounds({"fb": partial(run, params)}, rounds)["fb"]
    x64, y64 = fb.data.seed_example(np.float64)
    w = seed_numpy.initial_weights()
    numpy_s = timed_rounds({"np": lambda: seed_numpy.train(x64, y64, *w)}, max(2, rounds // 2))["np"]
    return {
        "fbackprop_s": statistics.median(ours),
        "numpy_s": statistics.median(numpy_s),
        "speedup": statistics.median(numpy_s) / statistics.median(ours),
        "fbackprop_first_call_s": compile_s,
    }


def table(rows, seed) -> str:
    head = (
        f"{'size':9s} {'dtype':8s} {'P':>11s} {'backprop ms':>12s} {'jax.grad ms':>12s} {'bp/grad':>8s} "
        f"{'spread':>13s} {'forward s':>12s} {'fwd/grad':>9s} {'TFLOP/s bp':>10s} {'grad':>7s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        fwd = f"{r['forward_s']:.3g}{' est.' if r['forward_estimated'] else ''}"
        lines.append(
            f"{r['size']:9s} {r['dtype']:8s} {r['P']:>11,d} {1e3 * r['backprop_s']:>12.3f} "
            f"{1e3 * r['autodiff_s']:>12.3f} "
            f"{r['ratio_backprop_over_autodiff']:>8.3f} "
            f"{r['ratio_spread'][0]:>6.2f}-{r['ratio_spread'][1]:<6.2f} "
            f"{fwd:>12s} {r['ratio_forward_over_autodiff']:>9.3g} {r['tflops_backprop']:>10.3f} "
            f"{r['tflops_autodiff']:>7.3f}"
        )
    if seed:
        lines.append(
            f"\nseed example, 10000 steps: fbackprop {1e3 * seed['fbackprop_s']:.1f} ms, NumPy "
            f"{1e3 * seed['numpy_s']:.0f} ms: "
            f"{seed['speedup']:.0f}x faster (target >= 20x)"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small size only, few rounds (a smoke run)")
    p.add_argument("--gpu", action="store_true", help="also the large GPU sizes, float32 and bfloat16")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default="runs/bench_backprop")
    args = p.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    rows = []
    for name, (sizes, batch) in CPU_SIZES.items():
        if args.quick and name != "small":
            continue
        reps = {"small": 50, "medium": 10, "large": 2}[name]
        chunk = {"small": 256, "medium": 64, "large": 16}[name]  # basis directions per forward-mode vmap
        rows.append(
            bench_size(
                name,
                sizes,
                batch,
                jnp.float32,
                rounds,
                reps,
                forward_whole=(name == "small" and not args.gpu),
                chunk=chunk,
            )
        )
        print(table(rows[-1:], None).splitlines()[-1], flush=True)
    if args.gpu:
        for name, (sizes, batch) in GPU_SIZES.items():
            for dtype in (jnp.float32, jnp.bfloat16):
                rows.append(bench_size(name, sizes, batch, dtype, rounds, 5, forward_whole=False, chunk=8))
                print(table(rows[-1:], None).splitlines()[-1], flush=True)
    seed = bench_seed_example(3 if args.quick else 7)
    text = table(rows, seed)
    print("\n" + text)
    fb.results.write_json(
        os.path.join(args.out, "results.json"),
        {"config": vars(args), "versions": fb.results.versions(), "rows": rows, "seed_example": seed},
    )
    fb.results.write_text(os.path.join(args.out, "table.txt"), text + "\n")


if __name__ == "__main__":
    main()
